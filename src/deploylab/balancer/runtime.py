"""The load balancer on real sockets: L7 (HTTP, per request) or L4 (TCP, per connection).

It drives :class:`deploylab.balancer.core.Upstream` (nginx's algorithms and failure rules)
with asyncio protocols: the L7 path is in :mod:`deploylab.balancer.l7` (client side and
forwarding) and :mod:`deploylab.balancer.l7_upstream` (the backend side), the L4 path in
:mod:`deploylab.balancer.l4`, backend specs and the TOML file in
:mod:`deploylab.balancer.config`, counters in :mod:`deploylab.balancer.stats`, the control
API in :mod:`deploylab.balancer.control`. This module holds :class:`Balancer`: lifecycle,
runtime control, housekeeping (timeouts, metrics) and health checks.

Runtime control, safe with requests in flight (the autoscaler drives these)::

    balancer.add_backend("http://127.0.0.1:9001", weight=1)   # -> Peer; picked from now on
    await balancer.drain_backend("http://127.0.0.1:9001")      # no new requests; waits for idle
    balancer.remove_backend("http://127.0.0.1:9001")           # gone; in-flight ones finish
    balancer.mark_down("http://127.0.0.1:9001")                # like nginx `down` (keeps slot)
    balancer.mark_down(url, False)                             # back up
    balancer.status()                                          # per-backend metrics (JSON-ready)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from deploylab.balancer.config import load_toml, parse_backend
from deploylab.balancer.core import HealthCheck, Peer, RetryPolicy, Upstream
from deploylab.balancer.l4 import TcpClient
from deploylab.balancer.l7 import ClientConn, L7Forwarding
from deploylab.balancer.l7_upstream import Exchange
from deploylab.balancer.stats import BackendStats, stats_of
from deploylab.events import EventBus
from deploylab.http.messages import Limits
from deploylab.http.server import default_max_connections
from deploylab.loopback import wait_for_signal

if TYPE_CHECKING:
    from deploylab.balancer.control import ControlServer

#: ``run_until_signal`` is the shared :func:`deploylab.loopback.wait_for_signal`.
run_until_signal = wait_for_signal

__all__ = ["BackendStats", "Balancer", "parse_backend", "run_until_signal"]


class Balancer(L7Forwarding):
    """A load balancer on loopback: ``async with Balancer([...]) as lb: ... lb.url``.

    Parameters
    ----------
    backends : URLs (``http://127.0.0.1:8081,weight=2``), dicts or :class:`Peer` objects.
    algorithm : one of :data:`deploylab.balancer.ALGORITHMS` (nginx's names).
    port, host : where to listen (port 0 = any free port; see ``.port`` after start).
    layer : 7 = HTTP, balanced per request over keep-alive pools, with X-Forwarded-For,
        X-Real-IP and retries (``retry``: a :class:`RetryPolicy`, nginx's
        ``proxy_next_upstream``); 4 = TCP, balanced per connection, bytes copied blindly.
    key : hash key for ``hash``/``hash_consistent``: ``$request_uri``, ``$uri``,
        ``$remote_addr`` or ``$http_NAME``.
    health_check : a :class:`HealthCheck` to probe backends actively (beyond nginx OSS).
    request_events : publish one ``request`` event per request on ``bus`` (turn off for
        benchmarks; ``backends`` metric events are published every ``metrics_interval`` s).
    limits : what a client may send and how long it may take (the shared
        :class:`deploylab.http.Limits`: 414/431/413, 408, keep-alive timeout, pipelining).
    max_connections : clients held before the longest-idle keep-alive ones are closed.
    control_port : also serve the control API (status, add, drain, remove) on this loopback
        port (0 = any free port), protected by ``control_token`` (generated when None); see
        :mod:`deploylab.balancer.control`. The data port serves only the backends' answers.
    """

    def __init__(
        self,
        backends: Iterable[str | dict | Peer] = (),
        algorithm: str = "round_robin",
        port: int = 0,
        host: str = "127.0.0.1",
        layer: int = 7,
        retry: RetryPolicy | None = None,
        key: str = "$request_uri",
        health_check: HealthCheck | None = None,
        keepalive: int = 64,
        connect_timeout: float = 2.0,
        read_timeout: float = 30.0,
        request_events: bool = True,
        metrics_interval: float = 1.0,
        bus: EventBus | None = None,
        limits: Limits | None = None,
        max_connections: int | None = None,
        control_port: int | None = None,
        control_token: str | None = None,
    ) -> None:
        if layer not in (4, 7):
            raise ValueError(f"layer {layer!r}: expected 4 (TCP) or 7 (HTTP)")
        self.upstream = Upstream([parse_backend(b) for b in backends], algorithm)
        l4_hash = layer == 4 and self.upstream.algorithm.startswith("hash")
        if l4_hash and "$" in key and key != "$remote_addr":
            raise ValueError(
                f"hash key {key!r}: a layer 4 balancer sees no HTTP request; "
                "expected '$remote_addr' or a fixed string"
            )
        self.port = port
        self.host = host
        self.layer = layer
        self.retry = retry or RetryPolicy()
        self.key = key
        self.health_check = health_check
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.request_events = request_events
        self.metrics_interval = metrics_interval
        self.bus = bus or EventBus("balancer")
        self.limits = limits or Limits()
        self.max_connections = max_connections or default_max_connections()
        self.control_port = control_port
        self.control_token = control_token
        self.control: ControlServer | None = None  # when control_port is set
        #: the loop's time, refreshed by the housekeeping task every 0.25 s: client and
        #: upstream read timestamps use it, so the hot path makes no clock call per read
        self.clock = 0.0
        self._server: asyncio.Server | None = None
        #: the running loop, set by start() (nothing runs before that)
        self._loop: asyncio.AbstractEventLoop = cast(asyncio.AbstractEventLoop, None)
        self._clients: set = set()
        self._inflight: set[Exchange] = set()
        self._tasks: list[asyncio.Task] = []
        self._drain_waiters: list[tuple[Peer, asyncio.Future]] = []
        for peer in self.upstream.peers + self.upstream.backups:
            stats_of(peer)

    @classmethod
    def from_toml(cls, path: str) -> Balancer:
        """Build from a TOML file (format in :mod:`deploylab.balancer.config`)."""
        return cls(**load_toml(path))

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def backends(self) -> list[str]:
        """Backend names (``HOST:PORT``) in order, primaries then backups."""
        return [p.name for p in self.upstream.peers + self.upstream.backups]

    async def start(self) -> Balancer:
        self._loop = asyncio.get_running_loop()
        self.clock = self._loop.time()
        factory = (lambda: ClientConn(self)) if self.layer == 7 else (lambda: TcpClient(self))
        self._server = await self._loop.create_server(
            factory, self.host, self.port, reuse_address=True, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks.append(self._loop.create_task(self._housekeeping()))
        if self.health_check is not None:
            self._tasks.append(self._loop.create_task(self._health_loop()))
        if self.control_port is not None:
            from deploylab.balancer.control import ControlServer

            control = ControlServer(self, port=self.control_port, token=self.control_token)
            await control.start()
            self.control = control
            self.control_token = control.token
        self.bus.publish(
            "started",
            url=self.url,
            layer=self.layer,
            algorithm=self.upstream.algorithm,
            backends=self.backends,
        )
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        self._server = None
        if self.control is not None:
            await self.control.stop()
            self.control = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for client in list(self._clients):
            client.transport.close()
        for peer in self.upstream.peers + self.upstream.backups:
            for conn in list(peer.data.get("idle", ())):
                conn.transport.close()
        await asyncio.sleep(0)
        self.bus.publish("stopped", url=self.url)

    async def __aenter__(self) -> Balancer:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # -- runtime control (stable API used by the autoscaler) -------------------------------
    def _peer(self, url: str) -> Peer:
        name = parse_backend(url).name
        peer = self.upstream.find(name)
        if peer is None:
            raise ValueError(
                f"backend {url!r} is not in the balancer (it has {', '.join(self.backends)})"
            )
        return peer

    def add_backend(self, url: str, weight: int = 1, backup: bool = False, **options) -> Peer:
        """Add a backend; new requests may go to it at once. Returns its :class:`Peer`."""
        peer = parse_backend(url)
        peer.weight = peer.effective_weight = weight
        peer.backup = backup or peer.backup
        for name, value in options.items():
            setattr(peer, name, value)
        self.upstream.add(peer)
        stats_of(peer)
        self._bus_publish("backend_added", backend=peer.name, weight=weight, backup=peer.backup)
        return peer

    async def drain_backend(self, url: str, timeout: float | None = None) -> None:
        """Stop sending new requests to a backend and wait until its in-flight requests
        (or L4 connections) are done; then close its idle pooled connections. The backend
        stays listed (state ``draining``) until :meth:`remove_backend`. Still busy after
        ``timeout`` seconds: ``TimeoutError`` naming the backend and what is still open."""
        peer = self._peer(url)
        peer.draining = True
        self._bus_publish("backend_draining", backend=peer.name, active=peer.conns)
        if peer.conns:
            future = self._loop.create_future()
            self._drain_waiters.append((peer, future))
            try:
                await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"draining {url}: {peer.conns} still in flight after {timeout:g} s "
                    "(requests, or connections at layer 4)"
                ) from None
        self._close_idle(peer)
        self._bus_publish("backend_drained", backend=peer.name)

    def remove_backend(self, url: str) -> Peer:
        """Remove a backend now: no new requests; requests already on it finish normally
        and its connections are closed as they come back. (Drain first to wait for them.)"""
        peer = self._peer(url)
        self.upstream.remove(peer.name)
        peer.data["removed"] = True
        self._close_idle(peer)
        self._bus_publish("backend_removed", backend=peer.name)
        return peer

    def mark_down(self, url: str, down: bool = True) -> Peer:
        """nginx's ``down``: the server keeps its place (and its ip_hash slot) but gets no
        requests; ``mark_down(url, False)`` brings it back."""
        peer = self._peer(url)
        peer.down = down
        self._bus_publish("backend_down" if down else "backend_up", backend=peer.name)
        return peer

    def status(self) -> dict:
        """Per-backend metrics: requests, active, failures, latency p50/p99 (ms), state."""
        now = self._loop.time() if self._loop is not None else time.monotonic()
        backends = []
        for peer in self.upstream.peers + self.upstream.backups:
            stats = stats_of(peer)
            p50, p99 = stats.percentile(0.5), stats.percentile(0.99)
            backends.append(
                {
                    "backend": peer.name,
                    "weight": peer.weight,
                    "backup": peer.backup,
                    "state": peer.state(now),
                    "requests": stats.requests,
                    "active": peer.conns,
                    "failures": stats.failures,
                    "fails": peer.fails,
                    "current_weight": peer.current_weight,
                    "p50_ms": None if p50 is None else round(p50 * 1000, 3),
                    "p99_ms": None if p99 is None else round(p99 * 1000, 3),
                }
            )
        return {
            "url": self.url,
            "layer": self.layer,
            "algorithm": self.upstream.algorithm,
            "backends": backends,
        }

    # -- internals -------------------------------------------------------------------------
    def _make_room(self) -> None:
        """Too many clients for the descriptors: close the longest-idle keep-alive ones (what
        nginx does when it runs out of ``worker_connections``), so new clients are served."""
        idle = sorted(
            (
                c
                for c in self._clients
                if isinstance(c, ClientConn) and c.answered and not c.busy and not c.in_message
            ),
            key=lambda c: c.last,
        )
        excess = len(self._clients) - self.max_connections
        for client in idle[: max(excess, len(self._clients) // 16)]:
            client.transport.close()

    def _close_idle(self, peer: Peer) -> None:
        for conn in list(peer.data.get("idle", ())):
            conn.transport.close()
        peer.data["idle"] = []

    def _check_drained(self) -> None:
        if not self._drain_waiters:
            return
        waiting = []
        for peer, future in self._drain_waiters:
            if peer.conns == 0 and not future.done():
                future.set_result(None)
            elif not future.done():
                waiting.append((peer, future))
        self._drain_waiters = waiting

    async def _housekeeping(self) -> None:
        last_metrics = 0.0
        while True:
            await asyncio.sleep(0.25)
            now = self.clock = self._loop.time()
            for client in [c for c in self._clients if isinstance(c, ClientConn)]:
                client.check_time(now)
            for exchange in [e for e in self._inflight if e.deadline and e.deadline < now]:
                conn = exchange.conn
                if conn is not None:
                    conn.exchange = None
                    conn.transport.abort()
                self._attempt_failed(exchange, conn, "timeout")
            if now - last_metrics >= self.metrics_interval:
                last_metrics = now
                self.bus.publish("backends", backends=self.status()["backends"])

    async def _health_loop(self) -> None:
        check = self.health_check
        assert check is not None  # this task runs only with a health check
        while True:
            peers = self.upstream.peers + self.upstream.backups
            results = await asyncio.gather(*(self._probe(p) for p in peers))
            now = self._loop.time()
            for peer, ok in zip(peers, results, strict=True):
                was = peer.healthy
                if check.record(peer, ok, now) != was:
                    self._bus_publish(
                        "backend_healthy" if peer.healthy else "backend_unhealthy",
                        backend=peer.name,
                    )
            await asyncio.sleep(check.interval)

    async def _probe(self, peer: Peer) -> bool:
        check = self.health_check
        assert check is not None
        host, port = peer.name.rsplit(":", 1)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, int(port)), check.timeout
            )
        except (TimeoutError, OSError):
            return False
        try:
            writer.write(
                f"GET {check.path} HTTP/1.1\r\nHost: {peer.name}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            line = await asyncio.wait_for(reader.readline(), check.timeout)
            return line[9:10] in (b"2", b"3")
        except (TimeoutError, OSError):
            return False
        finally:
            writer.close()
