"""The rules a VPC design must keep (sizes, overlaps, gateways, addresses), checked all at once:
:func:`validate` returns one :class:`Problem` per broken rule, so a learner sees every mistake
of a design at the same time rather than the first one only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from deploylab.vpc.address_kinds import special_block
from deploylab.vpc.addressing import AWS_MAX_PREFIX, AWS_MIN_PREFIX
from deploylab.vpc.blocks import aws_reserved_set

if TYPE_CHECKING:
    from deploylab.vpc.model import Subnet, Vpc

__all__ = ["Problem", "ProblemDict", "validate"]


class ProblemDict(TypedDict):
    """:meth:`Problem.as_dict`, as JSON prints it."""

    rule: str
    component: str
    message: str
    severity: str


@dataclass(frozen=True)
class Problem:
    """One broken rule found by :meth:`Vpc.validate`."""

    rule: str
    component: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.severity}: [{self.rule}] {self.component}: {self.message}"

    def as_dict(self) -> ProblemDict:
        return {
            "rule": self.rule,
            "component": self.component,
            "message": self.message,
            "severity": self.severity,
        }


def validate(vpc: Vpc) -> list[Problem]:
    """Every broken rule of the design, one :class:`Problem` each (empty when valid).

    Examples
    --------
    >>> from deploylab.vpc import Vpc
    >>> vpc = Vpc("10.0.0.0/16")
    >>> _ = vpc.add_subnet("a", "10.0.0.0/24", az="az1")
    >>> _ = vpc.add_subnet("b", "10.0.0.128/25", az="az1")
    >>> _ = vpc.add_subnet("c", "10.1.0.0/24", az="az2")
    >>> for problem in vpc.validate():
    ...     print(problem.rule, "-", problem.message)
    subnet-overlap - 10.0.0.128/25 overlaps subnet a (10.0.0.0/24): subnets of a VPC must not share addresses
    subnet-outside-vpc - 10.1.0.0/24 is not inside the VPC block 10.0.0.0/16
    """
    problems: list[Problem] = []

    def add(rule: str, component: str, message: str, severity: str = "error") -> None:
        problems.append(Problem(rule, component, message, severity))

    if not AWS_MIN_PREFIX <= vpc.cidr.prefixlen <= AWS_MAX_PREFIX:
        add(
            "vpc-size",
            vpc.name,
            f"{vpc.cidr} is a /{vpc.cidr.prefixlen}: a VPC block must be /16 to /28",
        )
    seen: list[Subnet] = []
    for subnet in vpc.subnets.values():
        if not AWS_MIN_PREFIX <= subnet.cidr.prefixlen <= AWS_MAX_PREFIX:
            add(
                "subnet-size",
                subnet.name,
                f"{subnet.cidr} is a /{subnet.cidr.prefixlen}: a subnet must be /16 to /28",
            )
        if not subnet.cidr.subnet_of(vpc.cidr):
            add(
                "subnet-outside-vpc",
                subnet.name,
                f"{subnet.cidr} is not inside the VPC block {vpc.cidr}",
            )
        for other in seen:
            if subnet.cidr.overlaps(other.cidr):
                add(
                    "subnet-overlap",
                    subnet.name,
                    f"{subnet.cidr} overlaps subnet {other.name} ({other.cidr}): subnets of "
                    "a VPC must not share addresses",
                )
        seen.append(subnet)
    internet_gateways = [g.id for g in vpc.gateways.values() if g.kind == "igw"]
    if len(internet_gateways) > 1:
        add(
            "igw-count",
            ", ".join(internet_gateways),
            "a VPC has at most one internet gateway attached",
        )
    if sum(1 for g in vpc.gateways.values() if g.kind == "vgw") > 1:
        add("vgw-count", vpc.name, "a VPC has at most one virtual private gateway attached")
    for table in vpc.route_tables.values():
        for route in table.routes:
            if not vpc.target_exists(route.target):
                add(
                    "route-target-missing",
                    table.name,
                    f"route {route} points to {route.target}, which is not part of this VPC",
                )
    for gateway in vpc.gateways.values():
        if gateway.kind != "nat":
            continue
        if gateway.public_ip is None:
            add("nat-no-eip", gateway.id, "a public NAT gateway needs an Elastic IP (public_ip)")
        if gateway.subnet in vpc.subnets and vpc.classify(gateway.subnet) != "public":
            add(
                "nat-in-private-subnet",
                gateway.id,
                f"it sits in {gateway.subnet}, a {vpc.classify(gateway.subnet)} subnet; a "
                "NAT gateway must be in a public subnet (one that routes to the internet "
                "gateway) to reach the internet",
            )
    owners: dict[ipaddress.IPv4Address, str] = {}
    public_owners: dict[ipaddress.IPv4Address, str] = {}
    endpoints = [(i.name, i.subnet, i.private_ip, i.public_ip) for i in vpc.instances.values()]
    endpoints += [
        (g.id, g.subnet, g.private_ip, g.public_ip)
        for g in vpc.gateways.values()
        if g.kind == "nat" and g.subnet is not None and g.private_ip is not None
    ]
    for name, subnet_name, private_ip, public_ip in endpoints:
        subnet = vpc.subnets[subnet_name]
        if private_ip not in subnet.cidr:
            add(
                "ip-outside-subnet",
                name,
                f"private IP {private_ip} is not in its subnet {subnet.name} ({subnet.cidr})",
            )
        elif private_ip in aws_reserved_set(subnet.cidr):
            add(
                "ip-reserved",
                name,
                f"private IP {private_ip} is one of the five addresses AWS reserves in "
                f"{subnet.cidr}; expected an address from {subnet.cidr.network_address + 4} "
                f"to {subnet.cidr.broadcast_address - 1}",
            )
        if private_ip in owners:
            add(
                "ip-duplicate",
                name,
                f"private IP {private_ip} is also used by {owners[private_ip]}",
            )
        owners.setdefault(private_ip, name)
        if public_ip is None:
            continue
        block = special_block(public_ip)
        if public_ip in vpc.cidr or (block and block.kind not in ("documentation",)):
            add(
                "public-ip-not-public",
                name,
                f"public IP {public_ip} is {block.name if block else 'inside the VPC'}; "
                "expected a public address (use 203.0.113.x or 198.51.100.x in examples)",
            )
        if public_ip in public_owners:
            add(
                "public-ip-duplicate",
                name,
                f"public IP {public_ip} is also used by {public_owners[public_ip]}",
            )
        public_owners.setdefault(public_ip, name)
        if name in vpc.instances and vpc.classify(subnet_name) != "public":
            add(
                "public-ip-unused",
                name,
                f"it has public IP {public_ip} but sits in {subnet_name}, a "
                f"{vpc.classify(subnet_name)} subnet, so nothing can reach it from the "
                "internet",
                severity="warning",
            )
    return problems
