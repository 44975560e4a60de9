"""Run one student notebook to the end and say honestly how it went.

:func:`run_notebook` executes the student's cells (their answers, their own cells and the
instructor's setup cells) in a kernel inside a bubblewrap sandbox by default
(:mod:`deploylab.grading.sandbox`), and the instructor's test cells in a separate trusted
process (:mod:`deploylab.grading.trusted_tests`) that reaches the student's functions only
through plain-data calls (:mod:`deploylab.grading.call_loop`, :mod:`deploylab.grading.plain_data`).
Nothing the student's code does inside its kernel can change how a test runs or what it
scores: the test code, the expected values and the points never enter that kernel.

Every cell has a time limit that holds however it runs long (a busy loop, a huge reply, a
kernel that stops answering): the cell is interrupted, and the kernel killed if it will not
stop. The notebook has a limit in all. Outputs kept are bounded and are text or PNG only.
It never raises because of what the student's code does: it returns an
:class:`ExecutionOutcome` whose ``status`` is one of ``graded``, ``timed out``,
``kernel died`` or ``needs review`` and whose ``tests`` say what each test cell earned.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import os
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
from nbformat import NotebookNode

__all__ = [
    "STATUSES",
    "ExecutionOutcome",
    "KernelStartError",
    "Limits",
    "SandboxUnavailableError",
    "TestOutcome",
    "cell_role",
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
    always kept) and ``max_notebook_output_bytes`` in all the notebook's cells (many cells of
    a full cell's output each cannot fill the grader's memory and the autograded notebook); ``max_file_bytes`` the largest file the notebook may write; ``tmp_bytes`` the
    size of its private ``/tmp`` and of its scratch directory, which holds at most
    ``max_scratch_files`` files where the grader may mount a tmpfs (as root). Only
    ``max_output_bytes`` applies without the sandbox.
    """

    memory_bytes: int = 1536 * 1024 * 1024
    cpu_seconds: int = 120
    max_processes: int = 64
    max_output_bytes: int = 256 * 1024
    max_notebook_output_bytes: int = 4 * 1024 * 1024
    max_file_bytes: int = 64 * 1024 * 1024
    max_open_files: int = 256
    tmp_bytes: int = 64 * 1024 * 1024
    max_scratch_files: int = 4096

    def __post_init__(self) -> None:
        for name in (
            "memory_bytes",
            "cpu_seconds",
            "max_processes",
            "max_output_bytes",
            "max_notebook_output_bytes",
            "max_file_bytes",
            "max_open_files",
            "tmp_bytes",
            "max_scratch_files",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive integer, not {value!r}")


@dataclass
class ExecutionOutcome:
    """What happened when a notebook ran.

    ``notebook`` is the executed notebook (student cells with their bounded text outputs,
    test cells with the trusted verdict only); ``status`` one of :data:`STATUSES`;
    ``detail`` a sentence for people (which cell, which signal, which limit); ``tests`` maps
    each test cell's grade_id to its :class:`TestOutcome`, in notebook order.
    """

    notebook: NotebookNode
    status: str
    detail: str = ""
    seconds: float = 0.0
    timed_out_cells: list[int] = field(default_factory=list)
    sandboxed: bool = False
    tests: dict[str, TestOutcome] = field(default_factory=dict)


def run_notebook(
    notebook: NotebookNode,
    scratch_dir: Path,
    *,
    sandbox: bool = True,
    cell_timeout: float = 30,
    notebook_timeout: float = 300,
    limits: Limits | None = None,
    trusted_dir: Path | None = None,
    package_modules: tuple[str, ...] | None = None,
) -> ExecutionOutcome:
    """Execute ``notebook`` with its kernel's working directory in ``scratch_dir``.

    ``notebook`` is not modified; the outcome holds an executed copy. With ``sandbox=True`` the
    kernel runs under bubblewrap (no network, unprivileged user, only ``scratch_dir``
    writable); :class:`SandboxUnavailableError` is raised when bwrap is missing. Test cells run
    in the trusted process, whose working directory is ``trusted_dir`` (the lab's own folder
    of data files; an empty one by default). Every cell gets ``cell_timeout`` seconds (then it
    is interrupted and the next cell runs) and the notebook ``notebook_timeout`` seconds in
    all. With ``package_modules`` the sandboxed kernel can import only those deploylab modules
    (and what they import): what the lab's setup cells need, not the reference implementation
    the hidden tests compare with. :class:`KernelStartError` means the kernel never started
    (no student code ran): a problem of the grading machine.
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
    with tempfile.TemporaryDirectory(prefix="deploylab-trusted-") as empty:
        runner = _Runner(
            copy.deepcopy(notebook),
            scratch_dir,
            sandbox,
            cell_timeout,
            notebook_timeout,
            limits,
            Path(trusted_dir) if trusted_dir is not None else Path(empty),
            package_modules,
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
#: Output types kept from a student's cell (HTML and JavaScript never reach formgrader).
_KEPT_MIME_TYPES = ("text/plain", "image/png")
#: Seconds an interrupted cell gets to stop before the kernel is killed.
_INTERRUPT_GRACE = 3.0
#: Seconds the trusted tests get beyond a cell's limit to report before they are killed.
_TRUSTED_GRACE = 5.0
_CALL_LOOP = (
    '__import__("deploylab.grading.call_loop", fromlist=["serve"]).serve({path!r}, globals())'
)


class _Deadline(Exception):
    """A cell ran past its time limit."""


class _KernelGone(Exception):
    """The kernel process is no longer running."""


def cell_role(cell: NotebookNode) -> str:
    """Where a cell of the merged notebook runs: ``"test"`` (trusted process only),
    ``"setup"`` (instructor code: kernel and trusted process), ``"student"`` (kernel only)
    or ``"skip"`` (markdown, raw, empty).

    >>> import nbformat.v4 as v4
    >>> test = v4.new_code_cell("assert f(1) == 1")
    >>> test.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True}
    >>> cell_role(test), cell_role(v4.new_code_cell("x = 1")), cell_role(v4.new_markdown_cell("hi"))
    ('test', 'student', 'skip')
    """
    if cell.get("cell_type") != "code" or not str(cell.get("source", "")).strip():
        return "skip"
    meta = cell.get("metadata", {}).get("nbgrader", {})
    if not isinstance(meta, dict) or meta.get("solution"):
        return "student"
    if meta.get("grade"):
        return "test"
    if meta.get("locked"):
        return "setup"
    return "student"


@dataclass
class TestOutcome:
    """What one test cell earned, in the trusted process's words.

    ``outcome`` is ``passed``, ``partly passed``, ``failed``, ``timed out`` or ``not run``;
    ``points`` is ``None`` when the cell did not run; ``message`` is instructor text only.
    """

    outcome: str
    points: float | None
    max_points: float
    message: str = ""
    raw_points: float | None = None

    def to_json(self) -> dict:
        return {
            "outcome": self.outcome,
            "points": self.points,
            "max_points": self.max_points,
            "message": self.message,
        }


class _TrustedProcess:
    """The grader's handle on :mod:`deploylab.grading.trusted_tests` for one notebook."""

    def __init__(self, control_dir: Path, working_dir: Path) -> None:
        self.control_dir = control_dir
        self.working_dir = working_dir
        self.process: asyncio.subprocess.Process | None = None
        self.sockets = 0
        #: setup cells sent so far, replayed if the process has to be restarted
        self.setup_sources: list[str] = []

    async def start(self) -> None:
        limit = [f"--as={TRUSTED_MEMORY_BYTES}", "--"]
        prlimit = shutil.which("prlimit")
        self.process = await asyncio.create_subprocess_exec(
            *([prlimit, *limit] if prlimit else []),
            sys.executable,
            "-I",
            "-m",
            "deploylab.grading.trusted_tests",
            cwd=str(self.working_dir),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={**_trusted_environment()},
            start_new_session=True,
        )
        await self.reply(60)
        for source in self.setup_sources:
            await self.request({"op": "setup", "source": source}, 30, remember=False)

    async def request(self, message: dict, timeout: float, *, remember: bool = True) -> dict:
        assert self.process is not None and self.process.stdin is not None
        if remember and message.get("op") == "setup":
            self.setup_sources.append(message["source"])
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        await self.process.stdin.drain()
        return await self.reply(timeout)

    async def reply(self, timeout: float) -> dict:
        assert self.process is not None and self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError("the trusted test process stopped")
        return json.loads(line)

    def next_socket(self) -> str:
        self.sockets += 1
        return str(self.control_dir / f"calls-{self.sockets}.sock")

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(OSError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.process.wait(), 5)


#: Address space of the trusted test process (it decodes what the student's code returns).
TRUSTED_MEMORY_BYTES = 2 * 1024 * 1024 * 1024


def _trusted_environment() -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "LANG", "LC_ALL", "HOME", "TZ", "SYSTEMROOT")
    }
    environment.update(_QUIET_KERNEL_ENV)
    return environment


@dataclass
class _Runner:
    notebook: NotebookNode
    scratch_dir: Path
    sandbox: bool
    cell_timeout: float
    notebook_timeout: float
    limits: Limits
    trusted_dir: Path
    package_modules: tuple[str, ...] | None = None

    async def run(self) -> ExecutionOutcome:
        started = time.monotonic()
        self.deadline = started + self.notebook_timeout
        if self.sandbox:
            from deploylab.grading import sandbox as sandbox_module

            # The kernel binds its sockets inside its own tmpfs; see _reach_sandboxed_kernel.
            socket_prefix, link_dir = sandbox_module.KERNEL_SOCKET_PREFIX, None
        else:
            socket_prefix, link_dir = _socket_prefix(self.scratch_dir)
        # The trusted tests listen in a directory of the grader's: the kernel sees it
        # read-only (it can connect, but cannot fill it or squat on its names in advance).
        self.call_dir = Path(tempfile.mkdtemp(prefix="dl-calls-"))
        os.chmod(self.call_dir, 0o711)
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
            sandbox_handle.read_only_binds.append(str(self.call_dir))
            if self.package_modules is not None:
                sandbox_handle.package_files = sandbox_module.package_files(
                    tuple(sorted(self.package_modules))
                )
            handle = sandbox_handle

            def wrapper(command: list[str]) -> list[str]:
                return handle.command(command, connection_file=manager.connection_file)

            manager._command_wrapper = wrapper
        self.manager = manager
        self.client: Any = None
        self.trusted = _TrustedProcess(self.call_dir, self.trusted_dir)
        self.tests: dict[str, TestOutcome] = {}
        self.timed_out_cells: list[int] = []
        self.status, self.detail = GRADED, ""
        self.output_used = 0  # bytes of student output kept so far, all cells together
        self.running: str | None = None  # msg_id of the execution in progress
        kernel_log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
        try:
            await asyncio.gather(
                self._start_kernel(sandbox_handle, kernel_log), self.trusted.start()
            )
            await self._run_cells()
            leftover = _sandbox_process_count(manager, sandboxed=self.sandbox)
            if leftover >= _LEFTOVER_PROCESS_LIMIT and self.status == GRADED:
                self.status = NEEDS_REVIEW
                self.detail = f"{leftover} processes were still running at the end (a fork bomb?)"
            if (
                self.status == KERNEL_DIED
                and sandbox_handle is not None
                and sandbox_handle.memory_limit_hit()
            ):
                megabytes = self.limits.memory_bytes >> 20
                self.detail += f"; the sandbox reached its {megabytes} MiB memory limit"
        finally:
            await self.trusted.stop()
            await _shutdown(self.client, manager)
            kernel_log.close()
            if link_dir is not None:
                shutil.rmtree(link_dir, ignore_errors=True)
            shutil.rmtree(self.call_dir, ignore_errors=True)
            if sandbox_handle is not None:
                sandbox_handle.close()
        return ExecutionOutcome(
            notebook=self.notebook,
            status=self.status,
            detail=self.detail,
            seconds=time.monotonic() - started,
            timed_out_cells=self.timed_out_cells,
            sandboxed=self.sandbox,
            tests=self.tests,
        )

    async def _start_kernel(self, sandbox_handle: Any, kernel_log: Any) -> None:
        manager = self.manager
        try:
            await manager.start_kernel(
                cwd=str(self.scratch_dir),
                env=self._kernel_env(sandbox_handle),
                stdout=kernel_log,
                stderr=subprocess.STDOUT,
                pass_fds=() if sandbox_handle is None else sandbox_handle.pass_fds(),
                extra_arguments=[
                    "--HistoryManager.enabled=False",
                    "--IPKernelApp.capture_fd_output=False",
                ],
            )
            if self.sandbox:
                await self._reach_sandboxed_kernel()
            self.client = manager.client()
            self.client.start_channels()
            await self.client.wait_for_ready(timeout=60)
        except Exception as error:
            kernel_log.seek(0)
            said = kernel_log.read()[-2000:].decode(errors="replace").strip()
            raise KernelStartError(
                f"the grading kernel did not start: {error}" + (f"\n{said}" if said else "")
            ) from error

    async def _reach_sandboxed_kernel(self) -> None:
        """Point the manager at the kernel's sockets as seen from outside its sandbox."""
        import psutil

        from deploylab.grading import sandbox as sandbox_module

        process = self.manager.provisioner.process  # bwrap (maybe via the cgroup shell)
        for _ in range(400):
            try:
                inside = psutil.Process(process.pid).children(recursive=True)
            except psutil.Error:
                inside = []
            if inside or process.poll() is not None:
                break
            await asyncio.sleep(0.01)
        if not inside:
            raise RuntimeError("the sandbox did not start")
        self.manager._close_control_socket()
        self.manager.ip = sandbox_module.socket_path_from_outside(
            inside[0].pid, sandbox_module.KERNEL_SOCKET_PREFIX
        )

    async def _run_cells(self) -> None:
        count = 0
        for index, cell in enumerate(self.notebook.cells):
            role = cell_role(cell)
            if role == "skip":
                continue
            if cell.get("cell_type") == "code":
                cell.outputs = []
            if role == "test":
                await self._test_cell(index, cell)
                continue
            count += 1
            cell.execution_count = count
            if self.status in (KERNEL_DIED, TIMED_OUT) and not self._kernel_alive():
                continue
            if role == "setup":
                source = str(cell.source)
                reply = await self._trusted_request({"op": "setup", "source": source}, 30)
                if reply is not None and not reply.get("ok"):
                    cell.outputs.append(
                        _note(
                            f"[this setup cell failed in the trusted tests: {reply.get('error')}]"
                        )
                    )
            await self._kernel_cell(index, cell)

    def _kernel_alive(self) -> bool:
        process = getattr(getattr(self.manager, "provisioner", None), "process", None)
        return process is not None and process.poll() is None

    def _cell_deadline(self) -> float:
        return min(time.monotonic() + self.cell_timeout, self.deadline)

    def _stop_reason(self, index: int, what: str) -> None:
        """Record that the run stopped (kernel died or notebook limit) at cell ``index``."""
        if self.status not in (KERNEL_DIED, TIMED_OUT):
            if not self._kernel_alive():
                self.status, self.detail = KERNEL_DIED, self._death_detail(index, what)
            else:
                self.status = TIMED_OUT
                self.detail = (
                    f"the notebook ran longer than {self.notebook_timeout:g} s and was stopped"
                )

    async def _kernel_cell(self, index: int, cell: NotebookNode) -> None:
        if time.monotonic() >= self.deadline:
            self._stop_reason(index, "")
            return
        room = self.limits.max_notebook_output_bytes - self.output_used
        outputs = _BoundedOutputs(max(0, min(self.limits.max_output_bytes, room)))
        if room < self.limits.max_output_bytes:
            outputs.limit_note = (
                f"[output not kept: the notebook's outputs are over "
                f"{self.limits.max_notebook_output_bytes} bytes in all]"
            )
        try:
            reply = await self._execute(str(cell.source), self._cell_deadline(), outputs)
        except _Deadline:
            outputs.note(f"[stopped: this cell ran longer than {self.cell_timeout:g} s]")
            cell.outputs = outputs.outputs
            self.output_used += outputs.used
            await self._after_deadline(index)
            return
        except _KernelGone:
            cell.outputs = outputs.outputs
            self.output_used += outputs.used
            self._stop_reason(index, f" while running cell {index}")
            return
        cell.outputs = outputs.outputs
        self.output_used += outputs.used
        if reply.get("status") != "ok" and not any(
            output.get("output_type") == "error" for output in cell.outputs
        ):
            # The reply says the cell failed even if the kernel displayed nothing.
            cell.outputs.append(
                _output(
                    "error", ename=str(reply.get("ename", "Error"))[:200], evalue="", traceback=[]
                )
            )

    async def _after_deadline(self, index: int) -> None:
        """A cell ran too long: interrupt it; kill the kernel if it will not stop."""
        if time.monotonic() >= self.deadline:
            self._stop_reason(index, "")
        else:
            self.timed_out_cells.append(index)
            if self.status == GRADED:
                self.status = TIMED_OUT
                self.detail = (
                    f"cell {index} ran longer than {self.cell_timeout:g} s and was interrupted"
                )
        with contextlib.suppress(Exception):
            await self.manager.interrupt_kernel()
        try:
            await self._drain(time.monotonic() + _INTERRUPT_GRACE, msg_id=self.running)
        except (_Deadline, _KernelGone):
            await _shutdown(self.client, self.manager)
            self.client = None

    async def _test_cell(self, index: int, cell: NotebookNode) -> None:
        meta = cell.metadata.get("nbgrader", {})
        grade_id = str(meta.get("grade_id", f"cell-{index}"))
        max_points = _max_points(meta)
        outcome = TestOutcome("not run", None, max_points)
        self.tests[grade_id] = outcome
        if self.client is None or not self._kernel_alive() or time.monotonic() >= self.deadline:
            self._stop_reason(index, "")
            cell.outputs = [_note("[not run: the submission's kernel had stopped]")]
            return
        socket_path = self.trusted.next_socket()
        timeout = max(0.1, self._cell_deadline() - time.monotonic())
        request = {
            "op": "test",
            "source": str(cell.source),
            "points": max_points,
            "timeout": timeout,
            "socket": socket_path,
        }
        listening = await self._trusted_request(request, 30)
        if listening is None or not listening.get("listening"):
            cell.outputs = [_note("[not run: the trusted test process failed]")]
            self.status, self.detail = NEEDS_REVIEW, "grader problem: trusted tests did not start"
            return
        loop_id = self.running = self.client.execute(
            _CALL_LOOP.format(path=socket_path),
            silent=True,
            store_history=False,
            allow_stdin=False,
            stop_on_error=False,
        )
        result_task = asyncio.ensure_future(self._trusted_request(None, timeout + _TRUSTED_GRACE))
        loop_task = asyncio.ensure_future(
            self._drain(time.monotonic() + timeout + _TRUSTED_GRACE, msg_id=loop_id)
        )
        await asyncio.wait({result_task, loop_task}, return_when=asyncio.FIRST_COMPLETED)
        if not result_task.done():
            # The kernel finished (or broke) its side without answering: let the tests
            # know now instead of when their time runs out.
            _hang_up(socket_path)
        result = await result_task
        if not loop_task.done():
            await asyncio.wait({loop_task}, timeout=_INTERRUPT_GRACE)
        if not loop_task.done():
            loop_task.cancel()
            with contextlib.suppress(BaseException):
                await loop_task
            await self._after_deadline(index)
        elif isinstance(loop_task.exception(), _KernelGone):
            self._stop_reason(index, f" while test cell {grade_id} called it")
        elif isinstance(loop_task.exception(), _Deadline):
            await self._after_deadline(index)
        if result is None:
            outcome.outcome, outcome.points = "timed out", None
            outcome.message = f"the test cell did not finish within {self.cell_timeout:g} s"
        else:
            outcome.outcome = str(result.get("outcome"))
            outcome.points = _finite(result.get("points"), max_points)
            outcome.message = str(result.get("message", ""))[:1000]
            outcome.raw_points = _finite(result.get("raw_points"), None)
        if outcome.outcome == "timed out":
            outcome.points = None
            if self.status == GRADED:
                self.status = TIMED_OUT
                self.detail = f"test cell {grade_id}: the submitted code did not answer within {self.cell_timeout:g} s"
        if self.status == KERNEL_DIED and outcome.outcome != "passed":
            outcome.outcome, outcome.points = "not run", None
        cell.outputs = _test_outputs(outcome)

    async def _trusted_request(self, message: dict | None, timeout: float) -> dict | None:
        """One request to the trusted process (``None``: only read its next answer)."""
        try:
            if message is None:
                return await self.trusted.reply(timeout)
            return await self.trusted.request(message, timeout)
        except Exception:
            await self.trusted.stop()
            with contextlib.suppress(Exception):
                await self.trusted.start()
            return None

    async def _execute(self, code: str, deadline: float, outputs: _BoundedOutputs | None) -> dict:
        msg_id = self.client.execute(
            code, silent=False, store_history=True, allow_stdin=False, stop_on_error=False
        )
        self.running = msg_id
        return await self._drain(deadline, msg_id=msg_id, outputs=outputs)

    async def _drain(
        self,
        deadline: float,
        *,
        msg_id: str | None,
        outputs: _BoundedOutputs | None = None,
    ) -> dict:
        """Read the kernel's messages until ``msg_id`` has replied and gone idle;
        :class:`_Deadline` past ``deadline``, :class:`_KernelGone` if the kernel died."""
        if self.client is None:
            raise _KernelGone
        shell, iopub = self.client.shell_channel, self.client.iopub_channel
        poller = zmq.asyncio.Poller()
        poller.register(shell.socket, zmq.POLLIN)
        poller.register(iopub.socket, zmq.POLLIN)
        reply: dict | None = None
        idle = False
        while reply is None or not idle:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Deadline
            events = dict(await poller.poll(min(remaining, 0.5) * 1000))
            if not events:
                if not self._kernel_alive():
                    raise _KernelGone
                continue
            if shell.socket in events:
                message = await _receive(shell)
                parent = (message or {}).get("parent_header", {}).get("msg_id")
                if (
                    message is not None
                    and parent == msg_id
                    and message.get("msg_type") == "execute_reply"
                ):
                    reply = message.get("content", {})
            if iopub.socket in events:
                message = await _receive(iopub)
                if message is None:
                    continue
                parent = message.get("parent_header", {}).get("msg_id")
                if parent != msg_id:
                    continue
                kind = message.get("msg_type")
                content = message.get("content", {})
                if kind == "status" and content.get("execution_state") == "idle":
                    idle = True
                elif outputs is not None:
                    outputs.add(kind, content)
        return reply

    def _kernel_env(self, sandbox_handle: Any) -> dict[str, str]:
        if sandbox_handle is not None:
            return sandbox_handle.environment()
        environment = dict(os.environ)
        environment.update(_QUIET_KERNEL_ENV)
        return environment

    def _death_detail(self, index: int, where: str) -> str:
        code = _exit_code(self.manager)
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


def _hang_up(socket_path: str) -> None:
    """Connect to the trusted tests' socket and close at once: a kernel that never connected
    then reads as one that stopped answering."""
    import socket

    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(0.5)
        connection.connect(socket_path)


async def _receive(channel: Any) -> dict | None:
    """The next message of ``channel``; ``None`` for one that does not deserialize."""
    try:
        return await channel.get_msg(timeout=0)
    except Empty:
        return None
    except Exception:
        return None


def _max_points(meta: dict) -> float:
    try:
        points = float(meta.get("points", 0) or 0)
    except (TypeError, ValueError):
        return 0.0
    return points if math.isfinite(points) and points >= 0 else 0.0


def _finite(value: Any, limit: float | None) -> float | None:
    if type(value) not in (int, float) or not math.isfinite(value):
        return None
    return float(value) if limit is None else min(max(float(value), 0.0), limit)


def _output(output_type: str, **fields: Any) -> NotebookNode:
    """A notebook output, built without nbformat's validation: validating compiles a schema
    (Python's compiler is not safe to run in several threads at once, CPython gh-106905), and
    every field here is made by the grader itself."""
    node = {"output_type": output_type, **fields}
    if output_type in ("execute_result", "display_data"):
        node.setdefault("metadata", {})
    if output_type == "execute_result":
        node.setdefault("execution_count", None)
    return nbformat.from_dict(node)


def _note(text: str) -> NotebookNode:
    return _output("stream", name="stdout", text=text + "\n")


def _test_outputs(outcome: TestOutcome) -> list[NotebookNode]:
    """What formgrader shows for a test cell: the trusted verdict, never student output."""
    points = "-" if outcome.points is None else f"{outcome.points:g}"
    outputs = [_note(f"{outcome.outcome}: {points} / {outcome.max_points:g} points")]
    if outcome.outcome in ("failed", "timed out") and outcome.message:
        outputs.append(
            _output("error", ename="AssertionError", evalue=outcome.message, traceback=[])
        )
    return outputs


class _BoundedOutputs:
    """A cell's outputs, bounded in bytes and errors, text and PNG only."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self.errors = 0
        self.truncated = False
        self.limit_note = f"[output truncated: more than {max_bytes} bytes]"
        self.outputs: list[NotebookNode] = []

    def note(self, text: str) -> None:
        self.outputs.append(_note(text))

    def add(self, kind: str | None, content: dict) -> None:
        if kind == "clear_output":
            self.outputs = []
            return
        if kind == "error":
            self.errors += 1
            if self.errors <= _MAX_ERRORS_PER_CELL:
                error = _output(
                    "error",
                    ename=str(content.get("ename", "Error"))[:200],
                    evalue=str(content.get("evalue", ""))[:2000],
                    traceback=_bounded_traceback(
                        [str(line) for line in content.get("traceback", [])][:200],
                        max(0, self.max_bytes - self.used),
                    ),
                )
                # Errors are always kept (name and message), and count against the budget.
                self.used += len(error.evalue) + sum(len(line) for line in error.traceback)
                self.outputs.append(error)
            return
        if kind == "stream":
            text = str(content.get("text", ""))
            room = self.max_bytes - self.used
            if len(text) > room:
                text = text[: max(0, room)]
                self._truncate()
            if text:
                self.used += len(text)
                self.outputs.append(
                    _output("stream", name=str(content.get("name", "stdout"))[:10], text=text)
                )
            return
        if kind in ("execute_result", "display_data"):
            data = content.get("data") or {}
            kept = {
                mime: value
                for mime, value in data.items()
                if mime in _KEPT_MIME_TYPES and isinstance(value, str)
            }
            size = sum(len(value) for value in kept.values())
            if not kept:
                return
            if self.used + size > self.max_bytes:
                self._truncate()
                return
            self.used += size
            if kind == "execute_result":
                self.outputs.append(
                    _output(
                        "execute_result",
                        data=kept,
                        execution_count=content.get("execution_count")
                        if type(content.get("execution_count")) is int
                        else None,
                    )
                )
            else:
                self.outputs.append(_output("display_data", data=kept))

    def _truncate(self) -> None:
        if not self.truncated:
            self.truncated = True
            self.note(self.limit_note)


def _bounded_traceback(traceback: list[str], limit: int) -> list[str]:
    """The last frames of ``traceback`` that fit in ``limit`` bytes (the error line is last)."""
    kept: list[str] = []
    used = 0
    for line in reversed(traceback):
        if used + len(line) > limit:
            room = limit - used
            kept.append(line[-room:] if not kept and room > 0 else "[traceback truncated]")
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
    # Lesson helpers that only show things (deploylab.nginx_lab.try_site) skip their work.
    "DEPLOYLAB_GRADING": "1",
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


async def _shutdown(client: Any, manager: _GradingKernelManager) -> None:
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
