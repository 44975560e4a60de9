"""One server of an upstream and the ways nginx picks among servers, without I/O.

:class:`Peer` is nginx's per-server state (weights, connections, failures); the pick
functions follow ``ngx_http_upstream_round_robin.c``, ``ngx_http_upstream_least_conn_module.c``,
``ngx_http_upstream_ip_hash_module.c`` and ``ngx_http_upstream_hash_module.c`` step by step.
:class:`~deploylab.balancer.core.Upstream` chooses with them; time is passed in (``now``).

>>> a, b = Peer("a", weight=2), Peer("b")
>>> [smooth_weighted_pick([a, b], 0.0).name for _ in range(3)]
['a', 'b', 'a']
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

__all__ = [
    "NoLiveUpstreams",
    "Peer",
    "hash_key_value",
    "ip_hash_value",
    "ketama_points",
    "least_conn_pick",
    "smooth_weighted_pick",
]


class NoLiveUpstreams(LookupError):
    """No server can take the request: nginx logs "no live upstreams" and answers 502."""


@dataclass(eq=False, slots=True)
class Peer:
    """One ``server`` line of an nginx ``upstream`` block, with nginx's per-peer state.

    Configuration: ``weight`` (default 1), ``max_fails`` (1; 0 disables failure counting),
    ``fail_timeout`` (10 s), ``backup``, ``down``, ``max_conns`` (0 = unlimited).
    State (as nginx's ``ngx_http_upstream_rr_peer_t``): ``current_weight``,
    ``effective_weight``, ``conns``, ``fails``, ``accessed``, ``checked``.
    Beyond nginx: ``draining`` (no new requests), ``healthy`` (set by active checks) and
    ``slow_start`` seconds over which the weight ramps up after recovery.

    >>> Peer("127.0.0.1:8080", weight=2).effective_weight
    2
    """

    name: str
    weight: int = 1
    max_fails: int = 1
    fail_timeout: float = 10.0
    backup: bool = False
    down: bool = False
    max_conns: int = 0
    slow_start: float = 0.0
    current_weight: float = 0
    effective_weight: float = -1
    conns: int = 0
    fails: int = 0
    accessed: float = 0.0
    checked: float = 0.0
    draining: bool = False
    healthy: bool = True
    recovered_at: float | None = None
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.weight, int) or self.weight < 1:
            raise ValueError(f"weight {self.weight!r} of {self.name!r}: expected an integer >= 1")
        if self.max_fails < 0:
            raise ValueError(f"max_fails {self.max_fails!r} of {self.name!r}: expected >= 0")
        if self.effective_weight < 0:
            self.effective_weight = self.weight

    def failed_out(self, now: float) -> bool:
        """True while nginx skips this peer: ``fails >= max_fails`` within ``fail_timeout``
        of the last check."""
        return bool(
            self.max_fails
            and self.fails >= self.max_fails
            and now - self.checked <= self.fail_timeout
        )

    def usable(self, now: float) -> bool:
        """Whether a new request may go here (ignoring "already tried for this request")."""
        return not (
            self.down
            or self.draining
            or not self.healthy
            or self.failed_out(now)
            or (self.max_conns and self.conns >= self.max_conns)
        )

    def weight_limit(self, now: float) -> float:
        """The weight this peer may reach now: ``weight``, or during slow start (beyond
        nginx OSS) a share of it growing linearly from 10 % to 100 % over ``slow_start``."""
        if self.slow_start and self.recovered_at is not None:
            ramp = (now - self.recovered_at) / self.slow_start
            if ramp < 1:
                return self.weight * max(0.1, ramp)
        return self.weight

    def state(self, now: float) -> str:
        """One word for views: ``down``, ``draining``, ``unhealthy``, ``failed``, ``up``."""
        if self.down:
            return "down"
        if self.draining:
            return "draining"
        if not self.healthy:
            return "unhealthy"
        if self.failed_out(now):
            return "failed"
        return "up"


def _swrr_add(peer: Peer, now: float) -> float:
    """Step 2 of nginx's smooth weighted round robin for one peer; returns its weight."""
    limit = peer.weight_limit(now)
    effective = min(peer.effective_weight, limit)
    peer.current_weight += effective
    if peer.effective_weight < peer.weight:
        peer.effective_weight += 1
    return effective


def smooth_weighted_pick(
    peers: Sequence[Peer], now: float, tried: AbstractSet[int] = frozenset()
) -> Peer | None:
    """nginx's ``ngx_http_upstream_get_peer``: smooth weighted round robin.

    Skips peers that are down, tried (``id(peer)`` in ``tried``), failed out or at
    ``max_conns``; adds ``effective_weight`` to every other peer's ``current_weight``; picks
    the highest (first in order on ties) and subtracts the total from it. Returns the peer
    or None. Updates ``checked`` as nginx does.

    >>> a, b = Peer("a", weight=2), Peer("b")
    >>> [smooth_weighted_pick([a, b], 0).name for _ in range(3)]
    ['a', 'b', 'a']
    """
    best = None
    total: float = 0
    for peer in peers:  # the checks of Peer.usable and _swrr_add, inlined: the hot path
        if peer.down or peer.draining or not peer.healthy or (tried and id(peer) in tried):
            continue
        if (
            peer.max_fails
            and peer.fails >= peer.max_fails
            and now - peer.checked <= peer.fail_timeout
        ):
            continue
        if peer.max_conns and peer.conns >= peer.max_conns:
            continue
        weight: float = peer.effective_weight
        if peer.slow_start and peer.recovered_at is not None:
            weight = min(weight, peer.weight_limit(now))
        peer.current_weight += weight
        total += weight
        if peer.effective_weight < peer.weight:
            peer.effective_weight += 1
        if best is None or peer.current_weight > best.current_weight:
            best = peer
    if best is None:
        return None
    best.current_weight -= total
    if now - best.checked > best.fail_timeout:
        best.checked = now
    return best


def least_conn_pick(
    peers: Sequence[Peer], now: float, tried: AbstractSet[int] = frozenset()
) -> Peer | None:
    """nginx's ``ngx_http_upstream_get_least_conn_peer``.

    The peer with the fewest active connections per unit of weight, compared without
    division as ``conns_a * weight_b < conns_b * weight_a``; ties are broken by smooth
    weighted round robin among the tied peers only (starting at the first of them).

    >>> a, b = Peer("a"), Peer("b", weight=2)
    >>> a.conns, b.conns = 1, 1          # 1/1 > 1/2: b is less loaded for its weight
    >>> least_conn_pick([a, b], 0).name
    'b'
    """
    best = None
    many = False
    start = 0
    usable = [(i, p) for i, p in enumerate(peers) if id(p) not in tried and p.usable(now)]
    for i, peer in usable:
        if best is None or peer.conns * best.weight < best.conns * peer.weight:
            best, many, start = peer, False, i
        elif peer.conns * best.weight == best.conns * peer.weight:
            many = True
    if best is None:
        return None
    if many:
        total: float = 0
        for i, peer in usable:
            if i < start or peer.conns * best.weight != best.conns * peer.weight:
                continue
            total += _swrr_add(peer, now)
            if peer.current_weight > best.current_weight:
                best = peer
        best.current_weight -= total
    if now - best.checked > best.fail_timeout:
        best.checked = now
    return best


def ip_hash_value(address: str, hash_value: int = 89) -> int:
    """One round of nginx's ``ip_hash``: over the first three octets of an IPv4 address
    (so a whole /24 shares a server) or all 16 bytes of IPv6, ``h = (h * 113 + byte) % 6271``
    starting from 89 (or from the previous round's value when re-hashing).

    >>> ip_hash_value("10.0.0.1") == ip_hash_value("10.0.0.200")
    True
    >>> ip_hash_value("10.0.0.1")   # 89 -> (89*113+10) % 6271 -> ... over 10, 0, 0
    2565
    """
    packed = ip_address(address).packed
    data = packed[:3] if len(packed) == 4 else packed
    for byte in data:
        hash_value = (hash_value * 113 + byte) % 6271
    return hash_value


def hash_key_value(key: bytes | str, rehash: int = 0) -> int:
    """The Cache::Memcached-compatible step of nginx's ``hash KEY``:
    ``(crc32([REHASH] KEY) >> 16) & 0x7fff``, the decimal ``rehash`` prefix omitted at 0.

    >>> hash_key_value("/index.html") == (zlib.crc32(b"/index.html") >> 16) & 0x7fff
    True
    """
    if isinstance(key, str):
        key = key.encode()
    if rehash > 0:
        key = str(rehash).encode() + key
    return (zlib.crc32(key) >> 16) & 0x7FFF


def ketama_points(peers: Sequence[Peer]) -> list[tuple[int, str]]:
    """nginx's consistent-hash ring: ``160 * weight`` points per server, each
    ``crc32(HOST \\0 PORT PREV_HASH)`` (Cache::Memcached::Fast), sorted, duplicates removed.

    >>> len(ketama_points([Peer("127.0.0.1:80"), Peer("127.0.0.1:81", weight=2)]))
    480
    """
    points: list[tuple[int, str]] = []
    for peer in peers:
        server = peer.name
        host, port = server, ""
        if server[:5].lower() == "unix:":
            host = server[5:]
        else:
            head, sep, tail = server.rpartition(":")
            if sep and tail.isdigit():
                host, port = head, tail
        base = host.encode() + b"\0" + port.encode()
        previous = 0
        for _ in range(160 * peer.weight):
            previous = zlib.crc32(base + previous.to_bytes(4, "little"))
            points.append((previous, server))
    points.sort(key=lambda point: point[0])
    unique: list[tuple[int, str]] = []
    for point in points:
        if not unique or unique[-1][0] != point[0]:
            unique.append(point)
    return unique
