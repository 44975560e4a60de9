"""Route tables and longest prefix match, as AWS does it for a VPC.

A :class:`RouteTable` can stand alone (a list of routes to look up) or belong to a
:class:`~deploylab.vpc.model.Vpc`, where it also carries the ``local`` route that can never
be removed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypedDict

from deploylab.vpc.addressing import parse_address, parse_block
from deploylab.vpc.errors import RouteError

__all__ = [
    "TARGET_KINDS",
    "Identified",
    "Route",
    "RouteDict",
    "RouteLike",
    "RouteLookup",
    "RouteLookupDict",
    "RouteTable",
    "longest_prefix_match",
    "target_kind",
]

#: Route targets by their id prefix, as AWS names them.
TARGET_KINDS: dict[str, str] = {
    "local": "the VPC itself (local)",
    "igw-": "internet gateway",
    "nat-": "NAT gateway",
    "vgw-": "virtual private gateway (VPN)",
    "pcx-": "VPC peering connection",
    "i-": "instance",
    "eni-": "network interface",
}


def target_kind(target: str) -> str:
    """The kind of a route target from its id: ``local``, ``igw``, ``nat``, ``vgw``, ``pcx``,
    ``instance`` or ``eni``.

    Examples
    --------
    >>> target_kind("igw-main"), target_kind("nat-a"), target_kind("i-firewall")
    ('igw', 'nat', 'instance')
    >>> target_kind("gateway")
    Traceback (most recent call last):
    ...
    deploylab.vpc.errors.RouteError: route target 'gateway': expected 'local' or an id starting with igw-, nat-, vgw-, pcx-, i-, eni-
    """
    target = str(target)
    if target == "local":
        return "local"
    for prefix in TARGET_KINDS:
        if prefix.endswith("-") and target.startswith(prefix) and len(target) > len(prefix):
            return "instance" if prefix == "i-" else prefix[:-1]
    prefixes = ", ".join(prefix for prefix in TARGET_KINDS if prefix.endswith("-"))
    raise RouteError(f"route target {target!r}: expected 'local' or an id starting with {prefixes}")


class Identified(Protocol):
    """A route target given as an object with an AWS id (a gateway, an instance)."""

    @property
    def id(self) -> str: ...


class RouteDict(TypedDict):
    """:meth:`Route.as_dict`, as JSON prints it."""

    destination: str
    target: str
    kind: str
    propagated: bool


class RouteLookupDict(TypedDict):
    """:meth:`RouteLookup.as_dict`, as JSON prints it."""

    destination: str
    route: RouteDict | None
    beaten: list[RouteDict]
    explanation: str


@dataclass(frozen=True, order=True)
class Route:
    """One row of a route table: where packets for ``destination`` go."""

    destination: ipaddress.IPv4Network
    target: str
    #: Propagated routes come from a VPN gateway; on a tie a static route beats them.
    propagated: bool = False

    @property
    def kind(self) -> str:
        return target_kind(self.target)

    def __str__(self) -> str:
        return f"{self.destination} -> {self.target}" + (" (propagated)" if self.propagated else "")

    def as_dict(self) -> RouteDict:
        return {
            "destination": str(self.destination),
            "target": self.target,
            "kind": self.kind,
            "propagated": self.propagated,
        }


def _preference(route: Route) -> tuple[int, int]:
    # Longer prefix first; on equal prefixes static (False) before propagated (True).
    return (-route.destination.prefixlen, route.propagated)


@dataclass(frozen=True)
class RouteLookup:
    """The answer of a route lookup: the winning route and the candidates it beat."""

    destination: ipaddress.IPv4Address
    route: Route | None
    #: Every route whose destination contains the address, best first (the winner included).
    candidates: tuple[Route, ...]
    #: Routes that do not contain the address at all.
    non_matching: tuple[Route, ...]

    @property
    def beaten(self) -> tuple[Route, ...]:
        """Matching routes that lost to the winner (shorter prefix, or propagated on a tie)."""
        return self.candidates[1:]

    @property
    def target(self) -> str | None:
        return None if self.route is None else self.route.target

    def explain(self) -> str:
        """A sentence or two a learner can read.

        >>> table = RouteTable("rt")
        >>> _ = table.add_route("0.0.0.0/0", "igw-1"); _ = table.add_route("10.0.0.0/16", "local")
        >>> print(table.lookup("10.0.3.4").explain())
        10.0.3.4 matches 2 routes; the most specific, 10.0.0.0/16 -> local (/16), wins over 0.0.0.0/0 -> igw-1 (/0).
        """
        if self.route is None:
            return (
                f"{self.destination} matches no route, so the packet is dropped "
                "(there is no default route 0.0.0.0/0)."
            )
        if not self.beaten:
            return (
                f"{self.destination} matches only {self.route} "
                f"(/{self.route.destination.prefixlen}), so that route is used."
            )
        losers = ", ".join(f"{route} (/{route.destination.prefixlen})" for route in self.beaten)
        return (
            f"{self.destination} matches {len(self.candidates)} routes; the most specific, "
            f"{self.route} (/{self.route.destination.prefixlen}), wins over {losers}."
        )

    def as_dict(self) -> RouteLookupDict:
        return {
            "destination": str(self.destination),
            "route": None if self.route is None else self.route.as_dict(),
            "beaten": [route.as_dict() for route in self.beaten],
            "explanation": self.explain(),
        }


#: A route as :func:`longest_prefix_match` accepts it: a :class:`Route` or a pair
#: ``(destination_cidr, target)``.
RouteLike = Route | tuple[str | ipaddress.IPv4Network, str]


def longest_prefix_match(
    routes: Iterable[RouteLike], destination: str | int | ipaddress.IPv4Address
) -> RouteLookup:
    """Choose among ``routes`` the most specific one containing ``destination``.

    Parameters
    ----------
    routes : iterable of Route or (destination_cidr, target) pairs
    destination : str or IPv4Address

    Returns
    -------
    RouteLookup
        ``.route`` is the winner (None if nothing matches), ``.beaten`` the other matches.

    Examples
    --------
    >>> routes = [("0.0.0.0/0", "igw-1"), ("10.10.2.0/24", "pcx-1"), ("10.10.2.15/32", "i-fw")]
    >>> answer = longest_prefix_match(routes, "10.10.2.15")
    >>> answer.target, [route.target for route in answer.beaten]
    ('i-fw', ['pcx-1', 'igw-1'])
    """
    address = parse_address(destination)
    prepared = [
        route if isinstance(route, Route) else Route(parse_block(route[0]), str(route[1]))
        for route in routes
    ]
    matching = sorted(
        (route for route in prepared if address in route.destination), key=_preference
    )
    others = tuple(route for route in prepared if address not in route.destination)
    return RouteLookup(address, matching[0] if matching else None, tuple(matching), others)


class RouteTable:
    """A named list of routes with longest-prefix-match lookup.

    Parameters
    ----------
    name : str
    local_cidrs : iterable of CIDR, optional
        The VPC's blocks: each gets a ``local`` route that cannot be removed.

    Examples
    --------
    >>> table = RouteTable("rt-public", local_cidrs=["10.0.0.0/16"])
    >>> table.add_route("0.0.0.0/0", "igw-main")
    Route(destination=IPv4Network('0.0.0.0/0'), target='igw-main', propagated=False)
    >>> table.lookup("198.51.100.7").target, table.lookup("10.0.9.9").target
    ('igw-main', 'local')
    >>> table.remove_route("10.0.0.0/16")
    Traceback (most recent call last):
    ...
    deploylab.vpc.errors.RouteError: the local route 10.0.0.0/16 in rt-public cannot be removed: every route table keeps a local route for each VPC CIDR
    """

    def __init__(
        self,
        name: str,
        local_cidrs: Iterable[str | ipaddress.IPv4Network] = (),
        *,
        main: bool = False,
    ) -> None:
        self.name = str(name)
        self.main = main
        self._routes: list[Route] = []
        # A table that belongs to a VPC gets its local routes from the VPC and no others;
        # a stand-alone table (a lab exercise, a widget) may add "local" routes itself.
        self._has_vpc = bool(local_cidrs)
        for cidr in local_cidrs:
            self._routes.append(Route(parse_block(cidr), "local"))

    def __repr__(self) -> str:
        return (
            f"RouteTable({self.name!r}, {len(self._routes)} routes{', main' if self.main else ''})"
        )

    @property
    def routes(self) -> tuple[Route, ...]:
        """The routes, most specific first (the order AWS's console shows)."""
        return tuple(sorted(self._routes, key=lambda r: (*_preference(r), r.destination)))

    def add_route(
        self,
        destination_cidr: str | ipaddress.IPv4Network,
        target: str | Identified,
        *,
        propagated: bool = False,
    ) -> Route:
        """Add a route to ``destination_cidr`` through ``target`` (an id such as ``igw-main``).

        A table holds one static route per destination (plus, at most, one propagated).
        """
        destination = parse_block(destination_cidr)
        # An object's id, else the value as text (a TOML number gets target_kind's message).
        target = str(getattr(target, "id", target))
        kind = target_kind(target)
        if kind == "local" and self._has_vpc:
            raise RouteError(
                f"route {destination} -> local: local routes are created with the VPC, one per "
                "VPC CIDR; expected a gateway, NAT, peering or instance target"
            )
        for existing in self._routes:
            if existing.destination == destination and existing.propagated == propagated:
                raise RouteError(
                    f"{self.name} already has a route to {destination} (-> {existing.target}); "
                    "expected one route per destination (remove it first to change its target)"
                )
        route = Route(destination, target, propagated)
        self._routes.append(route)
        return route

    def remove_route(
        self, destination_cidr: str | ipaddress.IPv4Network, *, propagated: bool = False
    ) -> Route:
        """Remove and return the route to ``destination_cidr``; the local route cannot go."""
        destination = parse_block(destination_cidr)
        for route in self._routes:
            if route.destination == destination and route.propagated == propagated:
                if route.target == "local":
                    raise RouteError(
                        f"the local route {destination} in {self.name} cannot be removed: every "
                        "route table keeps a local route for each VPC CIDR"
                    )
                self._routes.remove(route)
                return route
        raise RouteError(f"{self.name} has no route to {destination}: nothing to remove")

    def lookup(self, address: str | int | ipaddress.IPv4Address) -> RouteLookup:
        """Longest prefix match for ``address``: the chosen route and the candidates it beat."""
        return longest_prefix_match(self._routes, address)

    def targets(self) -> set[str]:
        return {route.target for route in self._routes}

    def routes_to(self, kind: str) -> list[Route]:
        """The routes whose target is of ``kind`` (``igw``, ``nat``, ``vgw``…)."""
        return [route for route in self._routes if route.kind == kind]
