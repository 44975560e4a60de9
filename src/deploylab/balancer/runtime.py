"""The load balancer on real sockets: L7 (HTTP, per request) or L4 (TCP, per connection).

It drives :class:`deploylab.balancer.core.Upstream` (nginx's algorithms and failure rules)
with asyncio protocols. The L7 hot path is deliberately lean: ``asyncio.Protocol`` callbacks
(no streams, no task per request when a pooled connection is idle), llhttp via
``httptools``, keep-alive pools to the backends, and the response bytes passed through
unchanged while the parser only watches for the end of the message. (The shared
``deploylab.http`` plumbing builds a ``Request`` object with decoded headers per message,
which is right for the proxies but costs too much per request here.)

Runtime control, safe with requests in flight (the autoscaler drives these)::

    balancer.add_backend("http://127.0.0.1:9001", weight=1)   # -> Peer; picked from now on
    await balancer.drain_backend("http://127.0.0.1:9001")      # no new requests; waits for idle
    balancer.remove_backend("http://127.0.0.1:9001")           # gone; in-flight ones finish
    balancer.mark_down("http://127.0.0.1:9001")                # like nginx `down` (keeps slot)
    balancer.mark_down(url, False)                             # back up
    balancer.status()                                          # per-backend metrics (JSON-ready)

TOML config for ``deploylab serve balancer --config FILE``::

    port = 8080
    algorithm = "least_conn"     # any of deploylab.balancer.ALGORITHMS
    layer = 7
    [[backend]]
    url = "http://127.0.0.1:8081"
    weight = 2
    [[backend]]
    url = "http://127.0.0.1:8082"
    backup = true
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import select
import signal
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import httptools

from deploylab.balancer.core import (
    HealthCheck,
    NoLiveUpstreams,
    Peer,
    RetryPolicy,
    Selection,
    Upstream,
)
from deploylab.events import EventBus
from deploylab.http.headers import HOP_BY_HOP
from deploylab.http.messages import Limits
from deploylab.http.parser import VALID_HOST_BYTES
from deploylab.http.server import default_max_connections

__all__ = ["BackendStats", "Balancer", "parse_backend", "run_until_signal"]


def parse_backend(spec: str | dict | Peer) -> Peer:
    """``http://HOST:PORT[,weight=W][,max_fails=N][,fail_timeout=S][,max_conns=N]
    [,slow_start=S][,backup][,down]`` (or a TOML table / a Peer) → :class:`Peer` named
    ``HOST:PORT`` (nginx's server string).

    >>> parse_backend("http://127.0.0.1:8081,weight=5,backup")
    Peer(name='127.0.0.1:8081', weight=5, max_fails=1, fail_timeout=10.0, backup=True, down=False, max_conns=0, slow_start=0.0, current_weight=0, effective_weight=5, conns=0, fails=0, accessed=0.0, checked=0.0, draining=False, healthy=True, recovered_at=None)
    """
    if isinstance(spec, Peer):
        return spec
    if isinstance(spec, dict):
        options = dict(spec)
        url = options.pop("url")
    else:
        url, *rest = spec.split(",")
        options: dict[str, Any] = {}
        for item in rest:
            name, sep, value = item.strip().partition("=")
            if not sep:
                if name not in ("backup", "down"):
                    raise ValueError(
                        f"backend option {item!r} in {spec!r}: expected NAME=VALUE, backup or down"
                    )
                options[name] = True
            else:
                options[name] = value
    address = url.strip()
    if "://" in address:
        scheme, _, address = address.partition("://")
        if scheme not in ("http", "tcp"):
            raise ValueError(f"backend {url!r}: expected an http:// URL")
    address = address.rstrip("/")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"backend {url!r}: expected HOST:PORT such as http://127.0.0.1:8081")
    host = {"localhost": "127.0.0.1"}.get(host, host)
    kinds = {
        "weight": int,
        "max_fails": int,
        "fail_timeout": float,
        "max_conns": int,
        "slow_start": float,
        "backup": bool,
        "down": bool,
    }
    kwargs: dict[str, Any] = {}
    for name, value in options.items():
        if name not in kinds:
            raise ValueError(f"backend option {name!r}: expected one of {', '.join(kinds)}")
        try:
            kwargs[name] = value if isinstance(value, bool) else kinds[name](value)
        except ValueError:
            raise ValueError(
                f"backend option {name}={value!r}: expected {kinds[name].__name__}"
            ) from None
    return Peer(f"{host}:{port}", **kwargs)


class BackendStats:
    """Per-backend counters: requests, failures and recent latencies (for p50/p99)."""

    __slots__ = ("failures", "latencies", "requests", "statuses")

    def __init__(self) -> None:
        self.requests = 0
        self.failures = 0
        self.latencies: deque[float] = deque(maxlen=2048)
        self.statuses: dict[int, int] = {}

    def percentile(self, fraction: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _stats(peer: Peer) -> BackendStats:
    stats = peer.data.get("stats")
    if stats is None:
        stats = peer.data["stats"] = BackendStats()
        peer.data["idle"] = []
    return stats


# --------------------------------------------------------------------------------- L7 ----
class _Refused(Exception):
    """A request answered with an error ``status`` (400, 413, 414, 431…), then closed."""

    def __init__(self, status: int, reason: bytes) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


#: Request headers not forwarded (hop-by-hop, rewritten by the balancer, or answered here:
#: ``Expect`` gets its ``100 Continue`` from the balancer, which then sends the whole body).
_DROP = frozenset(
    {name.encode() for name in HOP_BY_HOP}
    | {b"content-length", b"x-forwarded-for", b"x-forwarded-proto", b"x-real-ip", b"expect"}
)

#: The end of a response's framing, read from its head (llhttp validates the head, and
#: allows no space before the colon; this only finds where the message ends, so that nothing
#: after it is ever relayed).
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked[ \t]*\r\n")
_NO_HEAD = -3  # the response's head is not complete yet
_UNTIL_CLOSE = -2  # the body runs until the backend closes
_CHUNKED_BODY = -1  # the body is chunked: _ChunkedEnd finds its end
MAX_RESPONSE_HEAD = 64 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _ChunkedEnd:
    """Finds where a chunked body ends, a piece at a time (llhttp checks the syntax; this only
    counts bytes, so the balancer can cut off anything a backend sends after the message).

    >>> scanner = _ChunkedEnd()
    >>> scanner.feed(b"3\\r\\nabc\\r\\n0\\r\\n"), scanner.feed(b"\\r\\nEXTRA")
    (None, 2)
    >>> body = b"1;x=y\\r\\nz\\r\\n0\\r\\nTrailer: t\\r\\n\\r\\n"
    >>> _ChunkedEnd().feed(body + b"HTTP/1.1 200 OK") == len(body)
    True
    """

    __slots__ = ("line", "skip", "trailer")

    def __init__(self) -> None:
        self.skip = 0
        self.line = b""
        self.trailer = False

    def feed(self, data: bytes) -> int | None:
        """Offset in ``data`` just past the end of the body, or None if it goes on."""
        i, n = 0, len(data)
        while i < n:
            if self.skip:
                step = min(self.skip, n - i)
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


def _origin_form(target: bytes, headers: list) -> tuple[bytes, list]:
    """An absolute-form target (RFC 9112 §3.2.2: a server must accept it) as the origin form
    backends expect, its authority replacing ``Host`` — what nginx does.

    >>> _origin_form(b"http://shop.test/cart?x=1", [(b"Host", b"other"), (b"Accept", b"*/*")])
    (b'/cart?x=1', [(b'Accept', b'*/*'), (b'Host', b'shop.test')])
    """
    authority, _, path = target.partition(b"://")[2].partition(b"/")
    rest = [(name, value) for name, value in headers if name.lower() != b"host"]
    return b"/" + path, [*rest, (b"Host", authority)]


class _Exchange:
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
        "reused",
        "selection",
        "sent_to_client",
        "started",
        "status",
        "target",
    )

    def __init__(self, client, method, target, head, keep_alive, selection, started):
        self.client = client
        self.method = method
        self.target = target
        self.head = head
        self.keep_alive = keep_alive
        self.attempt = 0
        self.selection = selection
        self.started = started
        self.peer = None
        self.conn = None
        self.reused = False
        self.sent_to_client = False
        self.status = 0
        self.deadline = 0.0


class _UpstreamConn(asyncio.Protocol):
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
        "peer",
        "pending",
        "poller",
        "scanner",
        "status",
        "transport",
    )

    def __init__(self, balancer: Balancer, peer: Peer) -> None:
        self.balancer = balancer
        self.peer = peer
        self.transport = None
        self.poller = None
        self.exchange: _Exchange | None = None
        self.parser = None
        self.parsed = False  # llhttp reached the end of the last message
        self.scanner: _ChunkedEnd | None = None
        self.complete = False
        self.status = 0
        self.keep_alive = True
        self.left = _NO_HEAD
        self.pending = b""
        self.paused = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.poller = select.poll()
            self.poller.register(sock.fileno(), select.POLLIN)

    def start(self) -> None:
        """Get ready for the response to a new request."""
        self.complete = False
        self.status = 0
        self.left = _NO_HEAD
        self.pending = b""
        self.scanner = None

    def has_unread(self) -> bool:
        """Bytes (or a close) waiting on an idle connection: it must not carry a request."""
        return self.poller is None or bool(self.poller.poll(0))

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
            try:
                end = self.scanner.feed(data)
            except ValueError:
                end = None
                self.left, self.keep_alive = _UNTIL_CLOSE, False  # llhttp raises below
            if end is not None and end < len(data):
                data = data[:end]
                self.keep_alive = False
            done = end is not None
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

    def _head(self, exchange: _Exchange, data: bytes) -> tuple[bytes, bytes] | None:
        """Find the head of the final response in ``data``; return ``(head, body bytes after
        it)``, or None while the head is incomplete or when a retry takes over."""
        end = data.find(b"\r\n\r\n")
        if end < 0 or data[9:10] == b"1":  # not the usual whole final head: take the long way
            start = 0
            while True:
                end = data.find(b"\r\n\r\n", start)
                if end < 0:
                    if len(data) - start > MAX_RESPONSE_HEAD:
                        self.balancer._attempt_failed(exchange, self, "invalid_header")
                        return None
                    self.pending = data[start:]
                    return None
                code = data[start + 9 : start + 12]
                if code[:1] == b"1" and code != b"101":
                    start = end + 4  # an interim answer (100 Continue, 103): never relayed
                    continue
                break
            data = data[start:]
            end -= start
        self.pending = b""
        head = data[: end + 4]
        parser = self.parser
        if parser is None or not self.parsed:  # a new link, or one after a HEAD answer
            parser = self.parser = httptools.HttpResponseParser(self)
        self.parsed = False
        try:
            parser.feed_data(head)
        except httptools.HttpParserError:
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
                self.left, self.scanner = _CHUNKED_BODY, _ChunkedEnd()
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


class _ClientConn(asyncio.Protocol):
    """A client connection to the balancer; requests on it are forwarded one at a time.

    Bounded like :class:`deploylab.http.HTTPServer`: at most ``limits.max_pipelined``
    requests are read ahead, a partial request must progress (408 after
    ``limits.header_timeout`` for the head, ``limits.body_timeout`` between body reads), an
    idle connection closes after ``limits.keep_alive_timeout``; the housekeeping task checks.
    """

    __slots__ = (
        "answered",
        "balancer",
        "body",
        "body_bytes",
        "busy",
        "client_ip",
        "close_after",
        "continue_due",
        "failed",
        "header_bytes",
        "headers",
        "headers_done",
        "in_message",
        "last",
        "limits",
        "message_started",
        "parser",
        "queue",
        "reading_paused",
        "transport",
        "upstream",
        "url",
    )

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        self.limits = balancer.limits
        self.reading_paused = False
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.queue: deque = deque()
        self.busy = False
        self.url = b""
        self.headers: list = []
        self.body: list = []
        self.header_bytes = 0
        self.body_bytes = 0
        self.client_ip = b"127.0.0.1"
        self.upstream: _UpstreamConn | None = None  # the connection answering us now
        self.in_message = False
        self.answered = False  # a keep-alive connection only counts as idle after an answer
        self.headers_done = False
        self.close_after = False
        self.continue_due = False
        self.failed = False
        self.last = 0.0
        self.message_started = 0.0

    def connection_made(self, transport) -> None:
        self.transport = transport
        peername = transport.get_extra_info("peername")
        if peername:
            self.client_ip = peername[0].encode()
        balancer = self.balancer
        self.last = balancer.clock
        balancer._clients.add(self)
        if len(balancer._clients) > balancer.max_connections:
            balancer._make_room()

    def connection_lost(self, exc) -> None:
        self.balancer._clients.discard(self)
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        self.last = self.balancer.clock
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # the upgrade request is answered as plain HTTP, then the connection closes:
            # the bytes after it belong to another protocol, never to a next request
            self.close_after = True
            self._pause_reading()
        except httptools.HttpParserError as error:
            cause = error.__context__
            if isinstance(cause, _Refused):
                self._fail(cause.status, cause.reason)
            else:
                self._fail(400, b"Bad Request")

    def pause_writing(self) -> None:
        # the client reads slower than the backend answers: stop reading the backend
        upstream = self.upstream
        if upstream is not None and not upstream.transport.is_closing():
            upstream.paused = True
            upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.paused:
            upstream.paused = False
            if not upstream.transport.is_closing():
                upstream.transport.resume_reading()

    def _fail(self, status: int, text: bytes) -> None:
        """Answer an error, after the answers to the requests read before it, and close."""
        if self.failed:
            return
        self.failed = True
        self._pause_reading()
        if self.busy:
            self.queue.append((status, text))
            return
        self._write_error(status, text)

    def _write_error(self, status: int, text: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(
                b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % (status, text)
            )
        self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = []
        self.header_bytes = 0
        self.body_bytes = 0
        self.in_message = True
        self.headers_done = False
        self.message_started = self.balancer.clock

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_request_target:
            raise _Refused(414, b"URI Too Long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self.header_bytes += len(name) + len(value)
        limits = self.limits
        if self.header_bytes > limits.max_header_bytes or len(self.headers) > limits.max_headers:
            raise _Refused(431, b"Request Header Fields Too Large")

    def on_headers_complete(self) -> None:
        self.headers_done = True
        hosts = 0
        upgrade = connection_upgrade = expect = has_body = False
        for name, value in self.headers:
            lower = name.lower()
            if lower == b"host":
                hosts += 1
                if VALID_HOST_BYTES.fullmatch(value) is None:
                    raise _Refused(400, b"Bad Request")
            elif lower == b"content-length":
                has_body = has_body or bool(value.strip(b"0 "))
                if int(value) > self.limits.max_body:  # refused before any body is read
                    raise _Refused(413, b"Content Too Large")
            elif lower == b"transfer-encoding":
                has_body = True
            elif lower == b"upgrade":
                upgrade = True
            elif lower == b"connection":
                connection_upgrade = b"upgrade" in value.lower()
            elif lower == b"expect":
                expect = value.strip().lower() == b"100-continue"
        # RFC 9112 §3.2: exactly one Host in HTTP/1.1 (two could route one request twice)
        if hosts > 1 or (hosts == 0 and self.parser.get_http_version() == "1.1"):
            raise _Refused(400, b"Bad Request")
        if upgrade and connection_upgrade:
            if has_body:  # llhttp would read the body as the next request: refuse
                raise _Refused(400, b"Bad Request")
            self.close_after = True
        if expect and has_body and self.parser.get_http_version() == "1.1":
            if self.busy:
                self.continue_due = True  # after the answers before it
            else:
                self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.body_bytes += len(body)
        if self.body_bytes > self.limits.max_body:
            raise _Refused(413, b"Content Too Large")

    def on_message_complete(self) -> None:
        self.in_message = False
        self.continue_due = False
        request = (
            self.parser.get_method(),
            self.url,
            self.headers,
            self.body,
            self.parser.should_keep_alive() and not self.close_after,
        )
        if self.busy:
            self.queue.append(request)
            if len(self.queue) > self.limits.max_pipelined:
                self._pause_reading()  # read no further ahead of the answers
        else:
            self.busy = True
            self.balancer._handle(self, *request)

    def done(self, keep_alive: bool) -> None:
        self.upstream = None
        self.answered = True
        self.last = self.balancer.clock
        if not keep_alive:
            self.transport.close()
            return
        if self.queue:
            item = self.queue.popleft()
            if len(item) == 2:  # the error that ended the pipeline
                self._write_error(*item)
                return
            if self.reading_paused and len(self.queue) <= 1:
                self._resume_reading()
            self.balancer._handle(self, *item)
        else:
            self.busy = False
            if self.continue_due:
                self.continue_due = False
                self.transport.write(_CONTINUE)
            if self.reading_paused:
                self._resume_reading()

    def _pause_reading(self) -> None:
        if not self.reading_paused and not self.transport.is_closing():
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.failed or self.close_after or self.transport.is_closing():
            return
        self.reading_paused = False
        self.transport.resume_reading()

    def check_time(self, now: float) -> None:
        """Housekeeping: 408 for a request that stopped progressing; close when idle."""
        if self.busy or self.failed:
            return
        limits = self.limits
        if self.in_message:
            if not self.headers_done:
                if now - self.message_started > limits.header_timeout:
                    self._fail(408, b"Request Timeout")
            elif now - self.last > limits.body_timeout:
                self._fail(408, b"Request Timeout")
        elif now - self.last > limits.keep_alive_timeout:
            self.transport.close()


# --------------------------------------------------------------------------------- L4 ----
def _flow(transport, pause: bool) -> None:
    """Pause or resume reading from the other side of a splice, unless it is closing."""
    if transport is None or transport.is_closing():
        return
    if pause:
        transport.pause_reading()
    else:
        transport.resume_reading()


class _TcpUpstream(asyncio.Protocol):
    def __init__(self, client: _TcpClient) -> None:
        self.client = client
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.client.transport.is_closing():
            self.client.transport.write(data)

    def pause_writing(self) -> None:
        _flow(self.client.transport, pause=True)

    def resume_writing(self) -> None:
        _flow(self.client.transport, pause=False)

    def connection_lost(self, exc) -> None:
        self.client.transport.close()


class _TcpClient(asyncio.Protocol):
    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        self.transport = None
        self.upstream: _TcpUpstream | None = None
        self.buffer: list[bytes] = []
        self.peer: Peer | None = None
        self.selection = None
        self.started = 0.0

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.balancer._clients.add(self)
        self.started = self.balancer._loop.time()
        peername = transport.get_extra_info("peername")
        address = peername[0] if peername else None
        self.selection = self.balancer.upstream.start(
            client=address, key=self.balancer._l4_key(address)
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
                _stats(peer).failures += 1
                if self.selection.tries_left <= 0 or self.transport.is_closing():
                    self.transport.close()
                    return
                continue
            break
        self.peer = peer
        _stats(peer).requests += 1
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
            _stats(self.peer).latencies.append(now - self.started)
            self.peer = None
            self.balancer._check_drained()


# ------------------------------------------------------------------------------ public ----
class Balancer:
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
        self.control = None  # the ControlServer, when control_port is set
        #: the loop's time, refreshed by the housekeeping task every 0.25 s: client and
        #: upstream read timestamps use it, so the hot path makes no clock call per read
        self.clock = 0.0
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: set = set()
        self._inflight: set[_Exchange] = set()
        self._tasks: list[asyncio.Task] = []
        self._drain_waiters: list[tuple[Peer, asyncio.Future]] = []
        for peer in self.upstream.peers + self.upstream.backups:
            _stats(peer)

    @classmethod
    def from_toml(cls, path: str) -> Balancer:
        """Build from a TOML file (format in the module docstring)."""
        import tomllib

        with open(path, "rb") as handle:
            config = tomllib.load(handle)
        backends = config.pop("backend", [])
        retry = config.pop("proxy_next_upstream", None)
        if retry is not None:
            config["retry"] = RetryPolicy(retry)
        return cls(backends, **config)

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
        factory = (lambda: _ClientConn(self)) if self.layer == 7 else (lambda: _TcpClient(self))
        self._server = await self._loop.create_server(
            factory, self.host, self.port, reuse_address=True, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks.append(self._loop.create_task(self._housekeeping()))
        if self.health_check is not None:
            self._tasks.append(self._loop.create_task(self._health_loop()))
        if self.control_port is not None:
            from deploylab.balancer.control import ControlServer

            self.control = await ControlServer(
                self, port=self.control_port, token=self.control_token
            ).start()
            self.control_token = self.control.token
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
        _stats(peer)
        self._bus_publish("backend_added", backend=peer.name, weight=weight, backup=peer.backup)
        return peer

    async def drain_backend(self, url: str, timeout: float | None = None) -> None:
        """Stop sending new requests to a backend and wait until its in-flight requests
        (or L4 connections) are done; then close its idle pooled connections. The backend
        stays listed (state ``draining``) until :meth:`remove_backend`."""
        peer = self._peer(url)
        peer.draining = True
        self._bus_publish("backend_draining", backend=peer.name, active=peer.conns)
        if peer.conns:
            future = self._loop.create_future()
            self._drain_waiters.append((peer, future))
            await asyncio.wait_for(future, timeout)
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
            stats = _stats(peer)
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
    def _bus_publish(self, kind: str, **fields) -> None:
        self.bus.publish(kind, **fields)

    def _make_room(self) -> None:
        """Too many clients for the descriptors: close the longest-idle keep-alive ones (what
        nginx does when it runs out of ``worker_connections``), so new clients are served."""
        idle = sorted(
            (
                c
                for c in self._clients
                if isinstance(c, _ClientConn) and c.answered and not c.busy and not c.in_message
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
            for client in [c for c in self._clients if isinstance(c, _ClientConn)]:
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
        host, port = peer.name.rsplit(":", 1)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, int(port)), self.health_check.timeout
            )
        except (TimeoutError, OSError):
            return False
        try:
            writer.write(
                f"GET {self.health_check.path} HTTP/1.1\r\nHost: {peer.name}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            line = await asyncio.wait_for(reader.readline(), self.health_check.timeout)
            return line[9:10] in (b"2", b"3")
        except (TimeoutError, OSError):
            return False
        finally:
            writer.close()

    def _l4_key(self, address: str | None) -> str | None:
        if not self.upstream.algorithm.startswith("hash"):
            return None
        return address if self.key == "$remote_addr" else self.key

    def _hash_key(self, client_ip: bytes, target: bytes, headers) -> str | None:
        key = self.key
        if key == "$request_uri":
            return target.decode("latin-1")
        if key == "$uri":
            return target.split(b"?", 1)[0].decode("latin-1")
        if key == "$remote_addr":
            return client_ip.decode()
        if key.startswith("$http_"):
            wanted = key[6:].replace("_", "-").encode()
            for name, value in headers:
                if name.lower() == wanted:
                    return value.decode("latin-1")
            return ""
        return key

    def _handle(
        self, client: _ClientConn, method: bytes, target: bytes, headers, body, keep_alive: bool
    ) -> None:
        """Turn a parsed client request into an exchange and send its first attempt."""
        ip = client.client_ip
        if target[:1] != b"/" and b"://" in target:
            target, headers = _origin_form(target, headers)
        forwarded = None
        parts = [method, b" ", target, b" HTTP/1.1\r\n"]
        drop = _DROP
        for name, value in headers:
            lower = name.lower()
            if lower in drop:
                if lower == b"x-forwarded-for":  # every one of them, in order: the chain
                    forwarded = value if forwarded is None else forwarded + b", " + value
                elif lower == b"connection" and value.lower() not in (b"keep-alive", b"close"):
                    drop = drop | {t.strip().lower() for t in value.split(b",")}
                continue
            parts += (name, b": ", value, b"\r\n")
        forwarded = forwarded + b", " + ip if forwarded else ip
        parts += (
            b"X-Forwarded-For: ",
            forwarded,
            b"\r\nX-Real-IP: ",
            ip,
            b"\r\nX-Forwarded-Proto: http\r\n",
        )
        payload = b"".join(body) if body else b""
        if payload or method in (b"POST", b"PUT", b"PATCH"):
            parts += (b"Content-Length: %d\r\n" % len(payload),)
        parts.append(b"\r\n")
        upstream = self.upstream
        algorithm = upstream.algorithm
        if algorithm == "round_robin" or algorithm == "least_conn":
            selection = Selection(upstream)
        else:
            selection = Selection(
                upstream,
                client=ip.decode() if algorithm == "ip_hash" else None,
                key=self._hash_key(ip, target, headers) if algorithm.startswith("hash") else None,
            )
        if self.retry.tries and selection.tries_left > self.retry.tries:
            selection.tries_left = self.retry.tries  # proxy_next_upstream_tries
        exchange = _Exchange(
            client,
            method,
            target,
            b"".join(parts) + payload,
            keep_alive,
            selection,
            self._loop.time(),
        )
        self._inflight.add(exchange)
        self._attempt(exchange)

    def _attempt(self, exchange: _Exchange) -> None:
        now = self._loop.time()
        try:
            peer = exchange.selection.next_peer(now)
        except NoLiveUpstreams:
            self._reply_error(exchange, 502, b"Bad Gateway", "no live upstreams")
            return
        exchange.peer = peer
        exchange.attempt += 1
        exchange.deadline = now + self.read_timeout
        idle = peer.data["idle"]
        while idle and idle[-1].has_unread():
            idle.pop().transport.close()  # late bytes or a close: never an answer to this
        if idle:
            conn = idle.pop()
            exchange.reused = True
            self._send(exchange, conn)
        else:
            exchange.reused = False
            exchange.attempt += 1
            exchange.deadline = now + self.connect_timeout + self.read_timeout
            self._loop.create_task(self._connect_and_send(exchange, peer))

    async def _connect_and_send(self, exchange: _Exchange, peer: Peer) -> None:
        host, port = peer.name.rsplit(":", 1)
        attempt = exchange.attempt
        try:
            _, conn = await asyncio.wait_for(
                self._loop.create_connection(lambda: _UpstreamConn(self, peer), host, int(port)),
                self.connect_timeout,
            )
        except (TimeoutError, OSError) as error:
            if exchange.attempt == attempt:
                outcome = "timeout" if isinstance(error, asyncio.TimeoutError) else "error"
                self._attempt_failed(exchange, None, outcome)
            return
        if exchange not in self._inflight or exchange.attempt != attempt:
            self._release_conn(conn, peer)  # timed out meanwhile
            return
        self._send(exchange, conn)

    def _send(self, exchange: _Exchange, conn: _UpstreamConn) -> None:
        exchange.conn = conn
        exchange.client.upstream = conn
        conn.exchange = exchange
        conn.start()
        conn.transport.write(exchange.head)

    def _release_conn(self, conn: _UpstreamConn, peer: Peer) -> None:
        conn.exchange = None
        if conn.paused:
            conn.paused = False
            if not conn.transport.is_closing():
                conn.transport.resume_reading()
        idle = peer.data["idle"]
        if (
            conn.keep_alive
            and not conn.transport.is_closing()
            and len(idle) < self.keepalive
            and not peer.draining
            and not peer.data.get("removed")
        ):
            idle.append(conn)
        else:
            conn.transport.close()

    def _retry_status(self, exchange: _Exchange, conn: _UpstreamConn) -> bool:
        """A status listed in proxy_next_upstream with another try left (nginx:
        ``peer.tries > 1``): drop this response and pass the request to the next server."""
        status = conn.status
        retry = self.retry
        if not retry.retry(
            status,
            exchange.method.decode(),
            exchange.selection.tries_left - 1,
            elapsed=self._loop.time() - exchange.started,
        ):
            return False
        conn.exchange = None
        conn.pending = b""
        conn.transport.close()  # the rest of this response is not wanted
        self._attempt_failed(exchange, None, status, counted=retry.counts_as_failure(status))
        return True

    def _finished(self, exchange: _Exchange, conn: _UpstreamConn) -> None:
        peer = exchange.peer
        now = self._loop.time()
        # a listed status (proxy_next_upstream http_5xx) counts as a failure even when it is
        # passed to the client because no try was left -- as nginx does
        failed = exchange.status >= 403 and self.retry.counts_as_failure(exchange.status)
        exchange.selection.release(peer, failed, now)
        self._inflight.discard(exchange)
        self._release_conn(conn, peer)
        stats = peer.data["stats"]
        stats.requests += 1
        if failed:
            stats.failures += 1
        latency = now - exchange.started
        stats.latencies.append(latency)
        if self.request_events:
            self.bus.publish(
                "request",
                backend=peer.name,
                status=exchange.status,
                method=exchange.method.decode(),
                target=exchange.target.decode("latin-1"),
                client=exchange.client.client_ip.decode(),
                latency=latency,
            )
        if self._drain_waiters:
            self._check_drained()
        exchange.client.done(exchange.keep_alive)

    def _attempt_failed(
        self, exchange: _Exchange, conn: _UpstreamConn | None, outcome, counted: bool = True
    ) -> None:
        """An attempt ended without a usable response: count it, retry or answer 502/504."""
        if exchange not in self._inflight:
            return
        peer = exchange.peer
        if conn is not None:
            conn.exchange = None
            if not conn.transport.is_closing():
                conn.transport.close()
        now = self._loop.time()
        if exchange.sent_to_client:
            # part of the response already went out: nothing to retry, cut the client off
            exchange.selection.release(peer, True, now)
            self._inflight.discard(exchange)
            peer.data["stats"].failures += 1
            exchange.client.transport.close()
            self._check_drained()
            return
        if (
            exchange.reused
            and outcome == "error"
            and conn is not None
            and conn.status == 0
            and exchange.method not in (b"POST", b"PATCH", b"LOCK")
        ):
            # a pooled keep-alive connection the backend had just closed: resend on a fresh
            # one to the same server without counting a failure (a POST follows the normal
            # rules instead: the server may have received it)
            exchange.reused = False
            exchange.attempt += 1
            exchange.deadline = now + self.connect_timeout + self.read_timeout
            self._loop.create_task(self._connect_and_send(exchange, peer))
            return
        exchange.selection.release(peer, counted, now)
        if counted:
            peer.data["stats"].failures += 1
            self._bus_publish(
                "attempt_failed", backend=peer.name, outcome=str(outcome), state=peer.state(now)
            )
        self._check_drained()
        method = exchange.method.decode()
        # the request was sent unless connecting itself failed
        sent = conn is not None or isinstance(outcome, int)
        if self.retry.retry(
            outcome,
            method,
            exchange.selection.tries_left,
            sent=sent,
            elapsed=now - exchange.started,
        ):
            self._attempt(exchange)
            return
        if outcome == "timeout":
            self._reply_error(exchange, 504, b"Gateway Timeout", "upstream timed out")
        else:
            self._reply_error(exchange, 502, b"Bad Gateway", f"upstream {outcome}")

    def _reply_error(self, exchange: _Exchange, status: int, reason: bytes, why: str) -> None:
        self._inflight.discard(exchange)
        client = exchange.client
        self._bus_publish(
            "error", status=status, reason=why, target=exchange.target.decode("latin-1")
        )
        body = b"%d %s (%s)\n" % (status, reason, why.encode())
        if not client.transport.is_closing():
            client.transport.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (status, reason, len(body), body)
            )
        client.done(exchange.keep_alive)


async def run_until_signal() -> None:
    """Wait until SIGINT or SIGTERM (for ``deploylab serve ...``)."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
