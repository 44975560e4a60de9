"""The balancer's side of an L7 exchange: one keep-alive connection to a backend, relaying
its response to the client strictly (interim answers read past, nothing after the message's
end ever relayed, a connection with extra bytes never pooled).

:class:`Exchange` is one client request on its way through the balancer;
:class:`UpstreamConn` reads the backend's answer to it. The client side and the choice of
backend are in :mod:`deploylab.balancer.l7`.
"""

from __future__ import annotations

import asyncio
import re
import select
from typing import TYPE_CHECKING, Any, cast

import httptools

from deploylab.balancer.core import Peer, Selection
from deploylab.http.headers import HOP_BY_HOP

if TYPE_CHECKING:
    from deploylab.balancer.l7 import ClientConn, L7Forwarding

__all__ = [
    "BODY_WINDOW",
    "MAX_RESPONSE_HEAD",
    "BodyPipe",
    "ChunkedEnd",
    "Exchange",
    "UpstreamConn",
    "close_ended_head",
]

#: The end of a response's framing, read from its head (llhttp validates the head, and
#: allows no space before the colon; this only finds where the message ends, so that nothing
#: after it is ever relayed).
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked[ \t]*\r\n")
_NO_HEAD = -3  # the response's head is not complete yet
_UNTIL_CLOSE = -2  # the body runs until the backend closes
_CHUNKED_BODY = -1  # the body is chunked: ChunkedEnd finds its end
MAX_RESPONSE_HEAD = 64 * 1024
#: Response headers a client gets without when its body ends at the close instead of its
#: chunking (the hop-by-hop ones, ``Transfer-Encoding`` among them).
_HOP_BY_HOP = frozenset(name.encode() for name in HOP_BY_HOP)


def close_ended_head(head: bytes) -> bytes:
    """A chunked response's head for a client that cannot read chunks (an HTTP/1.0 client,
    RFC 9112 §6.1): no hop-by-hop headers (``Transfer-Encoding`` among them), and
    ``Connection: close``, because the close marks the end of the body, as with nginx.

    >>> close_ended_head(b"HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked\\r\\n"
    ...     b"Connection: keep-alive\\r\\nX-App: 1\\r\\n\\r\\n")
    b'HTTP/1.1 200 OK\\r\\nX-App: 1\\r\\nConnection: close\\r\\n\\r\\n'
    """
    status, *fields = head[:-4].split(b"\r\n")
    kept = [f for f in fields if f.partition(b":")[0].strip().lower() not in _HOP_BY_HOP]
    return b"\r\n".join([status, *kept, b"Connection: close"]) + b"\r\n\r\n"


class ChunkedEnd:
    """Finds where a chunked body ends, a piece at a time (llhttp checks the syntax; this only
    counts bytes, so the balancer can cut off anything a backend sends after the message).
    With ``payload`` a list, it also collects the chunks' data there: the body without its
    chunking, for a client that cannot read chunks (HTTP/1.0).

    >>> scanner = ChunkedEnd()
    >>> scanner.feed(b"3\\r\\nabc\\r\\n0\\r\\n"), scanner.feed(b"\\r\\nEXTRA")
    (None, 2)
    >>> body = b"1;x=y\\r\\nz\\r\\n0\\r\\nTrailer: t\\r\\n\\r\\n"
    >>> ChunkedEnd().feed(body + b"HTTP/1.1 200 OK") == len(body)
    True
    >>> scanner = ChunkedEnd(payload=[])
    >>> scanner.feed(b"5\\r\\nhel"), scanner.feed(b"lo\\r\\n1\\r\\n!\\r\\n0\\r\\n\\r\\n")
    (None, 15)
    >>> b"".join(scanner.payload)
    b'hello!'
    """

    __slots__ = ("line", "payload", "skip", "trailer")

    def __init__(self, payload: list[bytes] | None = None) -> None:
        self.skip = 0
        self.line = b""
        self.trailer = False
        self.payload = payload

    def feed(self, data: bytes) -> int | None:
        """Offset in ``data`` just past the end of the body, or None if it goes on."""
        i, n = 0, len(data)
        while i < n:
            if self.skip:
                step = min(self.skip, n - i)
                if self.payload is not None and self.skip > 2:  # data, not its CRLF
                    self.payload.append(data[i : i + min(step, self.skip - 2)])
                self.skip -= step
                i += step
                continue
            newline = data.find(b"\n", i)
            if newline < 0:
                self.line += data[i:]
                if len(self.line) > 4096:
                    raise ValueError("chunk size line too long")
                return None
            line, self.line = self.line + data[i:newline], b""
            i = newline + 1
            if self.trailer:
                if not line.rstrip(b"\r"):
                    return i
                continue
            size = int(line.split(b";", 1)[0].strip() or b"x", 16)
            if size == 0:
                self.trailer = True
            else:
                self.skip = size + 2  # the data and its CRLF
        return None


#: Request body bytes a streamed body may hold while no backend connection takes them yet
#: (or while the backend reads slower than the client sends): past this the balancer stops
#: reading from the client. nginx's ``proxy_request_buffering off`` holds one buffer too.
BODY_WINDOW = 64 * 1024


class BodyPipe:
    """A request body on its way to the backend as it arrives (nginx's
    ``proxy_request_buffering off``): pieces are written to the upstream connection once
    one carries the request, held (at most :data:`BODY_WINDOW` bytes, then the client is
    paused) before that, re-chunked when the client sent it chunked.

    >>> class Client:
    ...     held = 0
    ...     def hold_body(self, on):
    ...         self.held += 1 if on else -1
    >>> pipe = BodyPipe(Client(), length=None)
    >>> pipe.feed(b"abc"); pipe.finish()
    >>> b"".join(pipe.chunks), pipe.complete
    (b'3\\r\\nabc\\r\\n0\\r\\n\\r\\n', True)
    """

    __slots__ = (
        "aborted",
        "buffered",
        "chunks",
        "client",
        "complete",
        "exchange",
        "held",
        "length",
        "sent",
        "sink",
    )

    def __init__(self, client: Any, length: int | None) -> None:
        self.client = client
        self.length = length  # None: chunked on both sides
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.complete = False
        self.aborted = False
        self.held = False  # the client is paused because of this body
        self.sent = False  # some of it reached a backend: the request cannot be retried
        self.sink: UpstreamConn | None = None
        self.exchange: Exchange | None = None

    def framing(self) -> bytes:
        """The framing header line the backend gets for this body."""
        if self.length is None:
            return b"Transfer-Encoding: chunked\r\n"
        return b"Content-Length: %d\r\n" % self.length

    def feed(self, data: bytes) -> None:
        """A piece of the body from the client."""
        if self.length is None:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self._put(data)

    def finish(self) -> None:
        """The client sent the whole body."""
        self.complete = True
        if self.length is None:
            self._put(b"0\r\n\r\n")

    def _put(self, data: bytes) -> None:
        if self.aborted:
            return
        sink = self.sink
        if sink is not None:
            self.sent = True
            sink.transport.write(data)
            exchange = self.exchange
            if exchange is not None:  # the backend cannot answer before it has the body
                exchange.deadline = sink.balancer.clock + sink.balancer.read_timeout
            return
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > BODY_WINDOW:
            self.hold(True)

    def hold(self, on: bool) -> None:
        """Pause (or resume) reading the client for this body's sake."""
        if on != self.held:
            self.held = on
            self.client.hold_body(on)

    def attach(self, exchange: Exchange, conn: UpstreamConn) -> None:
        """``conn`` carries the request now: send what was held, then pass pieces through."""
        self.exchange = exchange
        self.sink = conn
        if self.chunks:
            self.sent = True
            conn.transport.write(b"".join(self.chunks))
            self.chunks = []
            self.buffered = 0
        if not conn.paused_writing:
            self.hold(False)

    def detach(self) -> None:
        """No backend takes this body any longer (answered early, failed or cut)."""
        self.sink = None
        self.aborted = True
        self.chunks = []
        self.buffered = 0
        self.hold(False)


class Exchange:
    """One client request on its way through the balancer (possibly several attempts)."""

    __slots__ = (
        "attempt",
        "client",
        "conn",
        "deadline",
        "head",
        "keep_alive",
        "method",
        "peer",
        "pipe",
        "reused",
        "selection",
        "sent_to_client",
        "started",
        "status",
        "target",
    )

    def __init__(
        self,
        client: ClientConn,
        method: bytes,
        target: bytes,
        head: bytes,
        keep_alive: bool,
        selection: Selection,
        started: float,
        pipe: BodyPipe | None = None,
    ) -> None:
        self.client = client
        self.method = method
        self.target = target
        self.head = head
        self.keep_alive = keep_alive
        self.attempt = 0
        self.selection = selection
        self.started = started
        self.pipe = pipe
        self.peer: Peer = cast(Peer, None)  # chosen by the first attempt
        self.conn: UpstreamConn | None = None
        self.reused = False
        self.sent_to_client = False
        self.status = 0
        self.deadline = 0.0


class UpstreamConn(asyncio.Protocol):
    """A keep-alive connection from the balancer to one backend.

    The response is relayed as it comes, but strictly: interim (1xx) answers are read past and
    not relayed, the message ends where its framing says (``Content-Length``, chunked, or no
    body for HEAD/204/304) and llhttp must agree, and a connection that had anything after
    that end is closed, never pooled — otherwise those bytes would become the next client's
    answer. Before an idle connection carries a request, :meth:`has_unread` checks that
    nothing arrived on it meanwhile.
    """

    __slots__ = (
        "balancer",
        "complete",
        "exchange",
        "keep_alive",
        "left",
        "parsed",
        "parser",
        "paused",
        "paused_writing",
        "peer",
        "pending",
        "poller",
        "scanner",
        "status",
        "transport",
    )

    def __init__(self, balancer: L7Forwarding, peer: Peer) -> None:
        self.balancer = balancer
        self.peer = peer
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)  # connection_made
        self.poller: select.poll | None = None
        self.exchange: Exchange | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.parsed = False  # llhttp reached the end of the last message
        self.scanner: ChunkedEnd | None = None
        self.complete = False
        self.status = 0
        self.keep_alive = True
        self.left = _NO_HEAD
        self.pending = b""
        self.paused = False
        self.paused_writing = False  # the backend reads the request body slower than it comes

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.poller = select.poll()
            self.poller.register(sock.fileno(), select.POLLIN)

    def pause_writing(self) -> None:
        self.paused_writing = True
        exchange = self.exchange
        if exchange is not None and exchange.pipe is not None:
            exchange.pipe.hold(True)

    def resume_writing(self) -> None:
        self.paused_writing = False
        exchange = self.exchange
        if exchange is not None and exchange.pipe is not None:
            exchange.pipe.hold(False)

    def start(self) -> None:
        """Get ready for the response to a new request."""
        self.complete = False
        self.status = 0
        self.left = _NO_HEAD
        self.pending = b""
        self.scanner = None

    def has_unread(self) -> bool:
        """Bytes (or a close) waiting on an idle connection: it must not carry a request.
        One ``poll()`` per reuse (about 3 % of a request's time): the event loop may not
        have read what arrived on it yet, and those bytes must never become an answer."""
        poller = self.poller
        return poller is None or bool(poller.poll(0))

    def on_message_complete(self) -> None:
        self.parsed = True

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # bytes nobody asked for on an idle connection
            self.keep_alive = False
            self.transport.close()
            return
        balancer = self.balancer
        exchange.deadline = balancer.clock + balancer.read_timeout  # per read (coarse clock)
        head = b""
        relay = None  # what the client gets of this read when not the bytes read (HTTP/1.0)
        if self.left == _NO_HEAD:
            found = self._head(exchange, self.pending + data if self.pending else data)
            if found is None:
                return
            head, data = found
        left = self.left
        if left >= 0:
            if len(data) > left:  # bytes after the response: relay none, pool nothing
                data = data[:left]
                self.keep_alive = False
            self.left = left - len(data)
            done = self.left == 0
        elif left == _CHUNKED_BODY:
            scanner = cast(ChunkedEnd, self.scanner)
            try:
                end = scanner.feed(data)
            except ValueError:
                end = None
                self.left, self.keep_alive = _UNTIL_CLOSE, False  # llhttp raises below
            if end is not None and end < len(data):
                data = data[:end]
                self.keep_alive = False
            done = end is not None
            if scanner.payload is not None:  # llhttp checks the chunks; the client gets data
                relay = b"".join(scanner.payload)
                scanner.payload.clear()
        else:
            done = False
        parser = self.parser
        if data and parser is not None:
            try:
                parser.feed_data(data)
            except httptools.HttpParserError:
                if exchange.sent_to_client:
                    head = data = b""  # relay no more of a broken body; the client is cut off
                balancer._attempt_failed(exchange, self, "invalid_header")
                return
        if relay is not None:
            data = relay
        client_transport = exchange.client.transport
        if not client_transport.is_closing():  # (uvloop raises on a closed transport)
            if head:
                client_transport.write(head + data)  # one write, one segment
            elif data:
                client_transport.write(data)
        if done:
            if parser is not None and not self.parsed:
                self.keep_alive = False  # llhttp disagrees about the end: never reuse
            self.complete = True
            balancer._finished(exchange, self)

    def _head(self, exchange: Exchange, data: bytes) -> tuple[bytes, bytes] | None:
        """Find the head of the final response in ``data``; return ``(head, body bytes after
        it)``, or None while the head is incomplete or when a retry takes over."""
        end = data.find(b"\r\n\r\n")
        if end < 0 or data[9:10] == b"1":  # not the usual whole final head: take the long way
            start = 0
            while True:
                end = data.find(b"\r\n\r\n", start)
                if end < 0:
                    rest = data[start:]
                    # a line ended by a bare LF (allowed by RFC 9112 §2.2, refused here as in
                    # the shared parser): that head will never end in CRLF CRLF, so it is
                    # answered now (502), not when the read timeout ends it (504)
                    if len(rest) > MAX_RESPONSE_HEAD or b"\n\n" in rest or b"\n\r\n" in rest:
                        self.balancer._attempt_failed(exchange, self, "invalid_header")
                        return None
                    self.pending = rest
                    return None
                code = data[start + 9 : start + 12]
                if code[:1] == b"1" and code != b"101":
                    start = end + 4  # an interim answer (100 Continue, 103): never relayed
                    continue
                break
            data = data[start:]
            end -= start
        if end > MAX_RESPONSE_HEAD:  # the same limit whether it came in one read or many
            self.balancer._attempt_failed(exchange, self, "invalid_header")
            return None
        self.pending = b""
        head = data[: end + 4]
        parser = self.parser
        if parser is None or not self.parsed:  # a new link, or one after a HEAD answer
            parser = self.parser = httptools.HttpResponseParser(self)
        self.parsed = False
        try:
            parser.feed_data(head)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            # a 101 too: the balancer never asks to upgrade, and after a 101 the link
            # no longer speaks HTTP
            self.balancer._attempt_failed(exchange, self, "invalid_header")
            return None
        status = self.status = parser.get_status_code()
        self.keep_alive = parser.should_keep_alive()
        if exchange.method == b"HEAD" or status in (204, 304):
            self.left = 0
            if exchange.method == b"HEAD":
                self.parser = None  # llhttp would wait for the body a HEAD answer lacks
        elif (at := head.find(b"\r\nContent-Length:")) >= 0:
            # the usual spelling (llhttp has refused it together with Transfer-Encoding)
            self.left = int(head[at + 17 : head.index(b"\r\n", at + 17)])
        elif b"\r\ntransfer-encoding:" in (lower := head.lower()):
            if _CHUNKED.search(lower):
                self.left, self.scanner = _CHUNKED_BODY, ChunkedEnd()
                # the version of the client's latest request: this one's, unless the client
                # pipelined one of another version after it (only its own answer suffers)
                if exchange.client.parser.get_http_version() == "1.0":
                    self.scanner.payload = []
                    head = close_ended_head(head)
                    exchange.keep_alive = False
            else:
                self.left, self.keep_alive = _UNTIL_CLOSE, False
        elif (at := lower.find(b"\r\ncontent-length:")) >= 0:
            self.left = int(lower[at + 17 : lower.index(b"\r\n", at + 17)])
        else:
            self.left, self.keep_alive = _UNTIL_CLOSE, False
        if not exchange.sent_to_client:
            if status >= 403 and self.balancer._retry_status(exchange, self):
                return None
            exchange.sent_to_client = True
            exchange.status = status
        return head, data[end + 4 :]

    def connection_lost(self, exc) -> None:
        idle = self.peer.data.get("idle")
        if idle is not None and self in idle:
            idle.remove(self)
        exchange = self.exchange
        if exchange is not None:
            if self.complete:  # whole response read but not yet accounted for
                self.balancer._finished(exchange, self)
                return
            if exchange.sent_to_client and self.left == _UNTIL_CLOSE:
                # a response without Content-Length ends when the backend closes: that is
                # its normal end; the client's connection must close too to mark it
                exchange.keep_alive = False
                self.complete = True
                self.balancer._finished(exchange, self)
                return
            self.exchange = None
            self.balancer._attempt_failed(exchange, self, "error")
