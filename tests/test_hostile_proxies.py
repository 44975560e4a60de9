"""The origin and both proxies against hostile clients and hostile backends, on raw sockets.

Each case is a known attack (issue 15): requests or responses crossing between clients,
unbounded memory or time. Where nginx defines a behaviour, tests/test_hostile_nginx.py sends
the same bytes to a real nginx.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from hostile_kit import (
    ScriptedBackend,
    ServerProcess,
    pipeline_without_reading,
    raw_exchange,
    response,
    status_of,
    statuses,
)

from deploylab.http import ConnectionPool, Limits, UpstreamTimeout
from deploylab.proxy import ForwardProxy, OriginServer, ReverseProxy

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

UPGRADE_WITH_BODY = (
    b"POST /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Content-Length: 34\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
)
UPGRADE_THEN_REQUEST = (
    b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
)


def echo_backend() -> ScriptedBackend:
    return ScriptedBackend(lambda head, index: response(head.split(b" ")[1]))


# -- an Upgrade request never smuggles a second one ------------------------------------------
@pytest.mark.parametrize("data", [UPGRADE_WITH_BODY, UPGRADE_THEN_REQUEST])
async def test_origin_never_reads_bytes_after_an_upgrade_request_as_a_request(data):
    async with OriginServer() as origin:
        reply = await raw_exchange(origin.address, data)
    assert b"/admin" not in reply
    assert len(statuses(reply)) == 1
    assert status_of(reply) == (400 if data == UPGRADE_WITH_BODY else 200)


@pytest.mark.parametrize("data", [UPGRADE_WITH_BODY, UPGRADE_THEN_REQUEST])
async def test_reverse_proxy_never_forwards_a_smuggled_request_after_an_upgrade(data):
    async with echo_backend() as backend, ReverseProxy([backend.url]) as proxy:
        reply = await raw_exchange(proxy.address, data)
    assert all(b"/admin" not in head for head in backend.heads)
    assert len(statuses(reply)) == 1


async def test_forward_proxy_never_forwards_a_smuggled_request_after_an_upgrade():
    async with echo_backend() as backend, ForwardProxy(allow_destinations=["127.0.0.0/8"]) as proxy:
        data = UPGRADE_WITH_BODY.replace(b"POST /chat", f"POST {backend.url}/chat".encode())
        reply = await raw_exchange(proxy.address, data)
    assert status_of(reply) == 400
    assert backend.heads == []


# -- 1xx, extra bytes and HEAD bodies from a backend --------------------------------------------
@pytest.mark.parametrize(
    "interim",
    [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"],
)
async def test_reverse_proxy_reads_past_1xx_to_the_final_response(interim):
    backend = ScriptedBackend(lambda head, i: interim + response(b"final-%d" % i))
    async with backend, ReverseProxy([backend.url]) as proxy:
        first = await raw_exchange(
            proxy.address, b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=1
        )
        second = await raw_exchange(
            proxy.address, b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=1
        )
    assert statuses(first) == [200] and first.endswith(b"final-0")
    assert statuses(second) == [200] and second.endswith(b"final-1")


@pytest.mark.parametrize(
    "extra",
    [
        response(b"SECRET-OF-CLIENT-1"),  # a second response nobody asked for
        b"SECRET-OF-CLIENT-1",  # garbage after the body
    ],
)
async def test_bytes_a_backend_sends_after_its_response_never_reach_the_next_client(extra):
    backend = ScriptedBackend(
        lambda head, i: response(b"first") + extra if i == 0 else response(b"ok")
    )
    async with backend, ReverseProxy([backend.url]) as proxy:
        await raw_exchange(proxy.address, b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=0.5)
        second = await raw_exchange(
            proxy.address, b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=1
        )
    assert b"SECRET" not in second
    assert statuses(second) == [200] and second.endswith(b"ok")


async def test_late_bytes_on_an_idle_pooled_connection_are_never_an_answer():
    def script(head, i):
        if i == 0:  # the response, then stray bytes a moment later, while the link is idle
            return [(0, response(b"first")), (0.2, response(b"SECRET"))]
        return response(b"ok")

    async with ScriptedBackend(script) as backend, ReverseProxy([backend.url]) as proxy:
        await raw_exchange(proxy.address, b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=0.5)
        second = await raw_exchange(
            proxy.address, b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=1
        )
    assert b"SECRET" not in second and second.endswith(b"ok")


async def test_a_body_after_a_head_answer_never_reaches_the_next_client():
    def script(head, i):
        if head.startswith(b"HEAD"):
            return response(b"SECRET-BODY-AFTER-HEAD")
        return response(b"ok")

    async with ScriptedBackend(script) as backend, ReverseProxy([backend.url]) as proxy:
        head = await raw_exchange(
            proxy.address, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=0.5
        )
        after = await raw_exchange(
            proxy.address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=1
        )
    assert b"SECRET" not in head and b"SECRET" not in after
    assert b"Content-Length: 22" in head  # the length the backend announced, as nginx passes it
    assert after.endswith(b"ok")


# -- Expect: 100-continue ------------------------------------------------------------------------
async def test_expect_100_continue_is_answered_at_the_front_and_not_forwarded():
    async with echo_backend() as backend, ReverseProxy([backend.url]) as proxy:
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.9)  # curl waits 1 s
        writer.write(b"hello")
        final = await asyncio.wait_for(reader.readuntil(b"/upload"), 5)
        writer.close()
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.startswith(b"HTTP/1.1 200")
    assert b"expect" not in backend.heads[0].lower()


# -- bounded time ------------------------------------------------------------------------------------
async def test_a_client_that_sends_headers_then_no_body_gets_408():
    async with OriginServer(limits=Limits(body_timeout=0.5)) as origin:
        started = time.monotonic()
        reply = await raw_exchange(
            origin.address,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
            read_timeout=5,
        )
    assert status_of(reply) == 408 and time.monotonic() - started < 3


async def test_upstream_timeout_bounds_each_read_not_the_whole_response():
    piece = b"x" * 65536
    steps = [(0, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(piece) * 12))]
    steps += [(0.25, piece) for _ in range(12)]  # 3 s in all, never more than 0.25 s apart
    backend = ScriptedBackend(lambda head, i: steps)
    async with backend, ReverseProxy([backend.url], upstream_timeout=1.0) as proxy:
        reply = await raw_exchange(
            proxy.address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=8
        )
    assert status_of(reply) == 200 and reply.endswith(piece) and len(reply) > 12 * 65536


@pytest.mark.parametrize(
    ("pool_timeout", "pause", "request_timeout", "expected"),
    [(1.0, 0.5, None, 1.0), (3.0, 0.2, 0.3, 0.3)],
)
async def test_a_reused_connection_times_out_a_read_on_its_own_deadline(
    pool_timeout, pause, request_timeout, expected
):
    """The pool's per-read timer is one per connection, moved lazily: the timer of the first
    request's read is still running when the second request's read starts; that read
    times out at its own deadline, later or earlier than the timer's."""
    backend = ScriptedBackend(lambda head, i: response(b"one") if i == 0 else [(30, b"")])
    async with backend, ConnectionPool(read_timeout=pool_timeout) as pool:
        first = await pool.request("127.0.0.1", backend.port, "GET", "/", [("Host", "x")])
        await asyncio.sleep(pause)
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await pool.request(
                "127.0.0.1", backend.port, "GET", "/", [("Host", "x")], timeout=request_timeout
            )
        waited = time.monotonic() - started
    assert first.body == b"one" and backend.connections == 1
    assert expected - 0.05 <= waited < expected + 1.5, waited


async def test_reverse_proxy_streams_a_response_larger_than_the_body_limit():
    size = 12 * 1024 * 1024  # over Limits.max_body (8 MiB), which nginx would stream
    backend = ScriptedBackend(lambda head, i: response(b"z" * size))
    async with backend, ReverseProxy([backend.url]) as proxy:
        reply = await raw_exchange(
            proxy.address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=20
        )
    assert status_of(reply) == 200 and reply.endswith(b"z" * 1000)
    assert len(reply.partition(b"\r\n\r\n")[2]) == size


# -- smaller rules ----------------------------------------------------------------------------------
@pytest.mark.parametrize("host", [b"a b", b"a/b", b"a\tb"])
async def test_invalid_host_is_400(host):
    async with OriginServer() as origin:
        reply = await raw_exchange(origin.address, b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host)
    assert status_of(reply) == 400


async def test_reverse_proxy_accepts_absolute_form_and_uses_its_authority_as_host():
    async with echo_backend() as backend, ReverseProxy([backend.url]) as proxy:
        reply = await raw_exchange(
            proxy.address,
            b"GET http://shop.test/cart?x=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
        )
    assert status_of(reply) == 200 and reply.endswith(b"/cart?x=1")
    assert b"Host: shop.test\r\n" in backend.heads[0]


async def test_x_forwarded_headers_append_the_chain_and_set_the_proto():
    async with echo_backend() as backend, ReverseProxy([backend.url]) as proxy:
        await raw_exchange(
            proxy.address,
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n"
            b"X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
        )
    head = backend.heads[0]
    assert b"X-Forwarded-For: 1.1.1.1, 2.2.2.2, 127.0.0.1\r\n" in head
    assert b"X-Forwarded-Proto: http\r\n" in head and b"https" not in head


async def test_pipelined_bad_request_after_a_good_one_answers_the_good_one_first():
    async with OriginServer() as origin:
        reply = await raw_exchange(
            origin.address,
            b"GET /good HTTP/1.1\r\nHost: x\r\n\r\nGET /bad HTTP/1.1\r\nHost: a b\r\n\r\n",
        )
    assert statuses(reply) == [200, 400]


async def test_pool_never_reuses_a_connection_with_a_second_response_waiting():
    backend = ScriptedBackend(
        lambda head, i: response(b"one") + response(b"SECRET") if i == 0 else response(b"two")
    )
    async with backend, ConnectionPool() as pool:
        first = await pool.request("127.0.0.1", backend.port, "GET", "/", [("Host", "x")])
        second = await pool.request("127.0.0.1", backend.port, "GET", "/", [("Host", "x")])
    assert (first.body, second.body) == (b"one", b"two")


# -- bounded memory, from the server process's own RSS ------------------------------------------
PROXY_PROCESS = """
import asyncio
from deploylab.proxy import ReverseProxy, OriginServer
from deploylab.http import Response, HTTPServer

BIG = b"m" * (1024 * 1024)

async def big(request):
    return Response(200, [("Content-Type", "application/octet-stream")], BIG)

async def main():
    async with HTTPServer(big) as backend:
        async with ReverseProxy([backend.url], port={port}):
            await asyncio.Event().wait()

asyncio.run(main())
"""


def test_reverse_proxy_memory_stays_bounded_when_a_client_pipelines_and_never_reads():
    with ServerProcess(PROXY_PROCESS) as server:
        time.sleep(0.5)
        before = server.rss()
        pipeline_without_reading(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 300, 4.0)
        grown = server.rss() - before
    # 300 x 1 MB answers were asked for; only a few may be held (was +330 MB)
    assert grown < 60 * 1024 * 1024, f"RSS grew by {grown / 2**20:.0f} MiB"


IDLE_PROCESS = """
import asyncio
from deploylab.proxy import OriginServer

async def main():
    async with OriginServer(port={port}):
        await asyncio.Event().wait()

asyncio.run(main())
"""


def test_idle_connections_are_closed_to_serve_new_clients_when_descriptors_run_low():
    with ServerProcess(IDLE_PROCESS, nofile=128) as server:
        idle = []
        try:
            for _ in range(150):  # more keep-alive connections than the process has descriptors
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                sock.recv(65536)
                idle.append(sock)
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as fresh:
                fresh.sendall(b"GET /new HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                reply = b""
                while chunk := fresh.recv(65536):
                    reply += chunk
        finally:
            for sock in idle:
                sock.close()
    assert status_of(reply) == 200


# -- forward proxy: destinations decided before connecting, a shared cache that shares nothing
LOCAL = ["127.0.0.0/8", "::1/128"]


@pytest.mark.parametrize(
    "target",
    [
        b"http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
        b"http://10.0.0.1/",
        b"http://192.168.1.1:8080/",
        b"http://[fe80::1]/",
        b"http://127.0.0.1:9/",  # loopback is refused unless allowed
        b"http://0x7f.0.0.1/",  # the same address spelt otherwise
        b"http://2130706433/",
        b"http://127.1/",
        b"http://[::ffff:169.254.169.254]/",
        b"http://localhost/",
        b"http://0.0.0.0/",
    ],
)
async def test_forward_proxy_refuses_internal_destinations_before_connecting(target, monkeypatch):
    attempts = []

    async def no_connect(self, host, port):  # never reached: nothing leaves this machine
        attempts.append((host, port))
        raise AssertionError("the proxy tried to connect")

    monkeypatch.setattr(ConnectionPool, "_connect", no_connect)
    async with ForwardProxy() as proxy:
        reply = await raw_exchange(
            proxy.address, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target
        )
        host = target.split(b"/")[2]
        host = host[: host.index(b"]") + 1] if host.startswith(b"[") else host.split(b":")[0]
        connect = await raw_exchange(
            proxy.address, b"CONNECT %s:443 HTTP/1.1\r\nHost: x\r\n\r\n" % host
        )
    assert (status_of(reply), status_of(connect)) == (403, 403)
    assert attempts == []


async def test_forward_proxy_connects_to_the_address_it_checked_whatever_the_spelling():
    async with echo_backend() as backend, ForwardProxy(allow_destinations=LOCAL) as proxy:
        reply = await raw_exchange(
            proxy.address,
            b"GET http://0x7f.1:%d/spelt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            % backend.port,
        )
    assert status_of(reply) == 200 and reply.endswith(b"/spelt")


async def test_shared_cache_never_replays_a_set_cookie_to_another_client():
    def script(head, i):  # each visitor gets their own session cookie
        return response(
            b"page", extra=b"Cache-Control: max-age=60\r\nSet-Cookie: session=%d\r\n" % i
        )

    async with ScriptedBackend(script) as backend, ForwardProxy(allow_destinations=LOCAL) as proxy:
        ask = (
            b"GET %s/account HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            % backend.url.encode()
        )
        alice = await raw_exchange(proxy.address, ask)
        bob = await raw_exchange(proxy.address, ask)
    assert b"session=0" in alice
    assert b"session=0" not in bob and b"X-Cache: MISS" in bob


async def test_shared_cache_never_answers_a_plain_get_with_a_206():
    def script(head, i):
        if b"Range:" in head:
            return response(
                b"0123", 206, b"Cache-Control: max-age=60\r\nContent-Range: bytes 0-3/10\r\n"
            )
        return response(b"0123456789", 200, b"Cache-Control: max-age=60\r\n")

    async with ScriptedBackend(script) as backend, ForwardProxy(allow_destinations=LOCAL) as proxy:
        url = backend.url.encode()
        await raw_exchange(
            proxy.address,
            b"GET %s/f HTTP/1.1\r\nHost: x\r\nRange: bytes=0-3\r\nConnection: close\r\n\r\n" % url,
        )
        plain = await raw_exchange(
            proxy.address, b"GET %s/f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % url
        )
    assert status_of(plain) == 200 and plain.endswith(b"0123456789")


FORWARD_PROCESS = """
import asyncio
from deploylab.proxy import ForwardProxy
from deploylab.http import HTTPServer, Response

async def big(request):
    size = int(request.target.split("/")[1])
    return Response(200, [("Cache-Control", "max-age=600")], b"c" * size)

async def main():
    async with HTTPServer(big, port={port} + 1 if {port} < 65535 else 0) as origin:
        async with ForwardProxy(port={port}, allow_destinations=["127.0.0.0/8"],
                                cache_bytes=4 * 1024 * 1024):
            await asyncio.Event().wait()

asyncio.run(main())
"""


def test_forward_proxy_cache_is_bounded_in_bytes():
    import urllib.request

    with ServerProcess(FORWARD_PROCESS) as server:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{server.port}"})
        )
        origin = f"http://127.0.0.1:{server.port + 1}"
        opener.open(f"{origin}/900000/warmup", timeout=10).read()
        before = server.rss()
        for n in range(40):  # 40 x 900 kB cacheable, then 10 x 8 MB (streamed, not stored)
            opener.open(f"{origin}/900000/{n}", timeout=10).read()
        for n in range(10):
            opener.open(f"{origin}/8000000/{n}", timeout=30).read()
        grown = server.rss() - before
    assert grown < 30 * 1024 * 1024, f"RSS grew by {grown / 2**20:.0f} MiB"
