"""Request bodies stream to the backend as they arrive (issue 15: nginx's
``proxy_request_buffering off``), with backpressure, through the balancer and the reverse
proxy: the upstream sees the first bytes before the body is complete, a 64 MiB upload leaves
the server's own RSS bounded, a client that stalls or leaves mid-body is cut off (408) and
its backend connection with it, and the server keeps serving. The forward proxy forwards
bodies the same way.

Everything is on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import pytest
from conftest import require_tool
from hostile_kit import ServerProcess, raw_exchange, status_of

from deploylab.balancer.runtime import Balancer
from deploylab.http import Limits
from deploylab.nginx import NginxProcess
from deploylab.proxy import ForwardProxy, ReverseProxy

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

QUICK = Limits(header_timeout=1, body_timeout=1, keep_alive_timeout=2)


class SinkBackend:
    """An upstream that reads a request body piece by piece, discarding it, and records
    when each piece came (``progress``: bytes of body seen per connection, ``ended``: the
    connection closed before a whole body). It answers with the byte count."""

    def __init__(self) -> None:
        self.progress: list[int] = []
        self.ended: list[bool] = []
        self.heads: list[bytes] = []
        self.first_bytes = asyncio.Event()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> SinkBackend:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.progress)
        self.progress.append(0)
        self.ended.append(False)
        try:
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                self.heads.append(head)
                lower = head.lower()
                seen = 0
                if b"transfer-encoding: chunked" in lower:
                    tail = b""
                    while not tail.endswith(b"0\r\n\r\n"):
                        piece = await asyncio.wait_for(reader.read(65536), 30)
                        if not piece:
                            raise asyncio.IncompleteReadError(b"", None)
                        seen += len(piece)
                        tail = (tail + piece)[-5:]
                        self._saw(index, seen)
                else:
                    length = 0
                    for line in lower.split(b"\r\n"):
                        if line.startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    while seen < length:
                        piece = await asyncio.wait_for(reader.read(min(65536, length - seen)), 30)
                        if not piece:
                            raise asyncio.IncompleteReadError(b"", length)
                        seen += len(piece)
                        self._saw(index, seen)
                body = b"%d" % seen
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.ended[index] = True
        except (TimeoutError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _saw(self, index: int, seen: int) -> None:
        self.progress[index] = seen
        self.first_bytes.set()


@contextlib.asynccontextmanager
async def front(kind: str, backend_url: str, limits: Limits = QUICK):
    """The balancer, the reverse proxy or the forward proxy (allowed to reach the backend's
    loopback address) in this process, in front of ``backend_url``; yields its address and
    the request-line prefix it needs (the forward proxy takes absolute-form targets)."""
    prefix = b""
    if kind == "nginx":
        require_tool("nginx")
        conf = NGINX.replace("BACKEND", backend_url.rsplit(":", 1)[1])
        conf = conf.replace("MAX_BODY", str(limits.max_body)).replace(
            "BODY_TIMEOUT", f"{limits.body_timeout:g}s"
        )
        nginx = NginxProcess(conf)
        await asyncio.to_thread(nginx.start)
        try:
            yield ("127.0.0.1", nginx.port), prefix
        finally:
            await asyncio.to_thread(nginx.close)
        return
    if kind == "balancer":
        server = await Balancer([backend_url], limits=limits, read_timeout=5).start()
        address = ("127.0.0.1", server.port)
    elif kind == "reverse-proxy":
        server = await ReverseProxy([backend_url], limits=limits, upstream_timeout=5).start()
        address = server.address
    else:
        server = await ForwardProxy(
            allow_destinations=["127.0.0.1/32"], limits=limits, upstream_timeout=5
        ).start()
        address, prefix = server.address, backend_url.encode()
    try:
        yield address, prefix
    finally:
        await server.stop()


def get(prefix: bytes) -> bytes:
    return b"GET " + prefix + b"/ HTTP/1.1\r\nHost: x\r\n\r\n"


FRONTS = ["balancer", "reverse-proxy", "forward-proxy"]
#: The same bytes through nginx 1.22 with ``proxy_request_buffering off``, where it defines
#: what happens: it forwards the first bytes at once, cuts the backend when the client
#: stalls or leaves (closing the client without an answer where deploylab answers 408), and
#: answers 413 when a chunked body goes over ``client_max_body_size`` midway.
WITH_NGINX = [pytest.param("nginx", marks=pytest.mark.nginx), *FRONTS]
NGINX = """
http {
    upstream app { server 127.0.0.1:BACKEND; keepalive 8; }
    server {
        listen 127.0.0.1:{port};
        client_max_body_size MAX_BODY;
        client_body_timeout BODY_TIMEOUT;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_read_timeout 5s;
        }
    }
}
"""
BODIES = {
    "content-length": (b"Content-Length: 20\r\n", b"0123456789", b"abcdefghij"),
    "chunked": (
        b"Transfer-Encoding: chunked\r\n",
        b"a\r\n0123456789\r\n",
        b"a\r\nabcdefghij\r\n0\r\n\r\n",
    ),
}


@pytest.mark.parametrize("kind", WITH_NGINX)
@pytest.mark.parametrize("framing", list(BODIES))
async def test_the_backend_sees_the_first_bytes_before_the_body_is_complete(kind, framing):
    header, first, rest = BODIES[framing]
    async with SinkBackend() as backend, front(kind, backend.url) as (address, prefix):
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"POST " + prefix + b"/up HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n" + first)
        await asyncio.wait_for(backend.first_bytes.wait(), 0.9)  # the rest is not sent yet
        writer.write(rest)
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(answer.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = await asyncio.wait_for(reader.readexactly(length), 5)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200") and backend.progress[0] > 0
    if framing == "content-length":
        assert body == b"20"


@pytest.mark.parametrize("kind", WITH_NGINX)
@pytest.mark.parametrize("leave", ["stall", "close"])
async def test_a_client_that_stops_mid_body_is_cut_off_with_its_backend(kind, leave):
    async with SinkBackend() as backend, front(kind, backend.url) as (address, prefix):
        reader, writer = await asyncio.open_connection(*address)
        writer.write(
            b"POST "
            + prefix
            + b"/up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
            + b"x" * 100
        )
        await asyncio.wait_for(backend.first_bytes.wait(), 2)
        started = time.monotonic()
        if leave == "close":
            writer.close()
            reply = b""
        else:
            reply = await asyncio.wait_for(reader.read(), 5)
            writer.close()
        for _ in range(50):  # the backend's connection is cut, not left waiting
            if backend.ended[0]:
                break
            await asyncio.sleep(0.1)
        cut_after = time.monotonic() - started
        after = await raw_exchange(address, get(prefix), read_timeout=2)
    assert backend.ended == [True, False] or backend.ended[0], backend.ended
    assert cut_after < 4
    if leave == "stall":  # nginx closes without an answer; deploylab says why
        assert status_of(reply) == (None if kind == "nginx" else 408)
    assert status_of(after) == 200  # and it keeps serving


@pytest.mark.parametrize("kind", WITH_NGINX)
async def test_a_chunked_body_over_the_limit_midway_cuts_the_backend_and_answers_413(kind):
    small = Limits(max_body=64 * 1024, body_timeout=2, header_timeout=2)
    async with SinkBackend() as backend, front(kind, backend.url, small) as (address, prefix):
        reader, writer = await asyncio.open_connection(*address)
        writer.write(
            b"POST " + prefix + b"/up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        writer.write(b"8000\r\n" + b"c" * 0x8000 + b"\r\n")
        await asyncio.wait_for(backend.first_bytes.wait(), 2)
        writer.write(b"10000\r\n" + b"c" * 0x10000 + b"\r\n")  # now 96 KiB, over 64 KiB
        reply = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        for _ in range(30):
            if backend.ended[0]:
                break
            await asyncio.sleep(0.1)
        after = await raw_exchange(address, get(prefix), read_timeout=2)
    assert status_of(reply) == 413 and backend.ended[0]
    assert status_of(after) == 200


# -- a 64 MiB upload, from the server process's own RSS ------------------------------------------
UPLOAD = 64 * 1024 * 1024

BALANCER_PROCESS = """
import asyncio
from deploylab.balancer.runtime import Balancer
from deploylab.http import Limits

async def main():
    limits = Limits(max_body=1 << 30)
    async with Balancer(["http://127.0.0.1:BACKEND"], port={port}, limits=limits,
                        request_events=False):
        await asyncio.Event().wait()

asyncio.run(main())
"""

PROXY_PROCESS = """
import asyncio
from deploylab.http import Limits
from deploylab.proxy import ReverseProxy

async def main():
    limits = Limits(max_body=1 << 30)
    async with ReverseProxy(["http://127.0.0.1:BACKEND"], port={port}, limits=limits):
        await asyncio.Event().wait()

asyncio.run(main())
"""

FORWARD_PROCESS = """
import asyncio
from deploylab.http import Limits
from deploylab.proxy import ForwardProxy

async def main():
    limits = Limits(max_body=1 << 30)
    async with ForwardProxy(port={port}, limits=limits, allow_destinations=["127.0.0.1/32"]):
        await asyncio.Event().wait()

asyncio.run(main())
"""
PROCESSES = {"balancer": BALANCER_PROCESS, "reverse-proxy": PROXY_PROCESS}
PROCESSES["forward-proxy"] = FORWARD_PROCESS


def _upload(port: int, seconds: float, prefix: bytes) -> bytes:
    """POST UPLOAD bytes as fast as the server takes them; return the answer."""
    piece = b"u" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as sock:
        sock.sendall(
            b"POST " + prefix + b"/big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % UPLOAD
        )
        for _ in range(UPLOAD // len(piece)):
            sock.sendall(piece)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"%d" % UPLOAD):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


@pytest.mark.parametrize("kind", FRONTS)
def test_a_64_mib_upload_streams_with_bounded_memory(kind):
    code = PROCESSES[kind]

    async def run() -> tuple[bytes, int]:
        async with SinkBackend() as backend:
            port = backend.url.rsplit(":", 1)[1]
            with ServerProcess(code.replace("BACKEND", port)) as server:
                await asyncio.sleep(0.5)
                before = server.rss()
                peak = [before]
                done = threading.Event()

                def sample() -> None:
                    while not done.wait(0.05):
                        with contextlib.suppress(Exception):
                            peak[0] = max(peak[0], server.rss())

                sampler = threading.Thread(target=sample)
                sampler.start()
                try:
                    prefix = backend.url.encode() if kind == "forward-proxy" else b""
                    answer = await asyncio.to_thread(_upload, server.port, 60, prefix)
                finally:
                    done.set()
                    sampler.join(2)
                return answer, peak[0] - before

    answer, grown = asyncio.run(run())
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"%d" % UPLOAD)
    assert grown < 24 * 1024 * 1024, f"RSS grew by {grown / 2**20:.0f} MiB for a 64 MiB upload"


@pytest.mark.parametrize("kind", FRONTS)
async def test_a_request_pipelined_after_a_streamed_body_gets_its_own_answer(kind):
    async with SinkBackend() as backend, front(kind, backend.url) as (address, prefix):
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"POST " + prefix + b"/up HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
        await asyncio.wait_for(backend.first_bytes.wait(), 2)
        writer.write(b"def" + get(prefix))  # the rest of the body, then a GET right behind
        replies = b""
        while replies.count(b"HTTP/1.1 200") < 2:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                break
            replies += chunk
        writer.close()
    first, second = replies.split(b"HTTP/1.1 200")[1:3]
    assert first.endswith(b"\r\n\r\n6") and second.endswith(b"\r\n\r\n0")
