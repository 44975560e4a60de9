"""What a shared cache (a forward proxy's) may store and reuse: an RFC 9111 subset.

Each rule is a small pure function over header lists; time is passed in as seconds (Unix
time), never read from the clock. :class:`SharedCache` is the bounded store that uses them.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime

from deploylab.http.headers import get_header, remove_hop_by_hop
from deploylab.http.messages import Headers, Response

#: The request header values (lower-case name, value) a stored response varies on.
VaryFingerprint = tuple[tuple[str, str], ...]

#: Status codes a cache may store without explicit freshness (RFC 9110 §15.1).
HEURISTICALLY_CACHEABLE = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})
#: Statuses this cache understands well enough to store at all.
UNDERSTOOD = HEURISTICALLY_CACHEABLE | {302, 303, 307}


def parse_cache_control(value: str | None) -> dict[str, str | None]:
    """Directives of a ``Cache-Control`` value, names lower-cased, quotes removed.

    >>> parse_cache_control('public, Max-Age=60, no-cache="Set-Cookie"')
    {'public': None, 'max-age': '60', 'no-cache': 'Set-Cookie'}
    >>> parse_cache_control(None)
    {}
    """
    directives: dict[str, str | None] = {}
    for part in (value or "").split(","):
        name, equals, argument = part.strip().partition("=")
        if not name:
            continue
        directives[name.strip().lower()] = argument.strip().strip('"') if equals else None
    return directives


def _seconds(text: str | None) -> int | None:
    """A delta-seconds value, or None when absent or invalid (``"²".isdigit()`` is True,
    but ``int("²")`` raises: only ASCII digits count).

    >>> _seconds(" 60 "), _seconds("-5"), _seconds("\xb2"), _seconds(None)
    (60, None, None, None)
    """
    if text is None or not (text := text.strip()).isascii() or not text.isdigit():
        return None
    return int(text)


def http_date(text: str | None) -> float | None:
    """Unix time of an HTTP date, or None when absent or invalid (an invalid ``Expires``
    means "already expired", which callers handle).

    >>> http_date("Thu, 01 Jan 1970 00:01:00 GMT")
    60.0
    >>> http_date("yesterday") is None
    True
    """
    if not text:
        return None
    try:
        return parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def format_http_date(timestamp: float) -> str:
    """An IMF-fixdate for ``timestamp``.

    >>> format_http_date(60)
    'Thu, 01 Jan 1970 00:01:00 GMT'
    """
    return formatdate(timestamp, usegmt=True)


def is_storable(
    method: str, status: int, request_headers: Headers, response_headers: Headers
) -> bool:
    """May a shared cache store this response? (RFC 9111 §3, §3.5)

    >>> ok = [("Cache-Control", "max-age=60")]
    >>> is_storable("GET", 200, [], ok)
    True
    >>> is_storable("GET", 200, [], [("Cache-Control", "private, max-age=60")])
    False
    >>> is_storable("GET", 200, [("Cache-Control", "no-store")], ok)
    False
    >>> is_storable("POST", 200, [], ok)
    False

    A request with ``Authorization`` only if the response explicitly allows it:

    >>> is_storable("GET", 200, [("Authorization", "Bearer t")], ok)
    False
    >>> is_storable("GET", 200, [("Authorization", "Bearer t")], [("Cache-Control", "s-maxage=60")])
    True

    A ``Set-Cookie`` belongs to one user: replayed from a shared cache it would hand that
    user's session to the next one, so it is stored only when the response says it may be
    shared (``public`` or ``s-maxage``; nginx's ``proxy_cache`` never stores it by default).
    A ``206`` holds part of a body: storing it under the full URL would answer a later plain
    GET with a fragment, so this cache (which does not combine ranges) never stores it.

    >>> is_storable("GET", 200, [], [*ok, ("Set-Cookie", "session=alice")])
    False
    >>> is_storable("GET", 200, [], [("Cache-Control", "public, max-age=60"), ("Set-Cookie", "a=1")])
    True
    >>> is_storable("GET", 206, [("Range", "bytes=0-9")], [*ok, ("Content-Range", "bytes 0-9/99")])
    False
    """
    if method not in ("GET", "HEAD") or status not in UNDERSTOOD or status == 206:
        return False
    response_cc = parse_cache_control(get_header(response_headers, "Cache-Control"))
    if get_header(response_headers, "Set-Cookie") is not None and not (
        {"public", "s-maxage"} & response_cc.keys()
    ):
        return False
    request_cc = parse_cache_control(get_header(request_headers, "Cache-Control"))
    if "no-store" in response_cc or "no-store" in request_cc:
        return False
    if "private" in response_cc:
        return False
    if get_header(request_headers, "Authorization") is not None and not (
        {"public", "s-maxage", "must-revalidate"} & response_cc.keys()
    ):
        return False
    vary = get_header(response_headers, "Vary")
    if vary is not None and vary.strip() == "*":
        return False
    explicit = (
        "public" in response_cc
        or "s-maxage" in response_cc
        or "max-age" in response_cc
        or get_header(response_headers, "Expires") is not None
    )
    if explicit:
        return True
    # Heuristic freshness needs a heuristically cacheable status; no-cache responses with a
    # validator are worth keeping because they can be revalidated cheaply.
    validator = get_header(response_headers, "ETag") or get_header(
        response_headers, "Last-Modified"
    )
    if "no-cache" in response_cc:
        return validator is not None
    return (
        status in HEURISTICALLY_CACHEABLE
        and get_header(response_headers, "Last-Modified") is not None
    )


def freshness_lifetime(response_headers: Headers, *, shared: bool = True) -> float:
    """Seconds a response stays fresh: ``s-maxage`` (shared caches only) beats ``max-age``
    beats ``Expires − Date``; otherwise 10 % of ``Date − Last-Modified`` (the heuristic
    RFC 9111 §4.2.2 suggests); otherwise 0.

    >>> freshness_lifetime([("Cache-Control", "max-age=60, s-maxage=10")])
    10.0
    >>> freshness_lifetime([("Cache-Control", "max-age=60, s-maxage=10")], shared=False)
    60.0
    >>> freshness_lifetime([("Date", "Thu, 01 Jan 1970 00:00:00 GMT"),
    ...                     ("Expires", "Thu, 01 Jan 1970 00:02:00 GMT")])
    120.0
    >>> freshness_lifetime([("Date", "Thu, 01 Jan 1970 00:00:00 GMT"), ("Expires", "0")])
    0.0
    >>> freshness_lifetime([("Date", "Thu, 01 Jan 1970 00:16:40 GMT"),
    ...                     ("Last-Modified", "Thu, 01 Jan 1970 00:00:00 GMT")])
    100.0
    """
    directives = parse_cache_control(get_header(response_headers, "Cache-Control"))
    if shared and (value := _seconds(directives.get("s-maxage"))) is not None:
        return float(value)
    if (value := _seconds(directives.get("max-age"))) is not None:
        return float(value)
    expires_text = get_header(response_headers, "Expires")
    date = http_date(get_header(response_headers, "Date"))
    if expires_text is not None:
        expires = http_date(expires_text)
        if expires is None or date is None:
            return 0.0
        return max(0.0, expires - date)
    last_modified = http_date(get_header(response_headers, "Last-Modified"))
    if last_modified is not None and date is not None and date > last_modified:
        return (date - last_modified) / 10
    return 0.0


def current_age(
    response_headers: Headers, *, request_time: float, response_time: float, now: float
) -> float:
    """How old a stored response is now (RFC 9111 §4.2.3): its age when it arrived —
    the larger of ``response_time − Date`` and ``Age`` plus the round trip — plus the time
    it has been in this cache since.

    >>> headers = [("Date", format_http_date(1000)), ("Age", "5")]
    >>> current_age(headers, request_time=1000, response_time=1001, now=1031)
    36.0
    """
    date = http_date(get_header(response_headers, "Date"))
    apparent_age = max(0.0, response_time - date) if date is not None else 0.0
    age_value = _seconds(get_header(response_headers, "Age")) or 0
    corrected_age_value = age_value + (response_time - request_time)
    corrected_initial_age = max(apparent_age, corrected_age_value)
    return float(corrected_initial_age + (now - response_time))


def must_revalidate_before_use(response_headers: Headers, age: float) -> bool:
    """Must the cache ask the origin (conditionally) before reusing this response? True when
    it is stale or says ``no-cache``.

    >>> must_revalidate_before_use([("Cache-Control", "max-age=60")], 10)
    False
    >>> must_revalidate_before_use([("Cache-Control", "max-age=60")], 61)
    True
    >>> must_revalidate_before_use([("Cache-Control", "no-cache, max-age=60")], 0)
    True
    """
    directives = parse_cache_control(get_header(response_headers, "Cache-Control"))
    if "no-cache" in directives:
        return True
    return age >= freshness_lifetime(response_headers)


def vary_fingerprint(response_headers: Headers, request_headers: Headers) -> VaryFingerprint | None:
    """The request header values a response's ``Vary`` depends on; two requests may share a
    stored response only if their fingerprints are equal. None for ``Vary: *`` (never reuse).

    >>> stored = [("Vary", "Accept-Language")]
    >>> vary_fingerprint(stored, [("Accept-Language", "ko")])
    (('accept-language', 'ko'),)
    >>> vary_fingerprint(stored, [("Accept-Language", "ko")]) == vary_fingerprint(stored, [])
    False
    """
    vary = get_header(response_headers, "Vary")
    if vary is None:
        return ()
    names = sorted({name.strip().lower() for name in vary.split(",") if name.strip()})
    if "*" in names:
        return None
    return tuple(
        (name, " ".join((get_header(request_headers, name) or "").split())) for name in names
    )


def conditional_request_headers(request_headers: Headers, stored_headers: Headers) -> Headers:
    """The request headers plus the validators of the stored response, to revalidate it.

    >>> conditional_request_headers([("Host", "a")], [("ETag", '"v1"'), ("Last-Modified", "x")])
    [('Host', 'a'), ('If-None-Match', '"v1"'), ('If-Modified-Since', 'x')]
    """
    result = [
        (k, v)
        for k, v in request_headers
        if k.lower() not in ("if-none-match", "if-modified-since")
    ]
    if (etag := get_header(stored_headers, "ETag")) is not None:
        result.append(("If-None-Match", etag))
    if (last_modified := get_header(stored_headers, "Last-Modified")) is not None:
        result.append(("If-Modified-Since", last_modified))
    return result


def is_not_modified(request_headers: Headers, response_headers: Headers) -> bool:
    """Does a conditional request match the current representation (answer 304)?
    ``If-None-Match`` (weak comparison) wins over ``If-Modified-Since`` (RFC 9110 §13.2.2).

    >>> is_not_modified([("If-None-Match", 'W/"v1", "v2"')], [("ETag", '"v1"')])
    True
    >>> is_not_modified([("If-None-Match", '"v0"')], [("ETag", '"v1"')])
    False
    >>> lm = [("Last-Modified", "Thu, 01 Jan 1970 00:01:00 GMT")]
    >>> is_not_modified([("If-Modified-Since", "Thu, 01 Jan 1970 00:02:00 GMT")], lm)
    True
    """
    if_none_match = get_header(request_headers, "If-None-Match")
    if if_none_match is not None:
        etag = get_header(response_headers, "ETag")
        if etag is None:
            return False
        if if_none_match.strip() == "*":
            return True
        wanted = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return etag.strip().removeprefix("W/") in wanted
    since = http_date(get_header(request_headers, "If-Modified-Since"))
    last_modified = http_date(get_header(response_headers, "Last-Modified"))
    return since is not None and last_modified is not None and last_modified <= since


def updated_headers(stored_headers: Headers, not_modified_headers: Headers) -> Headers:
    """Stored headers refreshed by a 304: fields present in the 304 replace the stored ones
    (except framing fields).

    >>> updated_headers([("ETag", '"v1"'), ("Date", "old"), ("X", "1")], [("Date", "new")])
    [('ETag', '"v1"'), ('X', '1'), ('Date', 'new')]
    """
    keep_out = {"content-length", "content-encoding", "content-range"}
    fresh = [
        (k, v) for k, v in remove_hop_by_hop(not_modified_headers) if k.lower() not in keep_out
    ]
    replaced = {k.lower() for k, _ in fresh}
    return [(k, v) for k, v in stored_headers if k.lower() not in replaced] + fresh


def _size(response: Response) -> int:
    """Bytes a stored response takes, counted as its body plus its header text."""
    return len(response.body) + sum(len(n) + len(v) + 4 for n, v in response.headers)


@dataclass
class CachedResponse:
    """A stored response with the times needed to compute its age."""

    response: Response
    request_time: float
    response_time: float
    fingerprint: VaryFingerprint = ()

    def age(self, now: float) -> float:
        return current_age(
            self.response.headers,
            request_time=self.request_time,
            response_time=self.response_time,
            now=now,
        )


@dataclass
class SharedCache:
    """A bounded, least-recently-used shared cache keyed by method-independent target URI,
    with one stored variant per ``Vary`` fingerprint.

    >>> cache = SharedCache(max_entries=1)
    >>> ok = Response(200, [("Cache-Control", "max-age=60"), ("Date", format_http_date(0))], b"A")
    >>> cache.store("GET", "http://a/", [], ok, request_time=0, response_time=0)
    True
    >>> cache.lookup("GET", "http://a/", []).response.body
    b'A'
    >>> cache.store("GET", "http://b/", [], ok, request_time=0, response_time=0)
    True
    >>> cache.lookup("GET", "http://a/", []) is None   # evicted: the cache holds one entry
    True

    Memory is bounded in bytes as well as entries (``max_bytes``, like nginx's
    ``proxy_cache_path ... max_size``); a single response over ``max_entry_bytes`` is not
    stored at all:

    >>> cache = SharedCache(max_bytes=2000, max_entry_bytes=1500)
    >>> big = Response(200, ok.headers, b"B" * 900)
    >>> [cache.store("GET", f"http://a/{n}", [], big, request_time=0, response_time=0) for n in range(3)]
    [True, True, True]
    >>> len(cache), cache.bytes <= 2000
    (2, True)
    >>> cache.store("GET", "http://a/huge", [], Response(200, ok.headers, b"H" * 1600),
    ...             request_time=0, response_time=0)
    False
    """

    max_entries: int = 256
    max_bytes: int = 64 * 1024 * 1024
    max_entry_bytes: int = 8 * 1024 * 1024
    entries: collections.OrderedDict[str, list[CachedResponse]] = field(
        default_factory=collections.OrderedDict
    )
    hits: int = 0
    misses: int = 0
    bytes: int = 0

    def lookup(self, method: str, uri: str, request_headers: Headers) -> CachedResponse | None:
        """The stored response for this request, fresh or not (the caller checks), or None."""
        if method not in ("GET", "HEAD"):
            return None
        variants = self.entries.get(uri)
        if not variants:
            return None
        for stored in variants:
            fingerprint = vary_fingerprint(stored.response.headers, request_headers)
            if fingerprint is not None and fingerprint == stored.fingerprint:
                self.entries.move_to_end(uri)
                return stored
        return None

    def store(
        self,
        method: str,
        uri: str,
        request_headers: Headers,
        response: Response,
        *,
        request_time: float,
        response_time: float,
    ) -> bool:
        """Store ``response`` if :func:`is_storable` allows; returns whether it did. Only GET
        responses are kept (a HEAD response has no body to serve a later GET with)."""
        if method != "GET" or not is_storable(
            method, response.status, request_headers, response.headers
        ):
            return False
        fingerprint = vary_fingerprint(response.headers, request_headers)
        if fingerprint is None or response.stream is not None:
            return False
        if _size(response) > min(self.max_entry_bytes, self.max_bytes):
            return False
        stored = CachedResponse(
            Response(
                response.status, remove_hop_by_hop(response.headers), response.body, response.reason
            ),
            request_time,
            response_time,
            fingerprint,
        )
        variants = [v for v in self.entries.get(uri, []) if v.fingerprint != fingerprint]
        self.invalidate(uri)
        kept = [*variants, stored][-8:]
        self.entries[uri] = kept
        self.bytes += sum(_size(v.response) for v in kept)
        while len(self.entries) > self.max_entries or self.bytes > self.max_bytes:
            _, evicted = self.entries.popitem(last=False)
            self.bytes -= sum(_size(v.response) for v in evicted)
        return True

    def revalidated(
        self,
        uri: str,
        stored: CachedResponse,
        request_headers: Headers,
        not_modified_headers: Headers,
        *,
        request_time: float,
        response_time: float,
    ) -> Response:
        """The stored response refreshed by a ``304`` (RFC 9111 §4.3.4), to answer the
        request that revalidated it. The refreshed headers are kept only if
        :func:`is_storable` still allows them: a 304 may carry that user's ``Set-Cookie``
        (or now say ``private``), which must never be served to the next one.

        >>> cache = SharedCache()
        >>> page = Response(200, [("Cache-Control", "no-cache"), ("ETag", '"v1"')], b"page")
        >>> cache.store("GET", "http://a/", [], page, request_time=0, response_time=0)
        True
        >>> stored = cache.lookup("GET", "http://a/", [])
        >>> bob = cache.revalidated("http://a/", stored, [], [("Set-Cookie", "session=bob")],
        ...                         request_time=1, response_time=1)
        >>> ("Set-Cookie", "session=bob") in bob.headers, cache.lookup("GET", "http://a/", [])
        (True, None)
        """
        old = stored.response
        headers = updated_headers(old.headers, not_modified_headers)
        stored.request_time, stored.response_time = request_time, response_time
        if is_storable("GET", old.status, request_headers, headers):
            self.bytes += _size(Response(old.status, headers, old.body)) - _size(old)
            old.headers = headers
            return old
        self.invalidate(uri)
        return Response(old.status, headers, old.body, old.reason)

    def invalidate(self, uri: str) -> None:
        """Forget ``uri`` (after an unsafe method such as POST went through, RFC 9111 §4.4)."""
        variants = self.entries.pop(uri, None)
        if variants:
            self.bytes -= sum(_size(v.response) for v in variants)

    def __len__(self) -> int:
        return len(self.entries)
