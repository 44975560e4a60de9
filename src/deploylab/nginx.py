"""A real nginx, run from its own directory on loopback: start, reload, stop.

This drives the Debian ``nginx`` binary the way an operator does (``nginx -t``,
``nginx -s reload`` = SIGHUP to the master, ``nginx -s quit`` = SIGQUIT), but with a private
prefix directory, so no root-owned paths, system service or port 80 are involved. The
lessons, the nginx parity tests and the benchmarks all run nginx through :class:`NginxProcess`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from deploylab.loopback import free_port

__all__ = [
    "NginxConfigError",
    "NginxNotFoundError",
    "NginxProcess",
    "find_nginx",
    "main_context",
    "nginx_available",
]

STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class NginxNotFoundError(FileNotFoundError):
    """The nginx binary is not installed."""


class NginxConfigError(ValueError):
    """``nginx -t`` rejected a configuration; the message holds nginx's own explanation."""


def find_nginx() -> str:
    """Path of the nginx binary (``/usr/sbin`` is often not on a user's PATH)."""
    path = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if path is None:
        raise NginxNotFoundError("nginx is not installed (Debian: apt-get install nginx)")
    return path


def nginx_available() -> bool:
    """Whether an nginx binary is installed (lessons skip their nginx parts without one)."""
    try:
        find_nginx()
    except NginxNotFoundError:
        return False
    return True


def main_context(blocks: str, prefix: str | Path, worker_connections: int = 1024) -> str:
    """A complete ``nginx.conf`` around ``http { ... }`` and/or ``stream { ... }`` blocks.

    Adds what a throwaway nginx needs: ``daemon off``, one worker, pid file, error log and
    temp paths inside ``prefix``, no access log, and nginx's stream module when a ``stream``
    block is used (Debian ships it separately, as ``libnginx-mod-stream``).

    >>> config = main_context("http {\\n    server { listen 127.0.0.1:8080; }\\n}\\n", "/tmp/x")
    >>> print(config.split("http {")[0])
    daemon off;
    worker_processes 1;
    pid /tmp/x/nginx.pid;
    error_log /tmp/x/error.log warn;
    events {
        worker_connections 1024;
    }
    <BLANKLINE>
    >>> "proxy_temp_path /tmp/x/proxy;" in config
    True
    """
    prefix = Path(prefix)
    http_extras = "".join(f"    {kind}_temp_path {prefix / kind};\n" for kind in TEMP_PATHS)
    body = blocks.replace("http {\n", "http {\n" + http_extras + "    access_log off;\n", 1)
    module = (
        f"load_module {STREAM_MODULE};\n" if "stream {" in body and STREAM_MODULE.exists() else ""
    )
    return (
        f"{module}daemon off;\nworker_processes 1;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} warn;\n"
        f"events {{\n    worker_connections {worker_connections};\n}}\n{body}"
    )


class NginxProcess:
    """One nginx master process (and its workers) serving a configuration from ``prefix``.

    ``config`` is either a complete ``nginx.conf`` (it has an ``events`` block; write its
    pid, log and temp paths inside :attr:`prefix`, as
    :func:`deploylab.proxy.nginx.reverse_proxy_config` does with ``runtime_dir=prefix``) or
    just ``http``/``stream`` blocks, which :func:`main_context` completes. A ``{port}``
    placeholder becomes :attr:`port` (a free loopback port unless given).

    ``with NginxProcess(config) as nginx:`` starts it and always stops it by PID; or call
    :meth:`start` with the config later, :meth:`reload` to change it, :meth:`stop` to end.
    """

    def __init__(
        self,
        config: str | None = None,
        *,
        port: int | None = None,
        prefix: str | Path | None = None,
        worker_connections: int = 1024,
    ) -> None:
        self.binary = find_nginx()
        self._own_prefix = prefix is None
        self.prefix = Path(prefix or tempfile.mkdtemp(prefix="deploylab-nginx-")).resolve()
        self.config_path = self.prefix / "nginx.conf"
        self.port = port or free_port()
        self.worker_connections = worker_connections
        self.process: subprocess.Popen | None = None
        self.reloads = 0
        self._initial_config = config

    def complete(self, config: str) -> str:
        """The full ``nginx.conf`` text that ``config`` stands for (see the class docstring)."""
        config = config.replace("{port}", str(self.port))
        if "events {" in config:
            return config
        return main_context(config, self.prefix, self.worker_connections)

    def check(self, config: str) -> None:
        """Run ``nginx -t`` on ``config`` without touching the running one; raise if invalid."""
        candidate = self.prefix / "candidate.conf"
        candidate.write_text(self.complete(config))
        result = subprocess.run(
            [self.binary, "-t", "-q", "-p", str(self.prefix), "-c", str(candidate)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise NginxConfigError(f"nginx rejected the configuration: {result.stderr.strip()}")

    def start(self, config: str | None = None, timeout: float = 10.0) -> NginxProcess:
        """Check ``config`` (default: the one given at construction), start nginx with it
        and wait until its workers are up (listening sockets are open by then; no probe
        connection is made, which an L4 balancer would count as a client)."""
        if self.process is not None:
            raise RuntimeError(f"nginx is already running (pid {self.process.pid})")
        config = config if config is not None else self._initial_config
        if config is None:
            raise ValueError("NginxProcess.start needs a configuration")
        for folder in TEMP_PATHS:
            (self.prefix / folder).mkdir(exist_ok=True)
        self.check(config)
        self.config_path.write_text(self.complete(config))
        self.process = subprocess.Popen(
            [self.binary, "-p", str(self.prefix), "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self.worker_pids():
            if self.process.poll() is not None:
                stderr = self.process.stderr
                assert stderr is not None  # opened with stderr=PIPE just above
                message = stderr.read().decode(errors="replace").strip()
                self.process = None
                raise RuntimeError(f"nginx exited at start: {message}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"nginx started no worker within {timeout} s")
            time.sleep(0.02)
        return self

    @property
    def pid(self) -> int:
        """The master's process id."""
        if self.process is None:
            raise RuntimeError("nginx is not running")
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """Process ids of the master's current worker processes (old ones included while they
        finish their requests after a reload)."""
        if self.process is None:
            return []
        try:
            import psutil

            return [child.pid for child in psutil.Process(self.process.pid).children()]
        except Exception:  # the master is exiting
            return []

    def pids(self) -> list[int]:
        """The master and its workers (for CPU accounting)."""
        return [self.pid, *self.worker_pids()] if self.process is not None else []

    def reload(self, config: str, timeout: float = 10.0) -> None:
        """Switch to ``config`` like ``nginx -s reload``: the master checks it, starts new
        workers, and old workers finish in-flight requests and exit. An invalid config raises
        :class:`NginxConfigError` and the running one keeps serving, exactly as nginx does.
        Returns once the old workers have exited (or ``timeout`` passed), so that every later
        connection sees the new configuration."""
        self.check(config)
        before = set(self.worker_pids())
        self.config_path.write_text(self.complete(config))
        os.kill(self.pid, signal.SIGHUP)
        self.reloads += 1
        deadline = time.monotonic() + timeout
        while not (set(self.worker_pids()) - before):
            if time.monotonic() > deadline:
                raise TimeoutError(f"nginx started no new worker within {timeout} s of SIGHUP")
            time.sleep(0.01)
        # Until the old workers exit they may still accept a connection with the old config;
        # they close idle connections at once, so this is short unless a request is slow.
        while set(self.worker_pids()) & before and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self, graceful: bool = True, timeout: float = 10.0) -> None:
        """``nginx -s quit`` (graceful: finish requests) or ``nginx -s stop`` (at once)."""
        if self.process is None:
            return
        try:
            os.kill(self.process.pid, signal.SIGQUIT if graceful else signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        except ProcessLookupError:
            pass
        finally:
            if self.process.stderr:
                self.process.stderr.close()
            self.process = None

    def error_log(self) -> str:
        """What nginx wrote to ``error.log`` in the prefix (empty if none)."""
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> NginxProcess:
        if self.process is None and self._initial_config is not None:
            self.start()
        return self

    def close(self) -> None:
        """Stop at once and delete the prefix directory if this object created it."""
        self.stop(graceful=False)
        if self._own_prefix:
            shutil.rmtree(self.prefix, ignore_errors=True)

    def __exit__(self, *exc_info) -> None:
        self.close()
