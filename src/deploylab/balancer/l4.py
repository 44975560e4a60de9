"""The L4 (TCP) balancer: one backend per client connection, bytes copied both ways with
backpressure (each side pauses reading while the other cannot take more)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from deploylab.balancer.core import NoLiveUpstreams, Peer, Selection
from deploylab.balancer.stats import stats_of

if TYPE_CHECKING:
    from deploylab.balancer.runtime import Balancer

__all__ = ["TcpClient", "l4_key"]

#: What a protocol's ``transport`` is before ``connection_made`` (never used then).
_UNCONNECTED = cast(asyncio.Transport, None)


def l4_key(algorithm: str, key: str, address: str | None) -> str | None:
    """The hash key of a TCP client: its address for ``$remote_addr``, else the fixed key.

    >>> l4_key("hash", "$remote_addr", "127.0.0.2"), l4_key("round_robin", "x", "127.0.0.2")
    ('127.0.0.2', None)
    """
    if not algorithm.startswith("hash"):
        return None
    return address if key == "$remote_addr" else key


def _flow(transport, pause: bool) -> None:
    """Pause or resume reading from the other side of a splice, unless it is closing."""
    if transport is None or transport.is_closing():
        return
    if pause:
        transport.pause_reading()
    else:
        transport.resume_reading()


class _TcpUpstream(asyncio.Protocol):
    def __init__(self, client: TcpClient) -> None:
        self.client = client
        self.transport: asyncio.Transport = _UNCONNECTED

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.client.transport.is_closing():
            self.client.transport.write(data)

    def pause_writing(self) -> None:
        _flow(self.client.transport, pause=True)

    def resume_writing(self) -> None:
        _flow(self.client.transport, pause=False)

    def connection_lost(self, exc) -> None:
        self.client.transport.close()


class TcpClient(asyncio.Protocol):
    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        self.transport: asyncio.Transport = _UNCONNECTED
        self.upstream: _TcpUpstream | None = None
        self.buffer: list[bytes] = []
        self.peer: Peer | None = None
        self.selection: Selection = cast(Selection, None)  # set in connection_made
        self.started = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.balancer._clients.add(self)
        self.started = self.balancer._loop.time()
        peername = transport.get_extra_info("peername")
        address = peername[0] if peername else None
        self.selection = self.balancer.upstream.start(
            client=address, key=l4_key(self.balancer.upstream.algorithm, self.balancer.key, address)
        )
        self.balancer._loop.create_task(self._connect())

    async def _connect(self) -> None:
        balancer = self.balancer
        while True:
            now = balancer._loop.time()
            try:
                peer = self.selection.next_peer(now)
            except NoLiveUpstreams:
                balancer._bus_publish("no_live_upstreams", layer=4)
                self.transport.close()
                return
            host, port = peer.name.rsplit(":", 1)
            try:
                _, upstream = await asyncio.wait_for(
                    balancer._loop.create_connection(lambda: _TcpUpstream(self), host, int(port)),
                    balancer.connect_timeout,
                )
            except (TimeoutError, OSError):
                self.selection.release(peer, True, balancer._loop.time())
                stats_of(peer).failures += 1
                if self.selection.tries_left <= 0 or self.transport.is_closing():
                    self.transport.close()
                    return
                continue
            break
        self.peer = peer
        stats_of(peer).requests += 1
        self.upstream = upstream
        if self.transport.is_closing():  # the client left while we were connecting
            upstream.transport.close()
            self.buffer = []
            return
        balancer._bus_publish("connection", backend=peer.name, layer=4)
        for chunk in self.buffer:
            upstream.transport.write(chunk)
        self.buffer = []

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self.buffer.append(data)
        elif not self.upstream.transport.is_closing():
            self.upstream.transport.write(data)

    def pause_writing(self) -> None:
        if self.upstream is not None:
            _flow(self.upstream.transport, pause=True)

    def resume_writing(self) -> None:
        if self.upstream is not None:
            _flow(self.upstream.transport, pause=False)

    def connection_lost(self, exc) -> None:
        self.balancer._clients.discard(self)
        if self.upstream is not None:
            self.upstream.transport.close()
        if self.peer is not None:
            now = self.balancer._loop.time()
            self.selection.release(self.peer, False, now)
            stats_of(self.peer).latencies.append(now - self.started)
            self.peer = None
            self.balancer._check_drained()
