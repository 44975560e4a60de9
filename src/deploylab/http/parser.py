"""Sans-IO HTTP/1.1 parsing on llhttp (``httptools``) with size limits.

Feed bytes in, get whole messages out; nothing here touches a socket. Pipelined requests in
one buffer come out in order. Anything malformed raises :class:`HTTPError` with the status to
answer, after which the connection's framing cannot be trusted and it must be closed.
"""

from __future__ import annotations

import re
from typing import Generic, TypeVar

import httptools

from deploylab.http.body import RequestBody
from deploylab.http.messages import Headers, HTTPError, Limits, Request, Response

#: What a parser hands out: requests (:class:`RequestParser`) or responses.
Message = TypeVar("Message", Request, Response)

#: A ``Host`` value: a reg-name or IPv4 address, or an IPv6 literal, with an optional port
#: (RFC 9110 §7.2, RFC 3986 §3.2.2). ``Host: a b`` or ``Host: a/b`` is refused (nginx: 400).
_HOST_PATTERN = r"(?:[A-Za-z0-9._~!$&'()*+,;=%-]*|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?"
_VALID_HOST = re.compile(_HOST_PATTERN)
#: The same rule for raw header bytes (the balancer's hot path does not decode headers).
VALID_HOST_BYTES = re.compile(_HOST_PATTERN.encode())


def transfer_encoding_refusal(value: str, http_version: str) -> tuple[int, str] | None:
    """Why a request's ``Transfer-Encoding`` is refused, as ``(status, detail)``, or None
    when it is plain ``chunked`` in HTTP/1.1 (llhttp has already checked that chunked comes
    last). RFC 9112 §6.1: in HTTP/1.0 it is faulty framing; §6.3: another coding before
    chunked cannot be undone here and would reach the backend unannounced (nginx: 501).

    >>> transfer_encoding_refusal(" chunked", "1.1") is None
    True
    >>> transfer_encoding_refusal("gzip, chunked", "1.1")
    (501, "unsupported Transfer-Encoding 'gzip, chunked'")
    >>> transfer_encoding_refusal("chunked", "1.0")
    (400, 'Transfer-Encoding in an HTTP/1.0 request')
    """
    if http_version != "1.1":
        return 400, "Transfer-Encoding in an HTTP/1.0 request"
    coding = value.strip(" \t").lower()
    if coding == "chunked":
        return None
    return (501 if coding.endswith("chunked") else 400), f"unsupported Transfer-Encoding {value!r}"


def misused_asterisk_form(target: bytes | bytearray, method: bytes) -> bool:
    """Is ``target`` the asterisk form with a method other than OPTIONS? llhttp takes ``*``
    as the target of any method; RFC 9112 §3.2.4 keeps it for a server-wide OPTIONS (nginx
    refuses it with any method). Checked by the shared parser and the balancer alike.

    >>> misused_asterisk_form(b"*", b"GET"), misused_asterisk_form(b"*", b"OPTIONS")
    (True, False)
    >>> misused_asterisk_form(b"/", b"GET")
    False
    """
    return target == b"*" and method != b"OPTIONS"


def valid_host(value: str) -> bool:
    """Is ``value`` a well-formed ``Host`` header value?

    >>> valid_host("shop.test:8080"), valid_host("[::1]:80"), valid_host("a b"), valid_host("a/b")
    (True, True, False, False)
    >>> VALID_HOST_BYTES.fullmatch(b"a b") is None
    True
    """
    return _VALID_HOST.fullmatch(value) is not None


def _has_body(headers: Headers) -> bool:
    for name, value in headers:
        lowered = name.lower()
        if lowered == "transfer-encoding" or (lowered == "content-length" and value.strip("0 ")):
            return True
    return False


def _asks_upgrade(headers: Headers) -> bool:
    """``Upgrade`` named in ``Connection``: llhttp then ends HTTP after this request."""
    upgrade = any(name.lower() == "upgrade" for name, _ in headers)
    return upgrade and any(
        name.lower() == "connection" and "upgrade" in value.lower() for name, value in headers
    )


class _Base(Generic[Message]):
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._done: list[Message] = []
        self._reset()

    def _reset(self) -> None:
        self._url = bytearray()
        self._status = b""
        self._headers: Headers = []
        self._header_bytes = 0
        self._body = bytearray()
        self._started = False
        self._headers_complete = False

    # llhttp callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset()
        self._started = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.limits.max_header_bytes:
            raise HTTPError(431, f"headers exceed {self.limits.max_header_bytes} bytes")
        if self._headers_complete:
            # a chunked body's trailer section: counted, never merged into the headers
            # (RFC 9110 §6.5.1), or a trailer ``Host`` would pass the rules checked on them
            return
        if len(self._headers) >= self.limits.max_headers:
            raise HTTPError(431, f"more than {self.limits.max_headers} header fields")
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._headers_complete = True

    def on_body(self, body: bytes) -> None:
        if len(self._body) + len(body) > self.limits.max_body:
            raise HTTPError(413, f"body exceeds {self.limits.max_body} bytes")
        self._body += body

    @property
    def in_headers(self) -> bool:
        """True while a message has started but its headers are not complete (the window a
        slow-header client holds open)."""
        return self._started and not self._headers_complete

    @property
    def in_body(self) -> bool:
        """True while a message's headers are in but its body is not complete."""
        return self._started and self._headers_complete

    def _feed(
        self, parser: httptools.HttpRequestParser | httptools.HttpResponseParser, data: bytes
    ) -> None:
        try:
            parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            if isinstance(cause, _HeadDone):
                return
            if isinstance(cause, HTTPError):
                raise cause from None
            raise HTTPError(400, str(error)) from error
        except httptools.HttpParserError as error:
            raise HTTPError(400, str(error) or type(error).__name__) from None


class RequestParser(_Base[Request]):
    """Turn bytes from a client into :class:`Request` objects.

    >>> parser = RequestParser()
    >>> [r.target for r in parser.feed(b"GET /a HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nGET /b HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")]
    ['/a', '/b']
    >>> parser.feed(b"POST /c HTTP/1.1\\r\\nHost: x\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n3\\r\\nabc\\r\\n0\\r\\n\\r\\n")[0].body
    b'abc'

    Smuggling attempts and oversized parts raise :class:`HTTPError` with the status to send:

    >>> RequestParser().feed(b"POST / HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 3\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n")
    Traceback (most recent call last):
    ...
    deploylab.http.messages.HTTPError: 400 Bad Request: Transfer-Encoding can't be present with Content-Length
    >>> RequestParser().feed(b"GET / HTTP/1.1\\r\\nHost: a\\r\\nHost: b\\r\\n\\r\\n")
    Traceback (most recent call last):
    ...
    deploylab.http.messages.HTTPError: 400 Bad Request: more than one Host header
    >>> RequestParser(Limits(max_request_target=10)).feed(b"GET /" + b"a" * 20 + b" HTTP/1.1\\r\\n")
    Traceback (most recent call last):
    ...
    deploylab.http.messages.HTTPError: 414 URI Too Long: request target exceeds 10 bytes

    After a ``CONNECT`` request, the bytes that follow it are in :attr:`tunnel_data` and
    :attr:`upgraded` is True: they belong to the tunnel, not to HTTP.

    Any other ``Upgrade`` (websocket, h2c) is not supported: that request is answered as
    plain HTTP with ``keep_alive`` False, and :attr:`closed` is set, so that nothing after it
    on the connection is ever read as another request (what follows an upgrade request may be
    another protocol, which a smuggler can make look like HTTP):

    >>> parser = RequestParser()
    >>> [(r.target, r.keep_alive) for r in parser.feed(
    ...     b"GET /ws HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n\\r\\n"
    ...     b"GET /admin HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")], parser.closed
    ([('/ws', False)], True)

    >>> RequestParser().feed(b"POST / HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\n"
    ...                      b"Connection: Upgrade\\r\\nContent-Length: 5\\r\\n\\r\\nGET /")
    Traceback (most recent call last):
    ...
    deploylab.http.messages.HTTPError: 400 Bad Request: a request asking to upgrade the protocol cannot carry a body

    A request with ``Expect: 100-continue`` and a body sets :attr:`expect_continue` once its
    headers are in: the server answers ``100 Continue`` so the client sends the body.
    """

    def __init__(self, limits: Limits | None = None, *, stream_bodies: bool = False) -> None:
        super().__init__(limits or Limits())
        self._parser = httptools.HttpRequestParser(self)
        self.stream_bodies = stream_bodies
        self._stream: RequestBody | None = None
        self._body_seen = 0
        self.upgraded = False
        self.closed = False
        self.expect_continue = False
        self.tunnel_data = b""
        self.error: HTTPError | None = None
        self._good_host = ""  # the last Host value found valid

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_request_target:
            raise HTTPError(414, f"request target exceeds {self.limits.max_request_target} bytes")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # RFC 9112 §3.2: exactly one Host in HTTP/1.1 — two could route one request twice.
        hosts = sum(1 for name, _ in self._headers if name.lower() == "host")
        if hosts > 1:
            raise HTTPError(400, "more than one Host header")
        if hosts == 0 and self._parser.get_http_version() == "1.1":
            raise HTTPError(400, "HTTP/1.1 request without a Host header")
        if misused_asterisk_form(self._url, self._parser.get_method()):
            raise HTTPError(400, "the request target * is only for OPTIONS")
        if _asks_upgrade(self._headers) and _has_body(self._headers):
            # llhttp hands the bytes after the headers to the new protocol, so the body would
            # be read as the next request (a path a front proxy refused could reach the back)
            raise HTTPError(400, "a request asking to upgrade the protocol cannot carry a body")
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == "host" and value != self._good_host:
                if not valid_host(value):
                    raise HTTPError(400, f"invalid Host header {value!r}")
                self._good_host = value  # a keep-alive client repeats its own
            if lowered == "transfer-encoding":
                refused = transfer_encoding_refusal(value, self._parser.get_http_version())
                if refused is not None:
                    raise HTTPError(*refused)
            if lowered == "content-length" and int(value) > self.limits.max_body:
                # refuse now, as nginx does, instead of reading (or asking for) the body
                raise HTTPError(413, f"body of {int(value)} bytes exceeds {self.limits.max_body}")
            if (
                lowered == "expect"
                and value.strip().lower() == "100-continue"
                and self._parser.get_http_version() == "1.1"
                and _has_body(self._headers)
            ):
                self.expect_continue = True

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._body_seen = 0

    def on_body(self, body: bytes) -> None:
        stream = self._stream
        if stream is None:
            super().on_body(body)
            return
        self._body_seen += len(body)
        if self._body_seen > self.limits.max_body:
            raise HTTPError(413, f"body exceeds {self.limits.max_body} bytes")
        # pushed at the end of the read (feed), as one piece: a client's 1-byte chunks
        # must not become one piece (one upstream write, one chunk) each
        self._body += body

    def _push_body(self, stream: RequestBody) -> None:
        """Hand the body bytes parsed so far to the streaming request."""
        if self._body:
            stream.push(bytes(self._body))
            self._body = bytearray()

    @property
    def streaming(self) -> RequestBody | None:
        """The body of the request being read, when it streams (see ``stream_bodies``)."""
        return self._stream

    def on_message_complete(self) -> None:
        stream = self._stream
        if stream is not None:  # its request went out with its head
            self._push_body(stream)
            self._stream = None
            self._started = False
            stream.finish()
            return
        parser = self._parser
        self.expect_continue = False  # the body came anyway: no 100 for it any more
        self._done.append(
            Request(
                method=parser.get_method().decode("ascii"),
                target=self._url.decode("latin-1"),
                headers=self._headers,
                body=bytes(self._body),
                version=parser.get_http_version(),
                keep_alive=parser.should_keep_alive(),
            )
        )
        self._started = False

    def feed(self, data: bytes) -> list[Request]:
        """Parse ``data``; return the requests it completed (maybe none, maybe several).

        When good requests come before a malformed one in the same ``data``, they are
        returned and the error is kept in :attr:`error` (raised by the next call), so a
        server can answer them in order before the error.
        """
        if self.error is not None:
            raise self.error
        if self.upgraded:
            raise HTTPError(400, "data after CONNECT belongs to the tunnel")
        if self.closed:
            return []
        try:
            self._feed_all(data)
        except HTTPError as error:
            if not self._done:
                raise
            self.error = error
        if self._stream is not None:
            self._push_body(self._stream)
        if (
            self.stream_bodies
            and self._stream is None
            and self.error is None
            and self._started
            and self._headers_complete
            and not self.upgraded
            and not self.closed
        ):
            self._start_stream()
        done, self._done = self._done, []
        return done

    def _start_stream(self) -> None:
        """The head is in, the body is not: hand the request over now, its body to follow
        in a :class:`RequestBody` (nginx's ``proxy_request_buffering off``)."""
        headers = self._headers
        chunked = any(name.lower() == "transfer-encoding" for name, _ in headers)
        length = None if chunked else self._parser_length()
        stream = self._stream = RequestBody(length)
        self._body_seen = len(self._body)
        stream.push(bytes(self._body))
        self._body = bytearray()
        parser = self._parser
        self._done.append(
            Request(
                method=parser.get_method().decode("ascii"),
                target=self._url.decode("latin-1"),
                headers=headers,
                version=parser.get_http_version(),
                keep_alive=parser.should_keep_alive(),
                body_stream=stream,
            )
        )

    def _parser_length(self) -> int:
        for name, value in self._headers:
            if name.lower() == "content-length":
                return int(value)
        return 0

    def _feed_all(self, data: bytes) -> None:
        while True:
            try:
                self._feed(self._parser, data)
                return
            except httptools.HttpParserUpgrade as upgrade:
                offset = upgrade.args[0]
                if self._done and self._done[-1].method == "CONNECT":
                    self.upgraded = True
                    self.tunnel_data = bytes(data[offset:])
                    return
                # An Upgrade (websocket, h2c) we do not support: answer the request as plain
                # HTTP (Upgrade is hop-by-hop and gets dropped), then close: the bytes after
                # it belong to whatever protocol the client asked for, never to HTTP.
                if self._done:
                    self._done[-1].keep_alive = False
                self.closed = True
                return


class ResponseParser(_Base[Response]):
    """Turn bytes from an upstream into :class:`Response` objects.

    Informational (1xx) responses are skipped: the next response is the final one. Set
    ``head=True`` when the request was HEAD: the response then ends with its headers whatever
    its ``Content-Length`` says. A ``101 Switching Protocols`` is an error: no request sent
    through deploylab asks to upgrade, and after a 101 the connection no longer speaks HTTP
    (pooled, what the backend sent next would answer another client).

    >>> ResponseParser().feed(b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: x\\r\\n\\r\\n")
    Traceback (most recent call last):
    ...
    deploylab.http.messages.HTTPError: 502 Bad Gateway: 101 Switching Protocols, but no upgrade was asked for

    >>> parser = ResponseParser()
    >>> parser.feed(b"HTTP/1.1 100 Continue\\r\\n\\r\\nHTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nhi")[0].body
    b'hi'
    >>> parser = ResponseParser()
    >>> parser.feed(b"HTTP/1.1 200 OK\\r\\n\\r\\nuntil close"), parser.finish().body
    ([], b'until close')

    Bytes after the final response (a second response nobody asked for, a body after a HEAD
    answer, garbage) set :attr:`extra`: the response is still returned, but the connection
    must not be reused, or the next request on it would get those bytes as its answer.

    >>> parser = ResponseParser()
    >>> [r.body for r in parser.feed(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nhiXYZ")], parser.extra
    ([b'hi'], True)
    >>> parser = ResponseParser(head=True)
    >>> [r.status for r in parser.feed(b"HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nabc")], parser.extra
    ([200], True)
    """

    def __init__(
        self, limits: Limits | None = None, head: bool = False, streaming: bool = False
    ) -> None:
        super().__init__(limits or Limits())
        self._parser = httptools.HttpResponseParser(self)
        self.head = head
        self.streaming = streaming  # the caller takes the body as it comes: no size limit
        self.keep_alive = True
        self.extra = False
        self.informational = 0
        self._head_buffer = bytearray()
        self._head_done = False

    def restart(self) -> None:
        """Get ready for the next response on the same connection, the last one having
        ended cleanly (llhttp is between messages; a HEAD answer's parser is not reusable:
        llhttp stopped inside that message). Cheaper than a new parser per request.

        >>> parser = ResponseParser()
        >>> [r.body for r in parser.feed(b"HTTP/1.1 200 OK\\r\\nContent-Length: 1\\r\\n\\r\\na")]
        [b'a']
        >>> parser.restart()
        >>> [r.body for r in parser.feed(b"HTTP/1.1 200 OK\\r\\nContent-Length: 1\\r\\n\\r\\nb")]
        [b'b']
        """
        if self.head:
            raise ValueError("a HEAD answer's parser cannot be restarted: expected a new one")
        self._done = []
        self.keep_alive = True
        self.extra = False
        self.informational = 0
        self._reset()

    def on_message_begin(self) -> None:
        if self._done:
            self.extra = True  # a message after the final response
        super().on_message_begin()

    def on_status(self, status: bytes) -> None:
        self._status += status

    def on_body(self, body: bytes) -> None:
        if self.streaming:
            self._body += body
        else:
            super().on_body(body)

    @property
    def buffered(self) -> int:
        """Bytes of the current response's body parsed and not yet taken."""
        return len(self._body)

    def take_body(self) -> bytes:
        """The body bytes parsed so far, removed from the parser (streaming mode)."""
        piece, self._body = bytes(self._body), bytearray()
        return piece

    def head_so_far(self) -> Response:
        """The current response's status and headers (its body still to come)."""
        return Response(
            status=self._parser.get_status_code(),
            headers=self._headers,
            reason=self._status.decode("latin-1"),
            version=self._parser.get_http_version(),
        )

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.head and self._parser.get_status_code() >= 200:
            self._complete()
            raise _HeadDone

    def on_message_complete(self) -> None:
        self._complete()

    def _complete(self) -> None:
        status = self._parser.get_status_code()
        self._started = False
        if status == 101:
            raise HTTPError(502, "101 Switching Protocols, but no upgrade was asked for")
        if 100 <= status < 200:
            self.informational += 1
            return
        self.keep_alive = self._parser.should_keep_alive()
        self._done.append(
            Response(
                status=status,
                headers=self._headers,
                body=bytes(self._body),
                reason=self._status.decode("latin-1"),
                version=self._parser.get_http_version(),
            )
        )

    def feed(self, data: bytes) -> list[Response]:
        """Parse ``data``; return the responses it completed."""
        if self._head_done:
            self.extra = self.extra or bool(data)
            return []
        if self.head:
            self._head_buffer += data
        try:
            self._feed(self._parser, data)
        except HTTPError:
            if not self._done:
                raise
            self.extra = True  # garbage after a complete response: keep it, drop the link
        done, self._done = self._done, []
        if self.head and done:
            self._head_done = True
            self.extra = self.extra or self._bytes_after_heads() != 0
        return done

    def _bytes_after_heads(self) -> int:
        """How many bytes follow the informational heads and the final head (HEAD mode)."""
        end = 0
        for _ in range(self.informational + 1):
            found = self._head_buffer.find(b"\r\n\r\n", end)
            if found < 0:
                return -1  # unusual line ends: treat as unclean
            end = found + 4
        return len(self._head_buffer) - end

    def finish(self) -> Response | None:
        """The peer closed the connection: return a response whose body ran until close
        (no Content-Length, not chunked), or None when the close cut a message short."""
        if not self._headers_complete or not self._started:
            return None
        names = {name.lower() for name, _ in self._headers}
        if "content-length" in names or "transfer-encoding" in names:
            return None
        self._complete()
        self.keep_alive = False
        return self._done.pop() if self._done else None


class _HeadDone(Exception):
    """Raised inside the parser to stop after a HEAD response's headers."""
