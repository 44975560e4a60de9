"""nginx configuration equivalent to a deploylab balancer, and a throwaway nginx to run it.

:func:`nginx_config` prints the ``upstream``/``server`` blocks (what ``deploylab nginx-conf
balancer`` shows); :class:`NginxProcess` runs a real nginx (1 worker, ``daemon off``, its own
prefix directory with pid, logs and temp paths, listening on 127.0.0.1 only) for the parity
tests and the benchmark.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from deploylab.balancer.core import Peer
from deploylab.balancer.runtime import parse_backend

__all__ = ["NginxProcess", "find_nginx", "nginx_config", "server_line", "upstream_block"]

_DIRECTIVE = {
    "round_robin": "",
    "least_conn": "least_conn;",
    "ip_hash": "ip_hash;",
    "random_two": "random two least_conn;",
}


def server_line(peer: Peer) -> str:
    """nginx's ``server`` directive for one peer, defaults left out.

    >>> server_line(Peer("127.0.0.1:8081", weight=5, max_fails=3, backup=True))
    'server 127.0.0.1:8081 weight=5 max_fails=3 backup;'
    """
    parts = [f"server {peer.name}"]
    if peer.weight != 1:
        parts.append(f"weight={peer.weight}")
    if peer.max_fails != 1:
        parts.append(f"max_fails={peer.max_fails}")
    if peer.fail_timeout != 10:
        parts.append(f"fail_timeout={peer.fail_timeout:g}s")
    if peer.max_conns:
        parts.append(f"max_conns={peer.max_conns}")
    if peer.backup:
        parts.append("backup")
    if peer.down:
        parts.append("down")
    return " ".join(parts) + ";"


def upstream_block(
    backends: Iterable[str | dict | Peer],
    algorithm: str = "round_robin",
    key: str = "$request_uri",
    keepalive: int = 0,
    name: str = "backend",
    indent: str = "    ",
) -> str:
    """An ``upstream NAME { ... }`` block.

    >>> print(upstream_block(["http://localhost:8080", "http://localhost:8081"]))
    upstream backend {
        server 127.0.0.1:8080;
        server 127.0.0.1:8081;
    }
    """
    algorithm = algorithm.replace("-", "_")
    lines = [f"upstream {name} {{"]
    if algorithm == "hash":
        lines.append(f"{indent}hash {key};")
    elif algorithm == "hash_consistent":
        lines.append(f"{indent}hash {key} consistent;")
    elif algorithm in _DIRECTIVE:
        if _DIRECTIVE[algorithm]:
            lines.append(indent + _DIRECTIVE[algorithm])
    else:
        raise ValueError(
            f"algorithm {algorithm!r}: expected one of round_robin, least_conn, "
            "ip_hash, hash, hash_consistent, random_two"
        )
    lines += [indent + server_line(parse_backend(b)) for b in backends]
    if keepalive:
        lines.append(f"{indent}keepalive {keepalive};")
    lines.append("}")
    return "\n".join(lines)


def nginx_config(
    backends: Iterable[str | dict | Peer],
    algorithm: str = "round_robin",
    port: int = 80,
    key: str = "$request_uri",
    keepalive: int = 0,
    layer: int = 7,
    host: str = "127.0.0.1",
    retry: Iterable[str] | None = None,
) -> str:
    """The ``http { upstream ...; server ... }`` (or ``stream { ... }`` for layer 4) config
    equivalent to ``deploylab serve balancer`` with the same arguments.

    >>> print(nginx_config(["localhost:8080", "localhost:8081"], port=8000))  # the seed's
    http {
        upstream backend {
            server 127.0.0.1:8080;
            server 127.0.0.1:8081;
        }
        server {
            listen 127.0.0.1:8000;
            location / {
                proxy_pass http://backend;
                proxy_set_header Host $http_host;
                proxy_set_header X-Real-IP $remote_addr;
                proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            }
        }
    }
    <BLANKLINE>
    """
    backends = list(backends)
    upstream = upstream_block(
        backends, algorithm, key, keepalive if layer == 7 else 0, indent="    "
    ).replace("\n", "\n    ")
    if layer == 4:
        if algorithm.replace("-", "_") == "ip_hash":
            raise ValueError(
                "algorithm 'ip_hash' does not exist in nginx's stream (layer 4) module: "
                "expected hash with --key '$remote_addr'"
            )
        return (
            f"stream {{\n    {upstream}\n    server {{\n        listen {host}:{port};\n"
            f"        proxy_pass backend;\n    }}\n}}\n"
        )
    location = [
        "proxy_pass http://backend;",
        "proxy_set_header Host $http_host;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    ]
    if keepalive:
        location += ["proxy_http_version 1.1;", 'proxy_set_header Connection "";']
    if retry is not None:
        location.append(f"proxy_next_upstream {' '.join(retry)};")
    body = "\n            ".join(location)
    return (
        f"http {{\n    {upstream}\n    server {{\n        listen {host}:{port};\n"
        f"        location / {{\n            {body}\n        }}\n    }}\n}}\n"
    )


def find_nginx() -> str | None:
    """Path of the nginx binary (``/usr/sbin`` is often not on a user's PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening(port: int) -> bool:
    """Whether some socket listens on TCP ``port`` (from /proc/net/tcp, without connecting)."""
    try:
        with open("/proc/net/tcp") as table:
            rows = table.read().splitlines()[1:]
    except OSError:  # not Linux: fall back to connecting
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False
    suffix = f":{port:04X}"
    return any(r.split()[1].endswith(suffix) and r.split()[3] == "0A" for r in rows)


class NginxProcess:
    """A real nginx in a temporary prefix: ``with NginxProcess(http_block) as nginx: ...``.

    ``config`` is the text of the ``http { ... }`` (or ``stream``) block(s); a ``{port}``
    placeholder is filled with a free port (``.port``). One worker, ``daemon off``, pid,
    error log and temp paths inside the prefix; stopped by PID on exit.
    """

    def __init__(
        self,
        config: str,
        port: int | None = None,
        binary: str | None = None,
        worker_connections: int = 4096,
    ) -> None:
        self.binary = binary or find_nginx()
        if self.binary is None:
            raise FileNotFoundError("nginx is not installed (apt-get install nginx)")
        self.port = port or _free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="deploylab-nginx-"))
        temp = self.prefix / "temp"
        temp.mkdir()
        paths = "".join(
            f"    {kind}_temp_path {temp / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        body = config.replace("{port}", str(self.port))
        body = body.replace("http {\n", "http {\n" + paths + "    access_log off;\n", 1)
        modules = ""
        if "stream {" in body:
            module = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
            if module.exists():
                modules = f"load_module {module};\n"
        self.config_path = self.prefix / "nginx.conf"
        self.config_path.write_text(
            f"{modules}daemon off;\nworker_processes 1;\npid {self.prefix / 'nginx.pid'};\n"
            f"error_log {self.prefix / 'error.log'} warn;\n"
            f"events {{\n    worker_connections {worker_connections};\n}}\n{body}"
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> NginxProcess:
        self.process = subprocess.Popen(
            [self.binary, "-p", str(self.prefix), "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nginx exited: {self.process.stderr.read().decode()}\n"
                    f"{self.config_path.read_text()}"
                )
            # look, don't connect: a probe connection would count as a client (and take a
            # turn of the round robin) in an L4 `stream` balancer
            if (self.prefix / "nginx.pid").exists() and _listening(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen on 127.0.0.1:{self.port}")

    def worker_pids(self) -> list[int]:
        """PIDs of nginx's processes (master first) for CPU accounting."""
        import psutil

        if self.process is None:
            return []
        master = psutil.Process(self.process.pid)
        return [master.pid] + [child.pid for child in master.children()]

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.process = None
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> NginxProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
