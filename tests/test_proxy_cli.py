"""The proxy commands as a learner runs them: separate processes, curl from other addresses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import free_port, require_tool, wait_for_port

pytestmark = pytest.mark.timeout(60)


def curl(*args: str) -> tuple[int, bytes]:
    out = subprocess.run(
        [require_tool("curl", "curl"), "-s", "--max-time", "10", "-w", "\n%{http_code}", *args],
        capture_output=True,
        check=False,
        timeout=20,
    ).stdout
    body, _, code = out.rpartition(b"\n")
    return int(code), body


def test_region_restricted_origin_through_the_cli_proxy(processes):
    origin_port, proxy_port = free_port(), free_port()
    origin = processes.deploylab(
        "serve", "origin", "--port", str(origin_port), "--allow-from", "127.0.0.3/32"
    )
    processes.deploylab(
        "serve",
        "forward-proxy",
        "--port",
        str(proxy_port),
        "--source-address",
        "127.0.0.3",
        "--allow-destination",
        "127.0.0.0/8",
    )
    wait_for_port(origin_port)
    wait_for_port(proxy_port)
    url = f"http://127.0.0.1:{origin_port}/region"
    direct, _ = curl("--interface", "127.0.0.2", url)
    through, body = curl("--interface", "127.0.0.2", "-x", f"http://127.0.0.1:{proxy_port}", url)
    assert (direct, through) == (403, 200)
    assert json.loads(body)["client"] == "127.0.0.3"
    origin.terminate()
    log = origin.communicate(timeout=5)[1].decode()
    # one log line per request, naming the address the origin saw
    assert log.count('"GET /region HTTP/1.1"') == 2
    assert "127.0.0.2:" in log and "127.0.0.3:" in log


def test_no_access_log_serves_without_a_line_per_request(processes):
    # `serve ... --no-access-log` (nginx's access_log off, for benchmarks) still serves; the
    # origin with its log on is the control: the same request gives it its line
    origin_port, proxy_port = free_port(), free_port()
    origin = processes.deploylab("serve", "origin", "--port", str(origin_port))
    proxy = processes.deploylab(
        "serve",
        "reverse-proxy",
        "--no-access-log",
        "--port",
        str(proxy_port),
        "--backend",
        f"http://127.0.0.1:{origin_port}",
    )
    wait_for_port(origin_port)
    wait_for_port(proxy_port)
    code, _ = curl(f"http://127.0.0.1:{proxy_port}/quiet")
    assert code == 200
    logs = []
    for server in (origin, proxy):
        server.terminate()
        logs.append(server.communicate(timeout=5)[1].decode())
    assert '"GET /quiet HTTP/1.1"' in logs[0]
    assert "/quiet" not in logs[1]


def test_reverse_proxy_cli_hides_the_backend(processes):
    backend_port, proxy_port = free_port(), free_port()
    processes.deploylab("serve", "origin", "--port", str(backend_port), "--name", "backend-1")
    processes.deploylab(
        "serve",
        "reverse-proxy",
        "--port",
        str(proxy_port),
        "--backend",
        f"http://127.0.0.1:{backend_port}",
    )
    wait_for_port(backend_port)
    wait_for_port(proxy_port)
    out = subprocess.run(
        [
            require_tool("curl", "curl"),
            "-s",
            "-i",
            "--interface",
            "127.0.0.2",
            f"http://127.0.0.1:{proxy_port}/",
        ],
        capture_output=True,
        check=True,
        timeout=20,
    ).stdout.decode()
    head, _, body = out.partition("\r\n\r\n")
    assert "Server: deploylab\r\n" in head and str(backend_port) not in head
    assert json.loads(body)["headers"]["X-Real-IP"] == "127.0.0.2"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["serve", "origin", "--allow-from", "10.0.0.1/8"], "'10.0.0.1/8' is not a network"),
        (
            ["nginx-conf", "reverse-proxy", "--listen", "8000", "--backend", "localhost:8080"],
            "'localhost:8080' is not an http://HOST:PORT URL",
        ),
        (
            ["nginx-conf", "reverse-proxy", "--listen", "eight", "--backend", "http://127.0.0.1:1"],
            "--listen 'eight'",
        ),
    ],
)
def test_bad_values_are_named_in_the_error(args, fragment):
    result = subprocess.run(
        [sys.executable, "-m", "deploylab.cli", *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert fragment in result.stderr
