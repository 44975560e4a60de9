"""What kind of address this is: its classful class, the special block it falls in
(RFC 1918 private, loopback, link-local, documentation…) and its bits split into network and
host parts.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TypedDict

from deploylab.vpc.addressing import parse_address
from deploylab.vpc.errors import BlockError

__all__ = [
    "CLASS_PREFIX",
    "SPECIAL_BLOCKS",
    "AddressFacts",
    "AddressFactsDict",
    "BinaryView",
    "SpecialBlock",
    "address_class",
    "address_facts",
    "binary_view",
    "is_rfc1918",
    "special_block",
]


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
CLASS_PREFIX: dict[str, int | None] = {"A": 8, "B": 16, "C": 24, "D": None, "E": None}


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


def _special(
    cidr: str, kind: str, name: str, source: str, assignable: bool, routable: bool
) -> SpecialBlock:
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


#: :meth:`AddressFacts.as_dict`, as JSON prints it (``class`` is a keyword, hence this form).
AddressFactsDict = TypedDict(
    "AddressFactsDict",
    {
        "address": str,
        "class": str,
        "classful_prefix": int | None,
        "block": str | None,
        "kind": str,
        "description": str,
        "binary": str,
    },
)


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

    def as_dict(self) -> AddressFactsDict:
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
