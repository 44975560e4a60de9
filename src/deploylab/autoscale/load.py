"""The live run's load generator: a bounded number of connections sending GETs at the rate
:func:`~deploylab.autoscale.live_config.offered_load` asks for, counting what succeeded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

__all__ = ["LoadGenerator", "http_get"]


async def http_get(host: str, port: int, path: str, timeout: float = 1.0) -> int:
    """The status code of one ``GET path`` (a health check), within ``timeout`` seconds."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), timeout)
        return int(line.split()[1])
    finally:
        writer.close()


class LoadGenerator:
    """Open-loop load on keep-alive connections, bounded in time and in requests."""

    def __init__(
        self,
        url_getter: Callable[[], str | None],
        rate: Callable[[float], float],
        connections: int,
        max_requests: int,
    ) -> None:
        self.url_getter = url_getter
        self.rate = rate
        self.connections = connections
        self.max_requests = max_requests
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=connections * 8)
        self.issued = 0
        self.ok = 0
        self.failed = 0
        self.shed = 0
        self._tasks: list[asyncio.Task] = []

    def start(self, clock: Callable[[], float]) -> None:
        self._tasks = [asyncio.create_task(self._dispatch(clock))]
        self._tasks += [asyncio.create_task(self._worker()) for _ in range(self.connections)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _dispatch(self, clock: Callable[[], float]) -> None:
        owed = 0.0
        last = clock()
        while self.issued < self.max_requests:
            await asyncio.sleep(0.01)
            now = clock()
            owed += self.rate(now) * (now - last)
            last = now
            while owed >= 1 and self.issued < self.max_requests:
                owed -= 1
                self.issued += 1
                try:
                    self.queue.put_nowait(None)
                except asyncio.QueueFull:
                    self.shed += 1  # the service is too slow: the request is lost

    async def _worker(self) -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            while True:
                await self.queue.get()
                url = self.url_getter()
                if url is None:
                    continue
                host, port = url.removeprefix("http://").rsplit(":", 1)
                try:
                    if reader is None or writer is None:  # opened (and dropped) together
                        reader, writer = await asyncio.open_connection(host, int(port))
                    writer.write(b"GET / HTTP/1.1\r\nHost: autoscale\r\n\r\n")
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    if length:
                        await reader.readexactly(length)
                    if head.startswith(b"HTTP/1.1 200"):
                        self.ok += 1
                    else:
                        self.failed += 1
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                    self.failed += 1
                    if writer is not None:
                        writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()
