"""The L7 (HTTP) balancer's client side: read requests, choose a backend, forward, retry.

:class:`ClientConn` parses a client's requests with llhttp (``httptools``) and bounds them
like :class:`deploylab.http.HTTPServer`; :class:`L7Forwarding` (mixed into
:class:`~deploylab.balancer.runtime.Balancer`) turns each request into an
:class:`~deploylab.balancer.l7_upstream.Exchange`, picks a backend with the core's
:class:`~deploylab.balancer.core.Selection`, and retries or answers 502/504 as nginx's
``proxy_next_upstream`` says. The hot path is deliberately lean: protocol callbacks, no
task per request when a pooled connection is idle, headers kept as bytes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, cast

import httptools

from deploylab.balancer.core import NoLiveUpstreams, Peer, RetryPolicy, Selection, Upstream
from deploylab.balancer.l7_upstream import BodyPipe, Exchange, UpstreamConn
from deploylab.events import EventBus
from deploylab.http.headers import HOP_BY_HOP
from deploylab.http.messages import Limits
from deploylab.http.parser import VALID_HOST_BYTES

if TYPE_CHECKING:
    from deploylab.balancer.runtime import Balancer

__all__ = ["ClientConn", "L7Forwarding"]


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
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _origin_form(target: bytes, headers: list) -> tuple[bytes, list]:
    """An absolute-form target (RFC 9112 §3.2.2: a server must accept it) as the origin form
    backends expect, its authority replacing ``Host`` — what nginx does.

    >>> _origin_form(b"http://shop.test/cart?x=1", [(b"Host", b"other"), (b"Accept", b"*/*")])
    (b'/cart?x=1', [(b'Accept', b'*/*'), (b'Host', b'shop.test')])
    """
    authority, _, path = target.partition(b"://")[2].partition(b"/")
    rest = [(name, value) for name, value in headers if name.lower() != b"host"]
    return b"/" + path, [*rest, (b"Host", authority)]


class ClientConn(asyncio.Protocol):
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
        "body_held",
        "body_length",
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
        "pipe",
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
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)  # connection_made
        self.queue: deque = deque()
        self.busy = False
        self.url = b""
        self.headers: list = []
        self.body: list = []
        self.header_bytes = 0
        self.body_bytes = 0
        self.body_length: int | None = 0  # of the message being read; None when chunked
        self.pipe: BodyPipe | None = None  # its body, when it streams to a backend
        self.body_held = False  # reading paused until the backend takes more of the body
        self.client_ip = b"127.0.0.1"
        self.upstream: UpstreamConn | None = None  # the connection answering us now
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
        pipe = self.pipe
        if pipe is not None:  # the client left mid-body: the backend must not wait for it
            self.pipe = None
            pipe.detach()
            if pipe.exchange is not None:
                self.balancer._cut(pipe.exchange)

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
            return
        if self.in_message and self.headers_done and self.pipe is None and self.body_length != 0:
            self._stream_body()

    def _stream_body(self) -> None:
        """The body did not come whole with the head: forward the request now and its body
        as it arrives (nginx's ``proxy_request_buffering off``), holding at most a window."""
        pipe = self.pipe = BodyPipe(self, self.body_length)
        for piece in self.body:
            pipe.feed(piece)
        self.body = []
        self._dispatch(pipe)

    def hold_body(self, on: bool) -> None:
        """Pause reading while a streamed body waits for its backend (see BodyPipe)."""
        self.body_held = on
        if on:
            self._pause_reading()
        elif self.reading_paused and len(self.queue) <= self.limits.max_pipelined:
            self._resume_reading()

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
        """Answer an error, after the answers to the requests read before it, and close.
        A body streaming to a backend is cut there first (its request never completes)."""
        if self.failed:
            return
        self.failed = True
        self._pause_reading()
        pipe = self.pipe
        if pipe is not None:
            self.pipe = None
            pipe.detach()  # a queued request with it is skipped (see done)
            exchange = pipe.exchange
            if exchange is not None:
                if exchange.sent_to_client:  # its answer is under way: only a close is left
                    self.balancer._cut(exchange)
                    self.transport.close()
                    return
                self.balancer._cut(exchange)
                self.busy = False
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
        self.body_length = 0
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
                length = int(value)
                if length > self.limits.max_body:  # refused before any body is read
                    raise _Refused(413, b"Content Too Large")
                if self.body_length is not None:
                    self.body_length = length
            elif lower == b"transfer-encoding":
                has_body = True
                self.body_length = None  # chunked (llhttp refuses any other coding)
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
        self.body_bytes += len(body)
        if self.body_bytes > self.limits.max_body:
            raise _Refused(413, b"Content Too Large")
        if self.pipe is not None:
            self.pipe.feed(body)
        else:
            self.body.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        pipe = self.pipe
        if pipe is not None:  # its request went out when the head came
            self.pipe = None
            pipe.finish()
            return
        self.continue_due = False
        self._dispatch(self.body)

    def _dispatch(self, body: list[bytes] | BodyPipe) -> None:
        """Forward a request now, or queue it behind the ones being answered."""
        request = (
            self.parser.get_method(),
            self.url,
            self.headers,
            body,
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
        while self.queue:
            item = self.queue.popleft()
            if len(item) == 2:  # the error that ended the pipeline
                self._write_error(*item)
                return
            body = item[3]
            if isinstance(body, BodyPipe):
                if body.aborted:  # its body was cut off (an error follows it)
                    continue
                if self.continue_due and not self.queue:  # it waits for 100 to send its body
                    self.continue_due = False
                    self.transport.write(_CONTINUE)
            if self.reading_paused and len(self.queue) <= 1 and not self.body_held:
                self._resume_reading()
            self.balancer._handle(self, *item)
            return
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
        if self.failed or self.close_after or self.body_held or self.transport.is_closing():
            return
        self.reading_paused = False
        self.transport.resume_reading()

    def check_time(self, now: float) -> None:
        """Housekeeping: 408 for a request that stopped progressing; close when idle."""
        if self.failed:
            return
        limits = self.limits
        pipe = self.pipe
        if pipe is not None:  # a body on its way: the client must keep sending it
            if not pipe.held and now - self.last > limits.body_timeout:
                self._fail(408, b"Request Timeout")
            return
        if self.busy:
            return
        if self.in_message:
            if not self.headers_done:
                if now - self.message_started > limits.header_timeout:
                    self._fail(408, b"Request Timeout")
            elif now - self.last > limits.body_timeout:
                self._fail(408, b"Request Timeout")
        elif now - self.last > limits.keep_alive_timeout:
            self.transport.close()


class L7Forwarding:
    """The L7 forwarding steps of :class:`~deploylab.balancer.runtime.Balancer` (a mixin:
    the attributes below are the balancer's)."""

    upstream: Upstream
    retry: RetryPolicy
    clock: float
    key: str
    keepalive: int
    connect_timeout: float
    read_timeout: float
    request_events: bool
    bus: EventBus
    limits: Limits
    _loop: asyncio.AbstractEventLoop
    _inflight: set[Exchange]
    _drain_waiters: list[tuple[Peer, asyncio.Future[None]]]

    def _bus_publish(self, kind: str, **fields: Any) -> None:
        self.bus.publish(kind, **fields)

    def _check_drained(self) -> None:
        raise NotImplementedError  # the balancer's

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
        self,
        client: ClientConn,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: list[bytes] | BodyPipe,
        keep_alive: bool,
    ) -> None:
        """Turn a parsed client request into an exchange and send its first attempt (its
        body whole, or a :class:`BodyPipe` still filling)."""
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
        pipe = None
        if isinstance(body, BodyPipe):
            pipe, payload = body, b""
            parts.append(pipe.framing())
        else:
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
        exchange = Exchange(
            client,
            method,
            target,
            b"".join(parts) + payload,
            keep_alive,
            selection,
            self._loop.time(),
            pipe,
        )
        if pipe is not None:
            pipe.exchange = exchange
        self._inflight.add(exchange)
        self._attempt(exchange)

    def _attempt(self, exchange: Exchange) -> None:
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

    async def _connect_and_send(self, exchange: Exchange, peer: Peer) -> None:
        host, port = peer.name.rsplit(":", 1)
        attempt = exchange.attempt
        try:
            _, conn = await asyncio.wait_for(
                self._loop.create_connection(lambda: UpstreamConn(self, peer), host, int(port)),
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

    def _send(self, exchange: Exchange, conn: UpstreamConn) -> None:
        exchange.conn = conn
        exchange.client.upstream = conn
        conn.exchange = exchange
        conn.start()
        conn.transport.write(exchange.head)
        if exchange.pipe is not None:
            exchange.pipe.attach(exchange, conn)

    def _release_conn(self, conn: UpstreamConn, peer: Peer) -> None:
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

    def _retry_status(self, exchange: Exchange, conn: UpstreamConn) -> bool:
        """A status listed in proxy_next_upstream with another try left (nginx:
        ``peer.tries > 1``): drop this response and pass the request to the next server."""
        status = conn.status
        retry = self.retry
        if exchange.pipe is not None and exchange.pipe.sent:
            return False  # the body went to this server only: nothing to resend
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

    def _finished(self, exchange: Exchange, conn: UpstreamConn) -> None:
        peer = exchange.peer
        now = self._loop.time()
        self._end_body(exchange, conn)
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
        self, exchange: Exchange, conn: UpstreamConn | None, outcome, counted: bool = True
    ) -> None:
        """An attempt ended without a usable response: count it, retry or answer 502/504."""
        if exchange not in self._inflight:
            return
        peer = exchange.peer
        pipe = exchange.pipe
        if pipe is not None:
            pipe.sink = None  # a next attempt plugs its own connection in
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
            and not (pipe is not None and pipe.sent)
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
        if pipe is not None and pipe.sent:
            pass  # its body went to that server only and is not kept: no next try
        elif self.retry.retry(
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

    def _end_body(self, exchange: Exchange, conn: UpstreamConn | None) -> None:
        """The exchange ends: a body still streaming in goes nowhere any more, and neither
        connection can be reused (the backend saw part of a request; the client's next bytes
        are the rest of this body)."""
        pipe = exchange.pipe
        if pipe is not None and not pipe.complete:
            pipe.detach()
            exchange.keep_alive = False
            if conn is not None:
                conn.keep_alive = False

    def _cut(self, exchange: Exchange) -> None:
        """Abandon an exchange whose request body will never be complete (the client left,
        sent too much or stalled): the backend's connection is cut, nothing is answered."""
        if exchange.pipe is not None:
            exchange.pipe.detach()
        if exchange not in self._inflight:
            return
        self._inflight.discard(exchange)
        conn = exchange.conn
        if conn is not None and conn.exchange is exchange:
            conn.exchange = None
            conn.keep_alive = False
            conn.transport.abort()
        exchange.client.upstream = None
        if exchange.peer is not None:
            exchange.selection.release(exchange.peer, False, self._loop.time())
        self._check_drained()

    def _reply_error(self, exchange: Exchange, status: int, reason: bytes, why: str) -> None:
        self._inflight.discard(exchange)
        self._end_body(exchange, None)
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
