"""A real nginx, run from its own directory on loopback: start, reload, stop.

This drives the Debian ``nginx`` binary the way an operator does (``nginx -t``,
``nginx -s reload`` = SIGHUP to the master, ``nginx -s quit`` = SIGQUIT), but with a private
prefix directory so no root-owned paths, system service or port 80 are involved.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["NginxConfigError", "NginxNotFoundError", "NginxProcess", "find_nginx"]


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


class NginxProcess:
    """One nginx master process (and its workers) serving a configuration from ``prefix``.

    Write configurations with paths inside :attr:`prefix` (pid file, logs, temp dirs) and
    ``daemon off;`` — :func:`deploylab.proxy.nginx.reverse_proxy_config` does, given
    ``runtime_dir=nginx.prefix``. Use as a context manager so the master is always stopped.
    """

    def __init__(self, prefix: str | Path | None = None) -> None:
        self.binary = find_nginx()
        self._own_prefix = prefix is None
        self.prefix = Path(prefix or tempfile.mkdtemp(prefix="deploylab-nginx-")).resolve()
        self.config_path = self.prefix / "nginx.conf"
        self.process: subprocess.Popen | None = None
        self.reloads = 0

    def check(self, config: str) -> None:
        """Run ``nginx -t`` on ``config`` without touching the running one; raise if invalid."""
        candidate = self.prefix / "candidate.conf"
        candidate.write_text(config)
        result = subprocess.run(
            [self.binary, "-t", "-q", "-p", str(self.prefix), "-c", str(candidate)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise NginxConfigError(f"nginx rejected the configuration: {result.stderr.strip()}")

    def start(self, config: str, timeout: float = 10.0) -> NginxProcess:
        """Check ``config``, start nginx with it and wait until its workers are up."""
        if self.process is not None:
            raise RuntimeError(f"nginx is already running (pid {self.process.pid})")
        for folder in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
            (self.prefix / folder).mkdir(exist_ok=True)
        self.check(config)
        self.config_path.write_text(config)
        self.process = subprocess.Popen(
            [self.binary, "-p", str(self.prefix), "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self.worker_pids():
            if self.process.poll() is not None:
                message = self.process.stderr.read().decode(errors="replace").strip()
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

    def reload(self, config: str, timeout: float = 10.0) -> None:
        """Switch to ``config`` like ``nginx -s reload``: the master checks it, starts new
        workers, and old workers finish in-flight requests and exit. An invalid config raises
        :class:`NginxConfigError` and the running one keeps serving, exactly as nginx does.
        Returns once the old workers have exited (or ``timeout`` passed), so that every later
        connection sees the new configuration."""
        self.check(config)
        before = set(self.worker_pids())
        self.config_path.write_text(config)
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
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop(graceful=False)
        if self._own_prefix:
            shutil.rmtree(self.prefix, ignore_errors=True)
