"""Tools for the hostile-client and hostile-backend tests: raw sockets, a backend that answers
with scripted bytes, servers run in a subprocess so that their own RSS can be measured.

Everything listens on and connects to 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import psutil

from deploylab.loopback import free_port, wait_for_port

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3}) ")


async def raw_exchange(
    address, data: bytes, *, read_timeout: float = 5.0, eof: bool = False
) -> bytes:
    """Send raw bytes (then half-close if ``eof``); return what comes back until close."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    await writer.drain()
    if eof:
        writer.write_eof()
    try:
        chunks = []
        end = asyncio.get_running_loop().time() + read_timeout
        while (left := end - asyncio.get_running_loop().time()) > 0:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), left)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()


def statuses(reply: bytes) -> list[int]:
    """Status codes of the status lines in ``reply`` (a line ``HTTP/1.x NNN ...``)."""
    return [int(code) for code in _STATUS_LINE.findall(reply)]


def status_of(reply: bytes) -> int | None:
    """The first final (non-1xx) status in ``reply``, or None for an empty close."""
    codes = [code for code in statuses(reply) if code >= 200]
    return codes[0] if codes else None


class ScriptedBackend:
    """A misbehaving upstream: for each request it reads (head, then a ``Content-Length``
    body), it writes ``script(head, index)`` bytes (``index`` counts requests across all
    connections) or, for a list, each ``(delay, bytes)`` after its delay; None closes.
    ``heads`` keeps every request head it read, so a test can check what got through."""

    def __init__(self, script: Callable[[bytes, int], object]) -> None:
        self.script = script
        self.heads: list[bytes] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set = set()

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ScriptedBackend:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._tasks.add(asyncio.current_task())
        try:
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await asyncio.wait_for(reader.readexactly(length), 30)
                index = len(self.heads)
                self.heads.append(head)
                answer = self.script(head, index)
                if answer is None:
                    break
                steps = answer if isinstance(answer, list) else [(0, answer)]
                for delay, data in steps:
                    if delay:
                        await asyncio.sleep(delay)
                    writer.write(data)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(asyncio.current_task())
            writer.close()


def response(body: bytes, status: int = 200, extra: bytes = b"") -> bytes:
    """A well-framed response with ``body`` and optional extra header lines."""
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n%s" % (status, len(body), extra, body)


class ServerProcess:
    """A deploylab server in its own process (``python -c CODE`` printing its port), so a
    test can read that process's RSS and limit its descriptors; stopped by PID.

    Its stderr goes to a file (:meth:`log`), not a pipe: a pipe nobody reads fills up at
    64 KiB of log lines (a traceback per refused ``accept()`` when descriptors run out) and
    then blocks the server in its next write, which looked like the server hanging."""

    def __init__(self, code: str, *, nofile: int | None = None) -> None:
        self.code = code
        self.nofile = nofile
        self.process: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> ServerProcess:
        port = free_port()
        limit = self.nofile

        def preexec() -> None:
            if limit:
                import resource

                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.code.replace("{port}", str(port))],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,
            preexec_fn=preexec,
        )
        self.port = port
        wait_for_port(port, timeout=20)
        return self

    def log(self) -> str:
        """What the server has written to stderr so far."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def rss(self) -> int:
        """Resident memory of the server process, in bytes."""
        return psutil.Process(self.process.pid).memory_info().rss

    def __exit__(self, *exc_info) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log.close()


def pipeline_without_reading(port: int, request: bytes, count: int, seconds: float) -> int:
    """Send up to ``count`` pipelined copies of ``request`` within ``seconds`` and read
    nothing; return how many were sent whole (a bounded server stops taking them)."""
    block = request * max(1, 65536 // len(request))
    sent_bytes = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        end = time.monotonic() + seconds
        pending = b""
        while sent_bytes < count * len(request) and time.monotonic() < end:
            if not pending:
                pending = block[: count * len(request) - sent_bytes]
            try:
                sent = sock.send(pending)
                sent_bytes += sent
                pending = pending[sent:]
            except BlockingIOError:
                time.sleep(0.01)
        time.sleep(max(0.0, end - time.monotonic()))
    return sent_bytes // len(request)


__all__ = [
    "ScriptedBackend",
    "ServerProcess",
    "free_port",
    "pipeline_without_reading",
    "raw_exchange",
    "response",
    "status_of",
    "statuses",
    "wait_for_port",
]
