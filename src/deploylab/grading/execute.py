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

Its parts, one job each: :mod:`~deploylab.grading.kernel` (the kernel manager),
:mod:`~deploylab.grading.trusted_process` (the test process), :mod:`~deploylab.grading.outputs`
(what outputs are kept), :mod:`~deploylab.grading.scoring` (what a test cell earned),
:mod:`~deploylab.grading.status` (the vocabulary), :mod:`~deploylab.grading.cells` (cell roles).

Why this module is a little over 600 lines: what is left here is one decision, the order of
a graded run (start the kernel while the trusted tests run the leading setup cells, then each
cell with its limit, then the outcome). Splitting that sequence would spread one timeline
over several files.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from nbformat import NotebookNode

from deploylab.grading import sandbox as sandbox_module
from deploylab.grading.cells import cell_role, max_points_of
from deploylab.grading.errors import KernelStartError, SandboxUnavailableError
from deploylab.grading.kernel import (
    QUIET_KERNEL_ENV,
    SIGNAL_REASONS,
    GradingKernelManager,
    exit_code,
    receive_message,
    sandbox_process_count,
    shutdown_kernel,
    socket_prefix,
)
from deploylab.grading.limits import Limits
from deploylab.grading.outputs import BoundedOutputs, make_output, note_output, test_outputs
from deploylab.grading.scoring import TestOutcome, finite_points
from deploylab.grading.status import (
    EXECUTION_STATUSES,
    GRADED,
    KERNEL_DIED,
    NEEDS_REVIEW,
    NOT_RUN,
    PASSED,
    TEST_TIMED_OUT,
    TIMED_OUT,
)
from deploylab.grading.trusted_process import TrustedProcess, hang_up

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

#: Every status :func:`run_notebook` can return, most severe first.
STATUSES = EXECUTION_STATUSES


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
            # The kernel binds its sockets inside its own tmpfs; see _reach_sandboxed_kernel.
            ipc_prefix, link_dir = sandbox_module.KERNEL_SOCKET_PREFIX, None
        else:
            ipc_prefix, link_dir = socket_prefix(self.scratch_dir)
        # The trusted tests listen in a directory of the grader's: the kernel sees it
        # read-only (it can connect, but cannot fill it or squat on its names in advance).
        self.call_dir = Path(tempfile.mkdtemp(prefix="dl-calls-"))
        os.chmod(self.call_dir, 0o711)
        sandbox_handle = None
        manager = GradingKernelManager(
            transport="ipc",
            ip=ipc_prefix,
            connection_file=str(self.scratch_dir / ".kernel.json"),
        )
        manager.max_message_bytes = max(16 * 1024 * 1024, 4 * self.limits.max_output_bytes)
        if self.sandbox:
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
        self.trusted = TrustedProcess(self.call_dir, self.trusted_dir)
        #: replies to the setup cells sent while the kernel started, by cell index
        self.setup_replies: dict[int, dict | None] = {}
        self.tests: dict[str, TestOutcome] = {}
        self.timed_out_cells: list[int] = []
        self.status, self.detail = GRADED, ""
        self.output_used = 0  # bytes of student output kept so far, all cells together
        self.running: str | None = None  # msg_id of the execution in progress
        kernel_log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
        try:
            await asyncio.gather(
                self._start_kernel(sandbox_handle, kernel_log), self._start_trusted()
            )
            await self._run_cells()
            leftover = sandbox_process_count(manager, sandboxed=self.sandbox)
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
            await shutdown_kernel(self.client, manager)
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

    def _leading_setup_cells(self) -> list[int]:
        """Indices of the setup cells before the first test cell, in notebook order."""
        leading = []
        for index, cell in enumerate(self.notebook.cells):
            role = cell_role(cell)
            if role == "test":
                break
            if role == "setup":
                leading.append(index)
        return leading

    async def _start_trusted(self) -> None:
        """Start the trusted tests and run the setup cells before the first test cell in
        them while the kernel starts (a lab's setup imports its checker and may warm it up:
        seconds that would otherwise come after the kernel's start).

        The trusted process sees the same requests in the same order as when each setup
        cell is sent at its turn: only setup and test cells reach it, and no test cell comes
        before these. The student's cells run in the kernel and cannot see them either way.
        """
        await self.trusted.start()
        for index in self._leading_setup_cells():
            source = str(self.notebook.cells[index].source)
            self.setup_replies[index] = await self._trusted_request(
                {"op": "setup", "source": source}, 30
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

        # bwrap (maybe via the cgroup shell); jupyter_client's local provisioner has .process
        process = self.manager.provisioner.process  # type: ignore[union-attr]
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
            reply = None
            if role == "setup":
                if index in self.setup_replies:  # sent while the kernel started
                    reply = self.setup_replies[index]
                else:
                    source = str(cell.source)
                    reply = await self._trusted_request({"op": "setup", "source": source}, 30)
            await self._kernel_cell(index, cell)
            if reply is not None and not reply.get("ok"):
                # After the kernel's outputs, which replace the cell's.
                cell.outputs.append(
                    note_output(
                        f"[this setup cell failed in the trusted tests: {reply.get('error')}]"
                    )
                )

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
        outputs = BoundedOutputs(max(0, min(self.limits.max_output_bytes, room)))
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
                make_output(
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
            await shutdown_kernel(self.client, self.manager)
            self.client = None

    async def _test_cell(self, index: int, cell: NotebookNode) -> None:
        meta = cell.metadata.get("nbgrader", {})
        grade_id = str(meta.get("grade_id", f"cell-{index}"))
        max_points = max_points_of(meta)
        outcome = TestOutcome(NOT_RUN, None, max_points)
        self.tests[grade_id] = outcome
        if self.client is None or not self._kernel_alive() or time.monotonic() >= self.deadline:
            self._stop_reason(index, "")
            cell.outputs = [note_output("[not run: the submission's kernel had stopped]")]
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
            cell.outputs = [note_output("[not run: the trusted test process failed]")]
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
            hang_up(socket_path)
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
            outcome.outcome, outcome.points = TEST_TIMED_OUT, None
            outcome.message = f"the test cell did not finish within {self.cell_timeout:g} s"
        else:
            outcome.outcome = str(result.get("outcome"))
            outcome.points = finite_points(result.get("points"), max_points)
            outcome.message = str(result.get("message", ""))[:1000]
            outcome.raw_points = finite_points(result.get("raw_points"), None)
        if outcome.outcome == TEST_TIMED_OUT:
            outcome.points = None
            if self.status == GRADED:
                self.status = TIMED_OUT
                self.detail = f"test cell {grade_id}: the submitted code did not answer within {self.cell_timeout:g} s"
        if self.status == KERNEL_DIED and outcome.outcome != PASSED:
            outcome.outcome, outcome.points = NOT_RUN, None
        cell.outputs = test_outputs(outcome)

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

    async def _execute(self, code: str, deadline: float, outputs: BoundedOutputs | None) -> dict:
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
        outputs: BoundedOutputs | None = None,
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
                message = await receive_message(shell)
                parent = (message or {}).get("parent_header", {}).get("msg_id")
                if (
                    message is not None
                    and parent == msg_id
                    and message.get("msg_type") == "execute_reply"
                ):
                    reply = message.get("content", {})
            if iopub.socket in events:
                message = await receive_message(iopub)
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
        environment.update(QUIET_KERNEL_ENV)
        return environment

    def _death_detail(self, index: int, where: str) -> str:
        code = exit_code(self.manager)
        if code is None:
            return f"the kernel died{where}"
        if code < 0 or code > 128:
            number = -code if code < 0 else code - 128
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = f"signal {number}"
            reason = SIGNAL_REASONS.get(name, "a crash or a kill")
            return f"the kernel was killed by {name}{where} ({reason})"
        return f"the kernel exited with status {code}{where} (os._exit, exit() or a crash)"


#: A notebook that leaves this many processes behind is flagged for review.
_LEFTOVER_PROCESS_LIMIT = 8
