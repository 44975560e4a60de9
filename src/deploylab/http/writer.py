"""Sans-IO serialisation of requests and responses to HTTP/1.1 bytes.

The writer owns the framing: it drops any ``Content-Length``, ``Transfer-Encoding`` and
``Connection`` the caller put in and writes correct ones, so a proxy cannot pass on a framing
it did not check.
"""

from __future__ import annotations

import time
from email.utils import formatdate

from deploylab.http.messages import Headers, Response, reason_phrase

_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})
#: Request fields the writer never sends upstream: the framing, and ``Expect: 100-continue``,
#: which asks the next hop to wait before the body, but a request written here is followed by
#: its body without waiting, whole or as it arrives (the proxy answered the client's
#: ``Expect`` itself, as nginx does).
_REQUEST_DROPPED = _FRAMING | {"expect"}
_NO_BODY_STATUS = (204, 304)
_date_cache: tuple[int, str] = (-1, "")


def http_date_now() -> str:
    """The ``Date`` header value for now, formatted once per second (as nginx caches its
    time strings): formatting it for every response costs more than the rest of the head.

    >>> http_date_now().endswith(" GMT")
    True
    """
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, formatdate(second, usegmt=True))
    return _date_cache[1]


def _lines(headers: Headers, dropped: frozenset[str] = _FRAMING) -> list[str]:
    lines = []
    for name, value in headers:
        if name.lower() in dropped:
            continue
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} contains a line break: {value!r}")
        lines.append(f"{name}: {value}\r\n")
    return lines


def _body_length(response: Response, head: bool) -> int | None:
    """The Content-Length to announce: a streamed body's length; for a HEAD answer relayed
    from an upstream (no body here), the length the upstream announced, as nginx passes it,
    or none when it announced none (a chunked GET's length is unknown: ``Content-Length: 0``
    would say the resource is empty)."""
    if response.stream is not None:
        return response.length or 0
    if head and not response.body:
        for name, value in response.headers:
            if name.lower() == "content-length" and value.strip().isdigit():
                return int(value)
        return None
    return len(response.body)


def serialize_response(
    response: Response, *, head: bool = False, keep_alive: bool = True, date: bool = True
) -> bytes:
    """The bytes of ``response``. ``head``: answer to a HEAD request (headers only, with the
    body's Content-Length when it is known); ``keep_alive=False`` adds ``Connection: close``.

    >>> serialize_response(Response(200, [("Content-Length", "99")], b"hi"), date=False)
    b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nhi'
    >>> serialize_response(Response(304), keep_alive=False, date=False)
    b'HTTP/1.1 304 Not Modified\\r\\nConnection: close\\r\\n\\r\\n'
    >>> serialize_response(Response(200, [("Content-Length", "1234")]), head=True, date=False)
    b'HTTP/1.1 200 OK\\r\\nContent-Length: 1234\\r\\n\\r\\n'
    >>> serialize_response(Response(200, [("ETag", '"v1"')]), head=True, date=False)
    b'HTTP/1.1 200 OK\\r\\nETag: "v1"\\r\\n\\r\\n'
    """
    status = response.status
    reason = response.reason or reason_phrase(status)
    lines = [f"HTTP/1.1 {status} {reason}\r\n"]
    if date:
        for name, _ in response.headers:
            if name.lower() == "date":
                break
        else:
            lines.append(f"Date: {http_date_now()}\r\n")
    lines += _lines(response.headers)
    if status not in _NO_BODY_STATUS and status >= 200:
        if response.stream is not None and response.length is None:
            lines.append("Transfer-Encoding: chunked\r\n")
        elif (length := _body_length(response, head)) is not None:
            lines.append(f"Content-Length: {length}\r\n")
    if not keep_alive:
        lines.append("Connection: close\r\n")
    lines.append("\r\n")
    head_bytes = "".join(lines).encode("latin-1")
    if head or status in _NO_BODY_STATUS or status < 200 or response.stream is not None:
        return head_bytes
    return head_bytes + response.body


def serialize_request(
    method: str,
    target: str,
    headers: Headers,
    body: bytes = b"",
    *,
    keep_alive: bool = True,
    body_framing: int | bool | None = False,
) -> bytes:
    """The bytes of a request; adds ``Content-Length`` when there is a body (or the method
    normally has one).

    ``body_framing``: the head only, for a body sent after it as it arrives: its length, or
    None for a chunked body.

    >>> serialize_request("PUT", "/x", [("Host", "a")], body_framing=None)
    b'PUT /x HTTP/1.1\\r\\nHost: a\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n'

    >>> serialize_request("GET", "/x", [("Host", "a")])
    b'GET /x HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n'
    >>> serialize_request("POST", "/x", [("Host", "a"), ("Transfer-Encoding", "chunked")], b"ab")
    b'POST /x HTTP/1.1\\r\\nHost: a\\r\\nContent-Length: 2\\r\\n\\r\\nab'
    """
    if " " in target or "\r" in target or "\n" in target:
        raise ValueError(f"request target {target!r} contains whitespace")
    lines = [f"{method} {target} HTTP/1.1\r\n", *_lines(headers, _REQUEST_DROPPED)]
    if body_framing is None:
        lines.append("Transfer-Encoding: chunked\r\n")
    elif body_framing is not False:
        lines.append(f"Content-Length: {body_framing}\r\n")
    elif body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}\r\n")
    if not keep_alive:
        lines.append("Connection: close\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1") + body
