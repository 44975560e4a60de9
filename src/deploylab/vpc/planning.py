"""Subnet planning (VLSM): carve aligned, non-overlapping subnets out of a VPC block, largest
first, sized by host count (classic or AWS reservations) or by prefix length.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from deploylab.vpc.addressing import AWS_MAX_PREFIX, AWS_MIN_PREFIX, check_aws_size, parse_block
from deploylab.vpc.blocks import free_blocks
from deploylab.vpc.errors import PlanError

__all__ = [
    "PlannedSubnet",
    "PlannedSubnetDict",
    "SubnetPlan",
    "SubnetPlanDict",
    "SubnetRequest",
    "SubnetRequestLike",
    "plan_subnets",
    "prefix_for_hosts",
]


def prefix_for_hosts(hosts: int, *, aws: bool = True) -> int:
    """The longest prefix (smallest block) with at least ``hosts`` usable addresses.

    In AWS mode 5 addresses per subnet are reserved and no subnet is smaller than /28.

    Examples
    --------
    >>> prefix_for_hosts(251), prefix_for_hosts(252), prefix_for_hosts(1)
    (24, 23, 28)
    >>> prefix_for_hosts(254, aws=False), prefix_for_hosts(2, aws=False)
    (24, 30)
    """
    if not isinstance(hosts, int) or isinstance(hosts, bool) or hosts < 1:
        raise PlanError(f"host count {hosts!r}: expected a whole number of at least 1")
    reserved = 5 if aws else 2
    for prefix in range(AWS_MAX_PREFIX if aws else 30, -1, -1):
        if 2 ** (32 - prefix) - reserved >= hosts:
            return prefix
    raise PlanError(f"host count {hosts}: no IPv4 block is that large")


@dataclass(frozen=True)
class SubnetRequest:
    """What a planner is asked for: a name and either a host count or a prefix length."""

    name: str
    hosts: int | None = None
    prefixlen: int | None = None
    az: str | None = None
    tier: str | None = None

    @classmethod
    def coerce(cls, value: SubnetRequestLike) -> SubnetRequest:
        """Accept a ``SubnetRequest``, a dict, or a tuple ``(name, hosts_or_"/n", az, tier)``."""
        if isinstance(value, SubnetRequest):
            return value
        if isinstance(value, Mapping):
            return cls(**value)
        if isinstance(value, (tuple, list)) and 1 <= len(value) <= 4:
            name, size, *rest = [*value, None, None][:4]
            if isinstance(size, str) and size.startswith("/") and size[1:].isdigit():
                return cls(name, prefixlen=int(size[1:]), az=rest[0], tier=rest[1])
            return cls(name, hosts=size, az=rest[0], tier=rest[1])
        raise PlanError(
            f"subnet request {value!r}: expected (name, hosts or '/prefix', az, tier) or a dict"
        )


#: What :func:`plan_subnets` accepts as one request: a :class:`SubnetRequest`, its fields as
#: a mapping, or a tuple ``(name, hosts_or_"/n", az, tier)`` (learners type all three; the
#: values are checked when the request is built, so they are not narrowed here).
SubnetRequestLike = SubnetRequest | Mapping[str, Any] | tuple[Any, ...] | list[Any]


class PlannedSubnetDict(TypedDict):
    """:meth:`PlannedSubnet.as_dict`, as JSON prints it."""

    name: str
    cidr: str
    az: str | None
    tier: str | None
    hosts_requested: int | None
    usable: int
    total: int


class SubnetPlanDict(TypedDict):
    """:meth:`SubnetPlan.as_dict`, as JSON prints it."""

    vpc: str
    aws: bool
    subnets: list[PlannedSubnetDict]
    free: list[str]
    used: int
    total: int


@dataclass(frozen=True)
class PlannedSubnet:
    """One subnet of a plan."""

    name: str
    network: ipaddress.IPv4Network
    az: str | None
    tier: str | None
    hosts_requested: int | None
    usable: int

    def as_dict(self) -> PlannedSubnetDict:
        return {
            "name": self.name,
            "cidr": str(self.network),
            "az": self.az,
            "tier": self.tier,
            "hosts_requested": self.hosts_requested,
            "usable": self.usable,
            "total": self.network.num_addresses,
        }


@dataclass(frozen=True)
class SubnetPlan:
    """The result of :func:`plan_subnets`: subnets in address order, plus the free gaps."""

    vpc: ipaddress.IPv4Network
    subnets: tuple[PlannedSubnet, ...]
    aws: bool = True
    free: tuple[ipaddress.IPv4Network, ...] = field(default=())

    def __getitem__(self, name: str) -> PlannedSubnet:
        for subnet in self.subnets:
            if subnet.name == name:
                return subnet
        raise KeyError(name)

    @property
    def used(self) -> int:
        return sum(subnet.network.num_addresses for subnet in self.subnets)

    def as_dict(self) -> SubnetPlanDict:
        return {
            "vpc": str(self.vpc),
            "aws": self.aws,
            "subnets": [subnet.as_dict() for subnet in self.subnets],
            "free": [str(block) for block in self.free],
            "used": self.used,
            "total": self.vpc.num_addresses,
        }


def plan_subnets(
    vpc_cidr: str | ipaddress.IPv4Network,
    requests: Iterable[SubnetRequestLike],
    *,
    aws: bool = True,
) -> SubnetPlan:
    """Variable-length subnet masking: carve aligned, non-overlapping subnets, largest first.

    Parameters
    ----------
    vpc_cidr : str or IPv4Network
        The block to divide (in AWS mode /16 to /28).
    requests : iterable
        :class:`SubnetRequest` objects, dicts, or tuples ``(name, hosts_or_"/n", az, tier)``.
        A host count gets the smallest block with that many usable addresses.
    aws : bool
        Reserve 5 addresses per subnet and keep subnets within /16–/28 (default); if False,
        reserve 2 (network and broadcast).

    Returns
    -------
    SubnetPlan
        Subnets sorted by address, with the free blocks left over.

    Raises
    ------
    PlanError
        When the subnets do not fit; the message says how many addresses are missing.

    Notes
    -----
    Placing blocks from the largest down, each at the next free address, keeps every block
    aligned on its own size without gaps; so the plan fits exactly when the sizes add up to
    no more than the VPC.

    Examples
    --------
    >>> plan = plan_subnets("10.0.0.0/24", [("web", 100, "a"), ("db", 50, "b"), ("ops", "/28")])
    >>> [(s.name, str(s.network), s.usable) for s in plan.subnets]
    [('web', '10.0.0.0/25', 123), ('db', '10.0.0.128/26', 59), ('ops', '10.0.0.192/28', 11)]
    >>> [str(block) for block in plan.free]
    ['10.0.0.208/28', '10.0.0.224/27']
    >>> plan_subnets("10.0.0.0/24", [("a", 200), ("b", 100)])
    Traceback (most recent call last):
    ...
    deploylab.vpc.errors.PlanError: 2 subnets need 384 addresses but 10.0.0.0/24 has 256: 128 addresses missing (the first that does not fit is 'b', a /25 for 100 hosts); use a larger VPC block or fewer or smaller subnets
    """
    vpc = check_aws_size(vpc_cidr, "VPC") if aws else parse_block(vpc_cidr)
    wanted = [SubnetRequest.coerce(request) for request in requests]
    if not wanted:
        raise PlanError("no subnets requested: expected at least one (name, hosts) request")
    names = [request.name for request in wanted]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PlanError(f"subnet name {duplicates[0]!r} is requested twice: expected unique names")
    sized: list[tuple[int, int, SubnetRequest]] = []
    for order, request in enumerate(wanted):
        if request.prefixlen is not None:
            prefix = request.prefixlen
            if not isinstance(prefix, int) or not 0 <= prefix <= 32:
                raise PlanError(f"subnet {request.name!r}: prefix /{prefix} is not 0 to 32")
            if aws and not AWS_MIN_PREFIX <= prefix <= AWS_MAX_PREFIX:
                raise PlanError(
                    f"subnet {request.name!r}: /{prefix} is outside AWS's /16 to /28 range"
                )
        else:
            if request.hosts is None:
                raise PlanError(
                    f"subnet {request.name!r}: host count None: expected a whole number of "
                    "at least 1"
                )
            try:
                prefix = prefix_for_hosts(request.hosts, aws=aws)
            except PlanError as error:
                raise PlanError(f"subnet {request.name!r}: {error}") from None
            if aws and prefix < AWS_MIN_PREFIX:
                raise PlanError(
                    f"subnet {request.name!r}: {request.hosts} hosts need a /{prefix}, larger "
                    "than the largest AWS subnet (/16, 65,531 usable)"
                )
        sized.append((prefix, order, request))
    sized.sort(key=lambda item: (item[0], item[1]))  # largest block first, then input order
    needed = sum(2 ** (32 - prefix) for prefix, _, _ in sized)
    cursor = int(vpc.network_address)
    end = int(vpc.broadcast_address) + 1
    placed: list[PlannedSubnet] = []
    for prefix, _, request in sized:
        size = 2 ** (32 - prefix)
        if prefix < vpc.prefixlen or cursor + size > end:
            what = f"a /{prefix}" + (f" for {request.hosts} hosts" if request.hosts else "")
            raise PlanError(
                f"{len(sized)} subnets need {needed:,} addresses but {vpc} has "
                f"{vpc.num_addresses:,}: {needed - vpc.num_addresses:,} addresses missing "
                f"(the first that does not fit is {request.name!r}, {what}); use a larger VPC "
                "block or fewer or smaller subnets",
                needed=needed,
                available=vpc.num_addresses,
            )
        network = ipaddress.IPv4Network((cursor, prefix))
        reserved = 5 if aws else (2 if prefix < 31 else 0)
        placed.append(
            PlannedSubnet(
                request.name, network, request.az, request.tier, request.hosts, size - reserved
            )
        )
        cursor += size
    placed.sort(key=lambda subnet: subnet.network)
    free = free_blocks(vpc, [subnet.network for subnet in placed])
    return SubnetPlan(vpc, tuple(placed), aws, tuple(free))
