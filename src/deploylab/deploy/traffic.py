"""A bounded stream of real HTTP requests, recorded one by one, to watch a deployment.

Each worker thread sends GET requests in a loop (with a new connection each time, or over a
kept-alive one) and records when each started and ended, the status, which backend answered
(the ``X-Backend`` header) or the error. Hard limits on time and count keep it bounded.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass

__all__ = ["RequestRecord", "TrafficRecorder", "summarize"]


@dataclass(frozen=True)
class RequestRecord:
    """One request: seconds since the recorder started, outcome, and who served it."""

    started: float
    finished: float
    status: int | None
    served_by: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Answered with a 2xx status."""
        return self.status is not None and 200 <= self.status < 300


def summarize(records: list[RequestRecord]) -> dict:
    """Counts a person wants after a deployment: total, ok, failed, and who served.

    >>> summarize([RequestRecord(0, .1, 200, "v1"), RequestRecord(.1, .2, 502, None),
    ...            RequestRecord(.2, .3, None, None, "ConnectionResetError")])
    {'requests': 3, 'ok': 1, 'non_2xx': 1, 'errors': 1, 'served_by': {'v1': 1}}
    """
    served: dict[str, int] = {}
    for record in records:
        if record.ok and record.served_by:
            served[record.served_by] = served.get(record.served_by, 0) + 1
    return {
        "requests": len(records),
        "ok": sum(record.ok for record in records),
        "non_2xx": sum(record.status is not None and not record.ok for record in records),
        "errors": sum(record.error is not None for record in records),
        "served_by": served,
    }


class TrafficRecorder:
    """Send requests to ``host:port`` from ``workers`` threads until stopped or a limit is hit.

    ``keep_alive=False`` opens a new connection per request (what survives an nginx reload
    cleanly); ``True`` reuses one per worker (a closed idle connection then shows up as an
    error, as real clients see it). ``pause`` seconds between a worker's requests set the rate.
    """

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        path: str = "/",
        *,
        workers: int = 4,
        keep_alive: bool = False,
        pause: float = 0.005,
        max_seconds: float = 30.0,
        max_requests: int = 20_000,
        timeout: float = 2.0,
    ) -> None:
        if not 1 <= workers <= 64:
            raise ValueError(f"workers={workers}: expected 1 to 64 threads")
        if max_seconds <= 0 or max_requests <= 0:
            raise ValueError("max_seconds and max_requests must be positive: the load is bounded")
        self.host, self.port, self.path = host, port, path
        self.workers, self.keep_alive, self.pause = workers, keep_alive, pause
        self.max_seconds, self.max_requests, self.timeout = max_seconds, max_requests, timeout
        self.records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._origin = 0.0

    def now(self) -> float:
        """Seconds since :meth:`start` (the time axis of the records)."""
        return time.monotonic() - self._origin

    def start(self) -> TrafficRecorder:
        self._origin = time.monotonic()
        self._threads = [
            threading.Thread(target=self._work, daemon=True) for _ in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[RequestRecord]:
        """Stop every worker and return the records sorted by start time."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 1)
        return sorted(self.records, key=lambda record: record.started)

    def __enter__(self) -> TrafficRecorder:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _full(self) -> bool:
        return len(self.records) >= self.max_requests or self.now() >= self.max_seconds

    def _work(self) -> None:
        connection: http.client.HTTPConnection | None = None
        headers = {} if self.keep_alive else {"Connection": "close"}
        while not self._stop.is_set() and not self._full():
            started = self.now()
            status = served_by = error = None
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(
                        self.host, self.port, timeout=self.timeout
                    )
                connection.request("GET", self.path, headers=headers)
                response = connection.getresponse()
                response.read()
                status, served_by = response.status, response.getheader("X-Backend")
                if not self.keep_alive or response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                error = type(exc).__name__
                if connection is not None:
                    connection.close()
                connection = None
            with self._lock:
                self.records.append(RequestRecord(started, self.now(), status, served_by, error))
            if self.pause:
                self._stop.wait(self.pause)
        if connection is not None:
            connection.close()
