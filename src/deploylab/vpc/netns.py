"""Check a VPC design against the Linux kernel: build it as network namespaces
(:class:`~deploylab.vpc.namespaces.KernelVpc`), then compare the model's route lookups with
``ip route get`` and its reachability answers with real pings (``deploylab vpc netns``).

The model predicts (:func:`expected_kernel_answer`), the kernel answers, and
:class:`KernelReport` lists every disagreement; this module owns what is compared and how the
random destinations and endpoint pairs are picked.
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

from deploylab.vpc.namespaces import KernelVpc

if TYPE_CHECKING:
    from deploylab.vpc.model import Vpc
    from deploylab.vpc.reachability import Reachability

__all__ = [
    "KernelReport",
    "KernelReportDict",
    "PingComparison",
    "RouteMismatch",
    "SkippedPair",
    "compare_with_kernel",
    "expected_kernel_answer",
]


class RouteMismatch(TypedDict):
    """A destination for which ``ip route get`` and the model chose different ways out."""

    subnet: str
    destination: str
    model: str
    kernel: str


class PingComparison(TypedDict):
    """One endpoint pair: the model's reachability answer and whether a real ping came back."""

    source: str
    destination: str
    model: bool
    kernel: bool
    #: The NAT gateway on the model's path, if one is.
    nat: str | None


class SkippedPair(TypedDict):
    """An endpoint pair a ping cannot check here, and why."""

    source: str
    destination: str
    why: str


class KernelReportDict(TypedDict):
    """:meth:`KernelReport.as_dict`, as JSON prints it."""

    design: str
    agrees: bool
    route_checks: int
    route_mismatches: list[RouteMismatch]
    pings: list[PingComparison]
    skipped: list[SkippedPair]
    build_seconds: float
    route_seconds: float
    ping_seconds: float


def expected_kernel_answer(
    kernel: KernelVpc, subnet_name: str, destination: str | int | ipaddress.IPv4Address
) -> str:
    """What ``ip route get`` should say, worked out from the model alone (the oracle runs
    the other way: this is the model's prediction, compared with the kernel)."""
    vpc = kernel.vpc
    destination = ipaddress.IPv4Address(destination)
    route = vpc.route_table_for(subnet_name).lookup(destination).route
    if route is None:
        return "noroute"
    if route.kind == "local":
        for gateway in vpc.gateways.values():  # a NAT gateway's ENI has a link of its own
            if gateway.kind == "nat" and gateway.private_ip == destination:
                return kernel.target_dev[gateway.id]
        home = vpc.subnet_of(destination)
        return "unreachable" if home is None else kernel.subnet_dev[home.name]
    if not vpc.target_exists(route.target):
        return "blackhole"
    if route.kind in ("instance", "eni"):
        return kernel.subnet_dev[vpc.instance(route.target).subnet]
    return kernel.target_dev[route.target]


@dataclass
class KernelReport:
    """What ``compare_with_kernel`` found."""

    design: str
    route_checks: int = 0
    route_mismatches: list[RouteMismatch] = field(default_factory=list)
    pings: list[PingComparison] = field(default_factory=list)
    skipped: list[SkippedPair] = field(default_factory=list)
    build_seconds: float = 0.0
    route_seconds: float = 0.0
    ping_seconds: float = 0.0

    @property
    def ping_mismatches(self) -> list[PingComparison]:
        return [p for p in self.pings if p["model"] != p["kernel"]]

    @property
    def nat_pings(self) -> list[PingComparison]:
        """The compared pings whose model path goes through a NAT gateway."""
        return [p for p in self.pings if p.get("nat")]

    @property
    def agrees(self) -> bool:
        return not self.route_mismatches and not self.ping_mismatches

    def as_dict(self) -> KernelReportDict:
        return {
            "design": self.design,
            "agrees": self.agrees,
            "route_checks": self.route_checks,
            "route_mismatches": self.route_mismatches,
            "pings": self.pings,
            "skipped": self.skipped,
            "build_seconds": round(self.build_seconds, 3),
            "route_seconds": round(self.route_seconds, 3),
            "ping_seconds": round(self.ping_seconds, 3),
        }

    def text(self) -> str:
        lines = [
            f"design {self.design}: namespaces built in {self.build_seconds:.2f} s",
            f"route lookups: {self.route_checks} (subnet, destination) pairs compared with "
            f"ip route get in {self.route_seconds:.2f} s, "
            f"{len(self.route_mismatches)} disagreements",
        ]
        for mismatch in self.route_mismatches[:10]:
            lines.append(f"  DISAGREE {mismatch}")
        lines.append(
            f"pings: {len(self.pings)} compared in {self.ping_seconds:.2f} s "
            f"({len(self.nat_pings)} through a NAT gateway), "
            f"{len(self.ping_mismatches)} disagreements"
        )
        for ping in self.pings:
            mark = "ok      " if ping["model"] == ping["kernel"] else "DISAGREE"
            lines.append(
                f"  {mark} {ping['source']:>12} -> {ping['destination']:<12} model "
                f"{'reachable' if ping['model'] else 'blocked':<9} kernel "
                f"{'replied' if ping['kernel'] else 'no reply':<8}"
                + (f" via {ping['nat']}" if ping.get("nat") else "")
            )
        for skip in self.skipped:
            lines.append(
                f"  skipped  {skip['source']:>12} -> {skip['destination']:<12} {skip['why']}"
            )
        lines.append(
            "the kernel AGREES with the model"
            if self.agrees
            else "the kernel DISAGREES with the model"
        )
        return "\n".join(lines)


def _random_destinations(
    vpc: Vpc, kernel: KernelVpc, count: int, rng: random.Random
) -> list[ipaddress.IPv4Address]:
    """Unicast destinations the router would forward: inside routes, subnets and anywhere."""
    excluded = set(kernel.router_addresses) | set(kernel.outside_address.values())
    for subnet in vpc.subnets.values():
        excluded |= {subnet.cidr.network_address, subnet.cidr.broadcast_address}
    blocks = [route.destination for table in vpc.route_tables.values() for route in table.routes]
    blocks += [subnet.cidr for subnet in vpc.subnets.values()]
    forbidden = [
        ipaddress.IPv4Network(n)
        for n in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3")
    ]
    found: list[ipaddress.IPv4Address] = []
    while len(found) < count:
        if blocks and rng.random() < 0.6:
            block = rng.choice(blocks)
            address = block.network_address + rng.randrange(block.num_addresses)
        else:
            address = ipaddress.IPv4Address(rng.randrange(2**32))
        if address in excluded or any(address in n for n in forbidden):
            continue
        found.append(address)
    return found


def _endpoint_pairs(vpc: Vpc) -> list[tuple[str, str]]:
    names = list(vpc.instances)
    outside = []
    kinds = {g.kind for g in vpc.gateways.values()}
    if "igw" in kinds:
        outside.append("internet")
    if any(g.kind == "vgw" and g.remote_cidrs for g in vpc.gateways.values()):
        outside.append("corporate")
    outside += [f"peer:{g.id}" for g in vpc.gateways.values() if g.kind == "pcx"]
    pairs = [(a, b) for a in names for b in names if a != b]
    for place in outside:
        for name in names:
            pairs += [(name, place), (place, name)]
    return pairs


def _not_comparable(vpc: Vpc, answer: Reachability) -> str | None:
    """Why a reachability answer cannot be checked with a ping here, if it cannot."""
    details = (re.sub(r"\(beats [^)]*\)", "", hop.detail) for hop in answer.path)
    text = " ".join([answer.reason, *details])
    appliances = {instance.id for instance in vpc.instances.values()}
    if any(re.search(rf"(^|[\s(]){re.escape(name)}\b", text) for name in appliances):
        # One namespace holds all of a subnet's instances, so an appliance instance would
        # accept packets for its neighbours; what a real appliance does is its software's call.
        return "a route hands packets to an appliance instance (not emulated)"
    return None


def compare_with_kernel(
    vpc: Vpc, *, destinations: int = 200, seed: int = 1, prefix: str | None = None
) -> KernelReport:
    """Build ``vpc`` as namespaces, then compare (1) route lookups for ``destinations``
    random addresses per subnet with ``ip route get`` and (2) every reachability answer
    with a real ping between the namespaces; tear everything down. Needs root."""
    if os.geteuid() != 0:
        raise PermissionError("building network namespaces needs root")
    report = KernelReport(vpc.name)
    rng = random.Random(seed)
    with KernelVpc(vpc, prefix=prefix) as kernel:
        report.build_seconds = kernel.build_seconds
        started = time.monotonic()
        queries = [
            (subnet, address)
            for subnet in vpc.subnets
            for address in _random_destinations(vpc, kernel, destinations, rng)
        ]
        answers = kernel.route_get(queries) if queries else []
        for (subnet, address), kernel_answer in zip(queries, answers, strict=True):
            expected = expected_kernel_answer(kernel, subnet, address)
            if kernel_answer != expected:
                report.route_mismatches.append(
                    {
                        "subnet": subnet,
                        "destination": str(address),
                        "model": expected,
                        "kernel": kernel_answer,
                    }
                )
        report.route_checks = len(queries)
        report.route_seconds = time.monotonic() - started
        started = time.monotonic()
        compared = []
        nat_ids = {g.id for g in vpc.gateways.values() if g.kind == "nat"}
        for source, destination in _endpoint_pairs(vpc):
            answer = vpc.reach(source, destination)
            why = _not_comparable(vpc, answer)
            if why:
                report.skipped.append({"source": source, "destination": destination, "why": why})
                continue
            nat = next((hop.node for hop in answer.path if hop.node in nat_ids), None)
            if nat is None and answer.blocked_by in nat_ids:
                nat = answer.blocked_by
            compared.append((source, destination, answer.reachable, nat))
        replies = kernel.ping([(s, d) for s, d, _, _ in compared])
        for (source, destination, model, nat), kernel_says in zip(compared, replies, strict=True):
            report.pings.append(
                {
                    "source": source,
                    "destination": destination,
                    "model": model,
                    "kernel": kernel_says,
                    "nat": nat,
                }
            )
        report.ping_seconds = time.monotonic() - started
    return report
