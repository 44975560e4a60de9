"""The errors ``deploylab.vpc`` raises: all are ``ValueError`` subclasses whose message names
the bad value and says what was expected."""

from __future__ import annotations

__all__ = [
    "AddressError",
    "BlockError",
    "DesignError",
    "PlanError",
    "RouteError",
    "VpcError",
]


class VpcError(ValueError):
    """Base class of every error raised by :mod:`deploylab.vpc`."""


class AddressError(VpcError):
    """A value is not an IPv4 address (``10.0.0.300``, ``10.0.0``, ``fe80::1``)."""


class BlockError(VpcError):
    """A value is not a usable CIDR block (bad prefix, host bits set, wrong size for AWS)."""


class PlanError(VpcError):
    """A subnet plan does not fit; ``missing`` says how many addresses are lacking."""

    def __init__(self, message: str, *, needed: int = 0, available: int = 0) -> None:
        super().__init__(message)
        self.needed = needed
        self.available = available
        self.missing = max(0, needed - available)


class RouteError(VpcError):
    """A route cannot be added or removed (unknown target, duplicate, the local route)."""


class DesignError(VpcError):
    """A VPC design refers to something that does not exist or is malformed."""
