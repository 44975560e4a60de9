"""An asyncio HTTP/1.1 server base: one handler coroutine per request, hardened framing.

:class:`HTTPServer` parses with :class:`~deploylab.http.parser.RequestParser`, answers
pipelined requests in order, keeps connections alive, cuts off slow header senders (408),
answers malformed input with the right status (400/413/414/431) then closes only that
connection, logs one line per request and publishes events on an
:class:`~deploylab.events.EventBus`. It is built on ``asyncio.Protocol`` (no stream objects
per request) so that it stays fast enough to benchmark against nginx.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import resource
import time
from collections.abc import Awaitable, Callable

from deploylab.events import EventBus
from deploylab.http.messages import HTTPError, Limits, Request, Response
from deploylab.http.parser import RequestParser
from deploylab.http.writer import serialize_response

Handler = Callable[[Request], Awaitable[Response]]
log = logging.getLogger("deploylab.http")

#: Marks the place in a connection's answer queue where ``100 Continue`` is due.
_CONTINUE = object()


def default_max_connections() -> int:
    """Client connections a server holds before it closes idle keep-alive ones: half the
    descriptor limit, since a proxy needs an upstream descriptor for each client.

    >>> default_max_connections() >= 16
    True
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(16, soft // 2 - 16)


def _address(pair: tuple[str, int] | None) -> str:
    if not pair:
        return "?"
    host, port = pair[0], pair[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HTTPServer:
    """Serve ``handler(request) -> Response`` on ``host:port`` (port 0 picks a free port).

    Use ``async with HTTPServer(handler) as server:`` or ``await start()`` / ``await stop()``.
    ``server.events`` publishes ``request``, ``response`` and ``error`` events (handlers add
    their own, such as ``cache_hit`` or ``forward``, with the same ``id``).

    Bounded per client: requests read ahead of their answers (``limits.max_pipelined``), the
    answer being written (the next one waits until the client has read it; a client that
    reads nothing for ``limits.send_timeout`` is dropped) and time (408 on slow headers or a
    stalled body). When ``max_connections`` clients are connected, the longest-idle
    keep-alive connections are closed to make room (nginx does the same when it runs out of
    ``worker_connections``), so a new client is served instead of dropped.

    >>> async def hello(request):
    ...     return Response.text(f"hello {request.client[0]}")
    >>> async def demo():
    ...     async with HTTPServer(hello) as server:
    ...         reader, writer = await asyncio.open_connection(*server.address)
    ...         writer.write(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
    ...         reply = await reader.read()
    ...         writer.close()
    ...         return reply.split(b"\\r\\n")[0], reply.split(b"\\r\\n\\r\\n")[1]
    >>> asyncio.run(demo())
    (b'HTTP/1.1 200 OK', b'hello 127.0.0.1')
    """

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        name: str = "server",
        limits: Limits | None = None,
        events: EventBus | None = None,
        max_connections: int | None = None,
        stream_bodies: bool = False,
    ) -> None:
        self.handler = handler
        #: hand a request to the handler once its head is in, its body following in
        #: ``request.body_stream`` (a proxy forwards it as it arrives, in bounded memory)
        self.stream_bodies = stream_bodies
        self.host = host
        self.requested_port = port
        self.name = name
        self.limits = limits or Limits()
        self.max_connections = max_connections or default_max_connections()
        self.events = events or EventBus(name)
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._ids = itertools.count(1)

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` actually listened on (valid once started)."""
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._server.sockets[0].getsockname()[:2]

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{_address(self.address)}"

    async def start(self) -> HTTPServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.requested_port, reuse_address=True
        )
        self.events.publish("listening", address=_address(self.address), name=self.name)
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._connections):
            connection.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)
        self._server = None
        self.events.publish("stopped", name=self.name)

    async def __aenter__(self) -> HTTPServer:
        return await self.start()

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    def next_id(self) -> int:
        return next(self._ids)

    def _make_room(self) -> None:
        """Close the longest-idle keep-alive connections when too many clients are held."""
        excess = len(self._connections) - self.max_connections
        if excess <= 0:
            return
        idle = sorted(
            (c for c in self._connections if c.timer_kind == "idle"), key=lambda c: c.idle_since
        )
        for connection in idle[: max(excess, len(self._connections) // 16)]:
            connection.closing = True
            connection.transport.close()


class _Connection(asyncio.Protocol):
    """One client connection: parse, queue, answer in order, time out."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.limits = server.limits
        self.parser = RequestParser(self.limits, stream_bodies=server.stream_bodies)
        self.queue: collections.deque = collections.deque()
        self.body_full = False  # reading paused until the handler takes more of a body
        self.worker: asyncio.Task | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0  # when it fires
        self.timer_kind = ""  # what times out (header, body, idle), or "" when nothing does
        self.deadline = 0.0  # when it times out: the timer re-arms itself until then
        self.closing = False
        self.broken = False  # the framing failed: answer what came before, then the error
        self.eof = False
        self.tunnel_writer: asyncio.StreamWriter | None = None
        self.pump: asyncio.Task | None = None
        self.idle_since = 0.0
        self.writable: asyncio.Future | None = None  # set while the client is not reading

    # connection events ---------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")[:2]
        self.local = transport.get_extra_info("sockname")[:2]
        self.loop = asyncio.get_running_loop()
        self.server._connections.add(self)
        self._arm(self.limits.header_timeout, "header")
        self.server._make_room()

    def connection_lost(self, exc) -> None:
        self.closing = True
        self.server._connections.discard(self)
        self._stop_timer()
        if self.worker and not self.worker.done():
            self.worker.cancel()
        if self.tunnel_writer is not None:
            self.tunnel_writer.close()
        if self.pump and not self.pump.done():
            self.pump.cancel()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        stream = self.parser.streaming
        if stream is not None:  # the client left mid-body
            stream.fail(HTTPError(400, "the client closed the connection mid-body"))

    # a streamed request body: read only as fast as the handler forwards it
    def _body_full(self) -> None:
        self.body_full = True
        self.transport.pause_reading()

    def _body_drained(self) -> None:
        self.body_full = False
        if not self.closing and not self.broken and not self.parser.closed:
            self.transport.resume_reading()
            if self.parser.in_body:
                self._arm(self.limits.body_timeout, "body")

    # write backpressure: the next answer waits until the client has read this one
    def pause_writing(self) -> None:
        if self.writable is None or self.writable.done():
            self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    async def drain(self) -> None:
        """Wait until the client has read what was written (``send_timeout`` at most)."""
        if self.writable is None or self.writable.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.writable), self.limits.send_timeout)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        self.closing = True
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.tunnel_writer is not None:
            self.tunnel_writer.write(data)
            return
        if self.closing or self.broken:
            return
        streaming = self.parser.streaming
        try:
            requests = self.parser.feed(data)
        except HTTPError as error:
            self.transport.pause_reading()
            self.broken = True
            self._disarm()
            if streaming is not None:  # the handler forwarding it answers the error
                streaming.fail(error)
            self._enqueue(error)
            return
        events = self.server.events
        for request in requests:
            request.client = self.peer
            request.server = self.local
            request.id = self.server.next_id()
            if events.active:  # (no event built when nobody would see it)
                events.publish(
                    "request",
                    id=request.id,
                    client=_address(self.peer),
                    server=_address(self.local),
                    method=request.method,
                    target=request.target,
                    host=request.header("Host"),
                    headers=list(request.headers),
                )
            stream = request.body_stream
            if stream is not None:
                if self.parser.expect_continue:  # 100 once the answers before it are out
                    self.parser.expect_continue = False
                    self._enqueue(_CONTINUE)
                stream.on_full, stream.on_drain = self._body_full, self._body_drained
                if stream.full:
                    self._body_full()
            self._enqueue(request)
        if self.parser.error is not None:
            self.transport.pause_reading()
            self.broken = True
            self._disarm()
            self._enqueue(self.parser.error)
            return
        if self.parser.expect_continue:
            self.parser.expect_continue = False
            self._enqueue(_CONTINUE)
        if self.parser.upgraded or self.parser.closed:
            self.transport.pause_reading()  # the rest is tunnel data, handled after CONNECT
        elif len(self.queue) > self.limits.max_pipelined:
            self.transport.pause_reading()
        if self.parser.in_headers:
            if self.timer_kind != "header":
                self._arm(self.limits.header_timeout, "header")
        elif self.parser.in_body:
            self._arm(self.limits.body_timeout, "body")  # re-armed on every read
        elif self.timer_kind:
            self._disarm()

    def eof_received(self) -> bool:
        # A half-closed client still gets the answers to what it sent (curl, pipelining).
        self.eof = True
        if self.tunnel_writer is not None:
            with contextlib.suppress(Exception):
                self.tunnel_writer.write_eof()
            return True
        return bool(self.queue or (self.worker and not self.worker.done()))

    # timers ---------------------------------------------------------------------------------
    def _arm(self, delay: float, kind: str) -> None:
        """Time the connection out in ``delay`` seconds in state ``kind`` (header, body, idle).

        One timer per connection, moved lazily: arming sets the deadline, and the timer, when
        it fires before that deadline, re-arms itself there (a timer created and cancelled
        for every request and every read cost more than parsing the request)."""
        deadline = self.deadline = self.loop.time() + delay
        self.timer_kind = kind
        timer = self.timer
        if timer is None or self.timer_at > deadline:
            if timer is not None:
                timer.cancel()
            self.timer = self.loop.call_at(deadline, self._timeout)
            self.timer_at = deadline

    def _disarm(self) -> None:
        self.timer_kind = ""  # a timer still running finds nothing to do when it fires

    def _stop_timer(self) -> None:
        self.timer_kind = ""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timeout(self) -> None:
        self.timer = None
        if not self.timer_kind:
            return
        if self.loop.time() < self.deadline:  # moved since it was set: wait until then
            self.timer = self.loop.call_at(self.deadline, self._timeout)
            self.timer_at = self.deadline
            return
        kind, self.timer_kind = self.timer_kind, ""
        stream = self.parser.streaming
        if kind == "body" and stream is not None:
            if not self.body_full:  # the client stalls (not the handler): 408 via the handler
                self.broken = True
                self.transport.pause_reading()
                stream.fail(HTTPError(408, f"no body data for {self.limits.body_timeout} s"))
            return
        if self.queue or (self.worker and not self.worker.done()):
            return
        if kind == "header" and self.parser.in_headers:
            self.broken = True
            self._enqueue(HTTPError(408, f"headers not complete in {self.limits.header_timeout} s"))
            return
        if kind == "body" and self.parser.in_body:
            self.broken = True
            self._enqueue(HTTPError(408, f"no body data for {self.limits.body_timeout} s"))
            return
        self.closing = True
        self.transport.close()

    # answering ------------------------------------------------------------------------------
    def _enqueue(self, item) -> None:
        self.queue.append(item)
        if self.worker is None or self.worker.done():
            self.worker = self.loop.create_task(self._work())

    async def _work(self) -> None:
        while self.queue:
            item = self.queue.popleft()
            if isinstance(item, HTTPError):
                self._write_error(item)
                return
            if item is _CONTINUE:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if self.parser.in_body:
                    self._arm(self.limits.body_timeout, "body")
                continue
            await self._answer(item)
            if self.transport.is_closing() or self.tunnel_writer is not None:
                return
            await self.drain()
        if self.eof:
            self.transport.close()
        elif not self.closing and not self.broken:
            if not self.transport.is_reading() and not self.parser.closed and not self.body_full:
                self.transport.resume_reading()
            if self.parser.in_headers:
                self._arm(self.limits.header_timeout, "header")
            elif self.parser.in_body:
                self._arm(self.limits.body_timeout, "body")
            else:
                self.idle_since = self.loop.time()
                self._arm(self.limits.keep_alive_timeout, "idle")

    def _write_error(self, error: HTTPError) -> None:
        response = Response.error(error.status, error.detail)
        self.transport.write(serialize_response(response, keep_alive=False))
        self.server.events.publish(
            "error", client=_address(self.peer), status=error.status, detail=error.detail
        )
        log.info(
            '%s %s "-" %d %s', self.server.name, _address(self.peer), error.status, error.detail
        )
        self.transport.close()

    async def _answer(self, request: Request) -> None:
        started = time.perf_counter()
        try:
            response = await self.server.handler(request)
        except HTTPError as error:
            response = Response.error(error.status, error.detail)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a handler bug must not take the server down
            log.exception(
                "%s: handler failed on %s %s", self.server.name, request.method, request.target
            )
            response = Response.error(500, type(error).__name__)
        keep_alive = request.keep_alive and not self.closing and self.server._server is not None
        stream = request.body_stream
        if stream is not None and not stream.complete:
            # answered before the client sent all of its body (an error, or a backend that
            # did not wait for it): the rest would be read as the next request
            keep_alive = False
        if response.tunnel is not None:
            keep_alive = True
        elif request.method == "CONNECT":
            keep_alive = False  # refused: the bytes after it belong to no request
        if self.transport.is_closing():
            if response.stream is not None:
                await response.stream.aclose()
            return
        head = request.method == "HEAD"
        self.transport.write(serialize_response(response, head=head, keep_alive=keep_alive))
        if response.stream is not None:
            keep_alive = await self._write_stream(response, head) and keep_alive
        access_log = log.isEnabledFor(logging.INFO)
        events_active = self.server.events.active
        # (no clock read or figure made when neither the events nor the log would show it)
        duration_ms = (time.perf_counter() - started) * 1000 if access_log or events_active else 0.0
        if events_active:
            self.server.events.publish(
                "response",
                id=request.id,
                client=_address(self.peer),
                status=response.status,
                bytes=len(response.body),
                duration_ms=round(duration_ms, 3),
                headers=list(response.headers),
            )
        if access_log:  # the access log (off: no line formatted)
            log.info(
                '%s %s "%s %s HTTP/%s" %d %d %.1fms',
                self.server.name,
                _address(self.peer),
                request.method,
                request.target,
                request.version,
                response.status,
                len(response.body),
                duration_ms,
            )
        if response.tunnel is not None:
            self._start_tunnel(*response.tunnel)
        elif not keep_alive:
            self.closing = True
            self.transport.close()

    async def _write_stream(self, response: Response, head: bool) -> bool:
        """Copy a streamed body to the client, one piece at a time and only as fast as the
        client reads (chunked when its length is unknown). False when it was cut short: the
        client then sees the connection close, as with nginx, instead of a wrong length."""
        stream, chunked = response.stream, response.length is None
        complete = False
        try:
            if head:
                complete = True
                return True
            async for piece in stream:
                if self.transport.is_closing():
                    return False
                if chunked:
                    self.transport.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    self.transport.write(piece)
                await self.drain()
            if chunked and not self.transport.is_closing():
                self.transport.write(b"0\r\n\r\n")
            complete = True
            return True
        except Exception as error:  # the upstream failed mid-body: nothing can be resent
            log.info("%s: streamed body cut short: %s", self.server.name, error)
            return False
        finally:
            await stream.aclose()
            if not complete:
                self.closing = True
                self.transport.close()

    # CONNECT tunnels ----------------------------------------------------------------------
    def _start_tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._disarm()
        self.tunnel_writer = writer
        if self.parser.tunnel_data:
            writer.write(self.parser.tunnel_data)
        self.pump = self.loop.create_task(self._pump(reader))
        self.transport.resume_reading()

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        try:
            while chunk := await reader.read(65536):
                self.transport.write(chunk)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.transport.close()
            if self.tunnel_writer is not None:
                self.tunnel_writer.close()
