"""Small helpers for servers on the loopback interface: free ports, waiting for a listener,
and running a server until Ctrl-C or SIGTERM (every ``deploylab serve ...`` command)."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

__all__ = ["free_port", "run_fast", "serve_until_signal", "wait_for_port", "wait_for_signal"]

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the kernel's choice for port 0).

    >>> 1024 <= free_port() <= 65535
    True
    """
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    """Return once something accepts TCP connections on ``host:port``; raise
    :class:`TimeoutError` naming the address after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listened on {host}:{port} within {timeout} s"
                ) from None
            time.sleep(0.05)


async def wait_for_signal() -> None:
    """Return once the process gets SIGINT or SIGTERM (the loop's own handlers: no thread)."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def on_signal() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run_fast(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop (a faster event loop) when it is installed, else asyncio's.

    >>> async def answer():
    ...     return 42
    >>> run_fast(answer())
    42
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but not on Windows
        return asyncio.run(main)
    return uvloop.run(main)


def serve_until_signal(
    server: AbstractAsyncContextManager[T],
    ready: Callable[[T], Awaitable[None] | None] | None = None,
) -> None:
    """Start ``server`` (an async context manager), call ``ready`` with what it yields (to
    print where it listens), serve until SIGINT or SIGTERM, then stop it cleanly."""

    async def main() -> None:
        async with server as running:
            if ready is not None:
                announced = ready(running)
                if announced is not None:
                    await announced
            await wait_for_signal()

    run_fast(main())
