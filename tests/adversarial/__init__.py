"""Hostile and broken submissions for the grading sandbox and the trusted-test boundary.

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

# --- cheating: each one tries to make a wrong answer pass ------------------------------
INPUT_TRANSFORMER_CHEAT = (
    "def _no_asserts(lines):\n"
    "    return [line.replace('assert ', 'pass  # ') for line in lines]\n"
    "get_ipython().input_transformers_cleanup.append(_no_asserts)\n"
)
TOKEN_TRANSFORMER_CHEAT = (
    "from IPython.core.inputtransformer2 import TransformerManager\n"
    "TransformerManager.do_one_token_transform = lambda self, lines: (False, ['pass\\n'])\n"
)
BUILTINS_PATCH = (
    "import builtins\nclass _Quiet(Exception):\n    pass\nbuiltins.AssertionError = _Quiet\n"
)
SHADOWED_BUILTINS = "range = lambda *args: []\nzip = lambda *args: []\nset = lambda *a: {1}\n"
EVENT_HOOK = "get_ipython().events.register('pre_run_cell', lambda info: None)\n"
HELPER_REDEFINED = "def expected_double(x):\n    return x + 2\nCASES = []\n"
CODE_SWAPPED = "expected_double.__code__ = (lambda x: x + 2).__code__\n"
TRACEBACK_SUPPRESSED = "get_ipython().showtraceback = lambda *args, **kwargs: None\n"
REFERENCE_PATCH = "import ipaddress\nipaddress.ip_address = lambda text: text\n"
SYS_EXIT = "import sys\nsys.exit(0)\n"
#: An answer whose result equals anything.
ALWAYS_EQUAL = (
    "class _Anything:\n"
    "    def __eq__(self, other):\n"
    "        return True\n"
    "    __hash__ = object.__hash__\n"
    "def double(x):\n"
    "    return _Anything()\n"
)
#: An answer that looks for the test's expected value among the caller's variables.
GLOBALS_PEEK = (
    "import sys\n"
    "def double(x):\n"
    "    frame = sys._getframe(1)\n"
    "    while frame is not None:\n"
    "        for name in ('want', '_expected', 'expected'):\n"
    "            if name in frame.f_globals or name in frame.f_locals:\n"
    "                return frame.f_locals.get(name, frame.f_globals.get(name))\n"
    "        frame = frame.f_back\n"
    "    return globals().get('want', x + 2)\n"
)
#: An answer that reads the calling test line and evaluates its right-hand side.
CALLER_LINE_PEEK = (
    "import sys, linecache\n"
    "def double(x):\n"
    "    frame = sys._getframe(1)\n"
    "    while frame is not None:\n"
    "        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)\n"
    "        if '==' in line:\n"
    "            try:\n"
    "                return eval(line.split('==')[1].split(',')[0], frame.f_globals, frame.f_locals)\n"
    "            except Exception:\n"
    "                pass\n"
    "        frame = frame.f_back\n"
    "    return x + 2\n"
)
#: A correct answer that prints every frame's source, compressed and base64-encoded.
LEAK_CALLER_SOURCE = (
    "import sys, inspect, zlib, base64\n"
    "def double(x):\n"
    "    frame, texts = sys._getframe(1), []\n"
    "    while frame is not None:\n"
    "        try:\n"
    "            texts.append(inspect.getsource(frame))\n"
    "        except Exception:\n"
    "            pass\n"
    "        texts.append(repr(sorted(frame.f_globals)))\n"
    "        frame = frame.f_back\n"
    "    print('LEAK', base64.b64encode(zlib.compress('\\n'.join(texts).encode())).decode())\n"
    "    return 2 * x\n"
)
#: A wrong answer whose exception carries markup and look-alike characters.
RAISES_MARKUP = (
    "def double(x):\n    raise ValueError('<script>alert(1)</script>\\u00a0STUDENT-TEXT-z9')\n"
)
SCRIPT_OUTPUT = (
    "from IPython.display import HTML, Javascript, display\n"
    "display(HTML('<script>alert(1)</script><b>bold</b>'))\n"
    "display(Javascript('alert(2)'))\n"
)
KILLED_BEFORE_TESTS = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
#: A correct-looking answer whose reply is larger than any message the grader accepts.
HUGE_REPLY = "def double(x):\n    return 'x' * 20_000_000\n"
HUGE_PRINT = "print('y' * 20_000_000)\n"
FILL_DISK = (
    "import os\n"
    "made = 0\n"
    "try:\n"
    "    for i in range(20_000):\n"
    "        open(f'f{i}', 'w').close()\n"
    "        made += 1\n"
    "except OSError:\n"
    "    pass\n"
    "try:\n"
    "    with open('big', 'wb') as handle:\n"
    "        for _ in range(200):\n"
    "            handle.write(b'0' * (1 << 20))\n"
    "except OSError:\n"
    "    pass\n"
    "path = 'deep'\n"
    "for _ in range(1500):\n"
    "    try:\n"
    "        os.mkdir(path)\n"
    "        os.chdir(path)\n"
    "    except OSError:\n"
    "        break\n"
    "os.chdir(os.environ['HOME'])\n"
    "print('MADE', made)\n"
)
STEAL_TRUSTED_SOCKET = (
    "import glob, os, socket, threading\n"
    "def _squat():\n"
    "    for _ in range(2000):\n"
    "        for path in glob.glob('/tmp/dl-calls-*/calls-*.sock'):\n"
    "            try:\n"
    "                s = socket.socket(socket.AF_UNIX); s.connect(path)\n"
    "                s.sendall(b'\\x00\\x00\\x00\\x10{\"returned\": 4}  ')\n"
    "            except OSError:\n"
    "                pass\n"
    "threading.Thread(target=_squat, daemon=True).start()\n"
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
    """Submissions that abuse time, memory, processes, output or disk."""
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
        Entry(
            "huge print",
            extra=[HUGE_PRINT],
            statuses=("graded", "timed out"),
            cell_timeout=5,
        ),
        Entry("os._exit", extra=[OS_EXIT], statuses=("kernel died",), passing=()),
        Entry(
            "killed before the tests",
            extra=[KILLED_BEFORE_TESTS],
            statuses=("kernel died",),
            passing=(),
        ),
        Entry(
            "traceback flood",
            extra=[TRACEBACK_FLOOD],
            statuses=("graded",),
            passing=("double-tests", "negative-tests"),
        ),
        Entry("segfault", extra=[SEGFAULT], statuses=("kernel died",), passing=()),
        Entry(
            "fills the disk",
            extra=[FILL_DISK],
            statuses=("graded", "kernel died"),
        ),
    ]


def cheat_entries() -> list[Entry]:
    """Submissions that try to change how the tests run or what they see: none may earn
    a point with a wrong answer, and none needs a person to notice."""
    wrong = {"answer": WRONG, "statuses": ("graded",), "passing": ()}
    right = {"statuses": ("graded",), "passing": ("double-tests", "negative-tests")}
    return [
        Entry("input transformer", extra=[INPUT_TRANSFORMER_CHEAT], **wrong),
        Entry("token transformer class patch", extra=[TOKEN_TRANSFORMER_CHEAT], **wrong),
        Entry("builtins patch", extra=[BUILTINS_PATCH], **wrong),
        Entry("builtins shadowed", extra=[SHADOWED_BUILTINS], **wrong),
        Entry("event hook", extra=[EVENT_HOOK], **wrong),
        Entry("helper redefined", extra=[HELPER_REDEFINED], **wrong),
        Entry("reference code swapped", extra=[CODE_SWAPPED], **wrong),
        Entry("traceback suppressed", extra=[TRACEBACK_SUPPRESSED], **wrong),
        Entry("reference module patched", extra=[REFERENCE_PATCH], **wrong),
        Entry("trusted socket squatted", extra=[STEAL_TRUSTED_SOCKET], **wrong),
        Entry("always equal", **{**wrong, "answer": ALWAYS_EQUAL}),
        Entry("globals peek", **{**wrong, "answer": GLOBALS_PEEK}),
        Entry("caller line peek", **{**wrong, "answer": CALLER_LINE_PEEK}),
        Entry("raises markup", **{**wrong, "answer": RAISES_MARKUP}),
        Entry("huge reply", **{**wrong, "answer": HUGE_REPLY}),
        Entry("sys.exit", extra=[SYS_EXIT], **right),
        Entry("leaks caller source", answer=LEAK_CALLER_SOURCE, **right),
        Entry("script output", extra=[SCRIPT_OUTPUT], **right),
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
