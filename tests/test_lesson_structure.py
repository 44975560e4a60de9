"""Every lesson is built for a learner working alone: it opens with objectives and a time
estimate, names the common misconceptions, asks for predictions before running things, and
its self-check starts empty, answers right/wrong with a hint and keeps the answers folded
away (issue 13, §2). These are static checks of the committed notebooks: fast, no kernel."""

from __future__ import annotations

import ast
import re

import nbformat
import pytest
from notebooks import LESSONS

SELF_CHECK_IMPORT = "from deploylab.widgets.selfcheck import check"


def cells(lesson):
    """The lesson's cells as a learner reads them: speaker notes (slides only) left out."""
    return [
        cell
        for cell in nbformat.read(lesson, as_version=4).cells
        if cell.metadata.get("slideshow", {}).get("slide_type") != "notes"
    ]


def self_check_cells(lesson) -> list[int]:
    return [
        index
        for index, cell in enumerate(cells(lesson))
        if cell.cell_type == "code" and SELF_CHECK_IMPORT in cell.source
    ]


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda path: path.stem)
def test_lesson_opens_with_objectives_and_an_estimated_time(lesson):
    first = cells(lesson)[0]
    assert first.cell_type == "markdown"
    assert "**Learning objectives.**" in first.source, f"{lesson.name}: no learning objectives"
    objectives = re.findall(r"^\d\. ", first.source.split("**Learning objectives.**")[1], re.M)
    assert len(objectives) >= 3, f"{lesson.name}: list at least three objectives"
    assert re.search(r"\*\*Estimated time:\*\* \d+ minutes", first.source), (
        f"{lesson.name}: say how long the lesson takes, as '**Estimated time:** N minutes'"
    )


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda path: path.stem)
def test_lesson_has_a_common_misconceptions_box(lesson):
    boxes = [
        cell.source
        for cell in cells(lesson)
        if cell.cell_type == "markdown" and "**Common misconceptions**" in cell.source
    ]
    assert boxes, f"{lesson.name}: add a '> **Common misconceptions**' box"
    assert boxes[0].count("\n> * ") >= 2, f"{lesson.name}: name at least two misconceptions"


def _assigned_answers(source: str) -> dict[str, ast.expr]:
    answers = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id.startswith(("my_", "your_")):
                    answers[target.id] = node.value
    return answers


def _is_empty(value: ast.expr) -> bool:
    if isinstance(value, ast.Constant):
        return value.value is None
    if isinstance(value, ast.Dict):
        return all(_is_empty(item) for item in value.values)
    return False


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda path: path.stem)
def test_self_check_starts_empty_and_checks_with_hints(lesson):
    found = self_check_cells(lesson)
    assert found, f"{lesson.name}: no self-check cell ({SELF_CHECK_IMPORT})"
    for index in found:
        source = cells(lesson)[index].source
        answers = _assigned_answers(source)
        assert answers, f"{lesson.name}: the self-check cell asks for no my_... answers"
        typed_in = [name for name, value in answers.items() if not _is_empty(value)]
        assert not typed_in, f"{lesson.name}: self-check answers {typed_in} must start as None"
        assert "check(" in source.replace(SELF_CHECK_IMPORT, "")
        assert "assert " not in source, f"{lesson.name}: a self-check says right/wrong, not assert"


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda path: path.stem)
def test_self_check_answers_are_folded_away_after_the_check(lesson):
    all_cells = cells(lesson)
    index = self_check_cells(lesson)[-1]
    before = "\n".join(cell.source for cell in all_cells[:index] if cell.cell_type == "markdown")
    after = all_cells[index + 1]
    assert after.cell_type == "markdown" and after.source.startswith("<details>"), (
        f"{lesson.name}: put the answers in a <details> block right after the self-check cell"
    )
    assert "Predict first, then run" in before, f"{lesson.name}: ask for a prediction first"
    assert "<details>" not in before, f"{lesson.name}: answers appear before the self-check"


@pytest.mark.parametrize(
    "lesson", [path for path in LESSONS if not path.stem.startswith("00")], ids=lambda p: p.stem
)
def test_lesson_asks_for_predictions_before_running_things(lesson):
    prompts = sum(
        cell.source.count("**Predict first")
        for cell in cells(lesson)
        if cell.cell_type == "markdown"
    )
    assert prompts >= 4, f"{lesson.name}: only {prompts} 'Predict first' prompts"


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda path: path.stem)
def test_lesson_never_points_at_notes_the_learner_does_not_have(lesson):
    text = "\n".join(cell.source for cell in cells(lesson) if cell.cell_type == "markdown")
    for phrase in ("the seed", "seed's", "course notes"):
        assert phrase not in text, f"{lesson.name}: '{phrase}' (link assets/notes/ instead)"
    if "study notes" in text:
        assert "assets/notes/deployment-notes.md" in text


def test_start_here_lists_the_lessons_and_ends_with_the_next_steps():
    start = next(path for path in LESSONS if path.stem.startswith("00"))
    all_cells = cells(start)
    assert "**Run → Run All Cells**" in all_cells[0].source  # said before the map is drawn
    last = all_cells[-1].source
    assert last.startswith("## Next steps")
    assert last.index("01-proxies") < last.index("ip-basics")
    listing = "\n".join(cell.source for cell in all_cells)
    positions = [listing.index(f"`{path.stem}`") for path in LESSONS]
    assert positions == sorted(positions), "start-here lists the lessons in order"
