"""Parsing IPv4 addresses and CIDR blocks with clear errors, and the sizes AWS accepts.

The one parser of the VPC topic: every other module (address kinds, block facts, planning,
routing, the model) reads addresses and blocks through :func:`parse_address` and
:func:`parse_block`, built on the standard library's :mod:`ipaddress`, so a bad value gets
the same message everywhere (the error vocabulary is :mod:`.errors`).
"""

from __future__ import annotations

import ipaddress
import re

from deploylab.vpc.errors import AddressError, BlockError

__all__ = [
    "AWS_MAX_PREFIX",
    "AWS_MIN_PREFIX",
    "check_aws_size",
    "parse_address",
    "parse_block",
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
