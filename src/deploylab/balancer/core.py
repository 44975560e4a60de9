"""Load-balancing decisions without I/O: which backend serves the next request.

Every algorithm follows nginx's upstream modules (``ngx_http_upstream_round_robin.c``,
``ngx_http_upstream_least_conn_module.c``, ``ngx_http_upstream_ip_hash_module.c``,
``ngx_http_upstream_hash_module.c``) step by step, including its failure accounting
(``max_fails``/``fail_timeout``), ``backup`` and ``down`` servers and ``max_conns``. Time is
passed in (``now``, seconds), never read from a clock, so tests and widgets can replay it.

Beyond nginx (open source) and said so where it happens: power of two choices
(``random_two``), active health checks (:class:`HealthCheck`) and slow start.

The pieces: :class:`Peer` and the pick functions in :mod:`deploylab.balancer.pickers`,
:class:`RetryPolicy` and :class:`HealthCheck` in :mod:`deploylab.balancer.failures`; this
module ties them into :class:`Upstream` (one ``upstream`` block) and :class:`Selection` (one
request's choice, with the passive failure accounting), and is where they are imported from.

>>> upstream = Upstream([Peer("a", weight=5), Peer("b"), Peer("c")])
>>> upstream.sequence(7)
['a', 'a', 'b', 'a', 'c', 'a', 'a']
"""

from __future__ import annotations

import random
import zlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from deploylab.balancer.failures import HealthCheck, RetryPolicy
from deploylab.balancer.pickers import (
    NoLiveUpstreams,
    Peer,
    hash_key_value,
    ip_hash_value,
    ketama_points,
    least_conn_pick,
    smooth_weighted_pick,
)

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
        conns = peer.conns
        peer.conns = conns - 1 if conns > 0 else 0
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

    def snapshot(self, now: float = 0.0) -> list[dict[str, object]]:
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
