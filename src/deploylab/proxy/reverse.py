"""A reverse proxy: clients talk to it as if it were the site; it spreads requests over
backends (round robin), tells them who the client was, and hides them.

Like the seed's nginx set-up, it sets ``X-Real-IP`` (``$remote_addr``), appends to
``X-Forwarded-For`` (``$proxy_add_x_forwarded_for``), passes the client's ``Host``
(``$http_host``) and adds ``X-Forwarded-Proto``. It drops the backends' ``Server`` and
``X-Powered-By`` headers and never names a backend in its error pages: 502 when a backend
cannot be reached or answers garbage, 504 when it does not answer in time (each read from
a backend is bounded, not the whole response, so a long download is never cut). Large
response bodies are streamed, request bodies are forwarded as they arrive (nginx's
``proxy_request_buffering off``), and a client's ``Expect: 100-continue`` is answered here.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from urllib.parse import urlsplit

from deploylab.balancer.config import backend_address
from deploylab.events import EventBus
from deploylab.http import (
    ConnectionPool,
    HTTPServer,
    Limits,
    Request,
    Response,
    UpstreamError,
    proxy_request_headers,
    remove_hop_by_hop,
)

#: Bodies larger than this are streamed to the client as they arrive (only as fast as it
#: reads), not held in memory: nginx's ``proxy_buffering`` with a bounded buffer.
STREAM_OVER = 256 * 1024

#: Response headers that would tell the client what runs behind the proxy.
REVEALING_HEADERS = ("Server", "X-Powered-By", "X-AspNet-Version")


def hide_backend(headers, server_name: str = "deploylab") -> list[tuple[str, str]]:
    """Response headers with hop-by-hop and revealing fields replaced by the proxy's own.

    >>> hide_backend([("Server", "gunicorn (10.0.0.5:8000)"), ("X-Powered-By", "PHP"), ("A", "1")])
    [('A', '1'), ('Server', 'deploylab')]
    """
    return [*remove_hop_by_hop(headers, *REVEALING_HEADERS), ("Server", server_name)]


class ReverseProxy(HTTPServer):
    """The reverse proxy server. ``backends``: ``http://host:port`` URLs, used in turn.
    ``add_forwarded``: also send the standard ``Forwarded: for=…;proto=…;host=…`` (RFC 7239)."""

    def __init__(
        self,
        backends: Sequence[str],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        name: str = "reverse-proxy",
        upstream_timeout: float = 10.0,
        add_forwarded: bool = False,
        limits: Limits | None = None,
        events: EventBus | None = None,
    ) -> None:
        if not backends:
            raise ValueError("a reverse proxy needs at least one --backend URL")
        super().__init__(
            self.handle, host, port, name=name, limits=limits, events=events, stream_bodies=True
        )
        self.backends = [backend_address(url) for url in backends]
        self._turn = itertools.cycle(range(len(self.backends)))
        self.upstream_timeout = upstream_timeout
        self.add_forwarded = add_forwarded
        self.pool = ConnectionPool(read_timeout=upstream_timeout)

    async def stop(self) -> None:
        await super().stop()
        await self.pool.close()

    def pick(self) -> tuple[str, int]:
        """The next backend in round-robin order."""
        return self.backends[next(self._turn)]

    async def handle(self, request: Request) -> Response:
        if request.method == "CONNECT":  # a tunnel is a forward proxy's job (nginx: 400/405)
            return Response.error(405, "CONNECT is not allowed here")
        client_ip = request.client_ip
        target, own_host = request.target, None
        if not target.startswith("/") and target != "*":
            # RFC 9112 §3.2.2: a server must accept the absolute form; its authority then
            # replaces Host (nginx does the same), and the backend gets the origin form.
            parts = urlsplit(target)
            if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
                return Response.error(400, "expected /path or http://host/path as the target")
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            own_host = parts.netloc
        elif not request.header("Host"):
            # An HTTP/1.0 client may omit Host; the backend speaks 1.1 and needs one.
            own_host = f"{self.host}:{self.port}"
        host, port = self.pick()
        headers = proxy_request_headers(
            request.headers, client_ip, proto="http", host=own_host, forwarded=self.add_forwarded
        )
        events = self.events
        backend = f"{host}:{port}"
        if events.active:  # (no event built when nobody would see it)
            events.publish(
                "forward",
                id=request.id,
                upstream=backend,
                source="127.0.0.1",
                target=target,
                headers=list(headers),
            )
        try:
            response = await self.pool.request(
                host,
                port,
                request.method,
                target,
                headers,
                request.body if request.body_stream is None else request.body_stream,
                stream_over=STREAM_OVER,
            )
        except UpstreamError as error:
            self.events.publish(
                "upstream_error",
                id=request.id,
                upstream=backend,
                status=error.status,
                detail=str(error),
            )
            return Response.error(error.status)
        if events.active:
            events.publish(
                "upstream_response", id=request.id, upstream=backend, status=response.status
            )
        return Response(
            response.status,
            hide_backend(response.headers),
            response.body,
            response.reason,
            stream=response.stream,
            length=response.length,
        )
