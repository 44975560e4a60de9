"""The L7 balancer against hostile clients and hostile backends, on raw sockets (issue 15).

Each case failed before the fix it guards. The same bytes go to a real nginx in
tests/test_hostile_nginx.py where nginx defines a behaviour.
"""

from __future__ import annotations

import asyncio
import shutil
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

from deploylab.balancer.control import ControlServer, control_request
from deploylab.balancer.runtime import Balancer
from deploylab.http import Limits

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

GET = b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n"


def echo_backend() -> ScriptedBackend:
    return ScriptedBackend(lambda head, index: response(head.split(b" ")[1]))


async def two_clients(balancer: Balancer, first: bytes = GET % 1, second: bytes = GET % 2):
    """One request each from two clients, one after the other."""
    one = await raw_exchange(("127.0.0.1", balancer.port), first, read_timeout=1)
    two = await raw_exchange(("127.0.0.1", balancer.port), second, read_timeout=1)
    return one, two


# -- responses never cross between clients ---------------------------------------------------
@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n",
    ],
)
async def test_balancer_reads_past_1xx_to_the_final_response(interim):
    backend = ScriptedBackend(lambda head, i: interim + response(b"final-%d" % i))
    async with backend, Balancer([backend.url]) as lb:
        one, two = await two_clients(lb)
    assert statuses(one) == [200] and one.endswith(b"final-0")
    assert statuses(two) == [200] and two.endswith(b"final-1")


async def test_balancer_reads_past_a_1xx_sent_in_its_own_packet():
    steps = [(0, b"HTTP/1.1 100 Continue\r\n\r\n"), (0.1, response(b"final"))]
    backend = ScriptedBackend(lambda head, i: steps if i == 0 else response(b"second"))
    async with backend, Balancer([backend.url]) as lb:
        one, two = await two_clients(lb)
    assert one.endswith(b"final") and two.endswith(b"second")


@pytest.mark.parametrize(
    "first",
    [
        response(b"first") + response(b"SECRET"),  # a second response in the same packet
        response(b"first") + b"SECRET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n"
        + response(b"SECRET"),
        [(0, response(b"first")), (0.2, response(b"SECRET"))],  # later, on the idle link
    ],
)
async def test_bytes_after_a_response_never_reach_this_or_the_next_client(first):
    backend = ScriptedBackend(lambda head, i: first if i == 0 else response(b"ok"))
    async with backend, Balancer([backend.url]) as lb:
        one = await raw_exchange(("127.0.0.1", lb.port), GET % 1, read_timeout=0.5)
        await asyncio.sleep(0.3)
        two = await raw_exchange(("127.0.0.1", lb.port), GET % 2, read_timeout=1)
    assert b"SECRET" not in one and b"first" in one
    assert b"SECRET" not in two and two.endswith(b"ok")


async def test_a_body_after_a_head_answer_is_never_relayed():
    def script(head, i):
        return response(b"SECRET-AFTER-HEAD") if head.startswith(b"HEAD") else response(b"ok")

    async with ScriptedBackend(script) as backend, Balancer([backend.url]) as lb:
        head, after = await two_clients(lb, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", GET % 2)
    assert b"SECRET" not in head and b"Content-Length: 17" in head
    assert b"SECRET" not in after and after.endswith(b"ok")


# -- requests never smuggled -----------------------------------------------------------------------
UPGRADE_WITH_BODY = (
    b"POST /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Content-Length: 34\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
)
UPGRADE_THEN_REQUEST = (
    b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
)


@pytest.mark.parametrize("data", [UPGRADE_WITH_BODY, UPGRADE_THEN_REQUEST])
async def test_nothing_after_an_upgrade_request_is_read_as_a_request(data):
    async with echo_backend() as backend, Balancer([backend.url]) as lb:
        reply = await raw_exchange(("127.0.0.1", lb.port), data, read_timeout=2)
    assert all(b"/admin" not in head for head in backend.heads)
    assert len(statuses(reply)) == 1
    assert status_of(reply) == (400 if data == UPGRADE_WITH_BODY else 200)


@pytest.mark.parametrize(
    "hosts",
    [b"Host: a\r\nHost: b\r\n", b"", b"Host: a b\r\n", b"Host: a/b\r\n"],
    ids=["two", "none", "space", "slash"],
)
async def test_host_rules_are_enforced_before_anything_is_forwarded(hosts):
    async with echo_backend() as backend, Balancer([backend.url]) as lb:
        reply = await raw_exchange(("127.0.0.1", lb.port), b"GET / HTTP/1.1\r\n%s\r\n" % hosts)
    assert status_of(reply) == 400 and backend.heads == []


async def test_pipelined_bad_request_after_good_ones_gets_their_answers_first():
    async with echo_backend() as backend, Balancer([backend.url]) as lb:
        reply = await raw_exchange(
            ("127.0.0.1", lb.port),
            GET % 1 + GET % 2 + b"GET /bad HTTP/1.1\r\nHost: a b\r\n\r\n" + GET % 3,
        )
    assert statuses(reply) == [200, 200, 400]
    assert b"/1" in reply and b"/2" in reply and b"/3" not in reply


async def test_forwarded_headers_keep_the_whole_chain_and_set_the_proto():
    async with echo_backend() as backend, Balancer([backend.url]) as lb:
        await raw_exchange(
            ("127.0.0.1", lb.port),
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n"
            b"X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
        )
    head = backend.heads[0]
    assert b"X-Forwarded-For: 1.1.1.1, 2.2.2.2, 127.0.0.1\r\n" in head
    assert b"X-Forwarded-Proto: http\r\n" in head and b"https" not in head


# -- Expect: 100-continue ---------------------------------------------------------------------------
async def test_expect_100_continue_is_answered_by_the_balancer_and_not_forwarded():
    async with echo_backend() as backend, Balancer([backend.url]) as lb:
        reader, writer = await asyncio.open_connection("127.0.0.1", lb.port)
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.9)
        writer.write(b"hello")
        final = await asyncio.wait_for(reader.readuntil(b"/upload"), 5)
        writer.close()
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n" and final.startswith(b"HTTP/1.1 200")
    assert b"expect" not in backend.heads[0].lower()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
async def test_curl_posts_2_mb_through_the_balancer_with_its_default_expect():
    backend = ScriptedBackend(lambda head, i: response(b"stored"))
    async with backend, Balancer([backend.url]) as lb:
        process = await asyncio.create_subprocess_exec(
            "curl", "-s", "-S", "--max-time", "20", "-w", " %{time_total}",
            "--data-binary", "@-", f"http://127.0.0.1:{lb.port}/upload",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await process.communicate(b"u" * (2 * 1024 * 1024))
    body, seconds = out.rsplit(b" ", 1)
    assert body == b"stored" and float(seconds) < 0.9  # curl waits 1 s for a 100 that never comes


# -- bounded time -----------------------------------------------------------------------------------
QUICK = Limits(header_timeout=0.5, body_timeout=0.5, keep_alive_timeout=0.5)


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nab",
    ],
    ids=["slow-headers", "stalled-body"],
)
async def test_a_request_that_stops_progressing_gets_408(data):
    async with echo_backend() as backend, Balancer([backend.url], limits=QUICK) as lb:
        started = time.monotonic()
        reply = await raw_exchange(("127.0.0.1", lb.port), data, read_timeout=5)
    assert status_of(reply) == 408 and time.monotonic() - started < 3
    assert backend.heads == []


async def test_an_idle_keep_alive_connection_is_closed():
    async with echo_backend() as backend, Balancer([backend.url], limits=QUICK) as lb:
        started = time.monotonic()
        reply = await raw_exchange(("127.0.0.1", lb.port), GET % 1, read_timeout=5)
    assert statuses(reply) == [200] and time.monotonic() - started < 3


async def test_read_timeout_bounds_each_read_not_the_whole_response():
    piece = b"x" * 65536
    steps = [(0, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(piece) * 16))]
    steps += [(0.25, piece) for _ in range(16)]  # 4 s in all, never 1 s apart
    backend = ScriptedBackend(lambda head, i: steps)
    async with backend, Balancer([backend.url], read_timeout=1.0) as lb:
        reply = await raw_exchange(("127.0.0.1", lb.port), GET % 1, read_timeout=10)
    assert status_of(reply) == 200 and len(reply.partition(b"\r\n\r\n")[2]) == 16 * 65536


# -- control endpoint ----------------------------------------------------------------------------------
async def test_control_api_needs_the_token_and_lives_on_its_own_loopback_port():
    async with echo_backend() as a, echo_backend() as b, Balancer([a.url], control_port=0) as lb:
        port, token, names = (
            lb.control.port,
            lb.control_token,
            [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"],
        )
        call = asyncio.to_thread
        wrong = await call(control_request, port, "not-the-token")
        added = await call(control_request, port, token, "POST", "/backends", {"backend": b.url})
        status = await call(control_request, port, token)
        removed = await call(
            control_request, port, token, "POST", "/backends/remove", {"backend": a.url}
        )
        data_port = await raw_exchange(
            ("127.0.0.1", lb.port),
            b"GET /_deploylab/status HTTP/1.1\r\nHost: x\r\n\r\n",
            read_timeout=1,
        )
        with pytest.raises(ValueError, match="loopback"):
            ControlServer(lb, host="0.0.0.0")
    assert wrong[0] == 401
    assert added[0] == 201 and [row["backend"] for row in status[1]["backends"]] == names
    assert removed == (200, {"removed": names[0]})
    assert data_port.endswith(b"/_deploylab/status")  # just a path, passed to a backend


# -- bounded memory, from the balancer process's own RSS ------------------------------------------
BALANCER_PROCESS = """
import asyncio
from deploylab.balancer.runtime import Balancer
from deploylab.http import HTTPServer, Response

BIG = b"m" * (256 * 1024)

async def big(request):
    return Response(200, [], BIG)

async def main():
    async with HTTPServer(big) as backend:
        async with Balancer([backend.url], port={port}, request_events=False):
            await asyncio.Event().wait()

asyncio.run(main())
"""


def test_balancer_memory_stays_bounded_when_clients_pipeline_and_never_read():
    with ServerProcess(BALANCER_PROCESS) as server:
        time.sleep(0.5)
        before = server.rss()
        floods = [
            asyncio.to_thread(
                pipeline_without_reading,
                server.port,
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                10_000_000,
                4.0,
            )
            for _ in range(4)
        ]

        async def flood():
            await asyncio.gather(*floods)

        asyncio.run(flood())
        grown = server.rss() - before
    assert grown < 60 * 1024 * 1024, f"RSS grew by {grown / 2**20:.0f} MiB"  # was +660 MiB


def test_balancer_closes_idle_connections_to_serve_new_clients_when_descriptors_run_low():
    code = BALANCER_PROCESS.replace('BIG = b"m" * (256 * 1024)', 'BIG = b"ok"')
    with ServerProcess(code, nofile=128) as server:
        idle = []
        try:
            for _ in range(150):
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


async def test_absolute_form_target_reaches_the_backend_in_origin_form():
    async with echo_backend() as backend, Balancer([backend.url]) as lb:
        reply = await raw_exchange(
            ("127.0.0.1", lb.port),
            b"GET http://shop.test/cart?x=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
        )
    assert status_of(reply) == 200 and reply.endswith(b"/cart?x=1")
    assert b"Host: shop.test\r\n" in backend.heads[0] and b"other" not in backend.heads[0]


async def test_200_slowloris_connections_are_cut_off_and_others_are_served_meanwhile():
    limits = Limits(header_timeout=1.0)
    async with echo_backend() as backend, Balancer([backend.url], limits=limits) as lb:
        slow = []
        for _ in range(200):
            reader, writer = await asyncio.open_connection("127.0.0.1", lb.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-a: ")  # and never the rest
            slow.append((reader, writer))
        started = time.monotonic()
        served = await raw_exchange(
            ("127.0.0.1", lb.port),
            b"GET /meanwhile HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        answers = await asyncio.wait_for(asyncio.gather(*(r.read() for r, _ in slow)), 10)
        took = time.monotonic() - started
        for _, writer in slow:
            writer.close()
    assert served.endswith(b"/meanwhile")
    assert [status_of(answer) for answer in answers] == [408] * 200 and took < 5
