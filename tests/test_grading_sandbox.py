"""The grading sandbox: what a submission's kernel can see and do, and the run_notebook API."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest
from adversarial import (
    CORRECT,
    HIDDEN_CANARY,
    SHOW_ENVIRONMENT,
    connect,
    mini_lab,
    read_files,
    require_sandbox,
    write_files,
)

from deploylab.grading import sandbox
from deploylab.grading.execute import Limits, SandboxUnavailableError, run_notebook


def _text(cell) -> str:
    return "".join(str(output.get("text", "")) for output in cell.outputs)


def _passed(outcome) -> dict[str, bool]:
    return {grade_id: test.outcome == "passed" for grade_id, test in outcome.tests.items()}


def test_missing_bwrap_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox.shutil, "which", lambda *args, **kwargs: None)
    sandbox._bwrap_path.cache_clear()
    try:
        with pytest.raises(SandboxUnavailableError) as error:
            run_notebook(mini_lab(), tmp_path / "scratch")
    finally:
        sandbox._bwrap_path.cache_clear()
    message = str(error.value)
    assert "bwrap" in message
    assert "apt-get install bubblewrap" in message
    assert "--unsafe-no-sandbox" in message


@pytest.mark.parametrize(
    "name", ["memory_bytes", "cpu_seconds", "max_processes", "max_output_bytes"]
)
def test_limits_must_be_positive(name):
    with pytest.raises(ValueError, match=name):
        Limits(**{name: 0})


def test_timeouts_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="cell_timeout"):
        run_notebook(mini_lab(), tmp_path, sandbox=False, cell_timeout=0)


def test_sandbox_command_binds_nothing_of_the_host_writable(tmp_path):
    """The kernel writes only to its own size-limited tmpfs (/tmp/work); its scratch
    directory (connection file, the lab's data) is read-only inside."""
    require_sandbox()
    course = tmp_path / "course"
    scratch = course / "scratch" / "alice"
    scratch.mkdir(parents=True)
    handle = sandbox.prepare(scratch, Limits())
    try:
        command = handle.command(["python", "-m", "ipykernel_launcher"])
    finally:
        handle.close()
    for option in (
        "--unshare-net",
        "--unshare-pid",
        "--clearenv",
        "--new-session",
        "--die-with-parent",
    ):
        assert option in command
    writable = [command[i + 1] for i, part in enumerate(command) if part == "--bind"]
    assert writable == []
    assert str(scratch.resolve()) in [
        command[i + 1] for i, part in enumerate(command) if part == "--ro-bind"
    ]
    assert command[command.index("--chdir") + 1] == sandbox.WORK_DIR
    read_only = [command[i + 1] for i, part in enumerate(command) if part == "--ro-bind"]
    for source in read_only:
        assert not str(course).startswith(source.rstrip("/") + "/"), source
        assert "autograder" not in Path(source).parts, source
    assert "prlimit" in command
    assert command[-3:] == ["python", "-m", "ipykernel_launcher"]


def test_scratch_ownership_is_given_back(tmp_path):
    require_sandbox()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "data.csv").write_text("1,2\n")
    before = scratch.stat().st_uid
    student = (
        "print('DATA', open('data.csv').read().strip())\n"
        "open('made.txt', 'w').write('x')\n"
        "try:\n"
        "    open('data.csv', 'w')\n"
        "except OSError:\n"
        "    print('DATA READ-ONLY')\n"
    )
    outcome = run_notebook(mini_lab(CORRECT, extra=[student]), scratch)
    assert outcome.status == "graded", outcome.detail
    assert "DATA 1,2" in _text(outcome.notebook.cells[3])
    assert "DATA READ-ONLY" in _text(outcome.notebook.cells[3])
    # What the kernel wrote stayed in its sandbox: nothing new on the host.
    assert sorted(path.name for path in scratch.iterdir() if not path.name.startswith(".")) == [
        "data.csv"
    ]
    for path in (scratch, scratch / "data.csv"):
        assert path.stat().st_uid == before, path


@pytest.mark.slow
def test_sandbox_confines_a_submission(tmp_path, monkeypatch):
    """One submission tries to read, write, connect and look around; the sandbox says no."""
    require_sandbox()
    secret = "grader-secret-9d1e"
    monkeypatch.setenv("DEPLOYLAB_GRADER_TOKEN", secret)
    course = tmp_path / "course"
    source = course / "autograder" / "source" / "lab" / "lab.ipynb"
    gradebook = course / "autograder" / "gradebook.db"
    other_student = course / "autograder" / "submitted" / "bob" / "lab" / "lab.ipynb"
    for path in (source, gradebook, other_student):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{secret} {path.name}")
    scratch = course / "autograder" / ".scratch" / "alice"
    scratch.mkdir(parents=True)
    (scratch / "lab-data.txt").write_text("public data")
    checkout_autograder = Path(__file__).resolve().parents[1] / "autograder" / "nbgrader_config.py"
    forbidden_reads = [
        str(source),
        str(gradebook),
        str(other_student),
        str(checkout_autograder),
        "/root/.bash_history",
        "/etc/shadow",
        f"/proc/{os.getpid()}/environ",
    ]
    outside_writes = [
        str(tmp_path / "escaped.txt"),
        str(course / "autograder" / "pwned.txt"),
        f"/tmp/deploylab-escape-{os.getpid()}.txt",
    ]

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept())
            except OSError:
                continue

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    cells = [
        read_files([*forbidden_reads, str(scratch / "lab-data.txt")]),
        write_files([*outside_writes, str(scratch / "result.txt"), "result.txt"]),
        connect(port),
        SHOW_ENVIRONMENT,
        "import os\nprint('PROCS', sorted(p for p in os.listdir('/proc') if p.isdigit()))\n"
        "import socket\nprint('HOST', socket.gethostname())",
    ]
    try:
        outcome = run_notebook(mini_lab(CORRECT, extra=cells), scratch, cell_timeout=20)
    finally:
        stop.set()
        server.join(timeout=5)
        listener.close()
    assert outcome.status == "graded", outcome.detail
    assert outcome.sandboxed
    read, wrote, connected, environment, processes = (
        _text(cell) for cell in outcome.notebook.cells[3:8]
    )
    for path in forbidden_reads:
        assert f"BLOCKED {path}" in read, read
    assert f"READ-OK {scratch / 'lab-data.txt'}" in read
    for line in read.splitlines():
        if line.startswith("LISTED"):
            # Only empty mount-point directories are visible around the scratch directory.
            listing = line.split(" ", 2)[2]
            for name in ("gradebook.db", "'source'", "'submitted'", "bob", "nbgrader_config"):
                assert name not in listing, line
    for path in outside_writes:
        assert f"BLOCKED {path}" in wrote or not Path(path).exists()
        assert not Path(path).exists(), path
    # The kernel's own working directory is writable; the host's scratch directory is not.
    assert "WROTE result.txt" in wrote and f"BLOCKED {scratch / 'result.txt'}" in wrote
    assert not (scratch / "result.txt").exists()
    assert "BLOCKED" in connected and "CONNECTED" not in connected
    assert accepted == []
    assert secret not in json.dumps(outcome.notebook)
    uid = int(environment.split("UID", 1)[1].split()[0])
    assert uid != 0 and uid != os.getuid()
    pids = processes.split("PROCS", 1)[1].split("\n")[0]
    assert len(eval(pids)) <= 4  # its own pid namespace: bwrap's init, the kernel, children
    assert "HOST sandbox" in processes
    assert _passed(outcome) == {"double-tests": True, "negative-tests": True}


@pytest.mark.slow
def test_sandboxed_and_plain_runs_agree_and_long_scratch_paths_work(tmp_path):
    require_sandbox()
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "scratch"
    sandboxed = run_notebook(mini_lab(), deep)
    plain = run_notebook(mini_lab(), tmp_path / "plain", sandbox=False)
    assert sandboxed.status == plain.status == "graded"
    assert _passed(sandboxed) == _passed(plain) == {"double-tests": True, "negative-tests": True}
    assert [c.get("outputs") for c in sandboxed.notebook.cells] == [
        c.get("outputs") for c in plain.notebook.cells
    ]
    assert len(sandboxed.notebook.cells) == len(mini_lab().cells)


@pytest.mark.slow
def test_user_namespace_mode_runs_as_nobody(monkeypatch, tmp_path):
    """The mode used when the grader is not root: bwrap's user namespace, uid 65534 inside."""
    require_sandbox()
    problem = sandbox._probe(sandbox.check_available(), privileged=False)
    if problem:
        pytest.skip(f"user namespaces are not available here: {problem}")
    monkeypatch.setattr(sandbox, "_privileged_mode", lambda: False)
    outcome = run_notebook(mini_lab(CORRECT, extra=[SHOW_ENVIRONMENT]), tmp_path / "s")
    assert outcome.status == "graded", outcome.detail
    assert "UID 65534" in _text(outcome.notebook.cells[3])


def test_no_test_code_ever_enters_the_kernel(tmp_path):
    """The kernel's history, line cache and namespace hold the student's cells and the
    grader's one-line call loop, never a line of the tests (visible or hidden)."""
    snoop = (
        "import linecache, sys\n"
        "def double(x):\n"
        "    names = sorted(sys._getframe(1).f_globals)\n"
        "    with open('snoop.txt', 'a') as out:\n"
        "        print('HISTORY', In, _ih, file=out)\n"
        "        lines = [''.join(e[2]) for e in linecache.cache.values() if len(e) > 2]\n"
        "        print('LINECACHE', lines, file=out)\n"
        "        print('FRAMES', names, file=out)\n"
        "    return 2 * x\n"
    )
    outcome = run_notebook(mini_lab(snoop), tmp_path, sandbox=False)
    text = (tmp_path / "snoop.txt").read_text()
    assert "HISTORY" in text and "LINECACHE" in text and "FRAMES" in text
    assert HIDDEN_CANARY not in text and "should be" not in text
    assert _passed(outcome) == {"double-tests": True, "negative-tests": True}
    assert outcome.status == "graded"


MEMORY_SPREAD_OVER_PROCESSES = """
import os, time
for child in range(4):
    if os.fork() == 0:
        block = bytearray(300 * 1024 * 1024)
        for offset in range(0, len(block), 4096):
            block[offset] = 1
        open(f"child-{child}-allocated", "w").close()
        time.sleep(30)
        os._exit(0)
time.sleep(4)
print("CHILDREN", sorted(name for name in os.listdir(".") if name.startswith("child-")))
"""


@pytest.mark.slow
def test_memory_limit_covers_all_processes_together(tmp_path):
    """Four children of 300 MB each stay under a 512 MiB per-process limit; the sandbox's
    control group (where the host allows one) holds them to 512 MiB together."""
    require_sandbox()
    limits = Limits(memory_bytes=512 * 1024 * 1024)
    (tmp_path / "probe").mkdir()
    probe = sandbox.prepare(tmp_path / "probe", limits)
    has_cgroups = bool(probe.cgroups)
    probe.close()
    if not has_cgroups:
        pytest.skip("no writable memory cgroup here: only per-process limits apply")
    notebook = mini_lab(CORRECT, extra=[MEMORY_SPREAD_OVER_PROCESSES])
    outcome = run_notebook(notebook, tmp_path / "s", limits=limits, cell_timeout=20)
    assert outcome.status in ("graded", "needs review", "kernel died"), outcome.detail
    # The children mark their allocation in the kernel's own working directory.
    printed = _text(outcome.notebook.cells[3])
    assert "CHILDREN" in printed or outcome.status == "kernel died", printed
    assert printed.count("-allocated") < 4


SYSTEM_CALLS = """
import ctypes, os, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
for name, call in [("unshare", lambda: libc.unshare(0x10000000)),
                   ("keyctl", lambda: libc.syscall(250, 0, 0, 0, 0, 0)),
                   ("bpf", lambda: libc.syscall(321, 0, 0, 0))]:
    print("CALL", name, call(), ctypes.get_errno())
print("SUBPROCESS", subprocess.run(["echo", "fine"], capture_output=True, text=True).stdout.strip())
worker = threading.Thread(target=lambda: print("THREAD fine"))
worker.start()
worker.join()
"""


def test_seccomp_blocks_namespace_and_kernel_interfaces_but_not_ordinary_work(tmp_path):
    require_sandbox()
    if sandbox.seccomp_program() is None:
        pytest.skip("the seccomp filter is built for x86_64 only")
    outcome = run_notebook(mini_lab(CORRECT, extra=[SYSTEM_CALLS]), tmp_path)
    text = _text(outcome.notebook.cells[3])
    for name in ("unshare", "keyctl", "bpf"):
        assert f"CALL {name} -1 1" in text, text  # EPERM
    assert "SUBPROCESS fine" in text and "THREAD fine" in text
    assert _passed(outcome) == {"double-tests": True, "negative-tests": True}


@pytest.mark.slow
def test_the_reference_implementation_is_out_of_the_kernels_reach(tmp_path):
    """Only the deploylab modules the setup cells import exist in a grading kernel: an
    obfuscated import of the reference the hidden tests compare with finds nothing."""
    require_sandbox()
    probe = (
        "import importlib\n"
        "for name in ['deploylab.auto' + 'scale', 'deploylab.vpc', 'deploylab.deploy']:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "        print('IMPORTED', name)\n"
        "    except ImportError:\n"
        "        print('BLOCKED', name)\n"
    )
    outcome = run_notebook(
        mini_lab(CORRECT, extra=[probe]), tmp_path / "s", package_modules=("deploylab.deploy",)
    )
    text = _text(outcome.notebook.cells[3])
    assert "BLOCKED deploylab.autoscale" in text and "BLOCKED deploylab.vpc" in text
    assert "IMPORTED deploylab.deploy" in text  # what the setup needs stays importable
    assert _passed(outcome) == {"double-tests": True, "negative-tests": True}


def test_setup_cells_reach_the_trusted_tests_in_notebook_order(tmp_path):
    """The setup cells before the first test cell run in the trusted tests while the kernel
    starts; a later setup cell must still come after the test cells before it, and a leading
    setup cell that fails there still says so under the cell."""
    require_sandbox()
    from adversarial import _meta
    from nbformat.v4 import new_code_cell

    notebook = mini_lab(CORRECT)
    broken = new_code_cell("raise RuntimeError('setup broke in the trusted tests')")
    broken.metadata = _meta("broken-setup", grade=False, solution=False, locked=True)
    before = new_code_cell(
        'assert "LATE_SETUP" not in globals(), "a later setup cell ran before this test"'
    )
    before.metadata = _meta("before-tests", grade=True, solution=False, locked=True, points=1)
    late = new_code_cell("LATE_SETUP = 7")
    late.metadata = _meta("late-setup", grade=False, solution=False, locked=True)
    after = new_code_cell('assert LATE_SETUP == 7, "the later setup cell did not run"')
    after.metadata = _meta("after-tests", grade=True, solution=False, locked=True, points=1)
    notebook.cells[1:1] = [broken]
    notebook.cells += [before, late, after]
    outcome = run_notebook(notebook, tmp_path / "s")
    assert _passed(outcome) == {
        "double-tests": True,
        "negative-tests": True,
        "before-tests": True,
        "after-tests": True,
    }, {grade_id: test.message for grade_id, test in outcome.tests.items()}
    broken_text = _text(outcome.notebook.cells[1])
    assert "this setup cell failed in the trusted tests" in broken_text
    assert "RuntimeError" in broken_text
