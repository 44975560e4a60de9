"""Run one student notebook to the end and say honestly how it went.

:func:`run_notebook` executes every cell (errors do not stop the run: grading needs every test
cell to run), inside a bubblewrap sandbox by default (:mod:`deploylab.grading.sandbox`), with a
per-cell and a per-notebook time limit and bounded output. It never raises because of what the
student's code does: it returns an :class:`ExecutionOutcome` whose ``status`` is one of
``graded``, ``timed out``, ``kernel died`` or ``needs review``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

import nbformat
import zmq
import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode

__all__ = [
    "STATUSES",
    "ExecutionOutcome",
    "KernelStartError",
    "Limits",
    "SandboxUnavailableError",
    "run_notebook",
]

GRADED = "graded"
TIMED_OUT = "timed out"
KERNEL_DIED = "kernel died"
NEEDS_REVIEW = "needs review"
#: Every status :func:`run_notebook` can return, most severe first.
STATUSES = (KERNEL_DIED, TIMED_OUT, NEEDS_REVIEW, GRADED)

#: Unix socket paths are limited to 107 bytes; ``<prefix>-<n>`` must fit.
_MAX_SOCKET_PREFIX = 96


class SandboxUnavailableError(RuntimeError):
    """Grading with the sandbox was asked for but bubblewrap cannot be used here."""


class KernelStartError(RuntimeError):
    """The kernel did not start (before any student code ran): a grader problem, not a student's."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for one notebook's kernel (and everything it starts).

    ``memory_bytes`` is the address-space limit of each process and, where the host lets the
    grader make control groups, the memory of the whole sandbox; ``cpu_seconds`` the CPU time
    of each process (SIGXCPU, then SIGKILL a second later); ``max_processes`` the processes and
    threads of the sandbox user; ``max_output_bytes`` the output kept per cell (errors are
    always kept); ``max_file_bytes`` the largest file the notebook may write; ``tmp_bytes`` the
    size of its private ``/tmp``. Only ``max_output_bytes`` applies without the sandbox.
    """

    memory_bytes: int = 1536 * 1024 * 1024
    cpu_seconds: int = 120
    max_processes: int = 64
    max_output_bytes: int = 256 * 1024
    max_file_bytes: int = 64 * 1024 * 1024
    max_open_files: int = 256
    tmp_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in (
            "memory_bytes",
            "cpu_seconds",
            "max_processes",
            "max_output_bytes",
            "max_file_bytes",
            "max_open_files",
            "tmp_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive integer, not {value!r}")


@dataclass
class ExecutionOutcome:
    """What happened when a notebook ran.

    ``notebook`` is the executed notebook (outputs filled in, injected integrity cells removed);
    ``status`` one of :data:`STATUSES`; ``detail`` a sentence for people; ``tamper`` the
    integrity findings (non-empty means ``needs review`` unless the kernel died or timed out).
    """

    notebook: NotebookNode
    status: str
    detail: str = ""
    tamper: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timed_out_cells: list[int] = field(default_factory=list)
    sandboxed: bool = False


def run_notebook(
    notebook: NotebookNode,
    scratch_dir: Path,
    *,
    sandbox: bool = True,
    cell_timeout: float = 30,
    notebook_timeout: float = 300,
    limits: Limits | None = None,
) -> ExecutionOutcome:
    """Execute ``notebook`` with its kernel's working directory in ``scratch_dir``.

    ``notebook`` is not modified; the outcome holds an executed copy. With ``sandbox=True`` the
    kernel runs under bubblewrap (no network, unprivileged user, only ``scratch_dir``
    writable); :class:`SandboxUnavailableError` is raised when bwrap is missing. The kernel gets
    ``cell_timeout`` seconds per cell (then it is interrupted and the next cell runs) and
    ``notebook_timeout`` seconds in all (then it is killed). :class:`KernelStartError` means the
    kernel never started (no student code ran): a problem of the grading machine.
    """
    limits = limits or Limits()
    if cell_timeout <= 0 or notebook_timeout <= 0:
        raise ValueError(
            f"timeouts must be positive, not cell_timeout={cell_timeout!r}, "
            f"notebook_timeout={notebook_timeout!r}"
        )
    if sandbox:
        from deploylab.grading import sandbox as sandbox_module

        sandbox_module.check_available()
    scratch_dir = Path(scratch_dir).resolve()
    scratch_dir.mkdir(parents=True, exist_ok=True)
    runner = _Runner(
        copy.deepcopy(notebook), scratch_dir, sandbox, cell_timeout, notebook_timeout, limits
    )
    return _run_coroutine(runner.run())


def _run_coroutine(coroutine: Any) -> Any:
    """Run ``coroutine`` to completion, also from code that already has a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coroutine)
        except BaseException as error:  # re-raised in the caller's thread
            result["error"] = error

    thread = threading.Thread(target=target, name="deploylab-run-notebook")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


class _BoundedContext(zmq.asyncio.Context):
    """A ZeroMQ context whose sockets drop any single message above a size (a kernel that
    prints a gigabyte in one go cannot make the grader hold it in memory)."""

    max_message_bytes = 16 * 1024 * 1024

    def socket(self, *args: Any, **kwargs: Any) -> Any:
        sock = super().socket(*args, **kwargs)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        return sock


class _GradingKernelClient(AsyncKernelClient):
    """jupyter_client's client, minus the fixed 0.2 s "flush IOPub" wait at start-up (nbclient
    matches outputs to their request, so stale start-up messages are ignored anyway)."""

    async def wait_for_ready(self, timeout: float | None = None) -> None:  # type: ignore[override]
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


class _GradingKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel command is ours (optionally wrapped by the sandbox)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._command_wrapper: Any = None
        self.max_message_bytes = _BoundedContext.max_message_bytes
        self.client_factory = _GradingKernelClient
        # "message" interrupts go over the control channel: a signal to bwrap would not reach
        # the kernel inside its own session and pid namespace.
        self._grading_spec = KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python 3 (deploylab grading)",
            language="python",
            interrupt_mode="message",
        )

    def client(self, **kwargs: Any) -> Any:
        context = _BoundedContext()
        context.max_message_bytes = self.max_message_bytes
        kwargs.setdefault("context", context)
        kernel_client = super().client(**kwargs)
        kernel_client._created_context = True  # destroyed with the client's channels
        return kernel_client

    @property
    def kernel_spec(self) -> KernelSpec:  # type: ignore[override]
        return self._grading_spec

    @property
    def ipykernel(self) -> bool:  # type: ignore[override]
        return True

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        command = [*self._grading_spec.argv, *(extra_arguments or [])]
        command = [part.replace("{connection_file}", self.connection_file) for part in command]
        if self._command_wrapper is not None:
            command = self._command_wrapper(command)
        return command


_MAX_ERRORS_PER_CELL = 3
_MAX_COMMS = 100


class _GradingClient(NotebookClient):
    """nbclient with bounded output and a record of which cells timed out."""

    def __init__(self, nb: NotebookNode, *, max_output_bytes: int, **kwargs: Any) -> None:
        super().__init__(nb, **kwargs)
        self.max_output_bytes = max_output_bytes
        self.timed_out_cells: list[int] = []
        self.current_cell_index: int | None = None
        self._cell_output_bytes: dict[int, int] = {}
        self._truncated_cells: set[int] = set()
        self._cell_errors: dict[int, int] = {}

    async def _async_handle_timeout(self, timeout: int, cell: NotebookNode | None = None) -> Any:
        if self.current_cell_index is not None and (
            self.current_cell_index not in self.timed_out_cells
        ):
            self.timed_out_cells.append(self.current_cell_index)
        return await super()._async_handle_timeout(timeout, cell)

    def handle_comm_msg(self, outs: list, msg: dict, cell_index: int) -> None:
        # Widget traffic is not graded; only a bounded number of Output widgets are mimicked.
        if (
            len(self.comm_objects) < _MAX_COMMS
            or msg["content"].get("comm_id") in self.comm_objects
        ):
            super().handle_comm_msg(outs, msg, cell_index)

    def output(self, outs: list, msg: dict, display_id: str | None, cell_index: int) -> Any:
        output_type = msg["msg_type"]
        if output_type == "error":
            # One error fails the cell; a loop that displays tracebacks cannot fill memory.
            errors = self._cell_errors.get(cell_index, 0)
            self._cell_errors[cell_index] = errors + 1
            if errors >= _MAX_ERRORS_PER_CELL:
                return None
            content = msg["content"]
            content["traceback"] = _bounded_traceback(
                content.get("traceback", []), self.max_output_bytes
            )
            return super().output(outs, msg, display_id, cell_index)
        size = _message_size(msg["content"])
        used = self._cell_output_bytes.get(cell_index, 0)
        if used + size <= self.max_output_bytes:
            self._cell_output_bytes[cell_index] = used + size
            return super().output(outs, msg, display_id, cell_index)
        if output_type == "stream" and used < self.max_output_bytes:
            # Keep what still fits of this stream message, then stop.
            room = self.max_output_bytes - used
            msg["content"]["text"] = msg["content"].get("text", "")[:room]
            self._cell_output_bytes[cell_index] = self.max_output_bytes
            super().output(outs, msg, display_id, cell_index)
        if cell_index not in self._truncated_cells:
            self._truncated_cells.add(cell_index)
            note = {
                "msg_type": "stream",
                "header": msg["header"],
                "parent_header": msg.get("parent_header", {}),
                "content": {
                    "name": "stdout",
                    "text": f"\n[output truncated: more than {self.max_output_bytes} bytes]\n",
                },
            }
            return super().output(outs, note, None, cell_index)
        return None

    async def _check_raise_for_error(
        self, cell: NotebookNode, cell_index: int, exec_reply: dict | None
    ) -> None:
        # The reply says whether the cell failed, whatever the kernel chose to display: an
        # error that produced no error output (a patched traceback display) still fails.
        content = (exec_reply or {}).get("content", {})
        if content.get("status") in ("error", "aborted") and not any(
            output.get("output_type") == "error" for output in cell.get("outputs", [])
        ):
            cell.setdefault("outputs", []).append(
                nbformat.v4.new_output(
                    "error",
                    ename=str(content.get("ename", "Error")),
                    evalue=str(content.get("evalue", content.get("status"))),
                    traceback=[],
                )
            )
            cell.setdefault("metadata", {}).setdefault("deploylab", {})["hidden_error"] = True
        return await super()._check_raise_for_error(cell, cell_index, exec_reply)


def _message_size(content: dict) -> int:
    if "text" in content:
        return len(content["text"])
    data = content.get("data") or {}
    return sum(len(value) if isinstance(value, str) else len(str(value)) for value in data.values())


def _bounded_traceback(traceback: list[str], limit: int) -> list[str]:
    """The last frames of ``traceback`` that fit in ``limit`` bytes (the error line is last)."""
    kept: list[str] = []
    used = 0
    for line in reversed(traceback):
        if used + len(line) > limit:
            kept.append(line[-max(0, limit - used) :] if not kept else "[traceback truncated]")
            break
        kept.append(line)
        used += len(line)
    return list(reversed(kept))


def _socket_prefix(scratch_dir: Path) -> tuple[str, Path | None]:
    """Path prefix for the kernel's ipc sockets, in ``scratch_dir`` (via a short link if long)."""
    prefix = scratch_dir / "kernel"
    if len(str(prefix)) <= _MAX_SOCKET_PREFIX:
        return str(prefix), None
    link_dir = Path(tempfile.mkdtemp(prefix="deploylab-ipc-"))
    link = link_dir / "s"
    link.symlink_to(scratch_dir)
    return str(link / "kernel"), link_dir


@dataclass
class _Runner:
    notebook: NotebookNode
    scratch_dir: Path
    sandbox: bool
    cell_timeout: float
    notebook_timeout: float
    limits: Limits

    async def run(self) -> ExecutionOutcome:
        started = time.monotonic()
        from deploylab.grading import integrity

        plan = integrity.instrument(self.notebook, nonce=secrets.token_hex(16))
        client_notebook = plan.notebook
        socket_prefix, link_dir = _socket_prefix(self.scratch_dir)
        sandbox_handle = None
        manager = _GradingKernelManager(
            transport="ipc",
            ip=socket_prefix,
            connection_file=str(self.scratch_dir / ".kernel.json"),
        )
        manager.max_message_bytes = max(16 * 1024 * 1024, 4 * self.limits.max_output_bytes)
        if self.sandbox:
            from deploylab.grading import sandbox as sandbox_module

            sandbox_handle = sandbox_module.prepare(
                self.scratch_dir,
                self.limits,
                socket_link=None if link_dir is None else link_dir / "s",
            )
            handle = sandbox_handle

            def wrapper(command: list[str]) -> list[str]:
                return handle.command(command, connection_file=manager.connection_file)

            manager._command_wrapper = wrapper
        client = _GradingClient(
            client_notebook,
            km=manager,
            max_output_bytes=self.limits.max_output_bytes,
            timeout=self.cell_timeout,
            startup_timeout=60,
            allow_errors=True,
            interrupt_on_timeout=True,
            record_timing=False,
            iopub_timeout=4,
            shutdown_kernel="immediate",
            store_widget_state=False,
            extra_arguments=[
                "--HistoryManager.enabled=False",
                "--IPKernelApp.capture_fd_output=False",
            ],
        )
        status, detail = GRADED, ""
        kernel_events: list[str] = []
        # The kernel's own stdout/stderr (not the notebook's outputs): start-up errors, and
        # anything a student writes straight to file descriptors 1 and 2.
        kernel_log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
        try:
            try:
                await client.async_start_new_kernel(
                    cwd=str(self.scratch_dir),
                    env=self._kernel_env(sandbox_handle),
                    stdout=kernel_log,
                    stderr=subprocess.STDOUT,
                    pass_fds=() if sandbox_handle is None else sandbox_handle.pass_fds(),
                )
                await client.async_start_new_kernel_client()
            except Exception as error:
                await _shutdown(client)
                kernel_log.seek(0)
                said = kernel_log.read()[-2000:].decode(errors="replace").strip()
                raise KernelStartError(
                    f"the grading kernel did not start: {error}" + (f"\n{said}" if said else "")
                ) from error
            # Not asyncio.wait_for: nbclient turns the cancellation into DeadKernelError.
            running = asyncio.ensure_future(self._execute_cells(client, plan))
            done, _ = await asyncio.wait({running}, timeout=self.notebook_timeout)
            if running not in done:
                status = TIMED_OUT
                detail = f"the notebook ran longer than {self.notebook_timeout:g} s and was stopped"
                running.cancel()
                with contextlib.suppress(BaseException):
                    await running
            else:
                try:
                    running.result()
                except DeadKernelError:
                    status = KERNEL_DIED
                    detail = self._death_detail(manager, client, plan)
                    if sandbox_handle is not None and sandbox_handle.memory_limit_hit():
                        detail += f"; the sandbox reached its {self.limits.memory_bytes >> 20} MiB memory limit"
            leftover = _sandbox_process_count(manager, sandboxed=self.sandbox)
            if leftover >= _LEFTOVER_PROCESS_LIMIT:
                kernel_events.append(
                    f"{leftover} processes were still running at the end (a fork bomb?)"
                )
        finally:
            await _shutdown(client)
            kernel_log.close()
            if link_dir is not None:
                shutil.rmtree(link_dir, ignore_errors=True)
            if sandbox_handle is not None:
                sandbox_handle.close()
        tamper = (
            plan.findings(client.nb) if status == GRADED else plan.findings(client.nb, partial=True)
        )
        tamper = [*kernel_events, *tamper]
        if status == GRADED and client.timed_out_cells:
            status = TIMED_OUT
            cells = ", ".join(str(index) for index in plan.original_indices(client.timed_out_cells))
            if cells:
                detail = (
                    f"cell(s) {cells} ran longer than {self.cell_timeout:g} s and were interrupted"
                )
            else:
                detail = f"an integrity check ran longer than {self.cell_timeout:g} s"
            if any(plan.is_injected(index) for index in client.timed_out_cells):
                tamper.append("an integrity check did not finish (the kernel was changed?)")
        if status == GRADED and tamper:
            status = NEEDS_REVIEW
            detail = "integrity check: " + "; ".join(tamper)
        return ExecutionOutcome(
            notebook=plan.restore(client.nb),
            status=status,
            detail=detail,
            tamper=tamper,
            seconds=time.monotonic() - started,
            timed_out_cells=plan.original_indices(client.timed_out_cells),
            sandboxed=self.sandbox,
        )

    async def _execute_cells(self, client: _GradingClient, plan: Any) -> None:
        count = 0
        for index, cell in enumerate(client.nb.cells):
            client.current_cell_index = index
            if plan.is_injected(index):
                await client.async_execute_cell(cell, index, store_history=False)
                continue
            if cell.get("cell_type") == "code" and cell.source.strip():
                count += 1
            await client.async_execute_cell(cell, index, execution_count=count)
        client.current_cell_index = None

    def _kernel_env(self, sandbox_handle: Any) -> dict[str, str]:
        if sandbox_handle is not None:
            return sandbox_handle.environment()
        environment = dict(os.environ)
        environment.update(_QUIET_KERNEL_ENV)
        return environment

    def _death_detail(
        self, manager: _GradingKernelManager, client: _GradingClient, plan: Any
    ) -> str:
        index = client.current_cell_index
        where = ""
        if index is not None:
            if plan.is_injected(index):
                where = " during an integrity check"
            else:
                where = f" while running cell {plan.original_indices([index])[0]}"
        code = _exit_code(manager)
        if code is None:
            return f"the kernel died{where}"
        if code < 0 or code > 128:
            number = -code if code < 0 else code - 128
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = f"signal {number}"
            reason = _SIGNAL_REASONS.get(name, "a crash or a kill")
            return f"the kernel was killed by {name}{where} ({reason})"
        return f"the kernel exited with status {code}{where} (os._exit, exit() or a crash)"


#: Why a sandboxed kernel usually gets each signal.
_SIGNAL_REASONS = {
    "SIGXCPU": "CPU time limit",
    "SIGXFSZ": "file size limit",
    "SIGKILL": "killed: memory or a limit",
    "SIGSEGV": "segmentation fault",
    "SIGABRT": "aborted",
    "SIGBUS": "bus error",
}


#: Environment for every grading kernel: no writes to the user's IPython/matplotlib dirs,
#: no parallel BLAS threads, no bytecode files in the scratch directory.
_QUIET_KERNEL_ENV = {
    "PYTHONDONTWRITEBYTECODE": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MPLBACKEND": "agg",
    "JUPYTER_PLATFORM_DIRS": "1",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}


#: A notebook that leaves this many processes behind is flagged for review.
_LEFTOVER_PROCESS_LIMIT = 8


def _sandbox_process_count(manager: _GradingKernelManager, *, sandboxed: bool) -> int:
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


def _exit_code(manager: _GradingKernelManager) -> int | None:
    provisioner = getattr(manager, "provisioner", None)
    process = getattr(provisioner, "process", None)
    if process is None:
        return None
    return process.poll()


async def _shutdown(client: _GradingClient) -> None:
    """Stop the kernel and its channels; never raises (the kernel may already be gone)."""
    manager = client.km
    try:
        if client.kc is not None:
            client.kc.stop_channels()
    except Exception:
        pass
    if manager is None:
        return
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
