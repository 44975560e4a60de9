"""The shared-cache rules and header rules, checked against RFC worked examples and
properties that follow from the RFC text (not from the implementation's own output)."""

from __future__ import annotations

import email.utils

from hypothesis import given
from hypothesis import strategies as st

from deploylab.http import Response, proxy_request_headers, remove_hop_by_hop, x_forwarded_for
from deploylab.proxy.cache import (
    SharedCache,
    current_age,
    freshness_lifetime,
    http_date,
    is_not_modified,
    is_storable,
    must_revalidate_before_use,
    vary_fingerprint,
)

seconds = st.integers(min_value=0, max_value=10**7)


def test_http_date_matches_the_rfc_example():
    # RFC 9110 §5.6.7: the preferred format and the two obsolete ones mean the same instant.
    expected = 784111777.0
    for text in (
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
    ):
        assert http_date(text) == expected, text


@given(smax=seconds, maxage=seconds)
def test_shared_cache_prefers_s_maxage(smax, maxage):
    headers = [("Cache-Control", f"max-age={maxage}, s-maxage={smax}"), ("Expires", "0")]
    assert freshness_lifetime(headers) == smax
    assert freshness_lifetime(headers, shared=False) == maxage


@given(date=seconds, lifetime=seconds)
def test_expires_minus_date(date, lifetime):
    headers = [
        ("Date", email.utils.formatdate(date, usegmt=True)),
        ("Expires", email.utils.formatdate(date + lifetime, usegmt=True)),
    ]
    assert freshness_lifetime(headers) == lifetime


@given(age_header=seconds, delay=st.integers(0, 100), resident=seconds)
def test_age_grows_with_residence_and_includes_upstream_age(age_header, delay, resident):
    headers = [("Date", email.utils.formatdate(1_000_000, usegmt=True)), ("Age", str(age_header))]
    age = current_age(
        headers,
        request_time=1_000_000,
        response_time=1_000_000 + delay,
        now=1_000_000 + delay + resident,
    )
    assert age >= age_header + resident  # never younger than what the upstream said plus our time
    assert age == max(delay, age_header + delay) + resident


NEVER = [
    ("GET", 200, [], [("Cache-Control", "no-store, max-age=60")]),
    ("GET", 200, [], [("Cache-Control", "private, max-age=60")]),
    ("GET", 200, [("Cache-Control", "no-store")], [("Cache-Control", "max-age=60")]),
    ("GET", 200, [("Authorization", "Basic eDp5")], [("Cache-Control", "max-age=60")]),
    ("POST", 200, [], [("Cache-Control", "max-age=60")]),
    ("GET", 200, [], [("Cache-Control", "max-age=60"), ("Vary", "*")]),
    ("GET", 500, [], [("Cache-Control", "max-age=60")]),
    ("GET", 200, [], []),  # nothing to compute a freshness from
]
ALLOWED = [
    ("GET", 200, [], [("Cache-Control", "max-age=60")]),
    ("HEAD", 200, [], [("Expires", "Thu, 01 Jan 2099 00:00:00 GMT")]),
    ("GET", 404, [], [("Last-Modified", "Thu, 01 Jan 1970 00:00:00 GMT")]),
    ("GET", 200, [("Authorization", "Basic eDp5")], [("Cache-Control", "public, max-age=60")]),
    (
        "GET",
        200,
        [("Authorization", "Basic eDp5")],
        [("Cache-Control", "must-revalidate, max-age=60")],
    ),
    ("GET", 200, [], [("Cache-Control", "no-cache"), ("ETag", '"x"')]),
]


def test_storable_table_from_rfc_9111_section_3():
    for case in NEVER:
        assert not is_storable(*case), case
    for case in ALLOWED:
        assert is_storable(*case), case


def test_cache_never_stores_what_is_not_storable():
    cache = SharedCache()
    for method, status, request_headers, response_headers in NEVER:
        response = Response(status, response_headers, b"x")
        assert not cache.store(
            method, "http://a/", request_headers, response, request_time=0, response_time=0
        )
    assert len(cache) == 0


def test_no_cache_means_revalidate_every_time():
    assert must_revalidate_before_use([("Cache-Control", "no-cache, max-age=600")], 0)


@given(
    st.sampled_from(["Accept-Language", "Accept-Encoding", "Cookie"]),
    st.text(min_size=1, max_size=8),
    st.text(min_size=1, max_size=8),
)
def test_vary_reuses_only_for_equal_selecting_headers(name, a, b):
    stored = [("Vary", name)]
    same = vary_fingerprint(stored, [(name, a)]) == vary_fingerprint(stored, [(name.upper(), a)])
    assert same
    if " ".join(a.split()) != " ".join(b.split()):
        assert vary_fingerprint(stored, [(name, a)]) != vary_fingerprint(stored, [(name, b)])


def test_weak_and_strong_etags_compare_weakly_for_if_none_match():
    assert is_not_modified([("If-None-Match", '"a", W/"b"')], [("ETag", '"b"')])
    assert is_not_modified([("If-None-Match", "*")], [("ETag", '"b"')])
    assert not is_not_modified([("If-None-Match", '"a"')], [("ETag", '"b"')])
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2)
    assert not is_not_modified(
        [("If-None-Match", '"a"'), ("If-Modified-Since", "Thu, 01 Jan 2099 00:00:00 GMT")],
        [("ETag", '"b"'), ("Last-Modified", "Thu, 01 Jan 1970 00:00:00 GMT")],
    )


header_names = st.sampled_from(
    [
        "Connection",
        "Keep-Alive",
        "TE",
        "Upgrade",
        "Proxy-Authorization",
        "Transfer-Encoding",
        "Accept",
        "X-Custom",
        "Host",
        "Cookie",
    ]
)


@given(
    st.lists(
        st.tuples(header_names, st.sampled_from(["1", "close", "X-Custom", "cookie, accept"])),
        max_size=10,
    )
)
def test_hop_by_hop_removal_properties(headers):
    result = remove_hop_by_hop(headers)
    named = {
        t.strip().lower() for k, v in headers if k.lower() == "connection" for t in v.split(",")
    }
    standard = {
        "connection",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
        "transfer-encoding",
    }
    assert all(k.lower() not in standard | named for k, _ in result)
    # everything else survives in order
    assert result == [(k, v) for k, v in headers if k.lower() not in standard | named]


@given(st.lists(st.ip_addresses(v=4).map(str), min_size=1, max_size=5))
def test_x_forwarded_for_is_an_append_only_chain(hops):
    value = None
    for hop in hops:
        value = x_forwarded_for(value, hop)
    assert [part.strip() for part in value.split(",")] == hops


def test_proxy_request_headers_override_spoofed_real_ip():
    headers = proxy_request_headers([("X-Real-IP", "6.6.6.6"), ("Host", "h")], "127.0.0.2")
    assert [v for k, v in headers if k == "X-Real-IP"] == ["127.0.0.2"]
