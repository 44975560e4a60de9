"""Per-backend counters the balancer keeps beside nginx's peer state (for ``status()``).

>>> from deploylab.balancer.core import Peer
>>> stats = stats_of(Peer("127.0.0.1:8081"))
>>> stats.latencies.extend([0.002, 0.001, 0.004])
>>> stats.percentile(0.5), stats.percentile(0.99)
(0.002, 0.004)
"""

from __future__ import annotations

from collections import deque

from deploylab.balancer.core import Peer

__all__ = ["BackendStats", "stats_of"]


class BackendStats:
    """Per-backend counters: requests, failures and recent latencies (for p50/p99)."""

    __slots__ = ("failures", "latencies", "requests", "statuses")

    def __init__(self) -> None:
        self.requests = 0
        self.failures = 0
        self.latencies: deque[float] = deque(maxlen=2048)
        self.statuses: dict[int, int] = {}

    def percentile(self, fraction: float) -> float | None:
        """The latency below which ``fraction`` of the recent ones lie (None before any)."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def stats_of(peer: Peer) -> BackendStats:
    """The :class:`BackendStats` of ``peer`` (created with its idle-connection pool on
    first use; both live in ``peer.data``)."""
    stats = peer.data.get("stats")
    if stats is None:
        stats = peer.data["stats"] = BackendStats()
        peer.data["idle"] = []
    return stats
