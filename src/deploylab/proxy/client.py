"""A tiny client for lessons and tests: fetch a URL directly or through a forward proxy,
from a chosen local address (like ``curl --interface ADDR -x PROXY URL``)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from deploylab.http import ConnectionPool, Response, UpstreamError, set_header


async def fetch(
    url: str,
    *,
    proxy: str | None = None,
    source: str | None = None,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Response:
    """Send one request and return the response (``.status``, ``.header(name)``, ``.body``,
    and :func:`json_body` for JSON).

    With ``proxy``, the request goes to the proxy in absolute form, as curl ``-x`` does.
    A server that cannot be reached, or sends nothing for ``timeout`` seconds, raises
    :class:`~deploylab.http.UpstreamError` (:class:`~deploylab.http.UpstreamTimeout` for
    the silence) naming the request, instead of waiting for ever.

    >>> import asyncio
    >>> from deploylab.proxy.origin import OriginServer
    >>> async def demo():
    ...     async with OriginServer() as origin:
    ...         reply = await fetch(origin.url + "/hello", source="127.0.0.2")
    ...         return reply.status, json_body(reply)["client"]
    >>> asyncio.run(demo())
    (200, '127.0.0.2')
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// URL")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc
    if proxy is not None:
        proxy_parts = urlsplit(proxy)
        if not proxy_parts.hostname:
            raise ValueError(f"proxy {proxy!r} is not an http://HOST:PORT URL")
        connect_to = (proxy_parts.hostname, proxy_parts.port or 3128)
        target = f"http://{parts.netloc}{target}"
    else:
        connect_to = (parts.hostname, parts.port or 80)
    request_headers = [("Host", host_header), ("User-Agent", "deploylab-fetch")]
    for name, value in (headers or {}).items():
        request_headers = set_header(request_headers, name, value)
    async with ConnectionPool(source_address=source, read_timeout=timeout) as pool:
        try:
            return await pool.request(*connect_to, method, target, request_headers)
        except UpstreamError as error:
            # the pool names a host and port; the caller asked for this URL
            via = f" via proxy {proxy}" if proxy is not None else ""
            raise type(error)(f"{method} {url}{via}: {error}") from None


def json_body(response: Response):
    """The response body parsed as JSON."""
    return json.loads(response.body)
