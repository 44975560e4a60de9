"""Header rules for proxies, as pure functions over ``[(name, value), ...]`` lists.

What a proxy must drop (hop-by-hop fields, RFC 9110 §7.6.1) and what it adds to tell the
next hop who the client was (``X-Forwarded-For``, ``X-Real-IP``, ``Forwarded`` of RFC 7239,
``Via``). Nothing here does I/O; the functions return new lists and never mutate their input.
"""

from __future__ import annotations

import functools
import ipaddress

from deploylab.http.messages import Headers

#: Fields that describe one connection, not the message: never forwarded as they are.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
    }
)


def get_header(headers: Headers, name: str) -> str | None:
    """The value of ``name`` (case-insensitive), repeated fields joined with ", ", or None.

    >>> get_header([("Vary", "Accept"), ("vary", "Cookie")], "VARY")
    'Accept, Cookie'
    >>> get_header([], "Host") is None
    True
    """
    lowered = name.lower()
    values = [value for key, value in headers if key.lower() == lowered]
    return ", ".join(values) if values else None


def remove_header(headers: Headers, *names: str) -> Headers:
    """``headers`` without any field called one of ``names``.

    >>> remove_header([("Server", "x"), ("A", "1"), ("server", "y")], "Server")
    [('A', '1')]
    """
    drop = {name.lower() for name in names}
    return [(key, value) for key, value in headers if key.lower() not in drop]


def set_header(headers: Headers, name: str, value: str) -> Headers:
    """``headers`` with every ``name`` field replaced by a single ``name: value`` at the end.

    >>> set_header([("Host", "a"), ("X-Real-IP", "6.6.6.6")], "X-Real-IP", "127.0.0.2")
    [('Host', 'a'), ('X-Real-IP', '127.0.0.2')]
    """
    return [*remove_header(headers, name), (name, value)]


def _connection_named(headers: Headers) -> set[str]:
    """The field names a ``Connection`` (or ``Proxy-Connection``) header lists, lowercased."""
    named: set[str] = set()
    for key, value in headers:
        if key.lower() in ("connection", "proxy-connection"):
            named.update(token.strip().lower() for token in value.split(",") if token.strip())
    return named


@functools.lru_cache(maxsize=32)
def _dropped(also: tuple[str, ...]) -> frozenset[str]:
    """The hop-by-hop fields and ``also``, lowercased (made once per set of names)."""
    return HOP_BY_HOP | {name.lower() for name in also}


def remove_hop_by_hop(headers: Headers, *also: str) -> Headers:
    """``headers`` without hop-by-hop fields: the standard ones and any named in
    ``Connection`` (and without any field called one of ``also``).

    >>> remove_hop_by_hop([("Connection", "keep-alive, X-Secret"), ("X-Secret", "1"),
    ...                    ("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("Accept", "*/*")])
    [('Accept', '*/*')]
    >>> remove_hop_by_hop([("Server", "x"), ("Upgrade", "h2c"), ("A", "1")], "Server")
    [('A', '1')]
    """
    drop = _dropped(also) if also else HOP_BY_HOP
    if named := _connection_named(headers):
        drop = drop | named
    return [(key, value) for key, value in headers if key.lower() not in drop]


def x_forwarded_for(existing: str | None, client_ip: str) -> str:
    """The ``X-Forwarded-For`` to send on: the client's address appended to what came in —
    what nginx's ``$proxy_add_x_forwarded_for`` gives.

    >>> x_forwarded_for(None, "127.0.0.2")
    '127.0.0.2'
    >>> x_forwarded_for("203.0.113.7, 10.0.0.1", "127.0.0.2")
    '203.0.113.7, 10.0.0.1, 127.0.0.2'

    Only the last entry was seen by this proxy: the ones before it are whatever the client
    wrote, so never trust them blindly.
    """
    return f"{existing}, {client_ip}" if existing else client_ip


def _forwarded_node(address: str) -> str:
    """A node for RFC 7239: IPv6 in brackets and quoted; ``host:port`` quoted."""
    host, _, port = address.rpartition(":") if address.count(":") == 1 else (address, "", "")
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return address  # obfuscated identifier such as "unknown" or "_hidden"
    text = f"[{ip}]" if ip.version == 6 else str(ip)
    if port:
        text = f"{text}:{port}"
    return f'"{text}"' if (ip.version == 6 or port) else text


def forwarded_element(
    for_: str, proto: str | None = None, host: str | None = None, by: str | None = None
) -> str:
    """One ``Forwarded`` element (RFC 7239) for this hop.

    >>> forwarded_element("127.0.0.2", proto="http", host="example.test:8080")
    'for=127.0.0.2;proto=http;host="example.test:8080"'
    >>> forwarded_element("::1")
    'for="[::1]"'
    """
    parts = [f"for={_forwarded_node(for_)}"]
    if by:
        parts.append(f"by={_forwarded_node(by)}")
    if proto:
        parts.append(f"proto={proto}")
    if host:
        token_chars = set(
            "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        )
        parts.append(f"host={host}" if set(host) <= token_chars else f'host="{host}"')
    return ";".join(parts)


def append_via(existing: str | None, received_by: str = "deploylab", version: str = "1.1") -> str:
    """The ``Via`` value after this proxy: RFC 9110 asks every proxy to add itself.

    >>> append_via(None)
    '1.1 deploylab'
    >>> append_via("1.0 fred, 1.1 p.example.net", "cache", "1.1")
    '1.0 fred, 1.1 p.example.net, 1.1 cache'
    """
    entry = f"{version} {received_by}"
    return f"{existing}, {entry}" if existing else entry


def proxy_request_headers(
    headers: Headers,
    client_ip: str,
    *,
    proto: str = "http",
    host: str | None = None,
    real_ip: bool = True,
    forwarded_for: bool = True,
    forwarded: bool = False,
    via: str | None = None,
) -> Headers:
    """The headers a proxy sends upstream for a request that came from ``client_ip``.

    Drops hop-by-hop fields, sets ``X-Real-IP`` (nginx ``$remote_addr``), appends to
    ``X-Forwarded-For`` (``$proxy_add_x_forwarded_for``), sets ``X-Forwarded-Proto``, keeps
    ``Host`` unless ``host`` replaces it, and optionally appends ``Forwarded`` and ``Via``.

    >>> proxy_request_headers([("Host", "shop.test"), ("Connection", "close"),
    ...                        ("X-Forwarded-For", "1.2.3.4")], "127.0.0.2")
    ... # doctest: +NORMALIZE_WHITESPACE
    [('Host', 'shop.test'), ('X-Real-IP', '127.0.0.2'),
     ('X-Forwarded-For', '1.2.3.4, 127.0.0.2'), ('X-Forwarded-Proto', 'http')]
    """
    # one pass over the fields (a proxy's hot path); the rare Forwarded and Via after it
    replaced = set()
    if host is not None:
        replaced.add("host")
    if real_ip:
        replaced.add("x-real-ip")
    if forwarded_for:
        replaced.update(("x-forwarded-for", "x-forwarded-proto"))
    drop = HOP_BY_HOP
    if named := _connection_named(headers):
        drop = drop | named
    result: Headers = []
    chain: list[str] = []
    for key, value in headers:
        lowered = key.lower()
        if lowered in drop:
            continue
        if lowered in replaced:
            if lowered == "x-forwarded-for":
                chain.append(value)
            continue
        result.append((key, value))
    if host is not None:
        result.append(("Host", host))
    if real_ip:
        result.append(("X-Real-IP", client_ip))
    if forwarded_for:
        result.append(("X-Forwarded-For", x_forwarded_for(", ".join(chain) or None, client_ip)))
        result.append(("X-Forwarded-Proto", proto))
    if forwarded:
        element = forwarded_element(client_ip, proto=proto, host=get_header(result, "Host"))
        previous = get_header(result, "Forwarded")
        result = set_header(result, "Forwarded", f"{previous}, {element}" if previous else element)
    if via:
        result = set_header(result, "Via", append_via(get_header(result, "Via"), via))
    return result
