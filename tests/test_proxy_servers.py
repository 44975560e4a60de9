"""The proxies with real clients (curl, httpx) on loopback sockets."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket

import httpx
import pytest

from deploylab.http import Limits, UpstreamError, UpstreamTimeout
from deploylab.proxy import ForwardProxy, OriginServer, ReverseProxy, fetch

#: The origins here are on loopback, which a forward proxy refuses unless allowed.
LOCAL = ["127.0.0.0/8", "::1/128"]
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl not installed (apt-get install curl)")


async def curl(*args: str) -> tuple[int, dict[str, str], bytes]:
    """Run curl; return (status, lower-cased response headers of the last response, body)."""
    process = await asyncio.create_subprocess_exec(
        CURL,
        "-s",
        "-S",
        "--max-time",
        "10",
        "-D",
        "-",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if out.startswith(b"HTTP/1.1 200 Connection"):  # curl -p prints the CONNECT answer first
        out = out.split(b"\r\n\r\n", 1)[1]
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/"), (out, err)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def proxied_client(proxy: ForwardProxy, **kwargs) -> httpx.AsyncClient:
    return httpx.AsyncClient(proxy=proxy.url, trust_env=False, timeout=10, **kwargs)


# -- forward proxy -----------------------------------------------------------------------------


@needs_curl
async def test_origin_sees_the_proxy_address_not_the_client():
    async with (
        OriginServer() as origin,
        ForwardProxy(allow_destinations=LOCAL, source_address="127.0.0.3") as proxy,
    ):
        status, _, body = await curl(
            "--interface", "127.0.0.2", "-x", proxy.url, origin.url + "/who"
        )
        assert status == 200
        seen = json.loads(body)
        assert seen["client"] == "127.0.0.3"
        assert "127.0.0.2" not in body.decode()  # nothing in the request reveals the client
        _, _, direct = await curl("--interface", "127.0.0.2", origin.url + "/who")
        assert json.loads(direct)["client"] == "127.0.0.2"


async def test_second_request_is_a_hit_with_age_and_spares_the_origin():
    async with (
        OriginServer() as origin,
        ForwardProxy(allow_destinations=LOCAL) as proxy,
        proxied_client(proxy) as client,
    ):
        first = await client.get(origin.url + "/cache/max-age/60")
        await asyncio.sleep(1.1)
        second = await client.get(origin.url + "/cache/max-age/60")
        assert first.headers["x-cache"] == "MISS" and "age" not in first.headers
        assert second.headers["x-cache"] == "HIT"
        assert int(second.headers["age"]) >= 1
        assert second.content == first.content
        assert origin.hits == 1
        kinds = [event.kind for event in proxy.events.recent]
        assert kinds.count("cache_miss") == 1 and kinds.count("cache_hit") == 1


@needs_curl
async def test_a_second_client_gets_the_first_clients_cached_answer():
    async with OriginServer() as origin, ForwardProxy(allow_destinations=LOCAL) as proxy:
        target = origin.url + "/cache/s-maxage/60"
        _, first, _ = await curl("--interface", "127.0.0.2", "-x", proxy.url, target)
        _, second, _ = await curl("--interface", "127.0.0.4", "-x", proxy.url, target)
        assert (first["x-cache"], second["x-cache"]) == ("MISS", "HIT")
        assert origin.hits == 1


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/cache/no-store", {}),
        ("/cache/private", {}),
        ("/cache/max-age/60", {"Authorization": "Bearer secret"}),
        ("/", {}),
    ],
)
async def test_responses_a_shared_cache_must_not_store_are_never_hits(path, headers):
    async with (
        OriginServer() as origin,
        ForwardProxy(allow_destinations=LOCAL) as proxy,
        proxied_client(proxy) as client,
    ):
        for _ in range(3):
            reply = await client.get(origin.url + path, headers=headers)
            assert reply.status_code == 200
            assert reply.headers["x-cache"] == "MISS"
        assert origin.hits == 3


async def test_expired_response_is_fetched_again():
    async with (
        OriginServer() as origin,
        ForwardProxy(allow_destinations=LOCAL) as proxy,
        proxied_client(proxy) as client,
    ):
        await client.get(origin.url + "/cache/max-age/1")
        await asyncio.sleep(1.2)
        again = await client.get(origin.url + "/cache/max-age/1")
        assert origin.hits == 2 and again.json()["count"] == 2


async def test_vary_keeps_one_variant_per_language():
    async with (
        OriginServer() as origin,
        ForwardProxy(allow_destinations=LOCAL) as proxy,
        proxied_client(proxy) as client,
    ):
        url = origin.url + "/cache/vary"
        ko = await client.get(url, headers={"Accept-Language": "ko"})
        fr = await client.get(url, headers={"Accept-Language": "fr"})
        ko_again = await client.get(url, headers={"Accept-Language": "ko"})
        assert [r.headers["x-cache"] for r in (ko, fr, ko_again)] == ["MISS", "MISS", "HIT"]
        assert ko_again.json()["greeting"] == ko.json()["greeting"] != fr.json()["greeting"]
        assert origin.hits == 2


async def test_stale_response_is_revalidated_with_a_304():
    async with (
        OriginServer() as origin,
        ForwardProxy(allow_destinations=LOCAL) as proxy,
        proxied_client(proxy) as client,
    ):
        url = origin.url + "/cache/etag"
        first = await client.get(url)
        second = await client.get(url)
        assert first.headers["x-cache"] == "MISS"
        assert second.headers["x-cache"] == "HIT" and second.content == first.content
        assert [e.kind for e in origin.events.recent].count("not_modified") == 1
        origin_responses = [
            e.fields["status"] for e in origin.events.recent if e.kind == "response"
        ]
        assert origin_responses == [200, 304]


async def test_client_conditional_request_reaches_origin_304():
    async with (
        OriginServer() as origin,
        ForwardProxy(allow_destinations=LOCAL) as proxy,
        proxied_client(proxy) as client,
    ):
        reply = await client.get(origin.url + "/cache/etag", headers={"If-None-Match": '"v1"'})
        assert reply.status_code == 304 and reply.content == b""


@needs_curl
async def test_region_restricted_origin_is_reached_only_through_the_proxy_bound_to_the_allowed_address():
    async with (
        OriginServer(allow_from=["127.0.0.3/32"]) as origin,
        ForwardProxy(allow_destinations=LOCAL, source_address="127.0.0.3") as allowed_proxy,
        ForwardProxy(allow_destinations=LOCAL, source_address="127.0.0.4") as other_proxy,
    ):
        direct, _, _ = await curl("--interface", "127.0.0.2", origin.url + "/")
        through, _, body = await curl(
            "--interface", "127.0.0.2", "-x", allowed_proxy.url, origin.url + "/"
        )
        wrong, _, _ = await curl(
            "--interface", "127.0.0.2", "-x", other_proxy.url, origin.url + "/"
        )
        assert (direct, through, wrong) == (403, 200, 403)
        assert json.loads(body)["client"] == "127.0.0.3"


@needs_curl
async def test_client_outside_the_allow_list_is_refused():
    async with (
        OriginServer() as origin,
        ForwardProxy(allow_destinations=LOCAL, allow_clients=["127.0.0.2/32"]) as proxy,
    ):
        refused, _, body = await curl("--interface", "127.0.0.5", "-x", proxy.url, origin.url + "/")
        allowed, _, _ = await curl("--interface", "127.0.0.2", "-x", proxy.url, origin.url + "/")
        assert (refused, allowed) == (403, 200)
        assert b"127.0.0.5" in body and origin.hits == 1


async def test_default_allow_list_is_loopback_only():
    proxy = ForwardProxy(allow_destinations=LOCAL)
    assert [str(n) for n in proxy.allow_clients] == ["127.0.0.0/8", "::1/128"]
    assert proxy.host == "127.0.0.1"


async def test_forward_proxy_rejects_origin_form_and_is_not_a_web_server():
    async with (
        ForwardProxy(allow_destinations=LOCAL) as proxy,
        httpx.AsyncClient(trust_env=False) as client,
    ):
        reply = await client.get(proxy.url + "/")
        assert reply.status_code == 400


async def raw_connect(proxy, target: str) -> bytes:
    reader, writer = await asyncio.open_connection(*proxy.address)
    writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return head, reader, writer


async def test_connect_tunnel_to_an_allowed_port_carries_raw_bytes():
    async def tcp_echo(reader, writer):
        writer.write(b"echo:" + await reader.read(100))
        await writer.drain()
        writer.close()

    echo = await asyncio.start_server(tcp_echo, "127.0.0.1", 0)
    port = echo.sockets[0].getsockname()[1]
    async with ForwardProxy(allow_destinations=LOCAL, connect_ports=[port]) as proxy:
        head, reader, writer = await raw_connect(proxy, f"127.0.0.1:{port}")
        assert head.startswith(b"HTTP/1.1 200 Connection Established")
        writer.write(b"\x16\x03\x01 not-http bytes")
        assert await asyncio.wait_for(reader.read(), 5) == b"echo:\x16\x03\x01 not-http bytes"
        writer.close()
    echo.close()


@needs_curl
async def test_connect_to_a_disallowed_port_is_refused():
    async with OriginServer() as origin, ForwardProxy(allow_destinations=LOCAL) as proxy:
        head, _, writer = await raw_connect(proxy, f"127.0.0.1:{origin.port}")
        writer.close()
        assert head.startswith(b"HTTP/1.1 403")
        process = await asyncio.create_subprocess_exec(
            CURL,
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_connect}",
            "-p",
            "-x",
            proxy.url,
            origin.url + "/",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        assert out == b"403" and origin.hits == 0


async def test_forward_proxy_502_and_504():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    async with (
        OriginServer() as origin,
        ForwardProxy(allow_destinations=LOCAL, upstream_timeout=0.3) as proxy,
        proxied_client(proxy) as client,
    ):
        unreachable = await client.get(f"http://127.0.0.1:{dead_port}/")
        slow = await client.get(origin.url + "/slow/3")
        assert unreachable.status_code == 502 and slow.status_code == 504
        assert str(dead_port) not in unreachable.text
        assert (await client.get(origin.url + "/cache/max-age/5")).status_code == 200


async def test_fetch_fails_naming_the_url_when_no_answer_comes():
    """The lessons' client against a server that accepts and never answers, and a port
    nobody listens on: each fails within its timeout, naming the request (a lesson's cell
    fails and says which URL, instead of hanging)."""
    held = []

    async def never_answer(reader, writer):
        held.append(writer)  # keep the connection open, say nothing

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    silent_url = f"http://127.0.0.1:{silent.sockets[0].getsockname()[1]}/sleep/5"
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}/"
    closed.close()
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(UpstreamTimeout) as timed_out:
            await asyncio.wait_for(fetch(silent_url, timeout=0.5), 10)
        assert asyncio.get_running_loop().time() - started < 5
        assert str(timed_out.value).startswith(f"GET {silent_url}: no data")
        with pytest.raises(UpstreamError) as refused:
            await asyncio.wait_for(fetch(dead_url, timeout=0.5), 10)
        assert str(refused.value).startswith(f"GET {dead_url}: cannot connect")
    finally:
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()


# -- reverse proxy -----------------------------------------------------------------------------


async def test_reverse_proxy_sets_client_headers_and_passes_host():
    async with OriginServer(name="a") as backend, ReverseProxy([backend.url]) as proxy:
        async with httpx.AsyncClient(
            trust_env=False, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        ) as client:
            reply = await client.get(
                proxy.url + "/path?q=1",
                headers={
                    "Host": "shop.example",
                    "X-Forwarded-For": "203.0.113.9",
                    "Connection": "keep-alive, X-Secret",
                    "X-Secret": "s",
                },
            )
        seen = reply.json()
        headers = {k.lower(): v for k, v in seen["headers"].items()}
        assert seen["client"] == "127.0.0.1" and seen["target"] == "/path?q=1"
        assert headers["x-real-ip"] == "127.0.0.2"
        assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.2"
        assert headers["x-forwarded-proto"] == "http"
        assert headers["host"] == "shop.example"
        assert "x-secret" not in headers and "connection" not in headers


async def test_reverse_proxy_round_robin_and_hides_backends():
    async with (
        OriginServer(name="a") as a,
        OriginServer(name="b") as b,
        ReverseProxy([a.url, b.url]) as proxy,
        httpx.AsyncClient(trust_env=False) as client,
    ):
        replies = [await client.get(proxy.url + "/") for _ in range(4)]
        assert [r.json()["server"] for r in replies] == ["a", "b", "a", "b"]
        for reply in replies:
            text = str(reply.headers) + reply.text
            assert str(a.port) not in text and str(b.port) not in text
            assert reply.headers["server"] == "deploylab"


async def test_reverse_proxy_keeps_connections_alive_on_both_sides():
    async with OriginServer() as backend, ReverseProxy([backend.url]) as proxy:
        async with httpx.AsyncClient(trust_env=False) as client:
            for _ in range(10):
                assert (await client.get(proxy.url + "/")).status_code == 200
        client_ports = {e.fields["client"] for e in proxy.events.recent if e.kind == "request"}
        backend_ports = {e.fields["client"] for e in backend.events.recent if e.kind == "request"}
        assert len(client_ports) == 1 and len(backend_ports) == 1
        assert proxy.pool.connections_opened == 1


async def test_reverse_proxy_502_504_and_keeps_serving():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    async with OriginServer() as backend:
        async with ReverseProxy([dead]) as proxy, httpx.AsyncClient(trust_env=False) as client:
            reply = await client.get(proxy.url + "/")
            assert reply.status_code == 502 and dead.rsplit(":", 1)[1] not in reply.text
        async with (
            ReverseProxy([backend.url], upstream_timeout=0.3) as proxy,
            httpx.AsyncClient(trust_env=False) as client,
        ):
            assert (await client.get(proxy.url + "/slow/3")).status_code == 504
            assert (await client.get(proxy.url + "/fine")).status_code == 200


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n", 400),
        (b"GET /" + b"x" * 10000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nCookie: " + b"c" * 20000 + b"\r\n\r\n", 431),
        (b"\x00\x01\x02garbage", 400),
    ],
)
async def test_both_proxies_answer_malformed_requests_and_keep_serving(data, status):
    async with (
        OriginServer() as origin,
        ForwardProxy(allow_destinations=LOCAL) as forward,
        ReverseProxy([origin.url]) as reverse,
    ):
        for proxy in (forward, reverse):
            reader, writer = await asyncio.open_connection(*proxy.address)
            writer.write(data)
            reply = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert reply.startswith(b"HTTP/1.1 %d" % status), reply[:100]
        assert origin.hits == 0  # nothing was smuggled through
        async with proxied_client(forward) as client:
            assert (await client.get(origin.url + "/")).status_code == 200
        async with httpx.AsyncClient(trust_env=False) as client:
            assert (await client.get(reverse.url + "/")).status_code == 200


async def test_slowloris_is_cut_off_at_the_proxy():
    async with ReverseProxy(["http://127.0.0.1:9"], limits=Limits(header_timeout=0.3)) as proxy:
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"GET / HTTP/1.1\r\nX-a: 1\r\n")
        reply = await asyncio.wait_for(reader.read(), 3)
        writer.close()
        assert reply.startswith(b"HTTP/1.1 408")


async def test_reverse_proxy_can_send_the_standard_forwarded_header():
    async with OriginServer() as backend, ReverseProxy([backend.url], add_forwarded=True) as proxy:
        async with httpx.AsyncClient(
            trust_env=False, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        ) as client:
            reply = await client.get(proxy.url + "/", headers={"Host": "shop.example:8080"})
        seen = {k.lower(): v for k, v in reply.json()["headers"].items()}
        # RFC 7239 §4: a host with a port is a quoted-string
        assert seen["forwarded"] == 'for=127.0.0.2;proto=http;host="shop.example:8080"'


@needs_curl
async def test_curl_tunnels_through_connect_to_an_allowed_port():
    async with (
        OriginServer() as origin,
        ForwardProxy(allow_destinations=LOCAL, connect_ports=[origin.port]) as proxy,
    ):
        status, _, body = await curl(
            "-p", "-x", proxy.url, "--interface", "127.0.0.2", origin.url + "/tunnelled"
        )
        assert status == 200
        seen = json.loads(body)
        assert seen["target"] == "/tunnelled"  # origin-form: the proxy only carried bytes
        assert seen["client"] == "127.0.0.1" and "Via" not in seen["headers"]
        assert origin.hits == 1
