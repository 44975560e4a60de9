"""The adversarial corpus through ``deploylab grade autograde`` on a temporary copy of the
course with the ip-basics lab: one batch with hostile, broken and honest submissions must
complete, give each its status, keep the gradebook/export consistent and leak nothing."""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import shutil
import socket
import threading
from contextlib import redirect_stdout
from pathlib import Path

import adversarial as corpus
import nbformat
import pytest
from test_grading_pipeline import seed_gradebook

from deploylab.cli import main
from deploylab.grading.course import Course
from deploylab.grading.export import spreadsheet_safe

ROOT = Path(__file__).resolve().parents[1]
LAB = "ip-basics"
SOURCE = ROOT / "autograder" / "source" / LAB / f"{LAB}.ipynb"
RELEASED = ROOT / "labs" / LAB / f"{LAB}.ipynb"


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _complete_submission():
    """The released notebook with the instructor's answers typed in (scores full marks)."""
    source = nbformat.read(SOURCE, as_version=4)
    answers = {
        _grade_id(c): c.source
        for c in source.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    released = nbformat.read(RELEASED, as_version=4)
    for cell in released.cells:
        if _grade_id(cell) in answers:
            cell.source = answers[_grade_id(cell)]
    return released


def _with_extra(notebook, *sources: str, after: str = "to-binary"):
    notebook = copy.deepcopy(notebook)
    index = next(i for i, c in enumerate(notebook.cells) if _grade_id(c) == after)
    for offset, source in enumerate(sources, start=1):
        notebook.cells.insert(index + offset, nbformat.v4.new_code_cell(source))
    return notebook


def _with_answer(notebook, grade_id: str, source: str):
    notebook = copy.deepcopy(notebook)
    for cell in notebook.cells:
        if _grade_id(cell) == grade_id:
            cell.source = source
    return notebook


def _parse_table(text: str) -> dict[str, tuple[str, str, str]]:
    rows = {}
    for line in text.strip().splitlines()[2:]:
        student, score, maximum, status = line.split(None, 3)
        rows[student] = (score, maximum, status)
    return rows


def _run_cli(*arguments: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        status = main(list(arguments))
    return status, out.getvalue()


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    corpus.require_sandbox()
    base = tmp_path_factory.mktemp("adversarial-class")
    root = base / "autograder"
    shutil.copytree(ROOT / "autograder" / "source", root / "source")
    shutil.copy(ROOT / "autograder" / "nbgrader_config.py", root / "nbgrader_config.py")
    seed_gradebook(root)
    course = Course.locate(root, base / "labs")
    course_args = ["--course", str(course.root), "--labs-dir", str(course.labs_dir)]
    status, _ = _run_cli("grade", "release", LAB, *course_args)
    assert status == 0

    submissions = base / "submissions"
    complete = _complete_submission()
    escape = base / "escaped.txt"
    gradebook = course.root / "gradebook.db"
    other_student = submissions / "instructor" / f"{LAB}.ipynb"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.2)
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

    edited = _with_answer(complete, "to-binary-tests", "pass")
    edited.cells = [c for c in edited.cells if _grade_id(c) != "prefix-size-tests"]
    for cell in edited.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            meta["points"] = 100
        if _grade_id(cell) == "classes-tests":
            meta["grade_id"] = "free-points"
    notebooks = {
        "instructor": nbformat.read(SOURCE, as_version=4),
        "honest-complete": complete,
        "infinite-loop": _with_extra(complete, corpus.INFINITE_LOOP),
        "fork-bomb": _with_extra(complete, corpus.FORK_BOMB),
        "memory-bomb": _with_extra(complete, corpus.MEMORY_BOMB),
        "huge-output": _with_extra(complete, corpus.HUGE_OUTPUT),
        "os-exit": _with_extra(complete, corpus.OS_EXIT),
        "sys-exit": _with_extra(complete, corpus.SYS_EXIT),
        "syntax-error": _with_answer(complete, "to-binary", corpus.SYNTAX_ERROR),
        "reads-course": _with_extra(
            complete,
            corpus.read_files(
                [
                    str(gradebook),
                    str(SOURCE),
                    str(other_student),
                    str(course.root / "source" / LAB / f"{LAB}.ipynb"),
                ]
            ),
        ),
        "network": _with_extra(complete, corpus.connect(listener.getsockname()[1])),
        "writes-outside": _with_extra(
            complete, corpus.write_files([str(escape), str(course.root / "pwned.txt")])
        ),
        "input-transformer": _with_extra(
            nbformat.read(RELEASED, as_version=4), corpus.INPUT_TRANSFORMER_CHEAT
        ),
        "builtins-patch": _with_extra(nbformat.read(RELEASED, as_version=4), corpus.BUILTINS_PATCH),
        "token-transformer": _with_extra(
            nbformat.read(RELEASED, as_version=4), corpus.TOKEN_TRANSFORMER_CHEAT
        ),
        "shadowed-builtins": _with_extra(
            nbformat.read(RELEASED, as_version=4), corpus.SHADOWED_BUILTINS
        ),
        # Every answer returns an object equal to anything; the partial-credit cell's int
        # results are displayed as full marks.
        "always-equal": _with_extra(
            nbformat.read(RELEASED, as_version=4),
            ALWAYS_EQUAL_EVERYWHERE,
            "get_ipython().display_formatter.formatters['text/plain'].for_type("
            "int, lambda value, printer, cycle: printer.text('4'))\n",
        ),
        "caller-peek": _with_extra(
            nbformat.read(RELEASED, as_version=4),
            corpus.CALLER_LINE_PEEK.replace("def double(x)", "def to_binary(x)")
            + corpus.GLOBALS_PEEK.replace("def double(x)", "def addresses_in_prefix(x)"),
        ),
        "leaks-caller-source": _with_extra(
            complete, corpus.LEAK_CALLER_SOURCE.replace("def double(x)", "def _unused(x)")
        ),
        "script-output": _with_extra(complete, corpus.SCRIPT_OUTPUT),
        "killed-before-tests": _with_extra(complete, corpus.KILLED_BEFORE_TESTS),
        "imports-reference": _with_extra(
            complete, "from deploylab.vpc.addressing import classful_class  # the answer key"
        ),
        "edited-tests-and-metadata": edited,
        "=HYPERLINK(0)": complete,
    }
    for student, notebook in notebooks.items():
        (submissions / student).mkdir(parents=True)
        nbformat.write(notebook, submissions / student / f"{LAB}.ipynb")
    for student, content in (("corrupt-json", '{"cells": [{"cell_type": '), ("empty-file", "")):
        (submissions / student).mkdir()
        (submissions / student / f"{LAB}.ipynb").write_text(content)
    # Paths: a symlink to the instructor master, one to /etc/shadow, a linked directory, a
    # FIFO and an oversize file are read as nothing, never copied into the course.
    for student, target in (("link-to-master", SOURCE), ("link-to-shadow", Path("/etc/shadow"))):
        (submissions / student).mkdir()
        (submissions / student / f"{LAB}.ipynb").symlink_to(target)
    (submissions / "linked-directory").symlink_to(submissions / "honest-complete")
    (submissions / "fifo").mkdir()
    os.mkfifo(submissions / "fifo" / f"{LAB}.ipynb")
    (submissions / "oversize").mkdir()
    with open(submissions / "oversize" / f"{LAB}.ipynb", "wb") as handle:
        handle.truncate(21 * 1024 * 1024)
    other_lab = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    other_lab.cells[0].metadata["nbgrader"] = {
        "grade": False,
        "grade_id": "vpc-answer",
        "locked": False,
        "solution": True,
        "schema_version": 3,
    }
    (submissions / "other-lab").mkdir()
    nbformat.write(other_lab, submissions / "other-lab" / f"{LAB}.ipynb")

    try:
        status, out = _run_cli(
            "grade",
            "autograde",
            LAB,
            "--submissions",
            str(submissions),
            "--quiet",
            "--jobs",
            "2",
            "--cell-timeout",
            "5",
            "--notebook-timeout",
            "25",
            *course_args,
        )
    finally:
        stop.set()
        server.join(timeout=5)
        listener.close()
    table = _parse_table(out)
    return {
        "course": course,
        "course_args": course_args,
        "table": table,
        "exit": status,
        "escape": escape,
        "accepted": accepted,
        "students": sorted([*notebooks, "corrupt-json", "empty-file", "other-lab", *PATH_TRICKS]),
    }


PATH_TRICKS = ["link-to-master", "link-to-shadow", "linked-directory", "fifo", "oversize"]
ALWAYS_EQUAL_EVERYWHERE = (
    "class _Anything(str):\n"
    "    def __eq__(self, other):\n"
    "        return True\n"
    "    __hash__ = str.__hash__\n"
    "def to_binary(address):\n"
    "    return _Anything()\n"
    "address_class = is_host_usable = addresses_in_prefix = to_binary\n"
)


def _hidden() -> list[str]:
    """Hidden-test lines that the released notebook does not show anyway."""
    public = "\n".join(c.source for c in nbformat.read(RELEASED, as_version=4).cells)
    lines = set()
    for cell in nbformat.read(SOURCE, as_version=4).cells:
        inside = False
        for line in cell.source.splitlines():
            if line.strip() in ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"):
                inside = line.strip().startswith("### BEGIN")
            elif inside:
                lines.add(line.strip())
    return [line for line in lines if line not in public and len(line) >= 16]


def _autograded(course: Course, student: str):
    path = course.autograded_dir(student, LAB) / f"{LAB}.ipynb"
    return nbformat.read(path, as_version=4)


def _outputs_text(notebook) -> str:
    return json.dumps([cell.get("outputs", []) for cell in notebook.cells])


@pytest.mark.slow
def test_every_submission_gets_its_status(graded_class):
    table = graded_class["table"]
    assert sorted(table) == graded_class["students"]
    maximum = table["instructor"][1]
    expected = {
        "instructor": ({maximum}, {"graded"}),
        "honest-complete": ({maximum}, {"graded"}),
        "huge-output": ({maximum}, {"graded"}),
        "reads-course": ({maximum}, {"graded"}),
        "network": ({maximum}, {"graded"}),
        "writes-outside": ({maximum}, {"graded"}),
        "edited-tests-and-metadata": ({maximum}, {"graded"}),
        "infinite-loop": ({"-"}, {"timed out"}),
        "os-exit": ({"-"}, {"kernel died"}),
        "sys-exit": ({maximum}, {"graded"}),
        "leaks-caller-source": ({maximum}, {"graded"}),
        "script-output": ({maximum}, {"graded"}),
        "=HYPERLINK(0)": ({maximum}, {"graded"}),
        # Cheats on an unanswered notebook: graded, and worth nothing.
        "input-transformer": ({"0"}, {"graded"}),
        "builtins-patch": ({"0"}, {"graded"}),
        "token-transformer": ({"0"}, {"graded"}),
        "shadowed-builtins": ({"0"}, {"graded"}),
        "always-equal": ({"0"}, {"graded"}),
        "caller-peek": ({"0"}, {"graded"}),
        "killed-before-tests": ({"-"}, {"kernel died"}),
        # ip-basics' tests use no reference from deploylab; the sandbox has none to import
        "imports-reference": ({maximum}, {"graded"}),
        "fork-bomb": ({"-"}, {"needs review", "kernel died", "timed out"}),
        "memory-bomb": ({maximum, "-"}, {"graded", "kernel died", "timed out"}),
        "corrupt-json": ({"-"}, {"not a notebook"}),
        "empty-file": ({"-"}, {"not a notebook"}),
        "other-lab": ({"-"}, {"wrong lab"}),
        **{student: ({"-"}, {"not a notebook"}) for student in PATH_TRICKS},
    }
    problems = []
    for student, (scores, statuses) in expected.items():
        score, _, status = table[student]
        status_word = status.split(" (")[0]
        if score not in scores or status_word not in statuses:
            problems.append(f"{student}: {table[student]}")
    assert not problems, "\n".join(problems)
    # Edited points or grade ids do not change the maximum: the instructor's metadata wins.
    assert {row[1] for row in table.values()} == {maximum}
    # syntax error: the to-binary tests fail, the rest still run and score
    score, _, status = table["syntax-error"]
    assert status == "graded" and 0 < float(score) < float(maximum)


@pytest.mark.slow
def test_sandbox_kept_the_course_and_network_out_of_reach(graded_class):
    course = graded_class["course"]
    read = _outputs_text(_autograded(course, "reads-course"))
    assert "READ-OK" not in read and read.count("BLOCKED") == 4
    hidden = _hidden()
    assert hidden and not any(line in read for line in hidden)
    assert "CONNECTED" not in _outputs_text(_autograded(course, "network"))
    assert graded_class["accepted"] == []
    assert not graded_class["escape"].exists()
    assert not (course.root / "pwned.txt").exists()
    # Nothing was copied in through a symlink or from a special file.
    for student in PATH_TRICKS:
        assert not course.submitted_dir(student, LAB).exists() or not any(
            course.submitted_dir(student, LAB).iterdir()
        ), student
    assert "root:" not in "".join(
        path.read_text(errors="replace")
        for path in course.root.rglob("*")
        if path.is_file() and path.suffix in (".ipynb", ".html", ".json", ".csv")
    )
    # HTML/JavaScript a submission displayed is not in the notebook formgrader renders.
    shown = _outputs_text(_autograded(course, "script-output"))
    assert "<b>bold</b>" not in shown and "text/html" not in shown


@pytest.mark.slow
def test_export_and_feedback_are_honest_and_leak_free(graded_class):
    course, args, table = graded_class["course"], graded_class["course_args"], graded_class["table"]
    status, out = _run_cli("grade", "export", *args)
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    by_student = {row.get("student") or row.get("student_id"): row for row in rows}
    students = sorted(spreadsheet_safe(student) for student in graded_class["students"])
    assert sorted(by_student) == students  # one row each, none lost
    status, out = _run_cli("grade", "export", "--format", "nbgrader", *args)
    nbgrader_rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted(row["student_id"] for row in nbgrader_rows) == students
    for row in nbgrader_rows:
        # A failure is never a silent 0: anything not graded says so in its status.
        if row["status"] != "graded":
            assert row["status"] == table[row["student_id"].lstrip("'")][2].split(" (")[0], row
    for student in ("os-exit", "infinite-loop", "input-transformer"):
        row_text = " ".join(str(v) for v in by_student[student].values())
        assert table[student][2].split(" (")[0] in row_text, by_student[student]
    status, _ = _run_cli("grade", "feedback", LAB, *args)
    assert status == 0
    pages = list(course.root.rglob("*.html"))
    assert pages
    hidden = _hidden()
    for page in pages:
        text = page.read_text()
        for line in hidden:
            assert line not in text, (page.name, line)
    assert os.environ.get("DEPLOYLAB_NEVER_SET") is None
    # A student id that a spreadsheet would run as a formula is exported as text.
    assert "'=HYPERLINK(0)" in by_student
    assert not any(row["student_id"].startswith("=") for row in nbgrader_rows)
    # A kernel killed before the tests: every test "not run" in the feedback, no score.
    killed = (course.feedback_dir("killed-before-tests", LAB) / f"{LAB}.html").read_text()
    assert "Passed" not in killed and "Not run" in killed and "SIGKILL" in killed
    # What the student's code printed never reaches its feedback page.
    leaky = (course.feedback_dir("leaks-caller-source", LAB) / f"{LAB}.html").read_text()
    assert "LEAK" not in leaky
