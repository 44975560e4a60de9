"""``deploylab bench proxy``: requests/s and latency percentiles through the proxies.

Starts an origin, a forward proxy, a deploylab reverse proxy and (when installed) an nginx
reverse proxy as separate processes on loopback, then measures with wrk (or, without wrk, a
small keep-alive Python load generator). Every run is bounded in time and stopped by PID.

The cases run in turn ``rounds`` times, so machine noise hits all of them; each row shows
``median [min-max]`` over the rounds, and the deploylab/nginx reverse-proxy ratio is taken
within each round (target: ≥ 0.6× nginx's requests/s).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from deploylab.loopback import free_port, wait_for_port
from deploylab.nginx import NginxProcess, nginx_available
from deploylab.wrk import run_wrk, spread


async def _python_load(port: int, path: str, concurrency: int, requests: int) -> dict[str, float]:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    latencies: list[float] = []
    per_worker = max(1, requests // concurrency)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(per_worker):
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                found = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if found is None:
                    raise ValueError(f"expected a Content-Length in the answer, got {head!r}")
                length = int(found.group(1))
                await reader.readexactly(length)
                latencies.append((time.perf_counter() - started) * 1000)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 120)
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 3)

    return {
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "rps": round(len(latencies) / elapsed, 1),
    }


def run_bench(
    requests: int = 2000,
    concurrency: int = 16,
    use_wrk: bool = True,
    seconds: float = 3,
    rounds: int = 5,
) -> int:
    """Run the measurements and print a table; returns the exit status."""
    wrk = shutil.which("wrk") if use_wrk else None
    nginx = NginxProcess() if nginx_available() else None
    ports = {name: free_port() for name in ("origin", "forward", "reverse", "nginx")}
    started: list[subprocess.Popen[bytes]] = []
    cli = [sys.executable, "-m", "deploylab.cli"]
    no_log = ["--no-access-log"]  # as the nginx anchor's ``access_log off``
    origin = f"http://127.0.0.1:{ports['origin']}"
    servers = [
        ["origin", "--port", str(ports["origin"])],
        ["forward-proxy", "--port", str(ports["forward"]), "--allow-destination", "127.0.0.0/8"],
        ["reverse-proxy", "--port", str(ports["reverse"]), "--backend", origin],
    ]
    try:
        for arguments in servers:
            started.append(
                subprocess.Popen(
                    [*cli, "serve", *arguments, *no_log],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        if nginx:
            from deploylab.proxy.nginx import reverse_proxy_config

            nginx.start(
                reverse_proxy_config(ports["nginx"], [origin], runtime_dir=nginx.prefix).replace(
                    "access_log " + str(nginx.prefix / "access.log"), "access_log off"
                )
            )
        for name, port in ports.items():
            if name != "nginx" or nginx:
                wait_for_port(port)
        cases = [
            ("direct to origin", ports["origin"], "/cache/max-age/600"),
            ("forward proxy, cache HIT", ports["forward"], origin + "/cache/max-age/600"),
            ("forward proxy, cache MISS", ports["forward"], origin + "/cache/no-store"),
            ("deploylab reverse proxy", ports["reverse"], "/cache/max-age/600"),
        ]
        if nginx:
            cases.append(("nginx reverse proxy (anchor)", ports["nginx"], "/cache/max-age/600"))
        tool = (
            f"wrk -t2 -c{concurrency} -d{seconds}s"
            if wrk
            else f"python keep-alive load, {requests} requests, {concurrency} connections"
        )
        print(f"deploylab bench proxy — {tool}")
        print(f"{rounds} round(s); each cell is median [min-max]", flush=True)
        runs: dict[str, list[dict]] = {label: [] for label, _, _ in cases}
        for _ in range(rounds):
            for label, port, path in cases:
                if wrk:
                    figures = run_wrk(
                        f"http://127.0.0.1:{port}", seconds, concurrency, request_target=path
                    )
                else:
                    figures = asyncio.run(_python_load(port, path, concurrency, requests))
                runs[label].append(figures)
            print(".", end="", flush=True)
        print()
        print(f"{'path':<32}{'req/s':>22}{'p50 ms':>20}{'p99 ms':>20}")
        for label, rounds_of in runs.items():
            print(
                f"{label:<32}{spread(f.get('rps', 0) for f in rounds_of):>22}"
                f"{spread(f.get('p50_ms', 0) for f in rounds_of):>20}"
                f"{spread(f.get('p99_ms', 0) for f in rounds_of):>20}",
                flush=True,
            )
        if nginx:
            ours = runs["deploylab reverse proxy"]
            theirs = runs["nginx reverse proxy (anchor)"]
            ratios = [a["rps"] / b["rps"] for a, b in zip(ours, theirs, strict=True) if b["rps"]]
            print(f"reverse proxy / nginx requests/s: {spread(ratios)} (target >= 0.6)")
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        if nginx is not None:
            nginx.close()
    return 0
