"""A Korean submission of every lab grades exactly as the English one.

For each lab, the same answers are written into the English student version (``labs/``) and
the Korean one (``labs-ko/``) — all of them, only the first, and none — and one batch of
``deploylab grade autograde`` grades the six notebooks against the one nbgrader assignment.
The pairs must get the same score and status, and the answers must earn points.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import nbformat
import pytest
from test_grading_pipeline import seed_gradebook

from deploylab.grading.autograde import sandbox_problem
from deploylab.grading.cli import main  # the `deploylab grade …` commands

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "autograder" / "source"
LABS = sorted(
    path.parent.name for path in SOURCE.glob("*/*.ipynb") if path.stem == path.parent.name
)
SANDBOX_ARGS = [] if sandbox_problem() is None else ["--unsafe-no-sandbox"]

pytestmark = pytest.mark.slow


def solutions(lab: str) -> dict[str, str]:
    """grade_id → the instructor's answer code (solution markers removed)."""
    source = nbformat.read(SOURCE / lab / f"{lab}.ipynb", as_version=4)
    answers = {}
    for cell in source.cells:
        grading = cell.metadata.get("nbgrader", {})
        if grading.get("solution") and cell.cell_type == "code":
            lines = [
                line
                for line in cell.source.splitlines()
                if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")
            ]
            answers[grading["grade_id"]] = "\n".join(lines)
    return answers


def answered(student_version, answers: dict[str, str]):
    notebook = copy.deepcopy(student_version)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return notebook


def parse_table(text: str) -> dict[str, tuple[str, str, str]]:
    """``deploylab grade autograde`` table → {student: (score, max, status)}."""
    rows = {}
    for line in text.strip().splitlines()[2:]:
        student, score, maximum, status = line.split(None, 3)
        rows[student] = (score, maximum, status)
    return rows


@pytest.mark.parametrize("lab", LABS)
def test_korean_submission_grades_exactly_as_the_english_one(lab, tmp_path, capsys):
    course = tmp_path / "autograder"
    shutil.copytree(SOURCE, course / "source")
    shutil.copy(ROOT / "autograder" / "nbgrader_config.py", course / "nbgrader_config.py")
    seed_gradebook(course)
    answers = solutions(lab)
    first = dict([next(iter(answers.items()))])
    submissions = tmp_path / "submissions"
    for edition in ("labs", "labs-ko"):
        student_version = nbformat.read(ROOT / edition / lab / f"{lab}.ipynb", as_version=4)
        suffix = "ko" if edition == "labs-ko" else "en"
        for name, given in (("full", answers), ("first", first), ("none", {})):
            folder = submissions / f"{name}-{suffix}"
            folder.mkdir(parents=True)
            nbformat.write(answered(student_version, given), folder / f"{lab}.ipynb")

    capsys.readouterr()
    status = main(
        [
            "grade",
            "autograde",
            lab,
            "--submissions",
            str(submissions),
            "--quiet",
            "--jobs",
            "1",  # one grading thread: CPython 3.11's ast is not thread-safe (gh-106905)
            # Generous limits: on a shared, busy machine a 30 s cell limit times out at random,
            # and a Korean and English pair must not differ for that reason.
            "--cell-timeout",
            "120",
            "--notebook-timeout",
            "900",
            *SANDBOX_ARGS,
            "--course",
            str(course),
            "--labs-dir",
            str(tmp_path / "labs"),
        ]
    )
    table = parse_table(capsys.readouterr().out)
    assert status == 0, table
    for name in ("full", "first", "none"):
        assert table[f"{name}-ko"] == table[f"{name}-en"], (name, table)
        assert table[f"{name}-ko"][2] == "graded"
    # Not a vacuous match: the answers earn points, the untouched notebook earns none.
    assert float(table["full-ko"][0]) > float(table["none-ko"][0]) == 0, table
