"""The L7 (HTTP) balancer's client connection: read requests with llhttp (``httptools``),
bound them like :class:`deploylab.http.HTTPServer` (sizes, pipelining, 408 timeouts), answer
``100 Continue`` here, and hand each request (its body whole, or streaming in a
:class:`~deploylab.balancer.l7_upstream.BodyPipe`) to the balancer's forwarding steps in
:mod:`deploylab.balancer.l7`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING, cast

import httptools

from deploylab.balancer.l7_upstream import BodyPipe, UpstreamConn
from deploylab.http.parser import (
    VALID_HOST_BYTES,
    misused_asterisk_form,
    transfer_encoding_refusal,
)

if TYPE_CHECKING:
    from deploylab.balancer.runtime import Balancer

__all__ = ["CONTINUE", "ClientConn"]


class _Refused(Exception):
    """A request answered with an error ``status`` (400, 413, 414, 431…), then closed."""

    def __init__(self, status: int, reason: bytes) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


#: The interim answer the balancer gives a client that sent ``Expect: 100-continue``.
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


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
        "good_host",
        "head_cache",
        "head_fields",
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
        #: (target, method, headers) of the last request and what was forwarded for it
        self.head_cache: tuple | None = None
        self.good_host = b""  # the last Host value found valid (a client repeats its own)
        self.head_fields = 0  # of a chunked request: its header fields; trailers follow
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
        if self.in_message and self.headers_done:
            pipe = self.pipe
            if pipe is None:
                if self.body_length != 0:
                    self._stream_body()
            elif self.body:  # what this read brought of a streaming body: one piece, one write
                pipe.feed(b"".join(self.body))
                self.body = []

    def _stream_body(self) -> None:
        """The body did not come whole with the head: forward the request now and its body
        as it arrives (nginx's ``proxy_request_buffering off``), holding at most a window.
        Pieces go on one per read, not one per chunk the client chose to send (100,000
        one-byte chunks were 100,000 writes here and 100,000 chunks for the backend)."""
        pipe = self.pipe = BodyPipe(self, self.body_length)
        if self.body:
            pipe.feed(b"".join(self.body))
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
                if value != self.good_host:
                    if VALID_HOST_BYTES.fullmatch(value) is None:
                        raise _Refused(400, b"Bad Request")
                    self.good_host = value
            elif lower == b"content-length":
                has_body = has_body or bool(value.strip(b"0 "))
                length = int(value)
                if length > self.limits.max_body:  # refused before any body is read
                    raise _Refused(413, b"Content Too Large")
                if self.body_length is not None:
                    self.body_length = length
            elif lower == b"transfer-encoding":
                refused = transfer_encoding_refusal(
                    value.decode("latin-1"), self.parser.get_http_version()
                )
                if refused is not None:
                    status = refused[0]
                    raise _Refused(status, HTTPStatus(status).phrase.encode())
                has_body = True
                self.body_length = None
                self.head_fields = len(self.headers)  # trailer fields are not headers
            elif lower == b"upgrade":
                upgrade = True
            elif lower == b"connection":
                connection_upgrade = b"upgrade" in value.lower()
            elif lower == b"expect":
                expect = value.strip().lower() == b"100-continue"
        # RFC 9112 §3.2: exactly one Host in HTTP/1.1 (two could route one request twice)
        if hosts > 1 or (hosts == 0 and self.parser.get_http_version() == "1.1"):
            raise _Refused(400, b"Bad Request")
        url = self.url
        if url[0] != 47:  # not "/…"
            if b"://" in url:  # absolute form: its authority becomes the Host
                authority = url.partition(b"://")[2].partition(b"/")[0]
                if not authority or VALID_HOST_BYTES.fullmatch(authority) is None:
                    raise _Refused(400, b"Bad Request")  # empty, userinfo (RFC 9110 §4.2)
            elif misused_asterisk_form(url, self.parser.get_method()):
                raise _Refused(400, b"Bad Request")
        if upgrade and connection_upgrade:
            if has_body:  # llhttp would read the body as the next request: refuse
                raise _Refused(400, b"Bad Request")
            self.close_after = True
        if expect and has_body and self.parser.get_http_version() == "1.1":
            if self.busy:
                self.continue_due = True  # after the answers before it
            else:
                self.transport.write(CONTINUE)

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.limits.max_body:
            raise _Refused(413, b"Content Too Large")
        self.body.append(body)  # a streaming body's pieces go on at the end of the read

    def on_message_complete(self) -> None:
        self.in_message = False
        if self.body_length is None:  # chunked: trailer fields are never merged (RFC 9110
            del self.headers[self.head_fields :]  # §6.5.1), nor checked like headers
        pipe = self.pipe
        if pipe is not None:  # its request went out when the head came
            self.pipe = None
            if self.body:
                pipe.feed(b"".join(self.body))
                self.body = []
            pipe.finish()
            return
        self.continue_due = False
        self._dispatch(self.body)

    def _dispatch(self, body: list[bytes] | BodyPipe) -> None:
        """Forward a request now, or queue it behind the ones being answered."""
        parser = self.parser
        method = parser.get_method()
        if method == b"CONNECT":  # a tunnel is a forward proxy's job (nginx: 400/405)
            raise _Refused(405, b"Method Not Allowed")
        keep_alive = parser.should_keep_alive() and not self.close_after
        if self.busy:
            self.queue.append((method, self.url, self.headers, body, keep_alive))
            if len(self.queue) > self.limits.max_pipelined:
                self._pause_reading()  # read no further ahead of the answers
        else:
            self.busy = True
            self.balancer._handle(self, method, self.url, self.headers, body, keep_alive)

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
                    self.transport.write(CONTINUE)
            if self.reading_paused and len(self.queue) <= 1 and not self.body_held:
                self._resume_reading()
            self.balancer._handle(self, *item)
            return
        self.busy = False
        if self.continue_due:
            self.continue_due = False
            self.transport.write(CONTINUE)
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
