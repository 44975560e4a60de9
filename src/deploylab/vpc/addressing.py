"""IPv4 addresses and CIDR blocks: parsing with clear errors, classes, special blocks,
the facts of a block (classic and AWS), subnet planning (VLSM) and summarising.

Everything is built on the standard library's :mod:`ipaddress` and reuses its vocabulary.

Why one file of ~800 lines: most of it is numpydoc with doctested examples (the lessons'
reference); the functions share one parser and one error vocabulary (:mod:`.errors`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from deploylab.vpc.errors import AddressError, BlockError, PlanError

__all__ = [
    "AWS_MAX_PREFIX",
    "AWS_MIN_PREFIX",
    "SPECIAL_BLOCKS",
    "AddressFacts",
    "BinaryView",
    "CidrFacts",
    "PlannedSubnet",
    "ReservedAddress",
    "SpecialBlock",
    "SubnetPlan",
    "SubnetRequest",
    "address_class",
    "address_facts",
    "aws_reserved_addresses",
    "aws_usable_hosts",
    "binary_view",
    "check_aws_size",
    "cidr_facts",
    "free_blocks",
    "is_rfc1918",
    "parse_address",
    "parse_block",
    "plan_subnets",
    "prefix_for_hosts",
    "special_block",
    "summarise_blocks",
    "usable_hosts",
]

#: AWS allows VPC and subnet IPv4 blocks from /16 (65,536 addresses) to /28 (16 addresses).
AWS_MIN_PREFIX = 16
AWS_MAX_PREFIX = 28

_DOTTED = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def parse_address(value: str | int | ipaddress.IPv4Address) -> ipaddress.IPv4Address:
    """Return ``value`` as an :class:`ipaddress.IPv4Address`, or raise a clear error.

    Parameters
    ----------
    value : str, int or IPv4Address
        Dotted-quad text such as ``"10.0.0.1"``.

    Returns
    -------
    ipaddress.IPv4Address

    Raises
    ------
    AddressError
        The message names the value and what was expected.

    Examples
    --------
    >>> parse_address("10.0.0.1")
    IPv4Address('10.0.0.1')
    >>> parse_address("10.0.0.300")
    Traceback (most recent call last):
    ...
    deploylab.vpc.errors.AddressError: '10.0.0.300' is not an IPv4 address: octet 300 is above 255 (expected four numbers 0-255 separated by dots, like 10.0.0.1)
    """
    if isinstance(value, ipaddress.IPv4Address):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < 2**32:
            return ipaddress.IPv4Address(value)
        raise AddressError(f"{value!r} is not an IPv4 address: expected an integer 0 to 2**32-1")
    text = str(value).strip()
    expected = "expected four numbers 0-255 separated by dots, like 10.0.0.1"
    if "/" in text:
        raise AddressError(f"{text!r} is not an IPv4 address: it has a prefix; {expected}")
    if not _DOTTED.match(text):
        raise AddressError(f"{text!r} is not an IPv4 address: {expected}")
    for octet in text.split("."):
        if int(octet) > 255:
            raise AddressError(
                f"{text!r} is not an IPv4 address: octet {int(octet)} is above 255 ({expected})"
            )
    try:
        return ipaddress.IPv4Address(text)
    except ValueError as error:  # e.g. leading zeros, which ipaddress refuses as ambiguous
        raise AddressError(f"{text!r} is not an IPv4 address: {error} ({expected})") from None


def parse_block(
    value: str | ipaddress.IPv4Network, *, strict: bool = True
) -> ipaddress.IPv4Network:
    """Return ``value`` as an :class:`ipaddress.IPv4Network`, or raise a clear error.

    Parameters
    ----------
    value : str or IPv4Network
        CIDR text ``a.b.c.d/n``; a bare address means ``/32``.
    strict : bool
        When True (default) host bits must be zero, like ``ipaddress.ip_network``.

    Raises
    ------
    BlockError
        Bad prefix length or host bits set; the message names the value and a fix.
    AddressError
        The address part is not an IPv4 address.

    Examples
    --------
    >>> parse_block("10.0.0.0/24")
    IPv4Network('10.0.0.0/24')
    >>> parse_block("10.0.0.0/33")
    Traceback (most recent call last):
    ...
    deploylab.vpc.errors.BlockError: '10.0.0.0/33' has prefix length 33: expected a number from 0 to 32
    >>> parse_block("10.0.0.1/24")
    Traceback (most recent call last):
    ...
    deploylab.vpc.errors.BlockError: '10.0.0.1/24' has host bits set: expected the network address, 10.0.0.0/24
    """
    if isinstance(value, ipaddress.IPv4Network):
        return value
    text = str(value).strip()
    address_text, slash, prefix_text = text.partition("/")
    try:
        address = parse_address(address_text)
    except AddressError:
        raise AddressError(
            f"{text!r} is not a CIDR block: {address_text!r} is not an IPv4 address "
            "(expected a.b.c.d/n with four numbers 0-255, like 10.0.0.0/16)"
        ) from None
    if not slash:
        prefix = 32
    elif prefix_text.isdigit() and len(prefix_text) <= 3:
        prefix = int(prefix_text)
    else:
        raise BlockError(f"{text!r} has prefix {prefix_text!r}: expected a number from 0 to 32")
    if prefix > 32:
        raise BlockError(f"{text!r} has prefix length {prefix}: expected a number from 0 to 32")
    network = ipaddress.IPv4Network((address, prefix), strict=False)
    if strict and network.network_address != address:
        raise BlockError(f"{text!r} has host bits set: expected the network address, {network}")
    return network


def check_aws_size(
    block: str | ipaddress.IPv4Network, what: str = "block"
) -> ipaddress.IPv4Network:
    """Return the block if AWS accepts its size for a VPC or subnet (/16 to /28), else raise.

    Examples
    --------
    >>> check_aws_size("10.0.0.0/16")
    IPv4Network('10.0.0.0/16')
    >>> check_aws_size("10.0.0.0/29", "subnet")
    Traceback (most recent call last):
    ...
    deploylab.vpc.errors.BlockError: subnet 10.0.0.0/29 is a /29 (8 addresses): AWS expects a prefix from /16 (65,536 addresses) to /28 (16 addresses)
    """
    network = parse_block(block)
    if not AWS_MIN_PREFIX <= network.prefixlen <= AWS_MAX_PREFIX:
        raise BlockError(
            f"{what} {network} is a /{network.prefixlen} ({network.num_addresses:,} addresses): "
            f"AWS expects a prefix from /{AWS_MIN_PREFIX} (65,536 addresses) to "
            f"/{AWS_MAX_PREFIX} (16 addresses)"
        )
    return network


# -- address facts -----------------------------------------------------------------------


def address_class(address: str | ipaddress.IPv4Address) -> str:
    """The classful class of an address, ``"A"`` to ``"E"``, from its first octet.

    A 0-127, B 128-191, C 192-223, D 224-239 (multicast), E 240-255 (reserved).

    Examples
    --------
    >>> [address_class(a) for a in ("10.1.2.3", "172.16.0.1", "192.168.1.1", "224.0.0.5", "250.0.0.1")]
    ['A', 'B', 'C', 'D', 'E']
    """
    first_octet = int(parse_address(address)) >> 24
    if first_octet < 128:
        return "A"
    if first_octet < 192:
        return "B"
    if first_octet < 224:
        return "C"
    if first_octet < 240:
        return "D"
    return "E"


#: The network part of each class in bits (classes D and E have no network/host split).
CLASS_PREFIX = {"A": 8, "B": 16, "C": 24, "D": None, "E": None}


@dataclass(frozen=True)
class SpecialBlock:
    """A block with a special meaning (RFC 6890 and the IANA special-purpose registry)."""

    network: ipaddress.IPv4Network
    kind: str
    name: str
    source: str
    #: Whether an ordinary host may be given an address from this block.
    assignable: bool
    #: Whether packets with these addresses are routed on the public internet.
    internet_routable: bool


def _special(cidr: str, kind: str, name: str, source: str, assignable: bool, routable: bool):
    return SpecialBlock(ipaddress.IPv4Network(cidr), kind, name, source, assignable, routable)


#: Blocks worth knowing, as a table. ``special_block`` picks the most specific match, so
#: 255.255.255.255 is "limited broadcast" although it is also inside 240.0.0.0/4.
SPECIAL_BLOCKS: tuple[SpecialBlock, ...] = (
    _special("0.0.0.0/8", "this-network", "this network", "RFC 791, RFC 1122", False, False),
    _special("10.0.0.0/8", "private", "private (RFC 1918)", "RFC 1918", True, False),
    _special(
        "100.64.0.0/10",
        "shared",
        "shared address space (carrier-grade NAT)",
        "RFC 6598",
        True,
        False,
    ),
    _special("127.0.0.0/8", "loopback", "loopback (this host)", "RFC 1122", False, False),
    _special(
        "169.254.0.0/16",
        "link-local",
        "link-local (also the cloud instance metadata address)",
        "RFC 3927",
        True,
        False,
    ),
    _special("172.16.0.0/12", "private", "private (RFC 1918)", "RFC 1918", True, False),
    _special("192.0.0.0/24", "protocol", "IETF protocol assignments", "RFC 6890", False, False),
    _special(
        "192.0.2.0/24", "documentation", "documentation (TEST-NET-1)", "RFC 5737", False, False
    ),
    _special("192.168.0.0/16", "private", "private (RFC 1918)", "RFC 1918", True, False),
    _special("198.18.0.0/15", "benchmarking", "benchmarking", "RFC 2544", True, False),
    _special(
        "198.51.100.0/24", "documentation", "documentation (TEST-NET-2)", "RFC 5737", False, False
    ),
    _special(
        "203.0.113.0/24", "documentation", "documentation (TEST-NET-3)", "RFC 5737", False, False
    ),
    _special("224.0.0.0/4", "multicast", "multicast (class D)", "RFC 5771", False, True),
    _special(
        "240.0.0.0/4", "reserved", "reserved for future use (class E)", "RFC 1112", False, False
    ),
    _special("255.255.255.255/32", "broadcast", "limited broadcast", "RFC 919", False, False),
)


def special_block(address: str | ipaddress.IPv4Address) -> SpecialBlock | None:
    """The most specific special block holding ``address``, or None for ordinary public ones.

    Unlike ``ipaddress.IPv4Address.is_private`` (True for loopback and link-local too, False
    for 100.64/10) this names the block, so "private" means RFC 1918 only.

    Examples
    --------
    >>> special_block("172.20.1.1").name
    'private (RFC 1918)'
    >>> special_block("127.0.0.1").kind, special_block("100.64.0.1").kind
    ('loopback', 'shared')
    >>> special_block("8.8.8.8") is None
    True
    """
    address = parse_address(address)
    matches = [block for block in SPECIAL_BLOCKS if address in block.network]
    return max(matches, key=lambda block: block.network.prefixlen, default=None)


def is_rfc1918(address: str | ipaddress.IPv4Address) -> bool:
    """Whether ``address`` is in 10/8, 172.16/12 or 192.168/16 — and nothing else.

    Examples
    --------
    >>> is_rfc1918("192.168.0.1"), is_rfc1918("127.0.0.1"), is_rfc1918("172.32.0.1")
    (True, False, False)
    """
    block = special_block(address)
    return block is not None and block.kind == "private"


@dataclass(frozen=True)
class BinaryView:
    """The 32 bits of an address split into the network part and the host part."""

    address: ipaddress.IPv4Address
    prefixlen: int

    @property
    def bits(self) -> str:
        """All 32 bits, most significant first."""
        return format(int(self.address), "032b")

    @property
    def network_bits(self) -> str:
        return self.bits[: self.prefixlen]

    @property
    def host_bits(self) -> str:
        return self.bits[self.prefixlen :]

    @property
    def octets(self) -> list[str]:
        """The bits in four groups of eight."""
        return [self.bits[i : i + 8] for i in range(0, 32, 8)]

    def marked(self) -> str:
        """Dotted bits with a ``|`` where the network part ends.

        >>> binary_view("192.168.1.77", 26).marked()
        '11000000.10101000.00000001.01|001101'
        """
        out = []
        for index, bit in enumerate(self.bits):
            if index and index % 8 == 0:
                out.append(".")
            if index == self.prefixlen and 0 < index < 32:
                out.append("|")
            out.append(bit)
        return "".join(out)


def binary_view(address: str | ipaddress.IPv4Address, prefixlen: int) -> BinaryView:
    """The address in binary, split after ``prefixlen`` bits into network and host parts.

    Examples
    --------
    >>> view = binary_view("10.0.0.1", 8)
    >>> view.network_bits, view.host_bits.count("1")
    ('00001010', 1)
    """
    if not isinstance(prefixlen, int) or not 0 <= prefixlen <= 32:
        raise BlockError(f"prefix length {prefixlen!r}: expected a number from 0 to 32")
    return BinaryView(parse_address(address), prefixlen)


@dataclass(frozen=True)
class AddressFacts:
    """What there is to say about one address."""

    address: ipaddress.IPv4Address
    address_class: str
    classful_prefix: int | None
    special: SpecialBlock | None
    binary: BinaryView

    @property
    def description(self) -> str:
        return self.special.name if self.special else "public (globally routable)"

    def as_dict(self) -> dict:
        return {
            "address": str(self.address),
            "class": self.address_class,
            "classful_prefix": self.classful_prefix,
            "block": str(self.special.network) if self.special else None,
            "kind": self.special.kind if self.special else "public",
            "description": self.description,
            "binary": self.binary.marked(),
        }


def address_facts(
    address: str | ipaddress.IPv4Address, prefixlen: int | None = None
) -> AddressFacts:
    """Class, special block and binary view of an address.

    With no ``prefixlen`` the binary view splits where the address's class would
    (8, 16 or 24 bits; 32 for classes D and E, which have no host part).

    Examples
    --------
    >>> facts = address_facts("127.0.0.1")
    >>> facts.address_class, facts.classful_prefix, facts.description
    ('A', 8, 'loopback (this host)')
    """
    address = parse_address(address)
    cls = address_class(address)
    classful = CLASS_PREFIX[cls]
    split = prefixlen if prefixlen is not None else (classful if classful is not None else 32)
    return AddressFacts(address, cls, classful, special_block(address), binary_view(address, split))


# -- CIDR facts --------------------------------------------------------------------------


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
    network = check_aws_size(block, "subnet")
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

    def as_dict(self) -> dict:
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


# -- planning and summarising ------------------------------------------------------------


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
    def coerce(cls, value) -> SubnetRequest:
        """Accept a ``SubnetRequest``, a dict, or a tuple ``(name, hosts_or_"/n", az, tier)``."""
        if isinstance(value, SubnetRequest):
            return value
        if isinstance(value, dict):
            return cls(**value)
        if isinstance(value, (tuple, list)) and 1 <= len(value) <= 4:
            name, size, *rest = [*value, None, None][:4]
            if isinstance(size, str) and size.startswith("/") and size[1:].isdigit():
                return cls(name, prefixlen=int(size[1:]), az=rest[0], tier=rest[1])
            return cls(name, hosts=size, az=rest[0], tier=rest[1])
        raise PlanError(
            f"subnet request {value!r}: expected (name, hosts or '/prefix', az, tier) or a dict"
        )


@dataclass(frozen=True)
class PlannedSubnet:
    """One subnet of a plan."""

    name: str
    network: ipaddress.IPv4Network
    az: str | None
    tier: str | None
    hosts_requested: int | None
    usable: int

    def as_dict(self) -> dict:
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

    def as_dict(self) -> dict:
        return {
            "vpc": str(self.vpc),
            "aws": self.aws,
            "subnets": [subnet.as_dict() for subnet in self.subnets],
            "free": [str(block) for block in self.free],
            "used": self.used,
            "total": self.vpc.num_addresses,
        }


def plan_subnets(
    vpc_cidr: str | ipaddress.IPv4Network, requests: Iterable, *, aws: bool = True
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
        next_remaining = []
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
