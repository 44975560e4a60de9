"""HTTP messages as plain data: requests, responses, size and time limits, protocol errors.

Headers are a list of ``(name, value)`` string pairs: order and repeated fields are kept, as
they must be when a proxy forwards them. Names compare case-insensitively.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

Headers = list[tuple[str, str]]


# RFC 9110 renamed these; Python's table has the old names before 3.13.
_RFC9110_PHRASES = {413: "Content Too Large", 414: "URI Too Long", 416: "Range Not Satisfiable"}


def reason_phrase(status: int) -> str:
    """The standard reason phrase of ``status`` ("" when there is none).

    >>> reason_phrase(431)
    'Request Header Fields Too Large'
    >>> reason_phrase(599)
    ''
    """
    if status in _RFC9110_PHRASES:
        return _RFC9110_PHRASES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class HTTPError(Exception):
    """A request that must be answered with an error ``status`` (400, 408, 413, 414, 431…).

    >>> error = HTTPError(414, "request target is 9000 bytes, the limit is 8192")
    >>> error.status, str(error)
    (414, '414 URI Too Long: request target is 9000 bytes, the limit is 8192')
    """

    def __init__(self, status: int, detail: str = "") -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{status} {reason_phrase(status)}: {detail}".rstrip(": "))


@dataclass(frozen=True)
class Limits:
    """Bounds a server puts on each request, with nginx-like defaults.

    ``max_request_target`` → 414, ``max_header_bytes``/``max_headers`` → 431 (nginx's
    ``large_client_header_buffers 4 8k`` is of the same order), ``max_body`` → 413,
    ``header_timeout``: seconds from a request's first byte to the end of its headers → 408
    (nginx ``client_header_timeout``), ``body_timeout``: seconds between two reads of a
    request body → 408 (nginx ``client_body_timeout``), ``keep_alive_timeout``: idle seconds
    between requests before the connection is closed (nginx ``keepalive_timeout``),
    ``send_timeout``: seconds a client may read nothing while a response waits for it before
    the connection is closed (nginx ``send_timeout``), ``max_pipelined``: requests read ahead
    of their answers before the server stops reading from that client.
    """

    max_request_target: int = 8192
    max_header_bytes: int = 16384
    max_headers: int = 100
    max_body: int = 8 * 1024 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    keep_alive_timeout: float = 15.0
    send_timeout: float = 60.0
    max_pipelined: int = 32


class _HeaderAccess:
    headers: Headers

    def header(self, name: str, default: str | None = None) -> str | None:
        """The value of header ``name`` (repeated fields joined with ", "), or ``default``."""
        lowered = name.lower()
        values = [value for key, value in self.headers if key.lower() == lowered]
        return ", ".join(values) if values else default


@dataclass
class Request(_HeaderAccess):
    """One parsed request. ``client`` is the peer ``(host, port)`` the server saw; ``id`` is
    the server's running number for it (used to correlate events).

    >>> request = Request("GET", "/a", [("Host", "x"), ("Accept", "a"), ("accept", "b")])
    >>> request.header("ACCEPT"), request.header("Cookie", "none")
    ('a, b', 'none')
    """

    method: str
    target: str
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    version: str = "1.1"
    keep_alive: bool = True
    client: tuple[str, int] | None = None
    server: tuple[str, int] | None = None
    id: int = 0
    #: the body still arriving (a :class:`deploylab.http.body.RequestBody`), when the server
    #: streams bodies; ``body`` is then empty
    body_stream: Any = None

    @property
    def client_ip(self) -> str:
        """The client's address as the server saw it, ``"?"`` for a request built by hand.

        >>> Request("GET", "/", client=("127.0.0.1", 5000)).client_ip, Request("GET", "/").client_ip
        ('127.0.0.1', '?')
        """
        return self.client[0] if self.client else "?"


@dataclass
class Response(_HeaderAccess):
    """A response to write or one read from an upstream. Framing headers
    (``Content-Length``, ``Transfer-Encoding``, ``Connection``) are set by the writer.

    ``tunnel`` is only for CONNECT: an ``(asyncio.StreamReader, asyncio.StreamWriter)`` pair
    to splice the client connection to once this response is sent.

    ``stream``: a body too large to hold, as an async iterator of pieces (``body`` is then
    empty) with its ``length`` when known (else the server sends it chunked). A proxy passes
    a large upstream body this way, only as fast as its client reads it.

    >>> Response.json({"ok": True}).body
    b'{"ok": true}'
    >>> Response.text("hi", 404).header("content-type")
    'text/plain; charset=utf-8'
    """

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    reason: str = ""
    version: str = "1.1"
    tunnel: Any = None
    stream: Any = None
    length: int | None = None

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: Headers | None = None) -> Response:
        """A ``application/json`` response."""
        body = json.dumps(data).encode()
        return cls(status, [("Content-Type", "application/json"), *(headers or [])], body)

    @classmethod
    def text(cls, text: str, status: int = 200, headers: Headers | None = None) -> Response:
        """A ``text/plain`` response."""
        body = text.encode()
        return cls(status, [("Content-Type", "text/plain; charset=utf-8"), *(headers or [])], body)

    @classmethod
    def error(cls, status: int, detail: str = "") -> Response:
        """A short plain-text error page that names nothing internal."""
        line = f"{status} {reason_phrase(status)}"
        return cls.text(f"{line}\n{detail}\n" if detail else f"{line}\n", status)
