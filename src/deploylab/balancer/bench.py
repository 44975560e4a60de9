"""``deploylab bench lb``: deploylab's balancer against nginx over the same fast backends.

Both balancers get one process (nginx: 1 worker, ``keepalive`` to the upstreams; deploylab:
uvloop + httptools, pooled keep-alive) in front of the same nginx static backends, and wrk
(2 threads, 64 connections, keep-alive, 127.0.0.1) loads them in alternation within one run so
machine noise hits both. Prints requests/s, p50, p99, CPU per request and the ratio, per round
and as ``median [min-max]`` over the rounds (a ratio is taken within each round, where both
saw the same noise). The targets: ≥ 0.7× nginx's requests/s with ≤ 1.3× its CPU per request.

At layer 7 a third server runs in each round: deploylab's own L4 balancer, which copies the
same bytes per connection with no HTTP at all. Its CPU per request is the floor of any Python
balancer on uvloop (two reads, two writes and two protocol callbacks per request); what the L7
balancer spends above it is its HTTP work (parsing, rewriting headers, choosing a backend,
pooling, accounting), and the printed split shows how much of the target that work leaves.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from deploylab.balancer.nginx import nginx_config
from deploylab.loopback import free_port, wait_for_port
from deploylab.nginx import NginxProcess
from deploylab.wrk import run_wrk, spread

__all__ = ["bench_lb"]

#: The third server of a layer 7 run: deploylab's L4 balancer, the floor (see above).
_RELAY = "L4 relay"


def _cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _start_balancer(port: int, layer: int, urls: list[str]) -> subprocess.Popen:
    """``deploylab serve balancer`` as its own process (one core, like nginx's one worker)."""
    command = [
        sys.executable,
        "-m",
        "deploylab.cli",
        "serve",
        "balancer",
        "--port",
        str(port),
        "--layer",
        str(layer),
    ]
    for url in urls:
        command += ["--backend", url]
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def bench_lb(
    backends: int = 2,
    duration: float = 3.0,
    rounds: int = 5,
    connections: int = 64,
    threads: int = 2,
    layer: int = 7,
    out=print,
) -> dict:
    """Alternate nginx and deploylab ``rounds`` times; returns the figures and prints them."""
    if not 1 <= backends <= 16:
        raise ValueError(f"--backends {backends}: expected 1 to 16")
    if not 0 < duration <= 120:
        raise ValueError(f"--duration {duration}: expected 0 to 120 seconds")
    if layer == 4 and not Path("/usr/lib/nginx/modules/ngx_stream_module.so").exists():
        raise ValueError(
            "--layer 4: nginx's stream module is not installed "
            "(apt-get install libnginx-mod-stream); expected --layer 7 without it"
        )
    ports = [free_port() for _ in range(backends)]
    static = (
        "http {\n"
        + "".join(
            f"    server {{ listen 127.0.0.1:{p}; keepalive_requests 100000; "
            f'location / {{ return 200 "b{i}\\n"; }} }}\n'
            for i, p in enumerate(ports)
        )
        + "}\n"
    )
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    results: dict[str, list[dict]] = {"nginx": [], "deploylab": []}
    with NginxProcess(static, port=ports[0]) as _backends:
        for port in ports:
            wait_for_port(port)
        balancer_conf = nginx_config(urls, port=0, keepalive=64, layer=layer)
        balancer_conf = balancer_conf.replace("listen 127.0.0.1:0;", "listen 127.0.0.1:{port};")
        if layer == 7:
            balancer_conf = balancer_conf.replace(
                "        location / {", "        keepalive_requests 100000;\n        location / {"
            )
        our_port = free_port()
        ours = _start_balancer(our_port, layer, urls)
        processes = [ours]
        relay_port = None
        if layer == 7:  # the floor: the same bytes copied per connection, no HTTP
            relay_port = free_port()
            processes.append(_start_balancer(relay_port, 4, urls))
        try:
            with NginxProcess(balancer_conf) as nginx:
                wait_for_port(our_port)
                targets = {
                    "nginx": (nginx.port, nginx.pids()),
                    "deploylab": (our_port, [ours.pid]),
                }
                if relay_port is not None:
                    wait_for_port(relay_port)
                    targets[_RELAY] = (relay_port, [processes[1].pid])
                    results[_RELAY] = []
                out(
                    f"bench lb: {backends} nginx static backends, L{layer}, wrk -t{threads} "
                    f"-c{connections} -d{max(1, round(duration))}s, {rounds} round(s) each"
                )
                for port, _ in targets.values():  # warm up pools and caches
                    run_wrk(f"http://127.0.0.1:{port}/", 1, connections, threads)
                for round_number in range(1, rounds + 1):
                    for name, (port, pids) in targets.items():
                        before = _cpu_seconds(pids)
                        figures = run_wrk(
                            f"http://127.0.0.1:{port}/", duration, connections, threads
                        )
                        cpu = _cpu_seconds(pids) - before
                        figures["cpu_us_per_request"] = cpu / max(1, figures["requests"]) * 1e6
                        results[name].append(figures)
                        out(
                            f"  round {round_number} {name:11} {figures['rps']:9.0f} req/s  "
                            f"p50 {figures['p50_ms']:.2f} ms  p99 {figures['p99_ms']:.2f} ms  "
                            f"CPU {figures['cpu_us_per_request']:.1f} us/req  "
                            f"errors {figures['errors']}"
                            + (f" ({figures['error_detail']})" if figures["errors"] else "")
                        )
        finally:
            for process in processes:
                _stop(process)
    summary: dict[str, Any] = {}
    for name, runs in results.items():
        summary[name] = {
            key: statistics.median(r[key] for r in runs)
            for key in ("rps", "p50_ms", "p99_ms", "cpu_us_per_request")
        }
        summary[name]["errors"] = sum(r["errors"] for r in runs)
        out(
            f"{name:11}  req/s {spread(r['rps'] for r in runs)}  "
            f"p99 ms {spread(r['p99_ms'] for r in runs)}  "
            f"CPU us/req {spread(r['cpu_us_per_request'] for r in runs)}  "
            f"errors {summary[name]['errors']}"
        )
    pairs = list(zip(results["nginx"], results["deploylab"], strict=True))
    ratios = [ours["rps"] / theirs["rps"] for theirs, ours in pairs]
    cpu_ratios = [
        ours["cpu_us_per_request"] / theirs["cpu_us_per_request"] for theirs, ours in pairs
    ]
    ratio, cpu_ratio = statistics.median(ratios), statistics.median(cpu_ratios)
    out(
        f"ratio deploylab/nginx over {len(pairs)} rounds: requests/s {spread(ratios)} "
        "(target >= 0.7), "
        f"CPU per request {spread(cpu_ratios)} (target <= 1.3)"
    )
    if _RELAY in results:
        relay_us = summary[_RELAY]["cpu_us_per_request"]
        ours_us = summary["deploylab"]["cpu_us_per_request"]
        nginx_us = summary["nginx"]["cpu_us_per_request"]
        floor_ratios = [
            relay["cpu_us_per_request"] / theirs["cpu_us_per_request"]
            for theirs, relay in zip(results["nginx"], results[_RELAY], strict=True)
        ]
        out(
            f"CPU per request, medians: nginx {nginx_us:.1f} us; deploylab {ours_us:.1f} us = "
            f"relay floor {relay_us:.1f} us (uvloop and the kernel copying the bytes, "
            f"{spread(floor_ratios)}x nginx) + HTTP work {ours_us - relay_us:.1f} us; "
            f"the 1.3x target leaves {1.3 * nginx_us - relay_us:.1f} us for the HTTP work"
        )
        summary["relay_ratio"] = statistics.median(floor_ratios)
    summary["ratio"] = ratio
    summary["cpu_ratio"] = cpu_ratio
    summary["ratios"] = ratios
    summary["cpu_ratios"] = cpu_ratios
    return summary
