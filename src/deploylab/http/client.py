"""An upstream HTTP/1.1 client with a keep-alive connection pool, for proxies and balancers.

:class:`ConnectionPool` reuses idle connections per ``(host, port)`` (what nginx's upstream
``keepalive`` does), can connect from a chosen local address (``source_address``, like
nginx ``proxy_bind``), and turns failures into two errors a proxy maps to statuses:
:class:`UpstreamConnectError` / :class:`UpstreamError` → 502, :class:`UpstreamTimeout` → 504.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import select
import time

from deploylab.http.body import RequestBody
from deploylab.http.messages import Headers, HTTPError, Limits, Response
from deploylab.http.parser import ResponseParser
from deploylab.http.writer import serialize_request

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


def _buffered(reader: asyncio.StreamReader) -> int:
    """Bytes the reader holds that nobody read yet (asyncio has no public call for it)."""
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    return len(buffer)


class UpstreamError(Exception):
    """The upstream answered garbage or closed mid-response (a proxy answers ``status``)."""

    status = 502


class UpstreamConnectError(UpstreamError):
    """The upstream could not be reached (refused, unroutable, bind failed): 502."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not connect or answer in time: 504."""

    status = 504


class _Conn:
    __slots__ = (
        "deadline",
        "idle_since",
        "loop",
        "parser",
        "poller",
        "reader",
        "reading",
        "spoiled",
        "watchdog",
        "watchdog_at",
        "writer",
    )

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.loop = asyncio.get_running_loop()
        self.idle_since = 0.0
        self.spoiled = False  # it carried part of a request only: never pooled
        self.poller: select.poll | None = None  # made once, polled at every reuse
        sock = writer.get_extra_info("socket")
        if sock is not None:
            self.poller = select.poll()
            self.poller.register(sock.fileno(), select.POLLIN)
        self.reading = False  # a read() is waiting for the upstream
        #: the last exchange's parser, reused when it was not a HEAD answer's (llhttp stops
        #: inside that message); a link is only pooled after a clean end of its response
        self.parser: ResponseParser | None = None
        self.deadline = 0.0  # loop time by which that read must get a byte
        self.watchdog: asyncio.TimerHandle | None = None
        self.watchdog_at = 0.0

    async def read(self, timeout: float) -> bytes:
        """One read of at most 64 KiB, or :class:`TimeoutError` when no byte came for
        ``timeout`` seconds (nginx's per-read ``proxy_read_timeout``).

        One timer per connection, moved lazily: a read only sets its deadline, and the
        timer, when it fires before that deadline, re-arms itself there. (``asyncio.timeout``
        creates and cancels a timer for every read: the pool's hot path.)"""
        loop = self.loop
        deadline = self.deadline = loop.time() + timeout
        if self.watchdog is None or self.watchdog_at > deadline:
            if self.watchdog is not None:
                self.watchdog.cancel()
            self.watchdog = loop.call_at(deadline, self._check_deadline)
            self.watchdog_at = deadline
        self.reading = True
        try:
            return await self.reader.read(65536)
        finally:
            self.reading = False

    def _check_deadline(self) -> None:
        self.watchdog = None
        reader = self.reader
        if not self.reading or _buffered(reader) or reader.at_eof():
            return  # no read waiting, or one about to return: the next read re-arms
        if self.loop.time() < self.deadline:  # a later read moved the deadline
            self.watchdog = self.loop.call_at(self.deadline, self._check_deadline)
            self.watchdog_at = self.deadline
            return
        # the waiting read raises it; the connection is closed, never pooled, after that
        reader.set_exception(TimeoutError("no data from the upstream in time"))

    def usable(self) -> bool:
        """Open, and nothing waiting to be read: an idle keep-alive connection that has
        bytes (a late or extra response, or the upstream's close) must never carry the next
        request, or that request would get those bytes as its answer."""
        if self.spoiled or self.writer.is_closing() or self.reader.at_eof():
            return False
        if _buffered(self.reader) or self.poller is None:
            return False
        return not self.poller.poll(0)

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        self.writer.close()


class ConnectionPool:
    """Send requests upstream over pooled keep-alive connections.

    ``source_address``: local IP to connect from (the address the upstream will see).
    ``max_idle``: idle connections kept per upstream. Timeouts are in seconds;
    ``read_timeout`` bounds each read, not the whole response (nginx ``proxy_read_timeout``),
    so a large response that keeps streaming is never cut.

    Exchanges are strict: informational (1xx) answers are read past to the final status,
    ``Expect`` is never sent (the body follows the head without waiting, whole or as it
    arrives), and a connection goes back to the pool only when the response ended cleanly
    with nothing after it.

    >>> from deploylab.http.server import HTTPServer
    >>> async def demo():
    ...     async def echo(request):
    ...         return Response.text(request.client[0])
    ...     async with HTTPServer(echo) as server, ConnectionPool() as pool:
    ...         first = await pool.request(*server.address, "GET", "/", [("Host", "x")])
    ...         second = await pool.request(*server.address, "GET", "/", [("Host", "x")])
    ...         return first.body, second.status, pool.connections_opened
    >>> asyncio.run(demo())
    (b'127.0.0.1', 200, 1)
    """

    def __init__(
        self,
        *,
        source_address: str | None = None,
        max_idle: int = 16,
        idle_timeout: float = 30.0,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        limits: Limits | None = None,
    ) -> None:
        self.source_address = source_address
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.limits = limits or Limits(max_header_bytes=64 * 1024, max_headers=200)
        self._idle: dict[tuple[str, int], collections.deque[_Conn]] = collections.defaultdict(
            collections.deque
        )
        self.connections_opened = 0

    async def __aenter__(self) -> ConnectionPool:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every idle connection."""
        for conns in self._idle.values():
            while conns:
                conns.popleft().close()

    async def _connect(self, host: str, port: int) -> _Conn:
        local = (self.source_address, 0) if self.source_address else None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, local_addr=local, limit=2**20),
                self.connect_timeout,
            )
        except TimeoutError:
            raise UpstreamTimeout(
                f"connecting to {host}:{port} took over {self.connect_timeout} s"
            ) from None
        except OSError as error:
            raise UpstreamConnectError(
                f"cannot connect to {host}:{port}: {error.strerror or error}"
            ) from None
        self.connections_opened += 1
        return _Conn(reader, writer)

    def _take_idle(self, key: tuple[str, int]) -> _Conn | None:
        conns = self._idle.get(key)
        now = time.monotonic()
        while conns:
            conn = conns.pop()
            if conn.usable() and now - conn.idle_since < self.idle_timeout:
                return conn
            conn.close()
        return None

    def _put_idle(self, key: tuple[str, int], conn: _Conn) -> None:
        if conn.spoiled:
            conn.close()
            return
        conns = self._idle[key]
        conn.idle_since = time.monotonic()
        conns.append(conn)
        while len(conns) > self.max_idle:
            conns.popleft().close()

    async def connect_raw(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A fresh, unpooled connection (for CONNECT tunnels); same errors as :meth:`request`."""
        conn = await self._connect(host, port)
        return conn.reader, conn.writer

    async def request(
        self,
        host: str,
        port: int,
        method: str,
        target: str,
        headers: Headers,
        body: bytes | RequestBody = b"",
        *,
        timeout: float | None = None,
        stream_over: int | None = None,
    ) -> Response:
        """Send one request to ``host:port`` and return the whole response.

        A reused connection the upstream had already closed is retried once on a new one
        when the method is idempotent (nothing was answered, so nothing is lost).

        ``stream_over``: a body larger than this many bytes is not held: the response comes
        back with ``stream`` (an async iterator of pieces, read from the upstream as they are
        consumed, each read bounded by ``timeout``) and ``length``; the connection returns
        to the pool when the stream ends cleanly. Without it, a body over
        ``limits.max_body`` is an :class:`UpstreamError`.

        ``body`` may be a :class:`~deploylab.http.body.RequestBody` still arriving: it is
        sent as it comes (chunked when its length is unknown), each write waiting until the
        upstream has taken the previous ones; such a request is never resent. When the
        client fails to send it all, its :class:`HTTPError` (408, 413…) propagates.
        """
        key = (host, port)
        stream: RequestBody | None = None
        if isinstance(body, RequestBody):
            stream = body
            data = serialize_request(method, target, headers, body_framing=body.length)
        else:
            data = serialize_request(method, target, headers, body)
        for attempt in (1, 2):
            conn = self._take_idle(key) if attempt == 1 else None
            reused = conn is not None
            if conn is None:
                conn = await self._connect(host, port)
            try:
                response, keep = await self._exchange(
                    conn, data, method, timeout, stream_over, stream
                )
            except _StreamingResponse as streaming:
                response = streaming.head
                per_read = timeout if timeout is not None else self.read_timeout
                response.stream = self._stream(key, conn, streaming.parser, per_read)
                return response
            except _StaleConnection:
                conn.close()
                if reused and method in _IDEMPOTENT and stream is None:
                    continue
                raise UpstreamError(
                    f"{host}:{port} closed the connection without answering"
                ) from None
            except BaseException:
                conn.close()
                raise
            if keep:
                self._put_idle(key, conn)
            else:
                conn.close()
            return response
        raise AssertionError("unreachable")

    async def _exchange(
        self,
        conn: _Conn,
        data: bytes,
        method: str,
        timeout: float | None,
        stream_over: int | None = None,
        body: RequestBody | None = None,
    ) -> tuple[Response, bool]:
        """Send the request (``data``, then ``body`` as it arrives) and read the response;
        returns it and whether the connection may be pooled."""
        head = method == "HEAD"
        over = None if head else stream_over
        parser = conn.parser
        if (
            parser is not None
            and not parser.head
            and not head
            and parser.streaming == (over is not None)
        ):
            parser.restart()  # the last response on this link ended cleanly: llhttp is ready
        else:
            parser = conn.parser = ResponseParser(
                self.limits, head=head, streaming=over is not None
            )
        conn.writer.write(data)
        per_read = timeout if timeout is not None else self.read_timeout
        if body is None:
            return await self._read_response(conn, parser, per_read, over, drain=True)
        return await self._answer_while_sending(conn, parser, body, per_read, over)

    async def _answer_while_sending(
        self,
        conn: _Conn,
        parser: ResponseParser,
        body: RequestBody,
        per_read: float,
        stream_over: int | None,
    ) -> tuple[Response, bool]:
        """Send a streamed body while reading the response, as nginx does: a backend may
        answer before it has the whole body (its own 413, a redirect) and then read no
        more; that answer is relayed, and the connection is never pooled (the backend saw
        part of a request). The client's own errors (408, 413) propagate as they are."""
        loop = asyncio.get_running_loop()
        sending = loop.create_task(self._send_body(conn, body, per_read))
        reading = loop.create_task(
            self._read_response(conn, parser, per_read, stream_over, drain=False)
        )
        try:
            await asyncio.wait((sending, reading), return_when=asyncio.FIRST_COMPLETED)
            if not sending.done():  # answered early: the rest of the body goes nowhere
                conn.spoiled = True
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sending
                response, _ = await reading
                return response, False
            failure = sending.exception()
            if failure is None:
                return await reading
            if not isinstance(failure, UpstreamError):  # the client's error (408, 413…)
                raise failure
            conn.spoiled = True
            try:  # the backend stopped taking the body: it may have answered
                response, _ = await reading
            except (UpstreamError, _StaleConnection):
                raise failure from None
            return response, False
        finally:
            for task in (sending, reading):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _read_response(
        self,
        conn: _Conn,
        parser: ResponseParser,
        per_read: float,
        stream_over: int | None,
        *,
        drain: bool,
    ) -> tuple[Response, bool]:
        """Read the response to a request already sent (``drain``: first wait until the
        upstream has taken it); returns it and whether the connection may be pooled."""
        got_bytes = False
        try:
            if (
                drain and conn.writer.transport.get_write_buffer_size()
            ):  # (a timer only when it waits)
                await asyncio.wait_for(conn.writer.drain(), per_read)
            while True:
                chunk = await conn.read(per_read)
                if not chunk:
                    final = parser.finish()
                    if final is not None:
                        return final, False
                    if not got_bytes:
                        raise _StaleConnection
                    raise UpstreamError("upstream closed the connection mid-response")
                got_bytes = True
                responses = parser.feed(chunk)
                if responses:
                    clean = len(responses) == 1 and not parser.extra and not parser.in_headers
                    return responses[0], parser.keep_alive and clean
                over = stream_over is not None and parser.buffered > stream_over
                if over and parser.in_body:
                    raise _StreamingResponse(parser)
        except TimeoutError:
            raise UpstreamTimeout(f"no data from upstream for {per_read} s") from None
        except HTTPError as error:
            raise UpstreamError(f"invalid response from upstream: {error.detail}") from None
        except (ConnectionResetError, BrokenPipeError) as error:
            if not got_bytes:
                raise _StaleConnection from None
            raise UpstreamError(f"upstream connection failed: {error}") from None

    async def _send_body(self, conn: _Conn, body: RequestBody, per_read: float) -> None:
        """Write a body still arriving from the client, as it arrives, only as fast as the
        upstream takes it. The client's errors (408, 413) propagate as they are."""
        chunked = body.length is None
        writer = conn.writer
        try:
            async for piece in body:
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                if writer.transport.get_write_buffer_size():
                    await asyncio.wait_for(writer.drain(), per_read)
            if chunked:
                writer.write(b"0\r\n\r\n")
        except TimeoutError:
            raise UpstreamTimeout(f"the upstream took no body data for {per_read} s") from None
        except (ConnectionResetError, BrokenPipeError) as error:
            raise UpstreamError(
                f"upstream connection failed while sending the body: {error}"
            ) from None

    async def _stream(self, key, conn: _Conn, parser: ResponseParser, per_read: float):
        """The body of a streamed response, piece by piece (see :meth:`request`)."""
        clean = False
        try:
            if piece := parser.take_body():
                yield piece
            while True:
                try:
                    chunk = await conn.read(per_read)
                except TimeoutError:
                    raise UpstreamTimeout(f"no data from upstream for {per_read} s") from None
                except (ConnectionResetError, BrokenPipeError) as error:
                    raise UpstreamError(f"upstream connection failed: {error}") from None
                if not chunk:
                    final = parser.finish()
                    if final is None:
                        raise UpstreamError("upstream closed the connection mid-response")
                    if final.body:
                        yield final.body
                    return
                try:
                    responses = parser.feed(chunk)
                except HTTPError as error:
                    raise UpstreamError(f"invalid response from upstream: {error.detail}") from None
                if responses:
                    if responses[0].body:
                        yield responses[0].body
                    clean = parser.keep_alive and not parser.extra and not parser.in_headers
                    return
                if piece := parser.take_body():
                    yield piece
        finally:
            if clean:
                self._put_idle(key, conn)
            else:
                conn.close()


class _StreamingResponse(Exception):
    """The response's head is in and its body is too large to hold: stream it."""

    def __init__(self, parser: ResponseParser) -> None:
        super().__init__("streaming")
        self.parser = parser
        self.head = parser.head_so_far()
        self.head.body = b""
        if not any(n.lower() == "transfer-encoding" for n, _ in self.head.headers):
            for name, value in self.head.headers:
                if name.lower() == "content-length" and value.strip().isdigit():
                    self.head.length = int(value)


class _StaleConnection(Exception):
    pass
