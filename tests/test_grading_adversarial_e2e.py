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

from deploylab.cli import main
from deploylab.grading import integrity
from deploylab.grading.course import Course

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
        "edited-tests-and-metadata": edited,
    }
    for student, notebook in notebooks.items():
        (submissions / student).mkdir(parents=True)
        nbformat.write(notebook, submissions / student / f"{LAB}.ipynb")
    for student, content in (("corrupt-json", '{"cells": [{"cell_type": '), ("empty-file", "")):
        (submissions / student).mkdir()
        (submissions / student / f"{LAB}.ipynb").write_text(content)
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
        "students": sorted([*notebooks, "corrupt-json", "empty-file", "other-lab"]),
    }


def _hidden() -> list[str]:
    """Hidden-test lines that the released notebook does not show anyway."""
    public = "\n".join(c.source for c in nbformat.read(RELEASED, as_version=4).cells)
    lines = integrity.hidden_lines([c.source for c in nbformat.read(SOURCE, as_version=4).cells])
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
        "sys-exit": ({"-"}, {"needs review"}),
        "input-transformer": ({"-"}, {"needs review"}),
        "builtins-patch": ({"-"}, {"needs review"}),
        "fork-bomb": ({"-"}, {"needs review", "kernel died", "timed out"}),
        "memory-bomb": ({maximum, "-"}, {"graded", "kernel died"}),
        "corrupt-json": ({"-"}, {"not a notebook"}),
        "empty-file": ({"-"}, {"not a notebook"}),
        "other-lab": ({"-"}, {"wrong lab"}),
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


@pytest.mark.slow
def test_export_and_feedback_are_honest_and_leak_free(graded_class):
    course, args, table = graded_class["course"], graded_class["course_args"], graded_class["table"]
    status, out = _run_cli("grade", "export", *args)
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    by_student = {row.get("student") or row.get("student_id"): row for row in rows}
    assert sorted(by_student) == graded_class["students"]  # one row each, none lost
    status, out = _run_cli("grade", "export", "--format", "nbgrader", *args)
    nbgrader_rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted(row["student_id"] for row in nbgrader_rows) == graded_class["students"]
    for row in nbgrader_rows:
        # A failure is never a silent 0: anything not graded says so in its status.
        if row["status"] != "graded":
            assert row["status"] == table[row["student_id"]][2].split(" (")[0], row
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
