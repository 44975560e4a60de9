"""When a failed attempt goes to the next server, and when a server counts as healthy:
nginx's ``proxy_next_upstream`` (:class:`RetryPolicy`) and active health checks beyond nginx
OSS (:class:`HealthCheck`), without I/O. The passive failure accounting itself
(``max_fails``/``fail_timeout``) is :meth:`~deploylab.balancer.core.Selection.release`'s.

>>> RetryPolicy(("error", "http_503")).retry(503, "GET", tries_left=1)
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from deploylab.balancer.pickers import Peer

__all__ = ["HealthCheck", "RetryPolicy"]


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
