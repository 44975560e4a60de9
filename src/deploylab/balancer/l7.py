"""The L7 (HTTP) balancer's forwarding: choose a backend, forward, retry.

:class:`L7Forwarding` (mixed into :class:`~deploylab.balancer.runtime.Balancer`) turns each
request a :class:`~deploylab.balancer.l7_client.ClientConn` read into an
:class:`~deploylab.balancer.l7_upstream.Exchange`, picks a backend with the core's
:class:`~deploylab.balancer.core.Selection`, and retries or answers 502/504 as nginx's
``proxy_next_upstream`` says. The hot path is deliberately lean: protocol callbacks, no
task per request when a pooled connection is idle, headers kept as bytes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from deploylab.balancer.core import NoLiveUpstreams, Peer, RetryPolicy, Selection, Upstream
from deploylab.balancer.l7_client import ClientConn
from deploylab.balancer.l7_upstream import BodyPipe, Exchange, UpstreamConn
from deploylab.events import EventBus
from deploylab.http.headers import HOP_BY_HOP
from deploylab.http.messages import Limits

__all__ = ["ClientConn", "L7Forwarding"]


#: Request headers not forwarded (hop-by-hop, rewritten by the balancer, or answered here:
#: ``Expect`` gets its ``100 Continue`` from the balancer, which then sends the body).
_DROP = frozenset(
    {name.encode() for name in HOP_BY_HOP}
    | {b"content-length", b"x-forwarded-for", b"x-forwarded-proto", b"x-real-ip", b"expect"}
)


def _origin_form(target: bytes, headers: list) -> tuple[bytes, list]:
    """An absolute-form target (RFC 9112 §3.2.2: a server must accept it) as the origin form
    backends expect, its authority replacing ``Host`` — what nginx does.

    >>> _origin_form(b"http://shop.test/cart?x=1", [(b"Host", b"other"), (b"Accept", b"*/*")])
    (b'/cart?x=1', [(b'Accept', b'*/*'), (b'Host', b'shop.test')])
    """
    authority, _, path = target.partition(b"://")[2].partition(b"/")
    rest = [(name, value) for name, value in headers if name.lower() != b"host"]
    return b"/" + path, [*rest, (b"Host", authority)]


def _forwarded_head(method: bytes, target: bytes, headers: list, ip: bytes) -> bytes:
    """The request line and headers a backend gets, without the body's framing and the
    blank line: hop-by-hop headers (and those ``Connection`` names) dropped, the client's
    ``X-Forwarded-For`` chain extended with its address, ``X-Real-IP`` and
    ``X-Forwarded-Proto`` set here.

    >>> _forwarded_head(b"GET", b"/", [(b"Host", b"a"), (b"X-Forwarded-For", b"1.2.3.4"),
    ...     (b"Connection", b"x-secret"), (b"X-Secret", b"1")], b"127.0.0.1").split(b"\\r\\n")
    [b'GET / HTTP/1.1', b'Host: a', b'X-Forwarded-For: 1.2.3.4, 127.0.0.1', b'X-Real-IP: 127.0.0.1', b'X-Forwarded-Proto: http', b'']
    """
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
    return b"".join(parts)


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
        cached = client.head_cache
        if (
            cached is not None
            and cached[0] == target
            and cached[1] == method
            and cached[2] == headers
        ):
            # the same request line and headers as this client's last request (a keep-alive
            # client repeats itself): the forwarded head is the same bytes
            target, headers, head, whole = cached[3], cached[4], cached[5], cached[6]
        else:
            raw_target, raw_headers = target, headers
            if target[:1] != b"/" and b"://" in target:
                target, headers = _origin_form(target, headers)
            head = _forwarded_head(method, target, headers, ip)
            whole = head + b"\r\n"  # the whole request when it has no body
            client.head_cache = (raw_target, method, raw_headers, target, headers, head, whole)
        pipe = None
        if isinstance(body, BodyPipe):
            pipe, payload = body, b""
            head += body.framing() + b"\r\n"
        else:
            payload = b"".join(body) if body else b""
            if payload or method in (b"POST", b"PUT", b"PATCH"):
                head += b"Content-Length: %d\r\n\r\n" % len(payload)
            else:
                head = whole
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
            head + payload if payload else head,
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
        while idle:
            conn = idle.pop()
            if conn.has_unread():
                conn.transport.close()  # late bytes or a close: never an answer to this
                continue
            exchange.reused = True
            self._send(exchange, conn)
            return
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
        conn.start()  # ready for the response
        conn.transport.write(exchange.head)  # the head and a whole body: one write
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
        if exchange.pipe is not None:
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
