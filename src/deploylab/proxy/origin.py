"""A demo origin server: answers with what it saw, offers endpoints with chosen caching
headers, and can be region-restricted to some client networks (``allow_from``).

Endpoints: anything → JSON echo; ``/cache/max-age/N``, ``/cache/s-maxage/N``,
``/cache/expires/N``, ``/cache/no-store``, ``/cache/private``, ``/cache/no-cache`` (with an
ETag), ``/cache/etag`` (ETag + Last-Modified, stale at once: revalidated with 304 each time),
``/cache/vary`` (``Vary: Accept-Language``), ``/slow/SECONDS`` (at most 30),
``/status/CODE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import Iterable

from deploylab.events import EventBus
from deploylab.http import HTTPServer, Limits, Request, Response
from deploylab.proxy.cache import format_http_date, is_not_modified

_ETAG = '"v1"'
_LAST_MODIFIED = format_http_date(1_700_000_000)


def parse_networks(cidrs: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Networks from CIDR strings; the error names the bad value.

    >>> parse_networks(["127.0.0.3/32", "10.0.0.0/8"])
    [IPv4Network('127.0.0.3/32'), IPv4Network('10.0.0.0/8')]
    >>> parse_networks(["10.0.0.1/8"])
    Traceback (most recent call last):
    ...
    ValueError: '10.0.0.1/8' is not a network in CIDR notation (host bits set? try 10.0.0.0/8)
    """
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr))
        except ValueError:
            hint = ""
            with contextlib.suppress(ValueError):
                hint = f" (host bits set? try {ipaddress.ip_network(cidr, strict=False)})"
            raise ValueError(f"{cidr!r} is not a network in CIDR notation{hint}") from None
    return networks


def client_allowed(client_ip: str, networks) -> bool:
    """Is ``client_ip`` inside one of ``networks``?

    >>> client_allowed("127.0.0.3", parse_networks(["127.0.0.3/32"]))
    True
    >>> client_allowed("127.0.0.1", parse_networks(["127.0.0.3/32"]))
    False
    """
    address = ipaddress.ip_address(client_ip.split("%")[0])
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class OriginServer(HTTPServer):
    """The demo origin. ``allow_from``: CIDRs whose clients are served; others get 403.

    ``self.hits`` counts requests it answered, so a test or a lesson can see whether a
    proxy's cache spared it a request.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        name: str = "origin",
        allow_from: Iterable[str] = (),
        limits: Limits | None = None,
        events: EventBus | None = None,
    ) -> None:
        super().__init__(self.handle, host, port, name=name, limits=limits, events=events)
        self.allow_from = parse_networks(allow_from)
        self.hits = 0

    def _echo(self, request: Request) -> dict:
        return {
            "server": self.name,
            "client": request.client[0] if request.client else None,
            "client_port": request.client[1] if request.client else None,
            "method": request.method,
            "target": request.target,
            "headers": {name: value for name, value in request.headers},
            "body": request.body.decode("utf-8", "replace"),
            "count": self.hits,
        }

    async def handle(self, request: Request) -> Response:
        client_ip = request.client_ip
        own = [
            ("Server", f"deploylab-origin/1.0 ({self.name} at {self.url.removeprefix('http://')})")
        ]
        if self.allow_from and not client_allowed(client_ip, self.allow_from):
            allowed = ", ".join(str(n) for n in self.allow_from)
            return Response.json(
                {"error": "region restricted", "client": client_ip, "allowed": allowed},
                403,
                own,
            )
        self.hits += 1
        path = request.target.split("?", 1)[0]
        parts = [p for p in path.split("/") if p]
        body = self._echo(request)
        now = time.time()
        if parts[:1] == ["slow"] and len(parts) == 2:
            await asyncio.sleep(min(float(parts[1]), 30.0))
            return Response.json(body, 200, own)
        if parts[:1] == ["status"] and len(parts) == 2 and parts[1].isdigit():
            return Response.json(body, int(parts[1]), own)
        if parts[:1] != ["cache"]:
            return Response.json(body, 200, own)
        kind = parts[1] if len(parts) > 1 else ""
        number = parts[2] if len(parts) > 2 and parts[2].isdigit() else "60"
        headers = {
            "max-age": [("Cache-Control", f"max-age={number}")],
            "s-maxage": [("Cache-Control", f"s-maxage={number}, max-age=0")],
            "expires": [("Expires", format_http_date(now + int(number)))],
            "no-store": [("Cache-Control", "no-store")],
            "private": [("Cache-Control", "private, max-age=60")],
            "no-cache": [("Cache-Control", "no-cache"), ("ETag", _ETAG)],
            "etag": [
                ("Cache-Control", "max-age=0"),
                ("ETag", _ETAG),
                ("Last-Modified", _LAST_MODIFIED),
            ],
            "vary": [("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")],
        }.get(kind)
        if headers is None:
            return Response.json({"error": f"unknown cache endpoint {path!r}"}, 404, own)
        headers = [("Date", format_http_date(now)), *headers, *own]
        if kind in ("etag", "no-cache") and is_not_modified(request.headers, headers):
            self.events.publish("not_modified", id=request.id, target=request.target)
            return Response(304, headers)
        if kind == "vary":
            language = request.header("Accept-Language") or "en"
            body["greeting"] = {"ko": "안녕하세요", "fr": "bonjour"}.get(language[:2], "hello")
        return Response.json(body, 200, headers)
