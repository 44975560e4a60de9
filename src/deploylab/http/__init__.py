"""Shared HTTP/1.1 plumbing for deploylab's servers: parse, frame, forward, serve.

Why ``httptools``: it wraps llhttp, the parser inside Node.js — written as a state machine
generated from a spec, fuzzed continuously (OSS-Fuzz) and hardened against the request
smuggling tricks proxies must refuse (``Transfer-Encoding`` together with ``Content-Length``,
duplicate or non-numeric ``Content-Length``, obsolete line folding, bare ``LF``). It runs in C,
so a teaching server can still be benchmarked against nginx. ``h11`` is just as strict and is
the sans-IO model the DESIGN follows, but is pure Python and several times slower; a
hand-written parser is exactly where smuggling bugs come from. llhttp does not bound sizes or
time, so :class:`RequestParser` adds that (414, 431, 413) and :class:`HTTPServer` adds the
slow-header cut-off (408).

The public surface (stable — other topics import it):

- messages: :class:`Request`, :class:`Response`, :class:`Limits`, :class:`HTTPError`;
- sans-IO parsing and writing: :class:`RequestParser`, :class:`ResponseParser`,
  :func:`serialize_request`, :func:`serialize_response`;
- header rules: :func:`get_header`, :func:`set_header`, :func:`remove_header`,
  :func:`remove_hop_by_hop`, :func:`x_forwarded_for`, :func:`forwarded_element`,
  :func:`append_via`, :func:`proxy_request_headers`;
- runtime: :class:`HTTPServer` (asyncio.Protocol, ``async with``), :class:`ConnectionPool`
  (upstream keep-alive client) and its errors :class:`UpstreamError`,
  :class:`UpstreamConnectError`, :class:`UpstreamTimeout`.
"""

from deploylab.http.client import (
    ConnectionPool,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from deploylab.http.headers import (
    HOP_BY_HOP,
    append_via,
    forwarded_element,
    get_header,
    proxy_request_headers,
    remove_header,
    remove_hop_by_hop,
    set_header,
    x_forwarded_for,
)
from deploylab.http.messages import HTTPError, Limits, Request, Response, reason_phrase
from deploylab.http.parser import RequestParser, ResponseParser
from deploylab.http.server import HTTPServer
from deploylab.http.writer import serialize_request, serialize_response

__all__ = [
    "HOP_BY_HOP",
    "ConnectionPool",
    "HTTPError",
    "HTTPServer",
    "Limits",
    "Request",
    "RequestParser",
    "Response",
    "ResponseParser",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamTimeout",
    "append_via",
    "forwarded_element",
    "get_header",
    "proxy_request_headers",
    "reason_phrase",
    "remove_header",
    "remove_hop_by_hop",
    "serialize_request",
    "serialize_response",
    "set_header",
    "x_forwarded_for",
]
