"""A demo application instance for load-balancing and scaling experiments.

Each backend names itself in every response (body and ``X-Backend`` header) so a client can
see which server answered, and can burn ``work_ms`` of CPU per request to stand in for real
application work (one process = one CPU, so adding processes is scaling out).

Paths: ``/health`` (always fast, no CPU work), ``/headers`` (the request headers as JSON),
``/status/NNN`` (answers with that status), ``/sleep/MS`` (holds the request MS ms without
using CPU), anything else: ``NAME\\n``.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import subprocess
import sys
import time
from typing import cast

import httptools

__all__ = [
    "DemoBackend",
    "backend_url_from",
    "burn_cpu",
    "read_backend_url",
    "start_backend_process",
]


def burn_cpu(milliseconds: float) -> None:
    """Keep one CPU busy for ``milliseconds`` (stands in for application work).

    >>> start = time.perf_counter(); burn_cpu(2); time.perf_counter() - start >= 0.002
    True
    """
    if milliseconds <= 0:
        return
    deadline = time.perf_counter() + milliseconds / 1000
    total = 0
    while time.perf_counter() < deadline:
        for i in range(200):
            total += i * i


class _BackendProtocol(asyncio.Protocol):
    __slots__ = ("backend", "headers", "keep_alive", "parser", "transport", "url")

    def __init__(self, backend: DemoBackend) -> None:
        self.backend = backend
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)  # connection_made
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        keep_alive = self.parser.should_keep_alive()
        backend = self.backend
        backend.requests += 1
        url = self.url
        if backend.record is not None:
            peer = self.transport.get_extra_info("peername") or ("", 0)
            backend.record.append(
                {
                    "backend": backend.name,
                    "method": self.parser.get_method().decode("latin-1"),
                    "target": url.decode("latin-1"),
                    "headers": [
                        (n.decode("latin-1"), v.decode("latin-1")) for n, v in self.headers
                    ],
                    "peer": peer[0],
                }
            )
        status = 200
        if url == b"/health":
            body = b"ok\n"
        elif url == b"/headers":
            body = json.dumps(
                {
                    "backend": backend.name,
                    "method": self.parser.get_method().decode(),
                    "headers": {n.decode("latin-1"): v.decode("latin-1") for n, v in self.headers},
                }
            ).encode()
        elif url.startswith(b"/status/"):
            status = int(url[8:11])
            body = backend.body
        elif url.startswith(b"/sleep/"):
            milliseconds = float(url[7:].decode() or 0)
            asyncio.get_running_loop().call_later(
                milliseconds / 1000, self._respond, 200, backend.body, keep_alive
            )
            return
        else:
            burn_cpu(backend.work_ms)
            body = backend.body
        if self.parser.get_method() == b"HEAD":
            self._respond(status, body, keep_alive, head_only=True)
            return
        self._respond(status, body, keep_alive)

    def _respond(self, status: int, body: bytes, keep_alive: bool, head_only: bool = False) -> None:
        if self.transport.is_closing():
            return
        head = b"HTTP/1.1 %d %s\r\n" % (status, b"OK" if status == 200 else b"Status")
        self.transport.write(
            head
            + self.backend.head
            + b"Content-Length: %d\r\n" % len(body)
            + (b"\r\n" if keep_alive else b"Connection: close\r\n\r\n")
            + (b"" if head_only else body)
        )
        if not keep_alive:
            self.transport.close()


class DemoBackend:
    """An HTTP/1.1 app instance on loopback that names itself and can burn CPU per request.

    ``record``: a list to which every request is appended as a dict (``backend``, ``method``,
    ``target``, ``headers`` as received, ``peer`` = the address the connection came from),
    so a lab can show exactly what a proxy in front passed on.

    >>> async def demo():
    ...     async with DemoBackend(name="app-1") as backend:
    ...         reader, writer = await asyncio.open_connection("127.0.0.1", backend.port)
    ...         writer.write(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
    ...         answer = await reader.read()
    ...         writer.close()
    ...         return answer.split(b"\\r\\n\\r\\n")[1]
    >>> asyncio.run(demo())
    b'app-1\\n'
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        name: str | None = None,
        work_ms: float = 0.0,
        *,
        record: list | None = None,
    ) -> None:
        if work_ms < 0:
            raise ValueError(f"work_ms {work_ms!r}: expected a number of milliseconds >= 0")
        self.host = host
        self.port = port
        self.name = name
        self.work_ms = work_ms
        self.requests = 0
        self.record = record
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> DemoBackend:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _BackendProtocol(self), self.host, self.port, reuse_address=True, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if self.name is None:
            self.name = f"backend-{self.port}"
        self.body = f"{self.name}\n".encode()
        self.head = b"Content-Type: text/plain\r\nX-Backend: " + self.name.encode() + b"\r\n"
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def __aenter__(self) -> DemoBackend:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started: call start() first")
        await self._server.serve_forever()


def start_backend_process(name: str, port: int = 0, work_ms: float = 0.0) -> subprocess.Popen:
    """Start ``deploylab serve backend`` as its own process (and session, so it can be stopped
    by PID with everything it started). Its first stdout line names its URL:
    read it with :func:`backend_url_from`."""
    command = [
        sys.executable,
        "-m",
        "deploylab.cli",
        "serve",
        "backend",
        "--port",
        str(port),
        "--name",
        name,
        "--work-ms",
        str(work_ms),
    ]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def backend_url_from(line: str) -> str:
    """The URL in a backend's start-up line (``backend NAME listening on URL``).

    >>> backend_url_from("backend app-1 listening on http://127.0.0.1:8081\\n")
    'http://127.0.0.1:8081'
    """
    if "listening on http://" not in line:
        raise RuntimeError(f"backend did not start: it printed {line!r}")
    return line.rsplit(" ", 1)[1].strip()


def read_backend_url(process: subprocess.Popen, timeout: float = 30.0) -> str:
    """The URL a backend from :func:`start_backend_process` prints once it listens, waited
    for at most ``timeout`` seconds: a backend stuck before listening raises
    ``RuntimeError`` instead of freezing its caller (``readline`` alone waits for ever).

    >>> line = "print('backend app-1 listening on http://127.0.0.1:8081', flush=True)"
    >>> with subprocess.Popen([sys.executable, "-c", line], stdout=subprocess.PIPE, text=True) as app:
    ...     read_backend_url(app)
    'http://127.0.0.1:8081'
    """
    stdout = process.stdout
    if stdout is None:
        raise ValueError(f"backend process {process.pid}: expected stdout=PIPE to read its URL")
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise RuntimeError(
                f"backend process {process.pid} printed no address within {timeout:g} s"
            )
    return backend_url_from(stdout.readline())
