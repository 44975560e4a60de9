"""Load-balancing decisions without I/O: which backend serves the next request.

Every algorithm follows nginx's upstream modules (``ngx_http_upstream_round_robin.c``,
``ngx_http_upstream_least_conn_module.c``, ``ngx_http_upstream_ip_hash_module.c``,
``ngx_http_upstream_hash_module.c``) step by step, including its failure accounting
(``max_fails``/``fail_timeout``), ``backup`` and ``down`` servers and ``max_conns``. Time is
passed in (``now``, seconds), never read from a clock, so tests and widgets can replay it.

Beyond nginx (open source) and said so where it happens: power of two choices
(``random_two``), active health checks (:class:`HealthCheck`) and slow start.

Why one module of ~750 lines: every algorithm, the failure accounting and the
:data:`ALGORITHM_RULES` registry share :class:`Peer`'s state and are read side by side with
the nginx C files they mirror; split, each piece would import the others' private state.

>>> upstream = Upstream([Peer("a", weight=5), Peer("b"), Peer("c")])
>>> upstream.sequence(7)
['a', 'a', 'b', 'a', 'c', 'a', 'a']
"""

from __future__ import annotations

import random
import zlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Literal, get_args

__all__ = [
    "ALGORITHMS",
    "ALGORITHM_RULES",
    "Algorithm",
    "AlgorithmRule",
    "HealthCheck",
    "NoLiveUpstreams",
    "Peer",
    "RetryPolicy",
    "Selection",
    "Upstream",
    "check_algorithm",
    "hash_key_value",
    "ip_hash_value",
    "ketama_points",
    "least_conn_pick",
    "smooth_weighted_pick",
]

#: Algorithm names (nginx directive in brackets): ``round_robin`` (default, smooth weighted),
#: ``least_conn``, ``ip_hash``, ``hash`` (``hash KEY``), ``hash_consistent``
#: (``hash KEY consistent``), ``random_two`` (``random two least_conn``; power of two choices).
Algorithm = Literal["round_robin", "least_conn", "ip_hash", "hash", "hash_consistent", "random_two"]
ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)


@dataclass(frozen=True)
class AlgorithmRule:
    """What one algorithm is, in one place: its nginx directive (``{key}`` stands for the
    hash key; empty for round robin, nginx's default), whether nginx allows ``backup``
    servers with it, and the :class:`Upstream` method that picks a primary server."""

    name: Algorithm
    directive: str
    allows_backup: bool
    pick: Callable[[Upstream, Selection, float], Peer | None]


def check_algorithm(name: str) -> Algorithm:
    """``name`` as an :data:`Algorithm` (``least-conn`` is accepted for ``least_conn``), or
    a ValueError naming it and the choices.

    >>> check_algorithm("least-conn")
    'least_conn'
    >>> check_algorithm("fastest")
    Traceback (most recent call last):
    ...
    ValueError: algorithm 'fastest': expected one of round_robin, least_conn, ip_hash, hash, hash_consistent, random_two
    """
    normal = name.replace("-", "_")
    for algorithm in ALGORITHMS:
        if algorithm == normal:
            return algorithm
    raise ValueError(f"algorithm {name!r}: expected one of {', '.join(ALGORITHMS)}")


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
    data: dict = field(default_factory=dict, repr=False)

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


def smooth_weighted_pick(peers: Sequence[Peer], now: float, tried: AbstractSet[int] = frozenset()):
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


def least_conn_pick(peers: Sequence[Peer], now: float, tried: AbstractSet[int] = frozenset()):
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


@dataclass
class RetryPolicy:
    """``proxy_next_upstream`` and friends: when a failed attempt goes to the next server.

    ``conditions`` — nginx's list: ``error``, ``timeout``, ``invalid_header``, ``http_500``,
    ``http_502``, ``http_503``, ``http_504``, ``http_403``, ``http_404``, ``http_429``,
    ``non_idempotent`` or ``off`` (default ``error timeout``). ``tries`` and ``timeout``:
    ``proxy_next_upstream_tries`` / ``_timeout`` (0 = unlimited).

    >>> policy = RetryPolicy()
    >>> policy.retry("error", "GET", tries_left=1), policy.retry("error", "POST", tries_left=1)
    (True, False)
    >>> policy.retry(502, "GET", tries_left=1), RetryPolicy(("error", "http_502")).retry(502, "GET", 1)
    (False, True)
    """

    conditions: Iterable[str] = ("error", "timeout")
    tries: int = 0
    timeout: float = 0.0

    def __post_init__(self) -> None:
        self.conditions = frozenset(self.conditions)
        known = {"error", "timeout", "invalid_header", "non_idempotent", "off"}
        known |= {f"http_{code}" for code in (500, 502, 503, 504, 403, 404, 429)}
        unknown = set(self.conditions) - known
        if unknown:
            raise ValueError(
                f"proxy_next_upstream {sorted(unknown)}: expected some of {sorted(known)}"
            )

    @staticmethod
    def outcome_name(outcome: str | int) -> str:
        return f"http_{outcome}" if isinstance(outcome, int) else outcome

    def counts_as_failure(self, outcome: str | int) -> bool:
        """Whether the attempt counts toward ``max_fails``: error/timeout/invalid_header always,
        a status only when listed (403 and 404 never)."""
        if outcome in ("error", "timeout", "invalid_header"):
            return True
        if outcome in (403, 404) or not isinstance(outcome, int):
            return False
        return self.outcome_name(outcome) in self.conditions

    def retry(
        self,
        outcome: str | int,
        method: str,
        tries_left: int,
        sent: bool = True,
        elapsed: float = 0.0,
    ) -> bool:
        """Whether to pass the request to the next server after ``outcome`` (an error name
        or a status code), as nginx: the condition is listed; a POST/LOCK/PATCH already sent
        is retried only with ``non_idempotent``; tries and time are left."""
        if "off" in self.conditions or tries_left <= 0:
            return False
        if isinstance(outcome, int) and outcome < 400:
            return False
        if self.outcome_name(outcome) not in self.conditions:
            return False
        if sent and method in ("POST", "LOCK", "PATCH") and "non_idempotent" not in self.conditions:
            return False
        return not (self.timeout and elapsed >= self.timeout)


@dataclass
class HealthCheck:
    """Active health checks (beyond nginx OSS, like nginx Plus ``health_check`` and HAProxy):
    probe every ``interval`` s with a ``timeout``; ``fall`` failures in a row mark a peer
    unhealthy, ``rise`` successes in a row mark it healthy again (starting slow start).

    >>> check, peer = HealthCheck(fall=2, rise=2), Peer("a")
    >>> [check.record(peer, ok, now) for now, ok in enumerate([False, False, True, True])]
    [True, False, False, True]
    """

    interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 3
    path: str = "/"

    def record(self, peer: Peer, ok: bool, now: float) -> bool:
        """Record one probe result; returns whether the peer is healthy afterwards."""
        streak = peer.data.get("streak", 0)
        if ok:
            streak = streak + 1 if streak > 0 else 1
            if not peer.healthy and streak >= self.rise:
                peer.healthy = True
                peer.recovered_at = now
                peer.fails = 0
        else:
            streak = streak - 1 if streak < 0 else -1
            if peer.healthy and -streak >= self.fall:
                peer.healthy = False
        peer.data["streak"] = streak
        return peer.healthy


class Selection:
    """The choice of servers for ONE request (nginx's per-request peer data): which peers
    were tried, the hash state for re-hashing, whether it moved to the backup servers, and
    how many tries are left. Get a peer with :meth:`next_peer`, report with :meth:`release`.
    """

    __slots__ = (
        "client",
        "hash_state",
        "key",
        "on_backup",
        "rehash",
        "tried",
        "tries",
        "tries_left",
        "upstream",
    )

    def __init__(self, upstream: Upstream, client: str | None = None, key: str | None = None):
        self.upstream = upstream
        self.client = client
        self.key = key
        self.tried: set[int] = set()
        self.on_backup = False
        self.tries = 0  # hash/ip_hash re-hash counter (nginx's hp->tries)
        self.rehash = 0
        self.hash_state: int | None = None
        self.tries_left = upstream._tries

    def next_peer(self, now: float) -> Peer:
        """The next server for this request, as nginx's ``peer.get``; raises
        :class:`NoLiveUpstreams` when none is usable (→ 502)."""
        up = self.upstream
        peer = None
        if not self.on_backup:
            peer = up._pick_primary(self, now)
            if peer is None and up.backups:
                self.on_backup = True
                self.tried = set()
        if peer is None and self.on_backup:
            picker = least_conn_pick if up.algorithm == "least_conn" else smooth_weighted_pick
            peer = picker(up.backups, now, self.tried)
        if peer is None:
            raise NoLiveUpstreams(f"no live upstreams ({len(up.peers)} servers configured)")
        self.tried.add(id(peer))
        peer.conns += 1
        return peer

    def release(self, peer: Peer, failed: bool, now: float) -> None:
        """nginx's ``free_round_robin_peer``: the attempt on ``peer`` ended. A failure adds
        to ``fails``, stamps ``accessed``/``checked`` and lowers ``effective_weight`` by
        ``weight / max_fails``; a success after a post-timeout probe clears ``fails``.
        A lone server (no backup) is never marked failed."""
        peer.conns = max(0, peer.conns - 1)
        self.tries_left -= 1
        if self.upstream._single:
            return
        if failed:
            peer.fails += 1
            peer.accessed = now
            peer.checked = now
            if peer.max_fails:
                peer.effective_weight -= peer.weight // peer.max_fails
            peer.effective_weight = max(peer.effective_weight, 0)
        elif peer.accessed < peer.checked:
            if peer.slow_start and peer.max_fails and peer.fails >= peer.max_fails:
                peer.recovered_at = now  # beyond nginx OSS: ramp its weight up again
            peer.fails = 0


class Upstream:
    """An nginx ``upstream`` block: servers, an algorithm and their shared state.

    Parameters
    ----------
    peers : the servers in configuration order (``backup=True`` ones go to the backup list).
    algorithm : one of :data:`ALGORITHMS`.
    rng : random source for ``random_two`` (seed it for repeatable sequences).

    Examples
    --------
    >>> up = Upstream([Peer("10.0.0.1:80"), Peer("10.0.0.2:80")], "ip_hash")
    >>> up.sequence(3, clients=["192.168.1.5", "192.168.1.77", "192.168.2.5"])
    ['10.0.0.1:80', '10.0.0.1:80', '10.0.0.2:80']
    """

    def __init__(
        self,
        peers: Iterable[Peer],
        algorithm: str = "round_robin",
        rng: random.Random | None = None,
    ) -> None:
        self.algorithm: Algorithm = check_algorithm(algorithm)
        self._rule = ALGORITHM_RULES[self.algorithm]
        self.peers: list[Peer] = []
        self.backups: list[Peer] = []
        self.rng = rng or random.Random(0)
        self._ring: list[tuple[int, str]] | None = None
        self._ring_hashes: list[int] = []
        self._changed()
        for peer in peers:
            self.add(peer)
        if not self.peers and not self.backups:
            raise ValueError("an upstream needs at least one server")

    # -- configuration ---------------------------------------------------------------------
    def add(self, peer: Peer) -> Peer:
        """Append a server (at runtime too: later requests may pick it)."""
        if peer.backup and not self._rule.allows_backup:
            raise ValueError(
                f"backup server {peer.name!r}: not allowed with {self.algorithm} (as in nginx)"
            )
        if self.find(peer.name) is not None:
            raise ValueError(f"server {peer.name!r} is already in the upstream")
        (self.backups if peer.backup else self.peers).append(peer)
        self._changed()
        return peer

    def remove(self, name: str) -> Peer:
        """Take a server out of the lists (requests already on it keep their ``Peer``)."""
        peer = self.find(name)
        if peer is None:
            raise ValueError(f"server {name!r} is not in the upstream")
        (self.backups if peer.backup else self.peers).remove(peer)
        self._changed()
        return peer

    def find(self, name: str) -> Peer | None:
        for peer in self.peers + self.backups:
            if peer.name == name:
                return peer
        return None

    @property
    def single(self) -> bool:
        """nginx's ``peers->single``: one primary server and no backup."""
        return self._single

    def _changed(self) -> None:
        self._ring = None
        self._single = len(self.peers) == 1 and not self.backups
        self._tries = self.max_tries()

    @property
    def total_weight(self) -> int:
        """Sum of primary weights, ``down`` ones included (so a down server keeps its slot)."""
        return sum(peer.weight for peer in self.peers)

    def max_tries(self) -> int:
        return max(1, len(self.peers) + len(self.backups))

    # -- choosing --------------------------------------------------------------------------
    def start(self, client: str | None = None, key: str | None = None) -> Selection:
        """Begin choosing for one request from ``client`` (ip_hash) with ``key`` (hash)."""
        return Selection(self, client, key)

    def _pick_primary(self, sel: Selection, now: float) -> Peer | None:
        peers = self.peers
        if not peers:
            return None
        if self._single:
            peer = peers[0]
            if id(peer) in sel.tried or peer.down or peer.draining or not peer.healthy:
                return None
            if peer.max_conns and peer.conns >= peer.max_conns:
                return None
            return peer
        return self._rule.pick(self, sel, now)

    def _round_robin(self, sel: Selection, now: float) -> Peer | None:
        return smooth_weighted_pick(self.peers, now, sel.tried)

    def _least_conn(self, sel: Selection, now: float) -> Peer | None:
        return least_conn_pick(self.peers, now, sel.tried)

    def _walk(self, value: int) -> Peer:
        w = value % self.total_weight
        for peer in self.peers:
            if w < peer.weight:
                return peer
            w -= peer.weight
        raise AssertionError("unreachable")

    def _stamp(self, peer: Peer, now: float) -> Peer:
        if now - peer.checked > peer.fail_timeout:
            peer.checked = now
        return peer

    def _ip_hash(self, sel: Selection, now: float) -> Peer | None:
        # ngx_http_upstream_get_ip_hash_peer: re-hash from the previous value, up to 20
        # tries in all, then fall back to round robin.
        if sel.tries > 20 or sel.client is None:
            return smooth_weighted_pick(self.peers, now, sel.tried)
        value = 89 if sel.hash_state is None else sel.hash_state
        while True:
            value = ip_hash_value(sel.client, value)
            peer = self._walk(value)
            if id(peer) not in sel.tried and peer.usable(now):
                break
            sel.tries += 1
            if sel.tries > 20:
                return smooth_weighted_pick(self.peers, now, sel.tried)
        sel.hash_state = value
        sel.tries += 1
        return self._stamp(peer, now)

    def _hash(self, sel: Selection, now: float) -> Peer | None:
        # ngx_http_upstream_get_hash_peer: hash += (crc32([rehash]key) >> 16) & 0x7fff.
        if sel.tries > 20 or not sel.key:
            return smooth_weighted_pick(self.peers, now, sel.tried)
        value = sel.hash_state or 0
        while True:
            value += hash_key_value(sel.key, sel.rehash)
            value &= 0xFFFFFFFF
            sel.rehash += 1
            peer = self._walk(value)
            if id(peer) not in sel.tried and peer.usable(now):
                break
            sel.tries += 1
            if sel.tries > 20:
                sel.hash_state = value
                return smooth_weighted_pick(self.peers, now, sel.tried)
        sel.hash_state = value
        return self._stamp(peer, now)

    def ring(self) -> list[tuple[int, str]]:
        """The consistent-hash ring (see :func:`ketama_points`), rebuilt after changes."""
        if self._ring is None:
            self._ring = ketama_points(self.peers)
            self._ring_hashes = [point for point, _ in self._ring]
        return self._ring

    def _chash(self, sel: Selection, now: float) -> Peer | None:
        # ngx_http_upstream_get_chash_peer: first ring point >= crc32(key), then the next
        # points while that server is unusable.
        ring = self.ring()
        if not sel.key:
            return smooth_weighted_pick(self.peers, now, sel.tried)
        if sel.hash_state is None:
            sel.hash_state = bisect_left(self._ring_hashes, zlib.crc32(sel.key.encode()))
        while True:
            server = ring[sel.hash_state % len(ring)][1]
            candidates = [p for p in self.peers if p.name == server]
            best = smooth_weighted_pick(candidates, now, sel.tried)
            if best is not None:
                return best
            sel.hash_state += 1
            sel.tries += 1
            if sel.tries >= len(ring):
                return None

    def _random_two(self, sel: Selection, now: float) -> Peer | None:
        # Beyond nginx's exact sequence (it is random): nginx's `random two least_conn` and
        # Envoy's least request — two weighted random picks, the less loaded one wins.
        usable = [p for p in self.peers if id(p) not in sel.tried and p.usable(now)]
        if not usable:
            return None
        weights = [p.weight for p in usable]
        first, second = self.rng.choices(usable, weights, k=2)
        if second.conns * first.weight < first.conns * second.weight:
            first = second
        return self._stamp(first, now)

    # -- convenience for lessons, widgets and tests ----------------------------------------
    def pick(self, now: float = 0.0, client: str | None = None, key: str | None = None) -> Peer:
        """Choose a server for a new request and count it as connected (call
        ``release(peer, ...)`` when done, or use :meth:`sequence`)."""
        return self.start(client, key).next_peer(now)

    def release(self, peer: Peer, failed: bool = False, now: float = 0.0) -> None:
        """End a request started with :meth:`pick`."""
        Selection(self).release(peer, failed, now)

    def sequence(
        self,
        count: int,
        now: float = 0.0,
        clients: Sequence[str] | None = None,
        keys: Sequence[str] | None = None,
    ) -> list[str]:
        """Names of the servers chosen for ``count`` requests that each finish before the next
        one starts (clients/keys cycle if shorter); ``"502"`` where none was live."""
        chosen = []
        for i in range(count):
            client = clients[i % len(clients)] if clients else None
            key = keys[i % len(keys)] if keys else None
            try:
                peer = self.pick(now, client, key)
            except NoLiveUpstreams:
                chosen.append("502")
                continue
            self.release(peer, False, now)
            chosen.append(peer.name)
        return chosen

    def snapshot(self, now: float = 0.0) -> list[dict]:
        """Plain data for views: one dict per server in order (primaries, then backups)."""
        return [
            {
                "name": p.name,
                "weight": p.weight,
                "current_weight": p.current_weight,
                "effective_weight": p.effective_weight,
                "conns": p.conns,
                "fails": p.fails,
                "backup": p.backup,
                "state": p.state(now),
            }
            for p in self.peers + self.backups
        ]


#: One rule per algorithm (uvicorn's ``HTTP_PROTOCOLS`` style): the CLI's ``choices``, the
#: validation, the pick dispatch and the nginx writer all read this table.
ALGORITHM_RULES: dict[Algorithm, AlgorithmRule] = {
    rule.name: rule
    for rule in (
        AlgorithmRule("round_robin", "", True, Upstream._round_robin),
        AlgorithmRule("least_conn", "least_conn;", True, Upstream._least_conn),
        AlgorithmRule("ip_hash", "ip_hash;", False, Upstream._ip_hash),
        AlgorithmRule("hash", "hash {key};", False, Upstream._hash),
        AlgorithmRule("hash_consistent", "hash {key} consistent;", False, Upstream._chash),
        AlgorithmRule("random_two", "random two least_conn;", False, Upstream._random_two),
    )
}
assert tuple(ALGORITHM_RULES) == ALGORITHMS, "one rule per Algorithm, in the same order"
