"""Forward and reverse proxies on loopback, and the rules they follow.

Core (pure): header rules re-exported from :mod:`deploylab.http.headers` and the shared-cache
policy in :mod:`deploylab.proxy.cache`. Runtime: :class:`OriginServer`,
:class:`ForwardProxy`, :class:`ReverseProxy` (asyncio servers, ``async with``, port 0).

Events each server publishes on ``server.events`` (an :class:`~deploylab.events.EventBus`
whose source is the server's ``name``); ``id`` ties together the events of one request:

- every server: ``request`` (id, client, server, method, target, host, headers),
  ``response`` (id, client, status, bytes, duration_ms, headers), ``error`` (client, status,
  detail — a malformed request), ``listening``, ``stopped``;
- proxies: ``forward`` (id, upstream, source, target, headers sent), ``upstream_response``
  (id, upstream, status), ``upstream_error`` (id, upstream, status, detail), ``refused``
  (id, client, reason);
- forward proxy cache: ``cache_hit`` (id, uri, age[, revalidated]), ``cache_miss``,
  ``cache_store`` / ``cache_skip`` (id, uri);
- origin: ``not_modified`` (id, target) when it answers 304.
"""

from deploylab.http.headers import (
    HOP_BY_HOP,
    append_via,
    forwarded_element,
    proxy_request_headers,
    remove_hop_by_hop,
    x_forwarded_for,
)
from deploylab.proxy.cache import (
    SharedCache,
    conditional_request_headers,
    current_age,
    freshness_lifetime,
    is_not_modified,
    is_storable,
    must_revalidate_before_use,
    parse_cache_control,
    vary_fingerprint,
)
from deploylab.proxy.client import fetch, json_body
from deploylab.proxy.forward import ForwardProxy, split_absolute_target
from deploylab.proxy.nginx import reverse_proxy_config
from deploylab.proxy.origin import OriginServer, client_allowed, parse_networks
from deploylab.proxy.reverse import ReverseProxy, hide_backend

__all__ = [
    "HOP_BY_HOP",
    "ForwardProxy",
    "OriginServer",
    "ReverseProxy",
    "SharedCache",
    "append_via",
    "client_allowed",
    "conditional_request_headers",
    "current_age",
    "fetch",
    "forwarded_element",
    "freshness_lifetime",
    "hide_backend",
    "is_not_modified",
    "is_storable",
    "json_body",
    "must_revalidate_before_use",
    "parse_cache_control",
    "parse_networks",
    "proxy_request_headers",
    "remove_hop_by_hop",
    "reverse_proxy_config",
    "split_absolute_target",
    "vary_fingerprint",
    "x_forwarded_for",
]
