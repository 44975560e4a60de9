"""A caching forward proxy: absolute-form requests, CONNECT tunnels, a shared cache.

It only serves clients in ``allow_clients`` (default: loopback) — an open proxy is abused
within hours — connects out from ``source_address`` (so the origin sees that address, not the
client's), tunnels CONNECT only to ``connect_ports`` (default 443, Squid's safe default), and
marks responses ``X-Cache: HIT`` or ``MISS`` with ``Age`` on hits.

It only connects to public addresses unless told otherwise: loopback, private, link-local
(the cloud metadata service at 169.254.169.254), multicast and reserved destinations are
refused with 403 — whatever spelling the client used — except inside ``allow_destinations``
(the lessons allow their own loopback origins). The decision is made from the parsed target
(a name is resolved first, and the proxy connects to the address it checked) before any
connection is made.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
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
)
from deploylab.proxy.origin import client_allowed, parse_networks

VIA_NAME = "deploylab-forward-proxy"
#: Bodies larger than this are streamed to the client (and not cached), not held in memory.
STREAM_OVER = 1024 * 1024

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: A DNS name (labels of letters, digits, ``-``, ``_``): anything else is not looked up.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$)(?:{_LABEL}\.)*{_LABEL}\.?")


def literal_address(host: str) -> Address | None:
    """The IP address ``host`` spells, in any form a client library would accept, or None
    for a name. Legacy IPv4 forms count: ``127.1``, ``0x7f.0.0.1``, ``2130706433``.

    >>> [str(literal_address(h)) for h in ("127.1", "0x7f.0.0.1", "2130706433", "[::1]")]
    ['127.0.0.1', '127.0.0.1', '127.0.0.1', '::1']
    >>> literal_address("::ffff:169.254.169.254")
    IPv4Address('169.254.169.254')
    >>> literal_address("example.test") is None
    True
    """
    text = host.strip("[]").split("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        if not text or not all(c in "0123456789abcdefxABCDEFX." for c in text):
            return None
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    if address.version == 6 and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def destination_allowed(address: Address, allowed) -> bool:
    """May the proxy connect to ``address``? Public unicast addresses yes; loopback, private,
    link-local, multicast, reserved and unspecified ones only inside ``allowed`` networks.

    >>> destination_allowed(ipaddress.ip_address("93.184.215.14"), [])
    True
    >>> [destination_allowed(ipaddress.ip_address(a), []) for a in
    ...  ("127.0.0.1", "10.1.2.3", "169.254.169.254", "fe80::1", "0.0.0.0", "224.0.0.1")]
    [False, False, False, False, False, False]
    >>> destination_allowed(ipaddress.ip_address("127.0.0.1"), parse_networks(["127.0.0.0/8"]))
    True
    """
    if any(address in network for network in allowed):
        return True
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


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
        allow_destinations: Iterable[str] = (),
        cache_bytes: int = 64 * 1024 * 1024,
        add_forwarded_for: bool = False,
        upstream_timeout: float = 10.0,
        limits: Limits | None = None,
        events: EventBus | None = None,
    ) -> None:
        super().__init__(
            self.handle, host, port, name=name, limits=limits, events=events, stream_bodies=True
        )
        self.allow_clients = parse_networks(allow_clients)
        self.connect_ports = frozenset(int(p) for p in connect_ports)
        self.allow_destinations = parse_networks(allow_destinations)
        self.source_address = source_address
        self.add_forwarded_for = add_forwarded_for
        self.upstream_timeout = upstream_timeout
        self.cache = SharedCache(
            max_entries=cache_size, max_bytes=cache_bytes, max_entry_bytes=STREAM_OVER
        )
        self.pool = ConnectionPool(source_address=source_address, read_timeout=upstream_timeout)

    async def stop(self) -> None:
        await super().stop()
        await self.pool.close()

    async def handle(self, request: Request) -> Response:
        client_ip = request.client_ip
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
        address = await self._check_destination(request, host)
        if isinstance(address, Response):
            return address
        headers = remove_hop_by_hop(request.headers)
        headers = set_header(headers, "Host", host if port == 80 else f"{host}:{port}")
        headers = set_header(headers, "Via", append_via(get_header(headers, "Via"), VIA_NAME))
        if self.add_forwarded_for:
            previous = get_header(headers, "X-Forwarded-For")
            headers = set_header(headers, "X-Forwarded-For", x_forwarded_for(previous, client_ip))
        if request.method not in ("GET", "HEAD"):
            self.cache.invalidate(uri)
            return await self._fetch(request, address, port, path, headers, cache_state=None)

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
                request, address, port, path, conditional, cache_state="REVALIDATE"
            )
            if response.status == 304:
                answer = self.cache.revalidated(
                    uri,
                    stored,
                    request.headers,
                    response.headers,
                    request_time=request_time,
                    response_time=time.time(),
                )
                self.cache.hits += 1
                self.events.publish("cache_hit", id=request.id, uri=uri, age=0, revalidated=True)
                return self._from_cache(answer, stored.age(time.time()), "HIT")
            return self._store_and_mark(request, uri, response, request_time)
        self.cache.misses += 1
        self.events.publish("cache_miss", id=request.id, uri=uri)
        request_time = time.time()
        response = await self._fetch(request, address, port, path, headers, cache_state="MISS")
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
        return Response(
            response.status,
            headers,
            response.body,
            response.reason,
            stream=response.stream,
            length=response.length,
        )

    async def _check_destination(self, request: Request, host: str) -> str | Response:
        """The address to connect to for ``host``, or the 403 that refuses it — decided
        before any connection. A name is resolved here and every address it has must be
        allowed; the proxy then connects to the checked address (so a second lookup cannot
        swap in an internal one)."""
        address = literal_address(host)
        if address is not None:
            addresses = [address]
        elif not _HOST_NAME.fullmatch(host):
            return Response.error(400, f"{host!r} is neither an IP address nor a host name")
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, None, type=socket.SOCK_STREAM
                )
            except OSError:
                return Response.error(502, f"cannot resolve {host!r}")
            resolved = [literal_address(str(info[4][0])) for info in infos]
            addresses = [a for a in resolved if a is not None]
            if len(addresses) != len(resolved):  # something that is not an address: refused
                addresses = []
        refused = [a for a in addresses if not destination_allowed(a, self.allow_destinations)]
        if refused or not addresses:
            self.events.publish(
                "refused", id=request.id, client=request.client_ip, reason=f"destination {host}"
            )
            return Response.error(
                403, f"the proxy does not connect to {host} (not a public address)"
            )
        return str(addresses[0])

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
                host,
                port,
                request.method,
                path,
                headers,
                request.body if request.body_stream is None else request.body_stream,
                stream_over=STREAM_OVER,
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
        address = await self._check_destination(request, host)
        if isinstance(address, Response):
            return address
        host = address
        if port not in self.connect_ports:
            allowed = ", ".join(str(p) for p in sorted(self.connect_ports))
            self.events.publish(
                "refused",
                id=request.id,
                client=request.client_ip,
                reason=f"CONNECT to port {port}",
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
