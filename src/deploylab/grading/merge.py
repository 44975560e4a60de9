"""The notebook that is executed: the instructor's cells with the student's answers in them
(nbgrader's own merge, minus trusting anything the student edited outside answer cells)."""

from __future__ import annotations

import copy
import re

import nbformat

from deploylab.grading.cells import grade_id_of, nbgrader_meta

__all__ = ["inert_markdown", "merge_submission"]


def inert_markdown(source: str) -> str:
    """A student's markdown as a fenced code block of its text: shown, never rendered.

    The executed notebook becomes the autograded one, which formgrader renders in the
    instructor's own Jupyter origin, and nbgrader's formgrade template renders markdown
    unsanitised: a student's ``<script>``, ``<img onerror=…>`` or ``javascript:`` link would
    run as the instructor (and could change any grade). In a code block the markdown
    renderer escapes it; the fence is longer than any run of backticks in the text, so no
    line of it can close the block.

    >>> print(inert_markdown("<img src=x onerror=alert(1)> and ```code```"))
    ````
    <img src=x onerror=alert(1)> and ```code```
    ````
    """
    longest = max((len(run) for run in re.findall(r"`+", source)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{source}\n{fence}"


def merge_submission(instructor, released, submitted):
    """The notebook to execute: the instructor's cells, with the student's answers in them.

    ``instructor`` is the source notebook (hidden tests included), ``released`` the student
    version nbgrader generated (its stubs and checksums), ``submitted`` what the student
    handed in. Every cell of the instructor version appears, in its order, with its metadata;
    a solution cell takes the source of the student's cell with the same grade_id (the stub
    if the student deleted it). Cells the student added keep their place after the preceding
    instructor cell and lose their metadata (nbgrader's, and what would hide them from the
    instructor); the student's copies of locked cells are ignored, so edited or deleted tests
    are restored. Markdown the student wrote (an answer or a cell of their own) is kept as its
    text (:func:`inert_markdown`).

    >>> import nbformat.v4 as v4
    >>> def cell(source, grade_id, solution):
    ...     c = v4.new_code_cell(source)
    ...     c.metadata["nbgrader"] = {"grade_id": grade_id, "solution": solution,
    ...                               "grade": not solution, "locked": not solution}
    ...     return c
    >>> source = v4.new_notebook(cells=[cell("x = 1", "answer", True), cell("assert x == 1", "test", False)])
    >>> student = v4.new_notebook(cells=[cell("x = 2", "answer", True), v4.new_code_cell("y = 3"),
    ...                                  cell("pass", "test", False)])
    >>> [c.source for c in merge_submission(source, source, student).cells]
    ['x = 2', 'y = 3', 'assert x == 1']
    """

    released_by_id = {grade_id_of(cell): cell for cell in released.cells if grade_id_of(cell)}
    instructor_ids = [grade_id_of(cell) for cell in instructor.cells]
    solution_ids = {
        grade_id_of(cell) for cell in instructor.cells if nbgrader_meta(cell).get("solution")
    }
    answers: dict[str, object] = {}
    extras: dict[str | None, list] = {}
    anchor: str | None = None
    for cell in submitted.cells:
        grade_id = grade_id_of(cell)
        if grade_id in solution_ids and grade_id not in answers:
            answers[grade_id] = cell
            anchor = grade_id
        elif grade_id in instructor_ids:
            anchor = grade_id  # a locked cell: the instructor's copy is used instead
        elif cell.get("cell_type") in ("code", "markdown", "raw"):
            extra = copy.deepcopy(cell)
            # None of the student's metadata: not nbgrader's roles, and not what hides a
            # cell's code from formgrader (transient.remove_source, jupyter.source_hidden).
            extra["metadata"] = nbformat.NotebookNode()
            if extra.get("cell_type") == "markdown":
                extra["source"] = inert_markdown(_text(extra.get("source", "")))
            extras.setdefault(anchor, []).append(extra)

    merged = copy.deepcopy(instructor)
    merged.cells = []
    merged.cells.extend(extras.get(None, []))
    for index, cell in enumerate(instructor.cells):
        grade_id = grade_id_of(cell)
        new_cell = copy.deepcopy(cell)
        meta = new_cell.metadata.get("nbgrader")
        if grade_id in released_by_id and meta is not None:
            checksum = nbgrader_meta(released_by_id[grade_id]).get("checksum")
            if checksum:
                meta["checksum"] = checksum
        if grade_id in solution_ids:
            answer = answers.get(grade_id, released_by_id.get(grade_id, cell))
            new_cell.source = _text(answer.get("source", ""))
            if new_cell.cell_type == "markdown":
                new_cell.source = inert_markdown(new_cell.source)
        if new_cell.cell_type == "code":
            new_cell.outputs = []
            new_cell.execution_count = None
        new_cell.setdefault("id", f"cell-{index}")
        merged.cells.append(new_cell)
        merged.cells.extend(extras.get(grade_id, []) if grade_id else [])
    # Student cells carry their own ids; make them unique and valid for nbformat 4.5.
    seen: set[str] = set()
    for number, cell in enumerate(merged.cells):
        if cell.get("id") in seen or not cell.get("id"):
            cell["id"] = f"student-{number}"
        seen.add(cell["id"])
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.validate(merged)
    return merged


def _text(source: object) -> str:
    """A cell's source as one string (nbformat allows a list of lines on disk)."""
    return "".join(map(str, source)) if isinstance(source, list) else str(source)
