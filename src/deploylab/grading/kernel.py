"""The grading kernel: a jupyter_client manager whose command is ours (optionally wrapped by
the sandbox), with bounded messages, a quiet environment and a shutdown that never waits.

:mod:`deploylab.grading.execute` drives it; nothing here knows about cells or tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager

#: Unix socket paths are limited to 107 bytes; ``<prefix>-<n>`` must fit.
MAX_SOCKET_PREFIX = 96


class BoundedContext(zmq.asyncio.Context):
    """A ZeroMQ context whose sockets drop any single message above a size (a kernel that
    prints a gigabyte in one go cannot make the grader hold it in memory)."""

    max_message_bytes = 16 * 1024 * 1024

    def socket(self, *args: Any, **kwargs: Any) -> Any:
        sock = super().socket(*args, **kwargs)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        return sock


class GradingKernelClient(AsyncKernelClient):
    """jupyter_client's client, minus the fixed 0.2 s "flush IOPub" wait at start-up (nbclient
    matches outputs to their request, so stale start-up messages are ignored anyway)."""

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout if timeout is not None else 60)
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=0.5)
            except Empty:
                pass
            else:
                if reply["msg_type"] == "kernel_info_reply":
                    # IOPub is connected once it delivers the kernel's status messages.
                    try:
                        await self.iopub_channel.get_msg(timeout=0.2)
                    except Empty:
                        pass
                    else:
                        self._handle_kernel_info_reply(reply)
                        return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout} seconds")


class GradingKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel command is ours (optionally wrapped by the sandbox)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._command_wrapper: Any = None
        self.max_message_bytes = BoundedContext.max_message_bytes
        self.client_factory = GradingKernelClient
        # "message" interrupts go over the control channel: a signal to bwrap would not reach
        # the kernel inside its own session and pid namespace.
        self._grading_spec = KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python 3 (deploylab grading)",
            language="python",
            interrupt_mode="message",
        )

    def client(self, **kwargs: Any) -> Any:
        context = BoundedContext()
        context.max_message_bytes = self.max_message_bytes
        kwargs.setdefault("context", context)
        kernel_client = super().client(**kwargs)
        kernel_client._created_context = True  # destroyed with the client's channels
        return kernel_client

    @property
    def kernel_spec(self) -> KernelSpec:
        return self._grading_spec

    @property
    def ipykernel(self) -> bool:
        return True

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        command = [*self._grading_spec.argv, *(extra_arguments or [])]
        command = [part.replace("{connection_file}", self.connection_file) for part in command]
        if self._command_wrapper is not None:
            command = self._command_wrapper(command)
        return command


async def receive_message(channel: Any) -> dict | None:
    """The next message of ``channel``; ``None`` for one that does not deserialize."""
    try:
        return await channel.get_msg(timeout=0)
    except Empty:
        return None
    except Exception:
        return None


def socket_prefix(scratch_dir: Path) -> tuple[str, Path | None]:
    """Path prefix for the kernel's ipc sockets, in ``scratch_dir`` (via a short link if long)."""
    prefix = scratch_dir / "kernel"
    if len(str(prefix)) <= MAX_SOCKET_PREFIX:
        return str(prefix), None
    link_dir = Path(tempfile.mkdtemp(prefix="deploylab-ipc-"))
    link = link_dir / "s"
    link.symlink_to(scratch_dir)
    return str(link / "kernel"), link_dir


#: Why a sandboxed kernel usually gets each signal.
SIGNAL_REASONS = {
    "SIGXCPU": "CPU time limit",
    "SIGXFSZ": "file size limit",
    "SIGKILL": "killed: memory or a limit",
    "SIGSEGV": "segmentation fault",
    "SIGABRT": "aborted",
    "SIGBUS": "bus error",
}


#: Environment for every grading kernel: no writes to the user's IPython/matplotlib dirs,
#: no parallel BLAS threads, no bytecode files in the scratch directory.
QUIET_KERNEL_ENV = {
    "PYTHONDONTWRITEBYTECODE": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MPLBACKEND": "agg",
    "JUPYTER_PLATFORM_DIRS": "1",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    # Lesson helpers that only show things (deploylab.nginx_lab.try_site) skip their work.
    "DEPLOYLAB_GRADING": "1",
}


def sandbox_process_count(manager: GradingKernelManager, *, sandboxed: bool) -> int:
    """Processes the kernel started that are still alive (bwrap's own two not counted)."""
    import psutil

    process = getattr(getattr(manager, "provisioner", None), "process", None)
    if process is None or process.poll() is not None:
        return 0
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        return 0
    # sandboxed: bwrap (monitor) -> bwrap (pid 1) -> kernel -> ...; plain: kernel -> ...
    return max(0, len(descendants) - (2 if sandboxed else 0))


def exit_code(manager: GradingKernelManager) -> int | None:
    provisioner = getattr(manager, "provisioner", None)
    process = getattr(provisioner, "process", None)
    if process is None:
        return None
    return process.poll()


async def shutdown_kernel(client: Any, manager: GradingKernelManager) -> None:
    """Stop the kernel and its channels; never raises (the kernel may already be gone)."""
    try:
        if client is not None:
            client.stop_channels()
    except Exception:
        pass
    # Grading never needs a polite shutdown: kill the process group (bwrap's, whose death
    # takes the whole pid namespace along) and reap it, faster than jupyter_client's polling.
    provisioner = getattr(manager, "provisioner", None)
    process = getattr(provisioner, "process", None)
    if process is not None and process.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            process.kill()
        for _ in range(400):
            if process.poll() is not None:
                break
            await asyncio.sleep(0.005)
    try:
        if process is not None and process.poll() is not None:
            pass  # dead and reaped: only the files and sockets are left to clean up
        elif manager.has_kernel:
            await manager.shutdown_kernel(now=True)
    except Exception:
        with contextlib.suppress(Exception):
            await manager._async_kill_kernel()
    with contextlib.suppress(Exception):
        await manager._async_cleanup_resources()
