"""Scale-up vs scale-out, measured: real backend processes that burn CPU per request.

Scale-out = more backend processes behind the balancer (each is single-threaded, so each
can use one CPU). Scale-up = one backend whose CPU is N times faster, modelled by dividing its
per-request work by N. Every run is bounded in time; processes are stopped by PID.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Sequence

from deploylab.balancer.backend import read_backend_url, start_backend_process
from deploylab.balancer.runtime import Balancer

__all__ = ["load", "scale_experiment", "start_backends"]


def start_backends(count: int, work_ms: float) -> tuple[list[subprocess.Popen], list[str]]:
    """Start ``count`` ``deploylab serve backend`` processes on free ports; returns them and
    their URLs (read from the line each prints when listening)."""
    processes, urls = [], []
    try:
        for i in range(count):
            processes.append(start_backend_process(f"app-{i + 1}", work_ms=work_ms))
        urls = [read_backend_url(process) for process in processes]
    except BaseException:
        stop_backends(processes)
        raise
    return processes, urls


def stop_backends(processes: Sequence[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


async def load(url: str, duration: float, concurrency: int = 8) -> dict:
    """Closed-loop load: ``concurrency`` keep-alive clients send GETs for ``duration`` s.
    Returns requests/s, p50/p99 latency (ms) and errors."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
                latencies.append(time.perf_counter() - start)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(concurrency))), duration + 10)
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(fraction: float) -> float:
        return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] * 1000

    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "requests": len(latencies),
        "errors": errors,
    }


async def scale_experiment(
    sizes: Sequence[int] = (1, 2, 4),
    work_ms: float = 4.0,
    duration: float | None = None,
    concurrency: int = 8,
    progress=print,
) -> list[dict]:
    """Throughput and latency with 1, 2, 4 backends (scale-out) and with one backend 1×, 2×,
    4× faster (scale-up), through deploylab's balancer (least_conn). ``duration`` per run
    defaults to 3 s, or 1 s when ``DEPLOYLAB_TEST`` is set."""
    if duration is None:
        duration = 1.0 if os.environ.get("DEPLOYLAB_TEST") else 3.0
    results = []
    plans = [("scale-out", n, n, work_ms) for n in sizes]
    plans += [("scale-up", n, 1, work_ms / n) for n in sizes if n > 1]
    for kind, size, count, work in plans:
        processes, urls = start_backends(count, work)
        try:
            async with Balancer(urls, algorithm="least_conn", request_events=False) as lb:
                figures = await load(lb.url, duration, concurrency)
        finally:
            stop_backends(processes)
        figures.update(kind=kind, size=size, backends=count, work_ms=work)
        results.append(figures)
        if progress:
            progress(
                f"{kind:9} size {size}: {figures['rps']:7.0f} req/s  "
                f"p50 {figures['p50_ms']:6.1f} ms  p99 {figures['p99_ms']:6.1f} ms"
            )
    if results and results[0]["kind"] == "scale-out":
        results.insert(len(sizes), {**results[0], "kind": "scale-up"})
    return results
