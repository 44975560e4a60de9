"""deploylab.http against real sockets: framing, limits, pipelining, timeouts, pooling."""

from __future__ import annotations

import asyncio
import http.client
import socket

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploylab.http import (
    ConnectionPool,
    HTTPServer,
    Limits,
    Response,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def echo(request):
    return Response.json(
        {"method": request.method, "target": request.target, "body": request.body.decode()}
    )


async def raw_exchange(
    address, data: bytes, *, read_timeout: float = 3.0, eof: bool = False
) -> bytes:
    """Send raw bytes (then half-close if ``eof``), read what the server answers until it closes."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    await writer.drain()
    if eof:
        writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(), read_timeout)
    finally:
        writer.close()


def statuses(reply: bytes) -> list[int]:
    """Status codes of the responses in ``reply`` (each parsed by http.client, the oracle)."""
    codes = []
    for part in reply.split(b"HTTP/1.1 ")[1:]:
        codes.append(int(part[:3]))
    return codes


async def still_serves(server) -> None:
    async with httpx.AsyncClient() as client:
        reply = await client.get(server.url + "/after")
    assert reply.status_code == 200 and reply.json()["target"] == "/after"


MALFORMED = [
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3x\r\n\r\nabc", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n", 431),
    (b"hello garbage\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS hello on the HTTP port
]


@pytest.mark.parametrize(("data", "status"), MALFORMED)
async def test_malformed_requests_get_their_status_and_server_keeps_serving(data, status):
    async with HTTPServer(echo) as server:
        reply = await raw_exchange(server.address, data)
        assert statuses(reply) == [status], reply[:200]
        assert b"Connection: close" in reply
        await still_serves(server)
        events = [event.kind for event in server.events.recent]
        assert "error" in events


async def test_pipelined_requests_are_answered_in_order_then_the_error():
    async with HTTPServer(echo) as server:
        data = (
            b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
            b"GET /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"
        )
        reply = await raw_exchange(server.address, data)
        assert statuses(reply) == [200, 200, 400]
        assert reply.index(b'"/1"') < reply.index(b'"/2"')
        assert b'"body": "hi"' in reply


async def test_keep_alive_serves_many_requests_on_one_connection():
    async with HTTPServer(echo) as server:

        def run():
            connection = http.client.HTTPConnection(*server.address, timeout=5)
            for i in range(20):
                connection.request("GET", f"/{i}")
                answer = connection.getresponse()
                assert answer.status == 200 and f'"/{i}"' in answer.read().decode()
            connection.close()

        await asyncio.to_thread(run)
        clients = {
            event.fields["client"] for event in server.events.recent if event.kind == "request"
        }
        assert len(clients) == 1


async def test_slow_header_sender_is_cut_off_with_408():
    limits = Limits(header_timeout=0.3)
    async with HTTPServer(echo, limits=limits) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n")  # never finishes the headers
        reply = await asyncio.wait_for(reader.read(), 3)
        writer.close()
        assert statuses(reply) == [408]
        await still_serves(server)


async def test_timeouts_on_a_kept_alive_connection_follow_the_latest_state():
    """The connection's one timer is moved lazily: an idle connection is closed at the
    keep-alive timeout counted from its last answer, not an earlier one, and a partial
    request after an answer gets its 408 at the header timeout, not the keep-alive one."""
    async with HTTPServer(echo, limits=Limits(keep_alive_timeout=1.0)) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        await asyncio.sleep(0.6)  # idle; its timer is due 1.0 s after the answer
        writer.write(b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n")
        answered = asyncio.get_running_loop().time()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await asyncio.wait_for(reader.readexactly(length), 3)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed when idle 1.0 s
        idle_for = asyncio.get_running_loop().time() - answered
        writer.close()
        assert 0.95 <= idle_for < 3, idle_for  # from the second answer, not the first

    limits = Limits(header_timeout=0.4, keep_alive_timeout=5.0)
    async with HTTPServer(echo, limits=limits) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        writer.write(b"GET /two HTTP/1.1\r\nHost: a\r\n")  # never finishes the headers
        started = asyncio.get_running_loop().time()
        reply = await asyncio.wait_for(reader.read(), 5)
        waited = asyncio.get_running_loop().time() - started
        writer.close()
        assert statuses(reply)[-1] == 408 and 0.35 <= waited < 2.5, (reply[-80:], waited)
        await still_serves(server)


async def test_silent_connection_is_closed():
    async with HTTPServer(echo, limits=Limits(header_timeout=0.2)) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()


async def test_handler_crash_is_a_500_and_the_server_survives():
    async def broken(request):
        if request.target == "/crash":
            raise RuntimeError("bug")
        return await echo(request)

    async with HTTPServer(broken) as server, httpx.AsyncClient() as client:
        assert (await client.get(server.url + "/crash")).status_code == 500
        await still_serves(server)


async def test_port_zero_binds_loopback_and_stop_frees_the_port():
    server = HTTPServer(echo)
    await server.start()
    host, port = server.address
    assert host == "127.0.0.1" and port > 0
    await server.stop()
    with socket.socket() as probe:
        assert probe.connect_ex((host, port)) != 0


async def test_pool_reuses_connections_and_sends_from_source_address():
    async def who(request):
        return Response.text(request.client[0])

    async with HTTPServer(who) as server, ConnectionPool(source_address="127.0.0.5") as pool:
        for _ in range(5):
            reply = await pool.request(*server.address, "GET", "/", [("Host", "x")])
            assert reply.body == b"127.0.0.5"
        assert pool.connections_opened == 1


async def test_pool_reuses_a_links_parser_and_makes_a_new_one_after_a_head_answer():
    """A pooled link keeps its response parser between requests; a HEAD answer's parser
    (llhttp stopped inside that message) is never reused: the next answer on the link
    is still read whole and right, streamed or not."""

    async def sized(request):
        return Response.text(request.target * 3)

    async with HTTPServer(sized) as server, ConnectionPool() as pool:
        answers = []
        for method, target, stream_over in [
            ("GET", "/a", None),
            ("GET", "/bb", None),  # the parser of /a, restarted
            ("HEAD", "/ccc", None),
            ("GET", "/dddd", None),  # after HEAD: a new parser
            ("GET", "/e", 1024),  # a streaming parser instead of a plain one
            ("GET", "/ff", None),
        ]:
            reply = await pool.request(
                *server.address, method, target, [("Host", "x")], stream_over=stream_over
            )
            answers.append((reply.status, reply.body, reply.header("Content-Length")))
        assert answers == [
            (200, b"/a/a/a", "6"),
            (200, b"/bb/bb/bb", "9"),
            (200, b"", "12"),
            (200, b"/dddd/dddd/dddd", "15"),
            (200, b"/e/e/e", "6"),
            (200, b"/ff/ff/ff", "9"),
        ]
        assert pool.connections_opened == 1


async def test_pool_recovers_when_upstream_closed_an_idle_connection():
    server = HTTPServer(echo, limits=Limits(keep_alive_timeout=0.1))
    async with server, ConnectionPool() as pool:
        await pool.request(*server.address, "GET", "/a", [("Host", "x")])
        await asyncio.sleep(0.3)  # the server closes the idle connection
        reply = await pool.request(*server.address, "GET", "/b", [("Host", "x")])
        assert reply.status == 200


async def test_pool_errors_map_to_502_and_504():
    refused_port = socket.socket()
    refused_port.bind(("127.0.0.1", 0))
    port = refused_port.getsockname()[1]
    refused_port.close()

    async def slow(request):
        await asyncio.sleep(5)
        return Response.text("late")

    async def garbage_server(reader, writer):
        await reader.read(100)
        writer.write(b"SPAM SPAM SPAM\r\n\r\n")
        await writer.drain()
        writer.close()

    garbage = await asyncio.start_server(garbage_server, "127.0.0.1", 0)
    async with HTTPServer(slow) as slow_server, ConnectionPool() as pool:
        with pytest.raises(UpstreamConnectError) as refused:
            await pool.request("127.0.0.1", port, "GET", "/", [])
        assert refused.value.status == 502
        with pytest.raises(UpstreamTimeout) as late:
            await pool.request(*slow_server.address, "GET", "/", [("Host", "x")], timeout=0.2)
        assert late.value.status == 504
        with pytest.raises(UpstreamError) as bad:
            await pool.request(*garbage.sockets[0].getsockname()[:2], "GET", "/", [])
        assert bad.value.status == 502
    garbage.close()


async def test_head_response_has_no_body_through_the_pool():
    async with HTTPServer(echo) as server, ConnectionPool() as pool:
        head = await pool.request(*server.address, "HEAD", "/h", [("Host", "x")])
        assert head.body == b"" and int(head.header("Content-Length")) > 0
        after = await pool.request(*server.address, "GET", "/g", [("Host", "x")])
        assert b'"/g"' in after.body and pool.connections_opened == 1


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk=st.binary(min_size=1, max_size=600))
def test_fuzzed_input_never_kills_the_server(junk):
    async def scenario():
        async with HTTPServer(echo, limits=Limits(header_timeout=0.3)) as server:
            reply = await raw_exchange(server.address, junk, read_timeout=3, eof=True)
            codes = statuses(reply)
            assert all(code in (200, 400, 408, 413, 414, 431) for code in codes), reply[:200]
            await still_serves(server)

    asyncio.run(scenario())


def test_http_public_surface_is_small_and_documented():
    import inspect

    import deploylab.http as http

    assert len(http.__all__) == len(set(http.__all__)) <= 30
    for name in http.__all__:
        member = getattr(http, name)
        if inspect.isclass(member) or inspect.isfunction(member):
            assert inspect.getdoc(member), f"deploylab.http.{name} has no docstring"


async def test_one_log_line_per_request(caplog):
    import logging

    caplog.set_level(logging.INFO, logger="deploylab.http")
    async with HTTPServer(echo, name="logged") as server, httpx.AsyncClient() as client:
        for path in ("/a", "/b"):
            await client.get(server.url + path)
    lines = [r.getMessage() for r in caplog.records if r.name == "deploylab.http"]
    assert len(lines) == 2 and '"GET /a HTTP/1.1" 200' in lines[0]
