"""Running wrk (the HTTP load generator) against loopback servers and reading its report.

The benchmarks compare deploylab with nginx under the same wrk load in one run; this module
is the one place that starts wrk (bounded by its duration plus a hard timeout) and parses
``wrk --latency`` output into numbers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile

__all__ = ["parse_wrk", "run_wrk", "spread"]

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> dict:
    """Requests/s, request count, p50/p90/p99 (ms) and errors from ``wrk --latency`` output.

    Errors add up non-2xx/3xx responses and socket errors; ``error_detail`` says which.

    >>> text = '''  Latency Distribution
    ...      50%  512.00us
    ...      90%    1.00ms
    ...      99%    2.10ms
    ...   1000 requests in 1.00s, 10 KB read
    ...   Socket errors: connect 0, read 3, write 0, timeout 0
    ... Requests/sec:   1000.50
    ... '''
    >>> figures = parse_wrk(text)
    >>> figures["rps"], figures["requests"], figures["p50_ms"], figures["p99_ms"]
    (1000.5, 1000, 0.512, 2.1)
    >>> figures["errors"], figures["error_detail"]
    (3, 'read 3')
    """
    figures: dict = {}
    for percent, value, unit in re.findall(
        r"^\s*(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M
    ):
        figures[f"p{percent}_ms"] = round(float(value) * _UNITS[unit], 3)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    count = re.search(r"(\d+) requests in", output)
    figures["rps"] = float(rate.group(1)) if rate else 0.0
    figures["requests"] = int(count.group(1)) if count else 0
    errors, detail = 0, []
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
        detail.append(f"non-2xx {non_2xx.group(1)}")
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        for kind, number in zip(
            ("connect", "read", "write", "timeout"), socket_errors.groups(), strict=True
        ):
            errors += int(number)
            if int(number):
                detail.append(f"{kind} {number}")
    figures["errors"] = errors
    figures["error_detail"] = ", ".join(detail)
    return figures


def run_wrk(
    url: str,
    duration: float,
    connections: int = 64,
    threads: int = 2,
    request_target: str | None = None,
) -> dict:
    """Load ``url`` with wrk for ``duration`` seconds and return :func:`parse_wrk`'s figures.

    ``request_target`` replaces the path wrk sends (an absolute-form target such as
    ``http://origin/page`` makes the server at ``url`` act as a forward proxy).
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        raise FileNotFoundError("wrk is not installed (apt-get install wrk)")
    seconds = max(1, round(duration))
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    script = None
    if request_target is not None:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(f"wrk.path = {json.dumps(request_target)}\n")  # a valid Lua string
        command += ["-s", script.name]
    try:
        output = subprocess.run(
            [*command, url], capture_output=True, text=True, timeout=seconds + 30, check=True
        ).stdout
    finally:
        if script is not None:
            os.unlink(script.name)
    return parse_wrk(output)


def spread(values) -> str:
    """``median [min–max]`` of repeated measurements: one short round on a shared machine
    can swing 2–4×, so a benchmark reports every round's range, not one number.

    >>> spread([0.61, 0.7, 0.58, 0.66, 0.72])
    '0.66 [0.58-0.72]'
    >>> spread([11800.4, 12050.9, 9000.0])
    '11800 [9000-12051]'
    """
    import statistics

    values = sorted(values)
    digits = 2 if values[-1] < 100 else 0
    median = statistics.median(values)
    return f"{median:.{digits}f} [{values[0]:.{digits}f}-{values[-1]:.{digits}f}]"
