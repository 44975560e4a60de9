"""A VPC described in a few lines, in the spirit of mininet's ``Topo``: subnets in one AZ
each, route tables with their associations, gateways and instances; validation, subnet
classification and a networkx graph of the design.

Building never fails on a design that is merely *wrong* (overlapping subnets, a NAT gateway
in a private subnet…): :meth:`Vpc.validate` reports those, one message per broken rule (the
rules live in :mod:`.validation`). Only malformed values (``10.0.0.300``, an unknown subnet
name) raise at once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from deploylab.vpc.addressing import parse_address, parse_block
from deploylab.vpc.blocks import aws_reserved_set
from deploylab.vpc.errors import DesignError
from deploylab.vpc.routing import RouteDict, RouteTable, target_kind
from deploylab.vpc.validation import Problem, validate

if TYPE_CHECKING:
    import networkx

    from deploylab.vpc.reachability import Reachability

#: A block as the builder accepts it: CIDR text or an ``ipaddress`` network.
BlockLike = str | ipaddress.IPv4Network

__all__ = [
    "SUBNET_KINDS",
    "BlockLike",
    "Gateway",
    "GatewayDict",
    "Instance",
    "InstanceDict",
    "Subnet",
    "SubnetDict",
    "SubnetSummary",
    "Vpc",
    "VpcDict",
]

#: What a subnet is, from its route table (AWS's wording).
SUBNET_KINDS = {
    "public": "has a route to an internet gateway",
    "private": "has no route to an internet gateway (outbound at most through a NAT gateway)",
    "vpn-only": "routes to a virtual private gateway and to neither an internet nor a NAT gateway",
}


class SubnetDict(TypedDict):
    """:meth:`Subnet.as_dict`, as JSON prints it."""

    name: str
    cidr: str
    az: str
    route_table: str | None


class GatewayDict(TypedDict):
    """:meth:`Gateway.as_dict`, as JSON prints it."""

    id: str
    kind: str
    subnet: str | None
    private_ip: str | None
    public_ip: str | None
    remote_cidrs: list[str]


class InstanceDict(TypedDict):
    """:meth:`Instance.as_dict`, as JSON prints it."""

    name: str
    subnet: str
    private_ip: str
    public_ip: str | None


class SubnetSummary(SubnetDict):
    """A subnet in :meth:`Vpc.as_dict`: its fields, its kind and the route table it uses."""

    kind: str
    uses: str


class RouteTableDict(TypedDict):
    """A route table in :meth:`Vpc.as_dict`."""

    name: str
    main: bool
    routes: list[RouteDict]


class VpcDict(TypedDict):
    """:meth:`Vpc.as_dict`: the whole design, as JSON prints it."""

    name: str
    cidr: str
    subnets: list[SubnetSummary]
    route_tables: list[RouteTableDict]
    gateways: list[GatewayDict]
    instances: list[InstanceDict]


@dataclass
class Subnet:
    """A block of the VPC in exactly one Availability Zone."""

    name: str
    cidr: ipaddress.IPv4Network
    az: str
    #: The explicitly associated route table's name, or None for the main table.
    route_table: str | None = None

    def as_dict(self) -> SubnetDict:
        return {
            "name": self.name,
            "cidr": str(self.cidr),
            "az": self.az,
            "route_table": self.route_table,
        }


@dataclass
class Gateway:
    """An internet gateway, NAT gateway, virtual private gateway or peering connection."""

    id: str
    kind: str
    #: NAT gateways live in a subnet.
    subnet: str | None = None
    private_ip: ipaddress.IPv4Address | None = None
    #: The Elastic IP of a NAT gateway.
    public_ip: ipaddress.IPv4Address | None = None
    #: Networks behind a VPN gateway (the data centre) or a peering connection (the peer VPC).
    remote_cidrs: tuple[ipaddress.IPv4Network, ...] = ()

    def placed(self) -> tuple[str, ipaddress.IPv4Address]:
        """A NAT gateway's subnet and private IP (:meth:`Vpc.add_nat_gateway` sets both).

        >>> Gateway("nat-a", "nat", "public-a", ipaddress.IPv4Address("10.0.1.4")).placed()
        ('public-a', IPv4Address('10.0.1.4'))
        """
        if self.subnet is None or self.private_ip is None:
            raise DesignError(
                f"gateway {self.id} has no subnet or no private IP: expected a NAT gateway "
                "with both (add it with add_nat_gateway)"
            )
        return self.subnet, self.private_ip

    def as_dict(self) -> GatewayDict:
        return {
            "id": self.id,
            "kind": self.kind,
            "subnet": self.subnet,
            "private_ip": None if self.private_ip is None else str(self.private_ip),
            "public_ip": None if self.public_ip is None else str(self.public_ip),
            "remote_cidrs": [str(cidr) for cidr in self.remote_cidrs],
        }


@dataclass
class Instance:
    """A server in a subnet, with a private IP and perhaps a public one."""

    name: str
    subnet: str
    private_ip: ipaddress.IPv4Address
    public_ip: ipaddress.IPv4Address | None = None

    @property
    def id(self) -> str:
        """The id a route uses to target this instance (``i-<name>``)."""
        return self.name if self.name.startswith("i-") else f"i-{self.name}"

    def as_dict(self) -> InstanceDict:
        return {
            "name": self.name,
            "subnet": self.subnet,
            "private_ip": str(self.private_ip),
            "public_ip": None if self.public_ip is None else str(self.public_ip),
        }


class Vpc:
    """A virtual private cloud: one IPv4 block, subnets, route tables, gateways, instances.

    Subclass it and override :meth:`build` (like mininet's ``Topo.build``), or call the
    ``add_*`` methods directly.

    Parameters
    ----------
    cidr : str
        The VPC's IPv4 block; AWS accepts /16 to /28 (checked by :meth:`validate`).
    name : str
    **params
        Passed to :meth:`build`.

    Examples
    --------
    >>> vpc = Vpc("10.0.0.0/16")
    >>> public = vpc.add_subnet("public-a", "10.0.1.0/24", az="ap-northeast-2a")
    >>> private = vpc.add_subnet("private-a", "10.0.2.0/24", az="ap-northeast-2a")
    >>> igw = vpc.add_internet_gateway("igw-main")
    >>> rt = vpc.add_route_table("rt-public", subnets=["public-a"])
    >>> _ = rt.add_route("0.0.0.0/0", "igw-main")
    >>> vpc.classify("public-a"), vpc.classify("private-a")
    ('public', 'private')
    >>> vpc.route_table_for("private-a").name
    'main'
    >>> vpc.validate()
    []
    """

    def __init__(self, cidr: BlockLike = "10.0.0.0/16", name: str = "vpc", **params: Any) -> None:
        self.name = str(name)
        self.cidr = parse_block(cidr)
        self.subnets: dict[str, Subnet] = {}
        self.route_tables: dict[str, RouteTable] = {}
        self.gateways: dict[str, Gateway] = {}
        self.instances: dict[str, Instance] = {}
        self.route_tables["main"] = RouteTable("main", [self.cidr], main=True)
        self.build(**params)

    # Any: the keywords are the subclass's own (``build(self, zones=2)``), passed through.
    def build(self, **params: Any) -> None:
        """Override to describe a design (called by ``__init__`` with its extra keywords)."""

    def __repr__(self) -> str:
        return (
            f"Vpc({str(self.cidr)!r}, name={self.name!r}: {len(self.subnets)} subnets, "
            f"{len(self.route_tables)} route tables, {len(self.gateways)} gateways, "
            f"{len(self.instances)} instances)"
        )

    # -- building ------------------------------------------------------------------------

    @property
    def main_route_table(self) -> RouteTable:
        return next(table for table in self.route_tables.values() if table.main)

    def add_subnet(
        self, name: str, cidr: BlockLike, az: str, *, route_table: str | None = None
    ) -> Subnet:
        """Add a subnet in one Availability Zone, optionally associated with a route table."""
        name = str(name)
        if name in self.subnets:
            raise DesignError(f"subnet {name!r} already exists: expected unique subnet names")
        if not isinstance(az, str) or not az.strip():
            raise DesignError(
                f"subnet {name!r} has az {az!r}: a subnet lives in exactly one Availability "
                "Zone; expected one zone name such as 'ap-northeast-2a'"
            )
        if any(separator in az.strip() for separator in ", ;/"):
            # "2a,2c" or "2a 2c" is an attempt to span zones, not a zone name
            raise DesignError(
                f"subnet {name!r} has az {az!r}: a subnet cannot span Availability Zones; "
                "expected one zone name such as 'ap-northeast-2a' (make one subnet per zone)"
            )
        subnet = Subnet(name, parse_block(cidr), az.strip())
        self.subnets[name] = subnet
        if route_table is not None:
            self.associate(name, route_table)
        return subnet

    def add_route_table(
        self, name: str, *, subnets: Iterable[str | Subnet] = (), main: bool = False
    ) -> RouteTable:
        """Add a route table (with its local route) and associate it with ``subnets``.

        ``main=True`` makes it the main table, used by every subnet without an association.
        """
        name = str(name)
        if name in self.route_tables:
            raise DesignError(f"route table {name!r} already exists: expected unique names")
        table = RouteTable(name, [self.cidr])
        self.route_tables[name] = table
        if main:
            self.set_main_route_table(name)
        for subnet in subnets:
            self.associate(subnet, name)
        return table

    def set_main_route_table(self, name: str | RouteTable) -> None:
        table = self._route_table(name)
        for other in self.route_tables.values():
            other.main = False
        table.main = True

    def associate(self, subnet: str | Subnet, route_table: str | RouteTable) -> None:
        """Associate a subnet with a route table (replacing its previous association)."""
        self._subnet(subnet).route_table = self._route_table(route_table).name

    def add_internet_gateway(self, id: str = "igw-main") -> Gateway:
        return self._add_gateway(Gateway(id, "igw"), "igw")

    def add_vpn_gateway(
        self, id: str = "vgw-main", remote_cidrs: Iterable[BlockLike] = ()
    ) -> Gateway:
        """A virtual private gateway: the VPN side towards a data centre's ``remote_cidrs``."""
        remote = tuple(parse_block(cidr) for cidr in remote_cidrs)
        return self._add_gateway(Gateway(id, "vgw", remote_cidrs=remote), "vgw")

    def add_peering(self, id: str, peer_cidrs: BlockLike | Iterable[BlockLike]) -> Gateway:
        """A peering connection to another VPC whose blocks are ``peer_cidrs``."""
        blocks = [peer_cidrs] if isinstance(peer_cidrs, str | ipaddress.IPv4Network) else peer_cidrs
        remote = tuple(parse_block(cidr) for cidr in blocks)
        if not remote:
            raise DesignError(f"peering {id!r} has no peer_cidrs: expected the peer VPC's blocks")
        return self._add_gateway(Gateway(id, "pcx", remote_cidrs=remote), "pcx")

    def add_nat_gateway(
        self, id: str, subnet: str, *, public_ip: str | None = None, private_ip: str | None = None
    ) -> Gateway:
        """A NAT gateway in ``subnet`` (which should be public) with an Elastic IP."""
        self._subnet(subnet)
        gateway = Gateway(
            id,
            "nat",
            subnet=subnet,
            private_ip=self._private_ip(subnet, private_ip),
            public_ip=None if public_ip is None else parse_address(public_ip),
        )
        return self._add_gateway(gateway, "nat")

    def add_instance(
        self, name: str, subnet: str, *, private_ip: str | None = None, public_ip: str | None = None
    ) -> Instance:
        """An instance in ``subnet``; without ``private_ip`` the next free address is used."""
        name = str(name)
        if name in self.instances:
            raise DesignError(f"instance {name!r} already exists: expected unique names")
        self._subnet(subnet)
        instance = Instance(
            name,
            subnet,
            self._private_ip(subnet, private_ip),
            None if public_ip is None else parse_address(public_ip),
        )
        self.instances[name] = instance
        return instance

    def _add_gateway(self, gateway: Gateway, kind: str) -> Gateway:
        gateway.id = str(gateway.id)
        if gateway.id in self.gateways:
            raise DesignError(f"gateway {gateway.id!r} already exists: expected unique ids")
        try:
            actual = target_kind(gateway.id)
        except ValueError:
            actual = None
        if actual != kind:
            raise DesignError(
                f"gateway id {gateway.id!r}: expected an id starting with {kind}- for this kind "
                f"of gateway (AWS names them {kind}-…)"
            )
        self.gateways[gateway.id] = gateway
        return gateway

    def _private_ip(self, subnet: str, wanted: str | None) -> ipaddress.IPv4Address:
        if wanted is not None:
            return parse_address(wanted)
        cidr = self.subnets[subnet].cidr
        taken = aws_reserved_set(cidr) | self._used_private_ips()
        for address in cidr:
            if address not in taken:
                return address
        raise DesignError(f"subnet {subnet!r} ({cidr}) has no free address left")

    def _used_private_ips(self) -> set[ipaddress.IPv4Address]:
        used = {instance.private_ip for instance in self.instances.values()}
        used |= {gateway.private_ip for gateway in self.gateways.values() if gateway.private_ip}
        return used

    def _subnet(self, name: str | Subnet) -> Subnet:
        name = name.name if isinstance(name, Subnet) else name
        try:
            return self.subnets[name]
        except KeyError:
            known = ", ".join(sorted(self.subnets)) or "none yet"
            raise DesignError(f"no subnet named {name!r}: expected one of {known}") from None

    def _route_table(self, name: str | RouteTable) -> RouteTable:
        name = name.name if isinstance(name, RouteTable) else name
        try:
            return self.route_tables[name]
        except KeyError:
            known = ", ".join(sorted(self.route_tables))
            raise DesignError(f"no route table named {name!r}: expected one of {known}") from None

    # -- questions -----------------------------------------------------------------------

    def route_table_for(self, subnet: str | Subnet) -> RouteTable:
        """The table a subnet uses: its explicit association, else the main table."""
        subnet = self._subnet(subnet)
        if subnet.route_table is None:
            return self.main_route_table
        return self.route_tables[subnet.route_table]

    def subnets_using(self, route_table: str | RouteTable) -> list[Subnet]:
        table = self._route_table(route_table)
        return [s for s in self.subnets.values() if self.route_table_for(s.name) is table]

    def classify(self, subnet: str | Subnet) -> str:
        """``"public"``, ``"private"`` or ``"vpn-only"``, from the subnet's route table."""
        table = self.route_table_for(subnet)
        if table.routes_to("igw"):
            return "public"
        if table.routes_to("vgw") and not table.routes_to("nat"):
            return "vpn-only"
        return "private"

    def subnet_of(self, address: str | int | ipaddress.IPv4Address) -> Subnet | None:
        """The subnet whose block holds ``address``, if any."""
        address = parse_address(address)
        for subnet in self.subnets.values():
            if address in subnet.cidr:
                return subnet
        return None

    def instance(self, name_or_id: str) -> Instance:
        for instance in self.instances.values():
            if name_or_id in (instance.name, instance.id):
                return instance
        known = ", ".join(sorted(self.instances)) or "none"
        raise DesignError(f"no instance named {name_or_id!r}: expected one of {known}")

    def target_exists(self, target: str) -> bool:
        if target == "local" or target in self.gateways:
            return True
        return any(target == instance.id for instance in self.instances.values())

    @property
    def availability_zones(self) -> list[str]:
        return sorted({subnet.az for subnet in self.subnets.values()})

    # -- validation ----------------------------------------------------------------------

    def validate(self) -> list[Problem]:
        """Every broken rule of the design, one :class:`Problem` each (empty when valid);
        the rules are :func:`deploylab.vpc.validation.validate`."""
        return validate(self)

    # -- reachability and views ---------------------------------------------------------

    def reach(self, source: str, destination: str) -> Reachability:
        """Whether ``source`` can reach ``destination``; see :func:`deploylab.vpc.reach`."""
        from deploylab.vpc.reachability import reach

        return reach(self, source, destination)

    def to_graph(self) -> networkx.DiGraph:
        """The design as a ``networkx.DiGraph``.

        Nodes carry ``kind`` (vpc, az, subnet, route_table, igw, nat, vgw, pcx, instance,
        internet, corporate, peer) and, for subnets, ``subnet_kind`` (public/private/vpn-only).
        Edges carry ``relation`` (contains, uses, route, attached, in).

        Examples
        --------
        >>> vpc = Vpc("10.0.0.0/16")
        >>> _ = vpc.add_subnet("a", "10.0.1.0/24", az="az1")
        >>> graph = vpc.to_graph()
        >>> graph.nodes["subnet:a"]["subnet_kind"], graph.has_edge("subnet:a", "rt:main")
        ('private', True)
        """
        import networkx as nx

        graph = nx.DiGraph(name=self.name, cidr=str(self.cidr))
        graph.add_node("vpc", kind="vpc", label=f"{self.name}\n{self.cidr}")
        for az in self.availability_zones:
            graph.add_node(f"az:{az}", kind="az", label=az)
            graph.add_edge("vpc", f"az:{az}", relation="contains")
        for table in self.route_tables.values():
            graph.add_node(
                f"rt:{table.name}",
                kind="route_table",
                main=table.main,
                label=table.name + (" (main)" if table.main else ""),
                routes=[str(route) for route in table.routes],
            )
        for subnet in self.subnets.values():
            node = f"subnet:{subnet.name}"
            graph.add_node(
                node,
                kind="subnet",
                subnet_kind=self.classify(subnet.name),
                az=subnet.az,
                cidr=str(subnet.cidr),
                label=f"{subnet.name}\n{subnet.cidr}",
            )
            graph.add_edge(f"az:{subnet.az}", node, relation="contains")
            graph.add_edge(node, f"rt:{self.route_table_for(subnet.name).name}", relation="uses")
        for gateway in self.gateways.values():
            graph.add_node(gateway.id, kind=gateway.kind, label=gateway.id)
            if gateway.kind == "nat":
                graph.add_edge(f"subnet:{gateway.subnet}", gateway.id, relation="in")
            else:
                graph.add_edge("vpc", gateway.id, relation="attached")
        outside = {
            "igw": ("internet", "internet"),
            "vgw": ("corporate", "corporate network"),
            "pcx": ("peer", "peer VPC"),
        }
        for gateway in self.gateways.values():
            if gateway.kind in outside:
                kind, label = outside[gateway.kind]
                node = f"{kind}:{gateway.id}" if kind == "peer" else kind
                graph.add_node(node, kind=kind, label=label)
                graph.add_edge(gateway.id, node, relation="attached")
        for instance in self.instances.values():
            graph.add_node(
                instance.id,
                kind="instance",
                label=instance.name,
                private_ip=str(instance.private_ip),
                public_ip=None if instance.public_ip is None else str(instance.public_ip),
            )
            graph.add_edge(f"subnet:{instance.subnet}", instance.id, relation="in")
        for table in self.route_tables.values():
            for route in table.routes:
                if route.target != "local" and self.target_exists(route.target):
                    graph.add_edge(
                        f"rt:{table.name}",
                        route.target,
                        relation="route",
                        destination=str(route.destination),
                    )
        return graph

    def as_dict(self) -> VpcDict:
        return {
            "name": self.name,
            "cidr": str(self.cidr),
            "subnets": [
                {
                    **s.as_dict(),
                    "kind": self.classify(s.name),
                    "uses": self.route_table_for(s.name).name,
                }
                for s in self.subnets.values()
            ],
            "route_tables": [
                {"name": t.name, "main": t.main, "routes": [r.as_dict() for r in t.routes]}
                for t in self.route_tables.values()
            ],
            "gateways": [g.as_dict() for g in self.gateways.values()],
            "instances": [i.as_dict() for i in self.instances.values()],
        }
