"""The live run's moving parts outside Python objects: backend processes (started and
stopped by PID) and the balancer they join, behind a small add/drain/remove interface so
another balancer can be swapped in."""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:  # for annotations only; add() imports it when the first backend arrives
    from deploylab.balancer.runtime import Balancer

__all__ = ["BackendProcess", "BalancerPool"]


class BalancerPool:
    """What the controller needs from a balancer: add, drain, remove, per-backend requests.

    Wraps :class:`deploylab.balancer.runtime.Balancer` (created with the first backend, since
    an upstream cannot be empty)."""

    def __init__(self) -> None:
        self.balancer: Balancer | None = None

    @property
    def url(self) -> str | None:
        return None if self.balancer is None else self.balancer.url

    async def add(self, url: str) -> None:
        if self.balancer is None:
            from deploylab.balancer.runtime import Balancer

            self.balancer = Balancer([url], algorithm="least_conn", request_events=False)
            await self.balancer.start()
        else:
            self.balancer.add_backend(url)

    async def drain_and_remove(self, url: str, timeout: float) -> None:
        if self.balancer is None:
            return
        with contextlib.suppress(ValueError, TimeoutError):
            await self.balancer.drain_backend(url, timeout)
        with contextlib.suppress(ValueError):
            self.balancer.remove_backend(url)

    def remove_now(self, url: str) -> None:
        if self.balancer is not None:
            with contextlib.suppress(ValueError):
                self.balancer.remove_backend(url)

    def requests(self) -> dict[str, int]:
        """Requests served so far per backend ``HOST:PORT``."""
        if self.balancer is None:
            return {}
        return {b["backend"]: b["requests"] for b in self.balancer.status()["backends"]}

    async def close(self) -> None:
        if self.balancer is not None:
            await self.balancer.stop()


@dataclass
class BackendProcess:
    """A real backend process behind one group instance."""

    instance_id: str
    process: subprocess.Popen
    url: str = ""
    joined: bool = False
    stopping: bool = False
    cpu: psutil.Process | None = None
    last_requests: int = 0

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")
