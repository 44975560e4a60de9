"""Run one nginx lab job (:mod:`deploylab.nginx_lab.harness`) in its own sandbox, or plainly.

The sandbox is the grading sandbox's (:mod:`deploylab.grading.sandbox`: bubblewrap, seccomp,
rlimits, control groups, a fresh uid as root or uid 65534 in a user namespace), set up for
nginx instead of a kernel:

* a network namespace of its own: only ``lo``, so there is no route to any other address
  and nothing of the host's loopback (its services, the grader's sockets) is reachable —
  a ``proxy_pass`` to an outside address fails with "Network is unreachable" before a
  packet is sent;
* a read-only system (``/usr``, the Python environment, the deploylab package directory —
  never the course around it), no ``/etc`` beyond ``ld.so.cache``, a made-up ``/etc/hosts``
  that knows ``localhost`` and nginx's ``mime.types``: ``include /etc/shadow`` or
  ``root /…/autograder/source`` find nothing;
* one writable directory, nginx's prefix (a tmpfs of a few MiB when the grader is root);
* no ``/proc``, so the learner's nginx cannot reach the harness's pipes through
  ``/proc/PID/fd``; the harness's answer also carries a random token from the job;
* limits on memory, CPU seconds, processes, file size and open files, and a wall-clock
  limit after which the whole sandbox is killed (bwrap's process group, by PID; its pid
  namespace takes every process inside along).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from deploylab.grading.limits import Limits

__all__ = ["HarnessFailed", "Session", "run_job", "sandbox_available", "sandbox_limits", "warm_up"]

#: Largest result the harness may print (bytes); anything longer is a grader problem.
MAX_RESULT_BYTES = 4 * 1024 * 1024
#: Seconds the host waits for a job beyond the job's own deadline.
_GRACE = 6.0
_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
_MIME_TYPES = Path("/etc/nginx/mime.types")


class HarnessFailed(RuntimeError):
    """The job could not be run (no sandbox, a harness crash, no answer in time): a problem
    of the grading machine, not of the learner's configuration."""


def sandbox_limits() -> Limits:
    """Limits of the nginx lab's sandbox: the grading sandbox's, smaller (the harness, one
    nginx master and worker and ``nginx -t`` need far less than a kernel)."""
    from deploylab.grading.limits import Limits

    return Limits(
        memory_bytes=768 * 1024 * 1024,
        cpu_seconds=20,
        max_processes=32,
        max_output_bytes=64 * 1024,
        max_file_bytes=8 * 1024 * 1024,
        max_open_files=512,
        tmp_bytes=16 * 1024 * 1024,
        max_scratch_files=512,
    )


def sandbox_available() -> bool:
    """Whether the nginx lab's sandbox can be used here (bwrap works and we are not already
    inside a sandbox that forbids making namespaces, such as a grading kernel's).

    Asks :mod:`deploylab.grading.sandbox`'s probes directly: its ``check_available`` raises
    an error class whose module loads nbformat, seconds of start-up in a kernel. A grading
    kernel cannot even import that module (it sees only the package files its setup cells
    need), which also means no sandbox here.
    """
    try:
        from deploylab.grading import sandbox
    except ImportError:
        return False

    bwrap = sandbox._bwrap_path()
    if bwrap is None:
        return False
    return sandbox._privileged_mode() or not sandbox._probe(bwrap, privileged=False)


def run_job(job: dict, *, sandboxed: bool = True) -> dict:
    """Run ``job`` (see :mod:`deploylab.nginx_lab.harness`) and return the harness's result.

    Sandboxed jobs go to this process's :class:`Session` (started on first use, restarted
    after a job that failed or ran out of time). ``sandboxed=False`` runs the harness in a
    thread of this process on the real loopback (the lesson helper on a learner's own
    machine, where the ports must then be free ones). Raises :class:`HarnessFailed` when no
    result comes back.
    """
    job = dict(job)
    job["token"] = secrets.token_hex(16)
    timeout = float(job.get("deadline", 8)) + _GRACE
    if sandboxed:
        with _SESSION_LOCK:
            global _SESSION
            if _SESSION is None or not _SESSION.alive():
                _SESSION = Session()
            try:
                return _SESSION.run(job, timeout)
            except HarnessFailed:
                _SESSION.close()
                _SESSION = None
                raise
    # Unsandboxed: run the harness in a thread of this process (no Python to start; the
    # lesson helper on a learner's machine), nginx itself still a child process.
    from deploylab.nginx_lab import harness

    prefix = Path(tempfile.mkdtemp(prefix="deploylab-nginx-lab-"))
    answer: list[str] = []
    try:
        job["prefix"] = str(prefix)
        worker = threading.Thread(target=lambda: answer.append(harness.run_one(job)), daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive() or not answer:
            raise HarnessFailed(f"the nginx lab harness did not finish within {timeout:g} s")
        return _parse(answer[0][len(job["token"]) :])
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def warm_up() -> None:
    """Start this process's sandbox session now, without waiting for it, if the sandbox can
    be used here, so that the first check finds it ready (the lab's setup cell calls this;
    in a grading kernel, where no sandbox can be made, it does nothing)."""
    global _SESSION
    if not sandbox_available():
        return
    with _SESSION_LOCK:
        if _SESSION is None or not _SESSION.alive():
            with contextlib.suppress(HarnessFailed):
                _SESSION = Session()


class Session:
    """One lab sandbox with the harness in it, running jobs one after another.

    Starting a sandbox and a Python inside it costs far more than a job (about 0.3 s against
    0.1 s here, more on a busy machine), so a grading run keeps one per trusted-test process.
    It holds nothing on the host: the harness works in the sandbox's private ``/tmp``, the
    (empty) scratch directory bwrap needs is removed as soon as the sandbox has mounted it,
    and the sandbox dies with this process (``--die-with-parent``), however it ends.
    """

    def __init__(self) -> None:
        from deploylab.grading import sandbox

        try:
            sandbox.check_available()
        except Exception as error:
            raise HarnessFailed(f"the nginx lab sandbox is not available: {error}") from None
        limits = sandbox_limits()
        self._etc = Path(tempfile.mkdtemp(prefix="deploylab-nginx-etc-"))
        scratch = Path(tempfile.mkdtemp(prefix="dl-nginx-"))
        hosts = self._etc / "hosts"
        hosts.write_text(_HOSTS)
        os.chmod(self._etc, 0o755)
        os.chmod(hosts, 0o644)
        handle = sandbox.prepare(scratch, limits)
        # rlimits bound each process; the few processes here (harness, nginx master and
        # worker, nginx -t) need no control group, which would outlive a killed grader.
        for directory in handle.cgroups:
            sandbox.remove_cgroup(directory)
        handle.cgroups = []
        handle.mount_proc = False
        handle.read_only_files.append((str(hosts), "/etc/hosts"))
        if _MIME_TYPES.is_file():
            handle.read_only_files.append((str(_MIME_TYPES), str(_MIME_TYPES)))
        command = handle.command(
            [sys.executable, "-I", "-m", "deploylab.nginx_lab.harness", "--serve"]
        )
        # Started from the calling thread: bwrap's --die-with-parent follows the thread
        # that started it, so a helper thread would take the sandbox down when it ends.
        self._scratch = scratch
        self._buffer = b""
        self._ready = False
        try:
            self.process = _popen(command, env=handle.environment(), pass_fds=handle.pass_fds())
            self._to_harness, self._from_harness = _pipes(self.process)
        except BaseException:
            self._forget_files()
            raise
        finally:
            handle.close()

    def _forget_files(self) -> None:
        with contextlib.suppress(OSError):
            self._scratch.rmdir()
        shutil.rmtree(self._etc, ignore_errors=True)

    def _wait_until_ready(self) -> None:
        if self._ready:
            return
        try:
            ready = self._read_line(30)
        finally:
            self._forget_files()  # mounted by now (or never will be)
        if ready != "ready":
            raise HarnessFailed(f"the nginx lab sandbox did not start (it said {ready[:200]!r})")
        self._ready = True

    def alive(self) -> bool:
        return self.process.poll() is None

    def _read_line(self, timeout: float) -> str:
        import selectors

        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self._from_harness, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise HarnessFailed(
                        f"the nginx lab harness did not answer within {timeout:g} s"
                    )
                if not selector.select(remaining):
                    continue
                chunk = os.read(self._from_harness.fileno(), 1 << 16)
                if not chunk:
                    raise HarnessFailed("the nginx lab sandbox stopped")
                self._buffer += chunk
                if len(self._buffer) > MAX_RESULT_BYTES:
                    raise HarnessFailed("the nginx lab harness answered too much")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", "replace")

    def run(self, job: dict, timeout: float) -> dict:
        """Send ``job``, return its result (:class:`HarnessFailed` if none comes in time)."""
        self._wait_until_ready()
        try:
            self._to_harness.write((json.dumps(job) + "\n").encode())
            self._to_harness.flush()
        except OSError:
            raise HarnessFailed("the nginx lab sandbox stopped") from None
        line = self._read_line(timeout)
        if not line.startswith(job["token"]):
            raise HarnessFailed("the nginx lab harness answered out of turn")
        return _parse(line[len(job["token"]) :])

    def close(self) -> None:
        """Kill the sandbox (bwrap's process group; its pid namespace takes the rest)."""
        process = getattr(self, "process", None)
        self._forget_files()
        if process is not None:
            _kill(process)
            for stream in (process.stdin, process.stdout):
                with contextlib.suppress(OSError):
                    stream.close()


_SESSION: Session | None = None
_SESSION_LOCK = threading.Lock()


@atexit.register
def _close_session() -> None:
    if _SESSION is not None:
        _SESSION.close()


def _parse(text: str) -> dict:
    try:
        result = json.loads(text)
    except ValueError:
        raise HarnessFailed("the nginx lab harness answered something that is not JSON") from None
    if type(result) is not dict:
        raise HarnessFailed("the nginx lab harness answered something that is not an object")
    if "harness_error" in result:
        raise HarnessFailed(f"the nginx lab harness failed: {result['harness_error']}")
    return result


def _plain_environment() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR")
    }


def _popen(command: list[str], **options) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        **options,
    )


def _pipes(process: subprocess.Popen) -> tuple[IO[bytes], IO[bytes]]:
    """The harness's stdin and stdout (``_popen`` always makes both pipes)."""
    if process.stdin is None or process.stdout is None:
        raise HarnessFailed("the nginx lab sandbox was started without its pipes")
    return process.stdin, process.stdout


def _kill(process: subprocess.Popen) -> None:
    """Kill the harness (or bwrap, whose pid namespace takes everything inside along) by its
    process group, which it leads, and reap it."""
    if process.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        process.wait(timeout=5)
