"""Hostile and broken submissions for the grading sandbox and integrity checks.

Each generator returns the source of a student cell (or a whole notebook) that does one bad
thing. :func:`mini_lab` wraps an answer in a small nbgrader lab (setup cell with helpers,
an answer cell, two test cells with hidden tests) so a test can run it with
``deploylab.grading.execute.run_notebook`` and look at statuses, outputs and findings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

#: Text that only occurs in hidden tests: it must never reach feedback.
HIDDEN_CANARY = "hidden_canary_case_k7q"

CORRECT = "def double(x):\n    return 2 * x\n"
WRONG = "def double(x):\n    return x + 2\n"


def _meta(grade_id: str, *, grade: bool, solution: bool, locked: bool, points: int = 0) -> dict:
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "solution": solution,
        "schema_version": 3,
    }
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


def mini_lab(answer: str = CORRECT, *, extra: list[str] = ()):
    """A two-test lab whose answer cell holds ``answer``; ``extra`` student cells follow it."""
    setup = new_code_cell(
        "import ipaddress\n\ndef expected_double(x):\n    return 2 * x\n\nCASES = [0, 1, 5, 21]"
    )
    setup.metadata = _meta("setup", grade=False, solution=False, locked=True)
    intro = new_markdown_cell("Write `double(x)`.")
    intro.metadata = _meta("intro", grade=False, solution=False, locked=True)
    answer_cell = new_code_cell(answer)
    answer_cell.metadata = _meta("answer", grade=False, solution=True, locked=False)
    test_visible = new_code_cell(
        'assert double(2) == 4, "double(2) should be 4"\n'
        "### BEGIN HIDDEN TESTS\n"
        f"{HIDDEN_CANARY} = [expected_double(c) for c in CASES]\n"
        "for case, want in zip(CASES, " + HIDDEN_CANARY + "):\n"
        '    assert double(case) == want, f"double({case}) should be {want}"\n'
        "### END HIDDEN TESTS"
    )
    test_visible.metadata = _meta("double-tests", grade=True, solution=False, locked=True, points=2)
    test_stderr = new_code_cell(
        "import sys\n"
        'print("debug: checking double(10)", file=sys.stderr)\n'
        'assert double(10) == 20, "double(10) should be 20"\n'
        "### BEGIN HIDDEN TESTS\n"
        f'assert double(-3) == -6, "double(-3) should be -6"  # {HIDDEN_CANARY}\n'
        "### END HIDDEN TESTS"
    )
    test_stderr.metadata = _meta(
        "negative-tests", grade=True, solution=False, locked=True, points=1
    )
    cells = [intro, setup, answer_cell]
    cells += [new_code_cell(source) for source in extra]
    cells += [test_visible, test_stderr]
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    return notebook


# --- resource abuse ------------------------------------------------------------------
INFINITE_LOOP = "while True:\n    pass\n"
UNINTERRUPTIBLE_LOOP = (
    "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n"
)
FORK_BOMB = "import os\nwhile True:\n    os.fork()\n"
MEMORY_BOMB = "hoard = []\nwhile True:\n    hoard.append(bytearray(50 * 1024 * 1024))\n"
HUGE_OUTPUT = "for i in range(5_000):\n    print('spam' * 20, i)\nprint('x' * 5_000_000)\n"
TRACEBACK_FLOOD = (
    "shell = get_ipython()\n"
    "for i in range(500):\n"
    "    try:\n"
    "        raise ValueError('x' * 2000)\n"
    "    except ValueError:\n"
    "        shell.showtraceback()\n"
)
OS_EXIT = "import os\nos._exit(3)\n"
SYS_EXIT = "import sys\nsys.exit(0)\n"
SYNTAX_ERROR = "def double(x)\n    return 2 * x\n"
SEGFAULT = "import ctypes\nctypes.string_at(0)\n"

# --- cheating ------------------------------------------------------------------------
INPUT_TRANSFORMER_CHEAT = (
    "def _no_asserts(lines):\n"
    "    return [line.replace('assert ', 'pass  # ') for line in lines]\n"
    "get_ipython().input_transformers_cleanup.append(_no_asserts)\n"
)
HIDDEN_INPUT_TRANSFORMER_CHEAT = (
    "shell = get_ipython()\n"
    "hook = getattr(shell, 'input_' + 'transformers_' + 'cleanup')\n"
    "hook.append(lambda lines: [l.replace('assert ', 'pass  # ') for l in lines])\n"
)
BUILTINS_PATCH = (
    "import builtins\nclass _Quiet(Exception):\n    pass\nbuiltins.AssertionError = _Quiet\n"
)
HIDDEN_BUILTINS_PATCH = "__import__('built' + 'ins').print = lambda *a, **k: None\n"
EVENT_HOOK = "get_ipython().events.register('pre_run_cell', lambda info: None)\n"
HELPER_REDEFINED = "def expected_double(x):\n    return x + 2\nCASES = []\n"
TRACEBACK_SUPPRESSED = "get_ipython().showtraceback = lambda *args, **kwargs: None\n"
REFERENCE_PATCH = "import ipaddress\nipaddress.ip_address = lambda text: text\n"
FORGED_REPORT = (
    'import sys\nprint(\'DEPLOYLAB-INTEGRITY {"findings": [], "label": "x", "nonce": "x"} 00\')\n'
)


def read_files(paths: list[str]) -> str:
    """A cell that tries to read each path and prints READ-OK or BLOCKED for it."""
    return (
        "import os\n"
        f"for path in {paths!r}:\n"
        "    try:\n"
        "        with open(path, 'rb') as handle:\n"
        "            data = handle.read(4096)\n"
        "        print('READ-OK', path, data[:200])\n"
        "    except OSError as error:\n"
        "        print('BLOCKED', path, type(error).__name__)\n"
        "    try:\n"
        "        print('LISTED', path, os.listdir(os.path.dirname(path)))\n"
        "    except OSError:\n"
        "        pass\n"
    )


def write_files(paths: list[str]) -> str:
    """A cell that tries to create each path and prints WROTE or BLOCKED for it."""
    return (
        f"for path in {paths!r}:\n"
        "    try:\n"
        "        with open(path, 'w') as handle:\n"
        "            handle.write('owned')\n"
        "        print('WROTE', path)\n"
        "    except OSError as error:\n"
        "        print('BLOCKED', path, type(error).__name__)\n"
    )


def connect(port: int) -> str:
    """A cell that tries to reach 127.0.0.1:port and prints CONNECTED or BLOCKED."""
    return (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hello')\n"
        "    print('CONNECTED')\n"
        "except OSError as error:\n"
        "    print('BLOCKED', type(error).__name__)\n"
    )


SHOW_ENVIRONMENT = (
    "import os\nprint('ENV', sorted(os.environ.items()))\nprint('UID', os.getuid())\n"
)


@dataclass
class Entry:
    """One corpus entry: the student's cells and what grading must conclude."""

    name: str
    answer: str = CORRECT
    extra: list[str] = field(default_factory=list)
    statuses: tuple[str, ...] = ("graded",)
    #: test cells (by grade_id) that must pass; None: don't care
    passing: tuple[str, ...] | None = None
    #: seconds per cell and per notebook; short only where running out of time is the point
    cell_timeout: float = 20
    notebook_timeout: float = 40

    def notebook(self):
        return mini_lab(self.answer, extra=self.extra)


def require_sandbox() -> None:
    """Skip (locally) or fail (on CI) when bubblewrap is missing or cannot make a sandbox."""
    import os

    import pytest
    from conftest import require_tool

    from deploylab.grading import sandbox
    from deploylab.grading.execute import SandboxUnavailableError

    require_tool("bwrap", "bubblewrap")
    try:
        sandbox.check_available()
    except SandboxUnavailableError as error:
        if os.environ.get("CI"):
            pytest.fail(f"the grading sandbox must work on CI: {error}")
        pytest.skip(str(error))


def resource_entries() -> list[Entry]:
    """Submissions that abuse time, memory, processes or output."""
    return [
        Entry(
            "infinite loop",
            extra=[INFINITE_LOOP],
            statuses=("timed out",),
            passing=("double-tests", "negative-tests"),
            cell_timeout=3,
        ),
        Entry(
            "uninterruptible loop",
            extra=[UNINTERRUPTIBLE_LOOP],
            statuses=("timed out", "kernel died"),
            cell_timeout=3,
            notebook_timeout=10,
        ),
        Entry(
            "fork bomb",
            extra=[FORK_BOMB],
            statuses=("needs review", "kernel died", "timed out"),
            cell_timeout=5,
            notebook_timeout=12,
        ),
        Entry("memory bomb", extra=[MEMORY_BOMB], statuses=("graded", "kernel died")),
        Entry(
            "huge output",
            extra=[HUGE_OUTPUT],
            statuses=("graded",),
            passing=("double-tests", "negative-tests"),
        ),
        Entry("os._exit", extra=[OS_EXIT], statuses=("kernel died",)),
        Entry(
            "traceback flood",
            extra=[TRACEBACK_FLOOD],
            statuses=("needs review",),  # it reaches for IPython's traceback display
            passing=("double-tests", "negative-tests"),
        ),
        Entry("segfault", extra=[SEGFAULT], statuses=("kernel died",)),
    ]


def cheat_entries() -> list[Entry]:
    """Submissions that try to change how the tests run."""
    return [
        Entry(
            "input transformer",
            answer=WRONG,
            extra=[INPUT_TRANSFORMER_CHEAT],
            statuses=("needs review",),
        ),
        Entry(
            "obfuscated input transformer",
            answer=WRONG,
            extra=[HIDDEN_INPUT_TRANSFORMER_CHEAT],
            statuses=("needs review",),
        ),
        Entry("builtins patch", answer=WRONG, extra=[BUILTINS_PATCH], statuses=("needs review",)),
        Entry(
            "obfuscated builtins patch", extra=[HIDDEN_BUILTINS_PATCH], statuses=("needs review",)
        ),
        Entry("event hook", extra=[EVENT_HOOK], statuses=("needs review",)),
        Entry(
            "helper redefined", answer=WRONG, extra=[HELPER_REDEFINED], statuses=("needs review",)
        ),
        Entry(
            "traceback suppressed",
            answer=WRONG,
            extra=[TRACEBACK_SUPPRESSED],
            statuses=("needs review",),
            passing=(),
        ),
        Entry("reference module patched", extra=[REFERENCE_PATCH], statuses=("needs review",)),
        Entry("sys.exit", extra=[SYS_EXIT], statuses=("needs review",)),
        Entry(
            "forged integrity report",
            extra=[FORGED_REPORT],
            statuses=("graded",),
            passing=("double-tests", "negative-tests"),
        ),
    ]


def honest_entries() -> list[Entry]:
    """Ordinary submissions: right, wrong, broken."""
    return [
        Entry("correct", statuses=("graded",), passing=("double-tests", "negative-tests")),
        Entry("wrong", answer=WRONG, statuses=("graded",), passing=()),
        Entry("syntax error", answer=SYNTAX_ERROR, statuses=("graded",), passing=()),
        Entry(
            "stderr warning",
            answer=CORRECT + "import warnings\nwarnings.warn('slow path')\n",
            statuses=("graded",),
            passing=("double-tests", "negative-tests"),
        ),
        # matplotlib registers an IPython post_execute hook: not a cheat.
        Entry(
            "plots with matplotlib",
            answer=CORRECT + "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\n",
            statuses=("graded",),
            passing=("double-tests", "negative-tests"),
        ),
    ]
