"""Parity with a REAL nginx: the same upstream config, the same backends, the same requests —
the backend sequence (and statuses) seen through nginx must equal deploylab's."""

from __future__ import annotations

import asyncio
import os
import socket
import threading

import pytest
from conftest import free_port, require_tool

from deploylab.balancer.backend import DemoBackend
from deploylab.balancer.nginx import nginx_config
from deploylab.balancer.runtime import Balancer
from deploylab.nginx import NginxProcess

pytestmark = [pytest.mark.nginx, pytest.mark.timeout(120)]


class LoopThread:
    """An asyncio loop in a thread, so blocking test clients can talk to in-process servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop_thread():
    thread = LoopThread()
    yield thread
    thread.close()


def request(
    port: int, method: str = "GET", path: str = "/", source: str = "127.0.0.1", body: bytes = b""
) -> tuple[int, str]:
    """One request on a fresh connection from ``source``; returns (status, body text)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        if body or method == "POST":
            head += f"Content-Length: {len(body)}\r\n"
        s.sendall(head.encode() + b"\r\n" + body)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    status = int(raw.split(b" ", 2)[1])
    if status >= 500 and b"X-Backend" not in raw:
        return status, ""  # the balancer's own error page: wording differs, status must not
    return status, raw.split(b"\r\n\r\n", 1)[1].decode(errors="replace").strip()


class Pair:
    """Backends named a, b, c, ... plus both balancers configured the same way."""

    def __init__(self, loop_thread: LoopThread, count: int = 3) -> None:
        self.lt = loop_thread
        self.backends = [
            loop_thread.run(DemoBackend(name=chr(97 + i)).start()) for i in range(count)
        ]
        self.urls = [b.url for b in self.backends]

    def compare(self, specs, algorithm="round_robin", calls=(), retry=None, **kwargs):
        """Run ``calls`` [(method, path, source)] through nginx and deploylab; return both."""
        nginx_results, ours = [], []
        conf = nginx_config(specs, algorithm=algorithm, port=free_port(), retry=retry, **kwargs)
        conf = conf.replace(
            f"listen 127.0.0.1:{conf.split('listen 127.0.0.1:')[1].split(';')[0]};",
            "listen 127.0.0.1:{port};",
        )
        with NginxProcess(conf) as nginx:
            for method, path, source in calls:
                nginx_results.append(request(nginx.port, method, path, source))
        balancer = Balancer(specs, algorithm=algorithm, **kwargs)
        self.lt.run(balancer.start())
        try:
            for method, path, source in calls:
                ours.append(request(balancer.port, method, path, source))
        finally:
            self.lt.run(balancer.stop())
        return nginx_results, ours

    def close(self) -> None:
        for backend in self.backends:
            self.lt.run(backend.stop())


@pytest.fixture
def pair(loop_thread):
    require_tool("nginx", "nginx")
    made = Pair(loop_thread)
    yield made
    made.close()


def gets(count, path="/", sources=("127.0.0.1",)):
    return [("GET", path, sources[i % len(sources)]) for i in range(count)]


def test_seed_round_robin_alternates(pair):
    theirs, ours = pair.compare(pair.urls[:2], calls=gets(8))
    assert [body for _, body in theirs] == ["a", "b"] * 4
    assert ours == theirs


def test_weights_5_1_1(pair):
    specs = [pair.urls[0] + ",weight=5", pair.urls[1], pair.urls[2]]
    theirs, ours = pair.compare(specs, calls=gets(14))
    assert "".join(body for _, body in theirs) == "aabacaa" * 2
    assert ours == theirs


def test_ip_hash_by_source_address(pair):
    sources = [
        "127.0.0.1",
        "127.0.0.2",
        "127.0.1.1",
        "127.0.1.99",
        "127.1.2.3",
        "127.2.2.2",
        "127.3.0.9",
        "127.4.4.4",
        "127.5.6.7",
        "127.10.0.1",
        "127.10.0.200",
        "127.77.1.1",
    ]
    theirs, ours = pair.compare(pair.urls, "ip_hash", calls=gets(24, sources=sources))
    assert ours == theirs
    by_source = {}
    for source, (_, body) in zip(sources * 2, theirs, strict=True):
        by_source.setdefault(source, set()).add(body)
    assert all(len(names) == 1 for names in by_source.values())  # sticky
    assert by_source["127.10.0.1"] == by_source["127.10.0.200"]  # same /24
    assert len(set().union(*by_source.values())) > 1


def test_ip_hash_with_a_down_server_keeps_other_clients(pair):
    sources = [f"127.{i}.{i * 7 % 256}.1" for i in range(1, 16)]
    specs = [pair.urls[0], pair.urls[1] + ",down", pair.urls[2]]
    theirs, ours = pair.compare(specs, "ip_hash", calls=gets(15, sources=sources))
    assert ours == theirs
    assert "b" not in {body for _, body in theirs}


def test_hash_and_consistent_hash_by_uri(pair):
    calls = [("GET", f"/item/{i}", "127.0.0.1") for i in range(20)]
    for algorithm in ("hash", "hash_consistent"):
        theirs, ours = pair.compare(pair.urls, algorithm, calls=calls)
        assert ours == theirs, algorithm


def test_least_conn_sequential_ties_follow_weights(pair):
    specs = [pair.urls[0], pair.urls[1] + ",weight=2", pair.urls[2]]
    theirs, ours = pair.compare(specs, "least_conn", calls=gets(12))
    assert ours == theirs


def test_backup_and_down(pair):
    specs = [pair.urls[0], pair.urls[1] + ",down", pair.urls[2] + ",backup"]
    theirs, ours = pair.compare(specs, calls=gets(4))
    assert [body for _, body in theirs] == ["a"] * 4
    assert ours == theirs
    specs = [pair.urls[0] + ",down", pair.urls[1] + ",down", pair.urls[2] + ",backup"]
    theirs, ours = pair.compare(specs, calls=gets(3))
    assert [body for _, body in theirs] == ["c"] * 3
    assert ours == theirs


def _dying_backend(loop_thread):
    async def start():
        async def handle(reader, writer):
            await reader.read(65536)
            writer.close()

        return await asyncio.start_server(handle, "127.0.0.1", 0)

    server = loop_thread.run(start())
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def test_dying_backend_get_retried_post_not_and_502_when_none_left(pair, loop_thread):
    server, dying = _dying_backend(loop_thread)
    try:
        # max_fails=0: failures are not counted, so the dying server stays in the rotation
        specs = [dying + ",max_fails=0", pair.urls[0] + ",max_fails=0"]
        calls = [
            ("GET", "/", "127.0.0.1"),
            ("POST", "/", "127.0.0.1"),
            ("POST", "/", "127.0.0.1"),
            ("GET", "/", "127.0.0.1"),
            ("GET", "/", "127.0.0.1"),
            ("POST", "/", "127.0.0.1"),
        ]
        theirs, ours = pair.compare(specs, calls=calls)
        assert [status for status, _ in theirs] == [200, 200, 502, 200, 200, 200]
        assert ours == theirs
        # counted failures: the dying server is skipped for fail_timeout after one failure
        theirs, ours = pair.compare([dying, pair.urls[0]], calls=gets(5))
        assert [s for s, _ in theirs] == [200] * 5
        assert ours == theirs
        # nothing alive: 502
        dead = f"http://127.0.0.1:{free_port()}"
        theirs, ours = pair.compare([dying, dead], calls=gets(3))
        assert [s for s, _ in theirs] == [502] * 3
        assert [s for s, _ in ours] == [502] * 3
    finally:
        server.close()


def test_status_retry_when_listed(pair):
    retry = ["error", "timeout", "http_503"]
    from deploylab.balancer import RetryPolicy

    calls = gets(4, path="/status/503")
    conf_retry = pair.compare(pair.urls[:2], calls=calls, retry=retry)
    theirs = conf_retry[0]
    # both servers answered 503 and both failures count: then no live upstreams
    assert [s for s, _ in theirs] == [503, 502, 502, 502]
    balancer = Balancer(pair.urls[:2], retry=RetryPolicy(retry))
    pair.lt.run(balancer.start())
    try:
        ours = [request(balancer.port, m, p, s) for m, p, s in calls]
    finally:
        pair.lt.run(balancer.stop())
    assert ours == theirs


def test_forwarding_headers_match_the_seed_config(pair):
    import json

    theirs, ours = pair.compare(pair.urls[:1], calls=[("GET", "/headers", "127.0.0.5")])

    def forwarded(result):
        headers = json.loads(result[0][1])["headers"]
        return headers.get("X-Forwarded-For"), headers.get("X-Real-IP")

    assert forwarded(theirs) == ("127.0.0.5", "127.0.0.5")
    assert forwarded(ours) == forwarded(theirs)


def test_least_conn_avoids_the_server_holding_a_slow_request(pair):
    import time
    from concurrent.futures import ThreadPoolExecutor

    def scenario(port):
        with ThreadPoolExecutor(2) as pool:
            slow = pool.submit(request, port, "GET", "/sleep/700")
            time.sleep(0.25)  # the slow request is now open on one server
            quick = [request(port)[1] for _ in range(6)]
            return slow.result()[1], quick

    conf = nginx_config(pair.urls, algorithm="least_conn", port=free_port())
    conf = conf.replace(conf.split("listen ")[1].split(";")[0], "127.0.0.1:{port}", 1)
    with NginxProcess(conf) as nginx:
        theirs = scenario(nginx.port)
    balancer = Balancer(pair.urls, algorithm="least_conn")
    pair.lt.run(balancer.start())
    try:
        ours = scenario(balancer.port)
    finally:
        pair.lt.run(balancer.stop())
    assert theirs[0] not in theirs[1]
    assert ours == theirs


@pytest.mark.slow
def test_bench_lb_smoke(capsys):
    require_tool("nginx", "nginx")
    require_tool("wrk", "wrk")
    from deploylab.balancer.bench import bench_lb

    summary = bench_lb(backends=2, duration=1, rounds=1, connections=8, threads=1)
    out = capsys.readouterr().out
    assert "ratio deploylab/nginx" in out
    assert all(summary[name]["errors"] == 0 for name in ("nginx", "deploylab", "L4 relay"))
    assert summary["ratio"] > 0
    # the relay floor is measured in the same rounds and the CPU split is printed from it
    assert summary["L4 relay"]["rps"] > 0 and summary["relay_ratio"] > 0
    assert "relay floor" in out and "HTTP work" in out


def _require_stream_module():
    from pathlib import Path

    if not Path("/usr/lib/nginx/modules/ngx_stream_module.so").exists():
        message = "nginx stream module missing (apt-get install libnginx-mod-stream)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: .ci/run must install it")
        pytest.skip(message)


def test_layer4_per_connection_round_robin_and_weights(pair):
    _require_stream_module()
    specs = [pair.urls[0] + ",weight=5", pair.urls[1], pair.urls[2]]
    theirs, ours = pair.compare(specs, calls=gets(14), layer=4)
    assert "".join(body for _, body in theirs) == "aabacaa" * 2
    assert ours == theirs


def test_layer4_hash_remote_addr(pair):
    _require_stream_module()
    sources = ["127.0.0.1", "127.0.0.2", "127.3.1.1", "127.9.9.9", "127.20.0.1", "127.40.2.2"]
    theirs, ours = pair.compare(
        pair.urls, "hash", calls=gets(12, sources=sources), layer=4, key="$remote_addr"
    )
    assert ours == theirs
