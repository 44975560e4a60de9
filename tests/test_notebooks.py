"""Every lesson runs top to bottom; every committed notebook is clean (no outputs)."""

from __future__ import annotations

import json

import pytest
from notebooks import (
    ALL_NOTEBOOKS,
    KOREAN_LESSONS,
    LESSONS,
    ROOT,
    executed_lesson,
    lesson_settings,
)

#: Every lesson of every edition, with the language its kernel runs in.
EDITION_LESSONS = [(path, "en") for path in LESSONS] + [(path, "ko") for path in KOREAN_LESSONS]


def edition_id(item) -> str:
    return item.relative_to(ROOT).as_posix() if hasattr(item, "relative_to") else item


def test_the_workbook_has_a_start_here_lesson():
    assert (ROOT / "lessons" / "00-start-here.ipynb") in LESSONS


def test_every_lesson_has_a_korean_edition():
    assert [path.name for path in KOREAN_LESSONS] == [path.name for path in LESSONS]


@pytest.mark.slow
@pytest.mark.parametrize(("lesson", "lang"), EDITION_LESSONS, ids=edition_id)
def test_lesson_executes_without_error(lesson, lang):
    notebook = executed_lesson(lesson, lang=lang)
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors
    assert any(cell.get("outputs") for cell in notebook.cells), "the lesson printed nothing at all"


@pytest.mark.parametrize("lesson", LESSONS + KOREAN_LESSONS, ids=edition_id)
def test_lesson_names_the_widget_the_browser_test_waits_for(lesson):
    settings = lesson_settings(lesson)
    assert settings.get("browser_selector"), (
        f"{lesson.name}: set metadata.deploylab.browser_selector to a CSS selector its widget renders"
    )


@pytest.mark.parametrize(
    "notebook_path", ALL_NOTEBOOKS, ids=lambda path: str(path.relative_to(ROOT))
)
def test_notebook_is_committed_without_outputs(notebook_path):
    notebook = json.loads(notebook_path.read_text())
    dirty = [
        index
        for index, cell in enumerate(notebook["cells"])
        if cell.get("outputs") or cell.get("execution_count") is not None
    ]
    assert not dirty, (
        f"{notebook_path.name}: cells {dirty} have outputs; clear them before committing"
    )


@pytest.mark.parametrize(
    "notebook_path",
    [
        path
        for path in ALL_NOTEBOOKS
        if {"autograder", "labs", "labs-ko"} & set(path.relative_to(ROOT).parts)
    ],
    ids=lambda path: str(path.relative_to(ROOT)),
)
def test_lab_notebooks_keep_nbgrader_metadata(notebook_path):
    notebook = json.loads(notebook_path.read_text())
    graded = [
        cell
        for cell in notebook["cells"]
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade")
    ]
    assert graded, f"{notebook_path.name} has no graded cells: nbgrader metadata was lost"
    assert all("grade_id" in cell["metadata"]["nbgrader"] for cell in graded)
