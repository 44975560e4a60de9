"""A caching forward proxy: absolute-form requests, CONNECT tunnels, a shared cache.

It only serves clients in ``allow_clients`` (default: loopback) — an open proxy is abused
within hours — connects out from ``source_address`` (so the origin sees that address, not the
client's), tunnels CONNECT only to ``connect_ports`` (default 443, Squid's safe default), and
marks responses ``X-Cache: HIT`` or ``MISS`` with ``Age`` on hits.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from urllib.parse import urlsplit

from deploylab.events import EventBus
from deploylab.http import (
    ConnectionPool,
    HTTPServer,
    Limits,
    Request,
    Response,
    UpstreamError,
    append_via,
    get_header,
    remove_hop_by_hop,
    set_header,
    x_forwarded_for,
)
from deploylab.proxy.cache import (
    SharedCache,
    conditional_request_headers,
    must_revalidate_before_use,
    updated_headers,
)
from deploylab.proxy.origin import client_allowed, parse_networks

VIA_NAME = "deploylab-forward-proxy"


def split_absolute_target(target: str) -> tuple[str, int, str]:
    """``(host, port, origin-form path)`` of an absolute-form ``http://`` target.

    >>> split_absolute_target("http://127.0.0.1:8080/a?b=1")
    ('127.0.0.1', 8080, '/a?b=1')
    >>> split_absolute_target("http://example.test")
    ('example.test', 80, '/')
    >>> split_absolute_target("/relative")
    Traceback (most recent call last):
    ...
    ValueError: '/relative' is not an absolute http:// URL (a forward proxy needs the full URL, as curl -x sends)
    """
    parts = urlsplit(target)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(
            f"{target!r} is not an absolute http:// URL (a forward proxy needs the full URL, as curl -x sends)"
        )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, parts.port or 80, path


def split_authority(target: str) -> tuple[str, int]:
    """``(host, port)`` of a CONNECT target.

    >>> split_authority("example.test:443")
    ('example.test', 443)
    >>> split_authority("[::1]:8443")
    ('::1', 8443)
    """
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"CONNECT target {target!r} is not host:port")
    return host.strip("[]"), int(port)


class ForwardProxy(HTTPServer):
    """The forward proxy server (see the module docstring for the rules it follows)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        name: str = "forward-proxy",
        source_address: str | None = None,
        cache_size: int = 256,
        allow_clients: Iterable[str] = ("127.0.0.0/8", "::1/128"),
        connect_ports: Iterable[int] = (443,),
        add_forwarded_for: bool = False,
        upstream_timeout: float = 10.0,
        limits: Limits | None = None,
        events: EventBus | None = None,
    ) -> None:
        super().__init__(self.handle, host, port, name=name, limits=limits, events=events)
        self.allow_clients = parse_networks(allow_clients)
        self.connect_ports = frozenset(int(p) for p in connect_ports)
        self.source_address = source_address
        self.add_forwarded_for = add_forwarded_for
        self.upstream_timeout = upstream_timeout
        self.cache = SharedCache(max_entries=cache_size)
        self.pool = ConnectionPool(source_address=source_address, read_timeout=upstream_timeout)

    async def stop(self) -> None:
        await super().stop()
        await self.pool.close()

    async def handle(self, request: Request) -> Response:
        client_ip = request.client[0] if request.client else "?"
        if not client_allowed(client_ip, self.allow_clients):
            self.events.publish(
                "refused", id=request.id, client=client_ip, reason="client not allowed"
            )
            return Response.error(403, f"{client_ip} may not use this proxy")
        if request.method == "CONNECT":
            return await self._connect(request)
        try:
            host, port, path = split_absolute_target(request.target)
        except ValueError as error:
            return Response.error(400, str(error))
        uri = f"http://{host}:{port}{path}"
        headers = remove_hop_by_hop(request.headers)
        headers = set_header(headers, "Host", host if port == 80 else f"{host}:{port}")
        headers = set_header(headers, "Via", append_via(get_header(headers, "Via"), VIA_NAME))
        if self.add_forwarded_for:
            previous = get_header(headers, "X-Forwarded-For")
            headers = set_header(headers, "X-Forwarded-For", x_forwarded_for(previous, client_ip))
        if request.method not in ("GET", "HEAD"):
            self.cache.invalidate(uri)
            return await self._fetch(request, host, port, path, headers, cache_state=None)

        stored = self.cache.lookup(request.method, uri, request.headers)
        if stored is not None:
            age = stored.age(time.time())
            if not must_revalidate_before_use(stored.response.headers, age):
                self.cache.hits += 1
                self.events.publish("cache_hit", id=request.id, uri=uri, age=int(age))
                return self._from_cache(stored.response, age, "HIT")
            conditional = conditional_request_headers(headers, stored.response.headers)
            request_time = time.time()
            response = await self._fetch(
                request, host, port, path, conditional, cache_state="REVALIDATE"
            )
            if response.status == 304:
                stored.response.headers = updated_headers(stored.response.headers, response.headers)
                stored.request_time, stored.response_time = request_time, time.time()
                self.cache.hits += 1
                self.events.publish("cache_hit", id=request.id, uri=uri, age=0, revalidated=True)
                return self._from_cache(stored.response, stored.age(time.time()), "HIT")
            return self._store_and_mark(request, uri, response, request_time)
        self.cache.misses += 1
        self.events.publish("cache_miss", id=request.id, uri=uri)
        request_time = time.time()
        response = await self._fetch(request, host, port, path, headers, cache_state="MISS")
        return self._store_and_mark(request, uri, response, request_time)

    def _store_and_mark(self, request, uri, response: Response, request_time: float) -> Response:
        if getattr(response, "from_proxy", False):
            return response
        stored = self.cache.store(
            request.method,
            uri,
            request.headers,
            response,
            request_time=request_time,
            response_time=time.time(),
        )
        self.events.publish("cache_store" if stored else "cache_skip", id=request.id, uri=uri)
        return self._to_client(response, "MISS")

    def _to_client(self, response: Response, cache_status: str) -> Response:
        headers = remove_hop_by_hop(response.headers)
        headers = set_header(headers, "Via", append_via(get_header(headers, "Via"), VIA_NAME))
        headers = set_header(headers, "X-Cache", cache_status)
        return Response(response.status, headers, response.body, response.reason)

    def _from_cache(self, stored: Response, age: float, cache_status: str) -> Response:
        response = self._to_client(stored, cache_status)
        response.headers = set_header(response.headers, "Age", str(int(age)))
        return response

    async def _fetch(self, request, host, port, path, headers, cache_state) -> Response:
        source = self.source_address or "127.0.0.1"
        self.events.publish(
            "forward",
            id=request.id,
            upstream=f"{host}:{port}",
            source=source,
            target=path,
            headers=list(headers),
        )
        try:
            response = await self.pool.request(
                host, port, request.method, path, headers, request.body
            )
        except UpstreamError as error:
            self.events.publish(
                "upstream_error",
                id=request.id,
                upstream=f"{host}:{port}",
                status=error.status,
                detail=str(error),
            )
            failed = Response.error(
                error.status,
                "the origin could not be reached"
                if error.status == 502
                else "the origin did not answer in time",
            )
            failed.from_proxy = True  # type: ignore[attr-defined]
            return failed
        self.events.publish(
            "upstream_response", id=request.id, upstream=f"{host}:{port}", status=response.status
        )
        if cache_state is None:
            return self._to_client(response, "MISS")
        return response

    async def _connect(self, request: Request) -> Response:
        try:
            host, port = split_authority(request.target)
        except ValueError as error:
            return Response.error(400, str(error))
        if port not in self.connect_ports:
            allowed = ", ".join(str(p) for p in sorted(self.connect_ports))
            self.events.publish(
                "refused", id=request.id, client=request.client[0], reason=f"CONNECT to port {port}"
            )
            return Response.error(
                403, f"CONNECT to port {port} is not allowed (allowed: {allowed})"
            )
        self.events.publish(
            "forward",
            id=request.id,
            upstream=f"{host}:{port}",
            source=self.source_address or "127.0.0.1",
            target="(tunnel)",
            headers=[],
        )
        try:
            reader, writer = await self.pool.connect_raw(host, port)
        except UpstreamError as error:
            return Response.error(error.status, "the tunnel could not be opened")
        return Response(200, [], b"", "Connection Established", tunnel=(reader, writer))
