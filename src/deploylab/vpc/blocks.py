"""The facts of a CIDR block: network and broadcast addresses, masks, usable hosts (classic
and AWS, with the five addresses AWS reserves), and the arithmetic of sets of blocks (what is
left free, the fewest blocks covering the same addresses).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypedDict

from deploylab.vpc.address_kinds import address_class
from deploylab.vpc.addressing import AWS_MAX_PREFIX, AWS_MIN_PREFIX, check_aws_size, parse_block

__all__ = [
    "CidrFacts",
    "CidrFactsDict",
    "ReservedAddress",
    "ReservedAddressDict",
    "aws_reserved_addresses",
    "aws_reserved_set",
    "aws_usable_hosts",
    "cidr_facts",
    "free_blocks",
    "summarise_blocks",
    "usable_hosts",
]


def usable_hosts(block: str | ipaddress.IPv4Network) -> int:
    """Hosts a block can number classically: total − 2 (network and broadcast).

    A /31 is a point-to-point link with 2 usable addresses (RFC 3021), a /32 is one host.

    Examples
    --------
    >>> [usable_hosts(f"10.0.0.0/{n}") for n in (24, 30, 31, 32)]
    [254, 2, 2, 1]
    """
    network = parse_block(block)
    if network.prefixlen >= 31:
        return network.num_addresses
    return network.num_addresses - 2


def aws_usable_hosts(block: str | ipaddress.IPv4Network) -> int:
    """Addresses an AWS subnet can give to instances: total − 5.

    Raises :class:`BlockError` for sizes AWS does not accept (outside /16–/28).

    Examples
    --------
    >>> aws_usable_hosts("10.0.0.0/24"), aws_usable_hosts("10.0.0.0/28")
    (251, 11)
    """
    return check_aws_size(block, "subnet").num_addresses - 5


@dataclass(frozen=True)
class ReservedAddress:
    """An address AWS keeps for itself in every subnet, and why."""

    address: ipaddress.IPv4Address
    role: str


def aws_reserved_addresses(block: str | ipaddress.IPv4Network) -> tuple[ReservedAddress, ...]:
    """The five addresses AWS reserves in a subnet: first four and the last.

    Examples
    --------
    >>> [str(r.address) for r in aws_reserved_addresses("10.0.0.0/24")]
    ['10.0.0.0', '10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.255']
    >>> aws_reserved_addresses("10.0.0.0/24")[1].role
    'VPC router'
    """
    return _aws_reserved(check_aws_size(block, "subnet"))


def aws_reserved_set(network: ipaddress.IPv4Network) -> set[ipaddress.IPv4Address]:
    """The addresses of :func:`aws_reserved_addresses`, for a block of any size: a design may
    hold a subnet AWS would refuse (its validation says so), and its addresses are still
    numbered around these.

    >>> sorted(str(a) for a in aws_reserved_set(ipaddress.IPv4Network("10.0.0.0/29")))
    ['10.0.0.0', '10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.7']
    """
    return {reserved.address for reserved in _aws_reserved(network)}


def _aws_reserved(network: ipaddress.IPv4Network) -> tuple[ReservedAddress, ...]:
    base = network.network_address
    return (
        ReservedAddress(base, "network address"),
        ReservedAddress(base + 1, "VPC router"),
        ReservedAddress(
            base + 2,
            "DNS server (Amazon DNS sits at the VPC base + 2; "
            "base + 2 of every subnet is reserved too)",
        ),
        ReservedAddress(base + 3, "reserved for future use"),
        ReservedAddress(
            network.broadcast_address, "network broadcast address (VPCs do not support broadcast)"
        ),
    )


class ReservedAddressDict(TypedDict):
    """One reserved address in :meth:`CidrFacts.as_dict`."""

    address: str
    role: str


class CidrFactsDict(TypedDict):
    """:meth:`CidrFacts.as_dict`: the facts as JSON prints them (addresses as text)."""

    block: str
    prefixlen: int
    network: str
    broadcast: str
    netmask: str
    wildcard: str
    total: int
    usable_classic: int
    first_usable: str
    last_usable: str
    aws_usable: int | None
    aws_reserved: list[ReservedAddressDict] | None
    class_of_first_address: str


@dataclass(frozen=True)
class CidrFacts:
    """The facts of one CIDR block, classic and AWS."""

    network: ipaddress.IPv4Network
    total: int
    usable_classic: int
    first_usable: ipaddress.IPv4Address
    last_usable: ipaddress.IPv4Address
    aws_usable: int | None
    aws_reserved: tuple[ReservedAddress, ...] | None

    @property
    def network_address(self) -> ipaddress.IPv4Address:
        return self.network.network_address

    @property
    def broadcast_address(self) -> ipaddress.IPv4Address:
        return self.network.broadcast_address

    @property
    def netmask(self) -> ipaddress.IPv4Address:
        return self.network.netmask

    @property
    def wildcard(self) -> ipaddress.IPv4Address:
        """The inverted netmask (``hostmask``), as used by ACLs and OSPF."""
        return self.network.hostmask

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    def as_dict(self) -> CidrFactsDict:
        return {
            "block": str(self.network),
            "prefixlen": self.prefixlen,
            "network": str(self.network_address),
            "broadcast": str(self.broadcast_address),
            "netmask": str(self.netmask),
            "wildcard": str(self.wildcard),
            "total": self.total,
            "usable_classic": self.usable_classic,
            "first_usable": str(self.first_usable),
            "last_usable": str(self.last_usable),
            "aws_usable": self.aws_usable,
            "aws_reserved": None
            if self.aws_reserved is None
            else [{"address": str(r.address), "role": r.role} for r in self.aws_reserved],
            "class_of_first_address": address_class(self.network_address),
        }


def cidr_facts(block: str | ipaddress.IPv4Network) -> CidrFacts:
    """Network, broadcast, masks, counts and AWS reservations of a block.

    The AWS fields are None when AWS would not accept the block's size (outside /16–/28).

    Examples
    --------
    >>> facts = cidr_facts("10.0.0.0/24")
    >>> str(facts.netmask), str(facts.wildcard), facts.total, facts.usable_classic, facts.aws_usable
    ('255.255.255.0', '0.0.0.255', 256, 254, 251)
    >>> cidr_facts("10.0.0.0/8").aws_usable is None
    True
    """
    network = parse_block(block)
    if network.prefixlen >= 31:
        first, last = network.network_address, network.broadcast_address
    else:
        first, last = network.network_address + 1, network.broadcast_address - 1
    aws_ok = AWS_MIN_PREFIX <= network.prefixlen <= AWS_MAX_PREFIX
    return CidrFacts(
        network=network,
        total=network.num_addresses,
        usable_classic=usable_hosts(network),
        first_usable=first,
        last_usable=last,
        aws_usable=network.num_addresses - 5 if aws_ok else None,
        aws_reserved=aws_reserved_addresses(network) if aws_ok else None,
    )


def free_blocks(
    container: str | ipaddress.IPv4Network, used: Sequence[str | ipaddress.IPv4Network]
) -> list[ipaddress.IPv4Network]:
    """The blocks of ``container`` not covered by ``used``, as few aligned CIDRs as possible.

    Examples
    --------
    >>> [str(b) for b in free_blocks("10.0.0.0/24", ["10.0.0.0/26", "10.0.0.128/26"])]
    ['10.0.0.64/26', '10.0.0.192/26']
    """
    remaining = [parse_block(container)]
    for block in used:
        block = parse_block(block)
        next_remaining: list[ipaddress.IPv4Network] = []
        for free in remaining:
            if block.overlaps(free):
                if block.supernet_of(free):
                    continue
                next_remaining.extend(free.address_exclude(block))
            else:
                next_remaining.append(free)
        remaining = next_remaining
    return summarise_blocks(remaining)


def summarise_blocks(blocks: Iterable[str | ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
    """The fewest CIDR blocks covering exactly the same addresses (supernetting).

    Examples
    --------
    >>> [str(b) for b in summarise_blocks(["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"])]
    ['10.0.0.0/23', '10.0.2.0/24']
    """
    return list(ipaddress.collapse_addresses(parse_block(block) for block in blocks))
