"""Reachability between two endpoints of a VPC design, answered the way AWS Reachability
Analyzer does: check the configuration hop by hop (no packets), then give the path, or the
first component that blocks it with a sentence a learner understands.

Endpoints are instance names (or ``i-`` ids or private IPs), ``internet`` (or
``internet:ADDRESS``), ``corporate`` (or ``corporate:ADDRESS``, behind the VPN gateway) and
``peer:pcx-ID`` (or ``peer:ADDRESS``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from deploylab.vpc.addressing import parse_address
from deploylab.vpc.errors import DesignError
from deploylab.vpc.routing import RouteLookup

if TYPE_CHECKING:
    from deploylab.vpc.model import Gateway, Instance, Vpc

__all__ = [
    "DEFAULT_INTERNET_ADDRESS",
    "Endpoint",
    "Hop",
    "HopDict",
    "Reachability",
    "ReachabilityDict",
    "reach",
    "resolve_endpoint",
]

#: Where "the internet" is when no address is given (a documentation address, RFC 5737).
DEFAULT_INTERNET_ADDRESS = ipaddress.IPv4Address("198.51.100.10")


@dataclass(frozen=True)
class Endpoint:
    """One end of a reachability question."""

    kind: str  # instance, internet, corporate, peer
    address: ipaddress.IPv4Address
    label: str
    node: str  # the node id in Vpc.to_graph()
    instance: Instance | None = None
    gateway: str | None = None

    @property
    def host(self) -> Instance:
        """The instance of an ``instance`` endpoint; the outside ends have none."""
        if self.instance is None:
            raise DesignError(f"{self.label} is not an instance of the VPC")
        return self.instance


@dataclass(frozen=True)
class Hop:
    """A component a packet passes, with what happens there."""

    node: str
    detail: str


class HopDict(TypedDict):
    """One hop in :meth:`Reachability.as_dict`."""

    node: str
    detail: str


class ReachabilityDict(TypedDict):
    """:meth:`Reachability.as_dict`, as JSON prints it."""

    source: str
    destination: str
    reachable: bool
    blocked_by: str | None
    reason: str
    path: list[HopDict]


@dataclass(frozen=True)
class Reachability:
    """The answer: reachable with a path, or blocked at a component and why."""

    source: str
    destination: str
    reachable: bool
    path: tuple[Hop, ...]
    blocked_by: str | None
    reason: str

    def __bool__(self) -> bool:
        return self.reachable

    def explain(self) -> str:
        """The answer as a few lines of text."""
        head = f"{self.source} -> {self.destination}: " + (
            "REACHABLE" if self.reachable else f"NOT REACHABLE (blocked at {self.blocked_by})"
        )
        lines = [head, f"  {self.reason}"]
        lines += [f"  {index}. {hop.node}: {hop.detail}" for index, hop in enumerate(self.path, 1)]
        return "\n".join(lines)

    def as_dict(self) -> ReachabilityDict:
        return {
            "source": self.source,
            "destination": self.destination,
            "reachable": self.reachable,
            "blocked_by": self.blocked_by,
            "reason": self.reason,
            "path": [{"node": hop.node, "detail": hop.detail} for hop in self.path],
        }


def resolve_endpoint(vpc: Vpc, text: str) -> Endpoint:
    """Turn ``web``, ``i-web``, ``10.0.1.10``, ``internet``, ``corporate:192.168.50.5``…
    into an :class:`Endpoint` of ``vpc``."""
    text = str(text).strip()
    name, _, rest = text.partition(":")
    if name == "internet":
        address = parse_address(rest) if rest else DEFAULT_INTERNET_ADDRESS
        return Endpoint("internet", address, f"internet ({address})", "internet")
    if name == "corporate":
        vgws = [g for g in vpc.gateways.values() if g.kind == "vgw"]
        if rest:
            address = parse_address(rest)
        elif vgws and vgws[0].remote_cidrs:
            address = vgws[0].remote_cidrs[0].network_address + 10
        else:
            raise DesignError(
                f"endpoint {text!r}: this design has no VPN gateway with remote_cidrs; expected "
                "corporate:ADDRESS or a vgw with remote_cidrs"
            )
        return Endpoint("corporate", address, f"corporate network ({address})", "corporate")
    if name == "peer":
        if rest in vpc.gateways and vpc.gateways[rest].kind == "pcx":
            gateway = vpc.gateways[rest]
            address = gateway.remote_cidrs[0].network_address + 10
            return Endpoint(
                "peer", address, f"peer VPC via {rest} ({address})", f"peer:{rest}", gateway=rest
            )
        address = parse_address(rest)
        for gateway in vpc.gateways.values():
            if gateway.kind == "pcx" and any(address in c for c in gateway.remote_cidrs):
                return Endpoint(
                    "peer",
                    address,
                    f"peer VPC via {gateway.id} ({address})",
                    f"peer:{gateway.id}",
                    gateway=gateway.id,
                )
        raise DesignError(f"endpoint {text!r}: {address} is in no peering connection's peer_cidrs")
    for instance in vpc.instances.values():
        if text in (instance.name, instance.id, str(instance.private_ip)):
            return Endpoint(
                "instance",
                instance.private_ip,
                f"{instance.name} ({instance.private_ip})",
                instance.id,
                instance,
            )
    try:
        address = parse_address(text)
    except ValueError:
        known = ", ".join(sorted(vpc.instances)) or "none"
        raise DesignError(
            f"endpoint {text!r}: expected an instance name ({known}), an address, 'internet', "
            "'corporate' or 'peer:pcx-ID'"
        ) from None
    if address in vpc.cidr:
        raise DesignError(f"endpoint {text!r}: no instance in this VPC has address {address}")
    for gateway in vpc.gateways.values():
        if any(address in cidr for cidr in gateway.remote_cidrs):
            if gateway.kind == "vgw":
                return Endpoint("corporate", address, f"corporate network ({address})", "corporate")
            return Endpoint(
                "peer",
                address,
                f"peer VPC via {gateway.id} ({address})",
                f"peer:{gateway.id}",
                gateway=gateway.id,
            )
    return Endpoint("internet", address, f"internet ({address})", "internet")


class _Blocked(Exception):
    def __init__(self, component: str, reason: str) -> None:
        self.component, self.reason = component, reason


def _route_hop(table_name: str, lookup: RouteLookup, what: str = "picks") -> Hop:
    return Hop(
        f"rt:{table_name}",
        f"{what} {lookup.route} for {lookup.destination}"
        + (f" (beats {', '.join(str(r) for r in lookup.beaten)})" if lookup.beaten else ""),
    )


_SIDE = {"internet": "igw", "corporate": "vgw", "peer": "pcx"}
_LEADS_TO = {
    "igw": "the internet",
    "vgw": "the corporate network over the VPN",
    "pcx": "a peered VPC",
    "nat": "the internet (through a NAT gateway)",
}


def _deliver_in_vpc(
    vpc: Vpc, dst: Endpoint, reply_to: ipaddress.IPv4Address, back_to: str, path: list[Hop]
) -> None:
    """The VPC router delivers to ``dst``'s subnet; its route table must send the replies for
    ``reply_to`` through the local route (``back_to`` says where they should go)."""
    target = dst.host
    path.append(
        Hop(f"subnet:{target.subnet}", f"the VPC router delivers to subnet {target.subnet}")
    )
    back_table = vpc.route_table_for(target.subnet)
    back = back_table.lookup(reply_to)
    if back.route is None or back.route.kind != "local":
        where = "nowhere" if back.route is None else back.route.target
        raise _Blocked(
            f"rt:{back_table.name}",
            f"{target.name} receives the packet from {reply_to}, but its route table "
            f"{back_table.name} sends the replies to {where}, not {back_to}.",
        )


def _outbound(vpc: Vpc, src: Endpoint, dst: Endpoint, path: list[Hop]) -> None:
    """Follow a packet from instance ``src`` towards ``dst``; raise _Blocked or return."""
    instance = src.host
    path.append(Hop(src.node, f"sends from {instance.private_ip} to {dst.address}"))
    path.append(
        Hop(
            f"subnet:{instance.subnet}",
            f"subnet {instance.subnet} "
            f"({vpc.classify(instance.subnet)}, {vpc.subnets[instance.subnet].az})",
        )
    )
    table = vpc.route_table_for(instance.subnet)
    lookup = table.lookup(dst.address)
    if lookup.route is None:
        raise _Blocked(
            f"rt:{table.name}",
            f"Route table {table.name} (used by subnet {instance.subnet}) has no route "
            f"matching {dst.address}, so the packet is dropped.",
        )
    path.append(_route_hop(table.name, lookup))
    route = lookup.route
    kind = route.kind
    if kind == "local":
        if dst.kind != "instance":
            raise _Blocked(
                f"rt:{table.name}",
                f"{dst.address} matches the local route {route}, "
                "but no instance in the VPC has that address.",
            )
        _deliver_in_vpc(vpc, dst, src.address, "back through the VPC", path)
        path.append(Hop(dst.node, f"receives at {dst.host.private_ip}"))
        return
    if not vpc.target_exists(route.target):
        raise _Blocked(
            route.target,
            f"Route {route} in {table.name} points to {route.target}, "
            "which is not attached to this VPC, so the packet is dropped.",
        )
    if kind in ("instance", "eni"):
        raise _Blocked(
            route.target,
            f"Route {route} hands the packet to {route.target}, an "
            "appliance; whether it forwards the packet depends on software on it, "
            "which this model does not follow.",
        )
    if kind == "nat":
        _through_nat(vpc, src, dst, vpc.gateways[route.target], path)
        return
    expected_side = _SIDE.get(dst.kind)
    if kind != expected_side or (kind == "pcx" and route.target != dst.gateway):
        raise _Blocked(
            route.target,
            f"Route {route} sends the packet to {route.target}, which "
            f"leads to {_LEADS_TO.get(kind, kind)}, not to {dst.label}.",
        )
    if kind == "igw":
        if instance.public_ip is None:
            raise _Blocked(
                src.node,
                f"{instance.name} has no public IPv4 address, so the "
                f"internet gateway {route.target} cannot translate its packets; give "
                "it a public IP, or put it in a private subnet behind a NAT gateway.",
            )
        path.append(
            Hop(
                route.target,
                f"translates {instance.private_ip} to the public address {instance.public_ip}",
            )
        )
    else:
        path.append(Hop(route.target, f"carries the packet to {dst.label}"))
    path.append(Hop(dst.node, f"{dst.address} receives it"))


def _through_nat(vpc: Vpc, src: Endpoint, dst: Endpoint, nat: Gateway, path: list[Hop]) -> None:
    """Follow a packet that a route handed to (public) NAT gateway ``nat``.

    The NAT gateway rewrites the source to its own private IP and sends the packet on by the
    route table of its subnet. Towards an internet gateway, the IGW then translates that
    private IP to the Elastic IP. AWS also lets a public NAT gateway carry traffic to a virtual
    private gateway (or another VPC); there the source stays the NAT's private IP. The replies
    come back to the NAT, which forwards them to the instance by its subnet's route table.
    """
    instance = src.host
    nat_subnet, nat_ip = nat.placed()
    path.append(
        Hop(
            nat.id,
            f"NAT gateway in {nat.subnet} rewrites the source "
            f"{instance.private_ip} to its own address {nat.private_ip}",
        )
    )
    nat_table = vpc.route_table_for(nat_subnet)
    nat_lookup = nat_table.lookup(dst.address)
    onward = nat_lookup.route
    if dst.kind == "internet":
        if nat.public_ip is None:
            raise _Blocked(
                nat.id,
                f"NAT gateway {nat.id} has no Elastic IP, so its traffic "
                "cannot go out to the internet.",
            )
        if onward is None or onward.kind != "igw":
            where = "no route" if onward is None else f"route {onward}"
            raise _Blocked(
                f"rt:{nat_table.name}",
                f"NAT gateway {nat.id} sits in subnet {nat.subnet}, whose route table "
                f"{nat_table.name} has {where} for {dst.address} instead of a route to "
                "an internet gateway: a NAT gateway must be in a public subnet.",
            )
        path.append(_route_hop(nat_table.name, nat_lookup))
        if not vpc.target_exists(onward.target):
            raise _Blocked(onward.target, f"{onward.target} is not attached to this VPC.")
        path.append(
            Hop(onward.target, f"translates {nat.private_ip} to the Elastic IP {nat.public_ip}")
        )
        replies_to = nat.public_ip
    else:
        if onward is None:
            raise _Blocked(
                f"rt:{nat_table.name}",
                f"NAT gateway {nat.id} forwards the packet by route table {nat_table.name} "
                f"of its subnet {nat.subnet}, which has no route matching {dst.address}.",
            )
        path.append(_route_hop(nat_table.name, nat_lookup))
        if onward.kind == "local":
            if dst.kind != "instance":
                raise _Blocked(
                    f"rt:{nat_table.name}",
                    f"{dst.address} matches the local route {onward}, "
                    "but no instance in the VPC has that address.",
                )
            _deliver_in_vpc(vpc, dst, nat_ip, f"back to NAT gateway {nat.id}", path)
        elif not vpc.target_exists(onward.target):
            raise _Blocked(
                onward.target,
                f"Route {onward} in {nat_table.name} points to {onward.target}, "
                "which is not attached to this VPC, so the packet is dropped.",
            )
        elif onward.kind in ("instance", "eni"):
            raise _Blocked(
                onward.target,
                f"Route {onward} hands the packet to {onward.target}, an "
                "appliance; whether it forwards the packet depends on software on it, "
                "which this model does not follow.",
            )
        elif onward.kind != _SIDE.get(dst.kind) or (
            onward.kind == "pcx" and onward.target != dst.gateway
        ):
            raise _Blocked(
                onward.target,
                f"NAT gateway {nat.id} sends the packet by route {onward} to "
                f"{onward.target}, which leads to {_LEADS_TO.get(onward.kind, onward.kind)}, "
                f"not to {dst.label}.",
            )
        else:
            path.append(Hop(onward.target, f"carries the packet to {dst.label}"))
        replies_to = nat_ip
    back = nat_table.lookup(instance.private_ip)
    if back.route is None or back.route.kind != "local":
        where = "nowhere" if back.route is None else f"by {back.route}"
        raise _Blocked(
            f"rt:{nat_table.name}",
            f"{dst.label} replies to {replies_to}, but NAT gateway {nat.id} forwards the "
            f"replies for {instance.private_ip} by route table {nat_table.name}, which sends "
            f"them {where}, not back through the VPC.",
        )
    path.append(
        Hop(
            dst.node,
            f"{dst.address} receives it and replies to {replies_to}; "
            "the NAT gateway forwards the reply back",
        )
    )


def _inbound(vpc: Vpc, src: Endpoint, dst: Endpoint, path: list[Hop]) -> None:
    """A connection opened from outside (internet, corporate, peer) to instance ``dst``."""
    target = dst.host
    side = _SIDE[src.kind]
    gateways = [g for g in vpc.gateways.values() if g.kind == side]
    if src.kind == "peer":
        gateways = [g for g in gateways if g.id == src.gateway]
    path.append(Hop(src.node, f"{src.address} opens a connection to {target.name}"))
    if not gateways:
        name = {"igw": "internet gateway", "vgw": "virtual private gateway", "pcx": "peering"}[side]
        raise _Blocked(vpc.name, f"No {name} is attached to the VPC, so {src.label} has no way in.")
    gateway = gateways[0]
    if side == "igw":
        if target.public_ip is None:
            raise _Blocked(
                dst.node,
                f"{target.name} has no public IPv4 address, so nothing on "
                "the internet can address it (the internet gateway only translates "
                "public IPs).",
            )
        path.append(Hop(gateway.id, f"translates {target.public_ip} to {target.private_ip}"))
    else:
        path.append(Hop(gateway.id, f"carries the packet into the VPC to {target.private_ip}"))
    path.append(
        Hop(
            f"subnet:{target.subnet}",
            f"subnet {target.subnet} "
            f"({vpc.classify(target.subnet)}, {vpc.subnets[target.subnet].az})",
        )
    )
    path.append(Hop(dst.node, f"receives at {target.private_ip}"))
    table = vpc.route_table_for(target.subnet)
    reply = table.lookup(src.address)
    if reply.route is None:
        raise _Blocked(
            f"rt:{table.name}",
            f"{target.name} cannot answer: route table "
            f"{table.name} of subnet {target.subnet} has no route for replies to "
            f"{src.address} (it is a {vpc.classify(target.subnet)} subnet).",
        )
    if reply.route.kind == "nat" and side == "igw":
        raise _Blocked(
            f"rt:{table.name}",
            f"{target.name} is in {target.subnet}, a private "
            f"subnet: its replies to {src.address} would leave through NAT gateway "
            f"{reply.route.target}, and a NAT gateway only carries connections opened "
            "from inside the VPC.",
        )
    if reply.route.target != gateway.id:
        raise _Blocked(
            f"rt:{table.name}",
            f"{target.name} cannot answer: route table "
            f"{table.name} sends replies for {src.address} by {reply.route}, not back "
            f"through {gateway.id}.",
        )
    path.append(_route_hop(table.name, reply, "sends the replies by"))


def reach(vpc: Vpc, source: str, destination: str) -> Reachability:
    """Can ``source`` open a connection to ``destination`` in ``vpc``?

    Parameters
    ----------
    vpc : Vpc
    source, destination : str
        Instance names, private IPs, ``internet[:ADDRESS]``, ``corporate[:ADDRESS]``,
        ``peer:pcx-ID``.

    Returns
    -------
    Reachability
        Truthy when reachable; ``.path`` lists the hops, ``.blocked_by`` and ``.reason`` say
        what stops it otherwise.

    Examples
    --------
    >>> from deploylab.vpc import Vpc
    >>> vpc = Vpc("10.0.0.0/16")
    >>> _ = vpc.add_subnet("public", "10.0.1.0/24", az="az1", route_table=None)
    >>> _ = vpc.add_internet_gateway("igw-main")
    >>> _ = vpc.add_route_table("rt-public", subnets=["public"]).add_route("0.0.0.0/0", "igw-main")
    >>> _ = vpc.add_instance("web", "public", public_ip="203.0.113.10")
    >>> _ = vpc.add_instance("batch", "public")
    >>> bool(reach(vpc, "internet", "web"))
    True
    >>> answer = reach(vpc, "batch", "internet")
    >>> answer.blocked_by
    'i-batch'
    >>> print(answer.reason)
    batch has no public IPv4 address, so the internet gateway igw-main cannot translate its packets; give it a public IP, or put it in a private subnet behind a NAT gateway.
    """
    src = resolve_endpoint(vpc, source)
    dst = resolve_endpoint(vpc, destination)
    if src.kind != "instance" and dst.kind != "instance":
        raise DesignError(f"{source!r} -> {destination!r}: expected at least one instance endpoint")
    path: list[Hop] = []
    try:
        if src.kind == "instance":
            _outbound(vpc, src, dst, path)
        else:
            _inbound(vpc, src, dst, path)
    except _Blocked as blocked:
        return Reachability(
            src.label, dst.label, False, tuple(path), blocked.component, blocked.reason
        )
    reason = f"{src.label} can reach {dst.label} in {len(path)} hops."
    return Reachability(src.label, dst.label, True, tuple(path), None, reason)
