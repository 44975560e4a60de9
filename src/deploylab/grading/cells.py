"""What a notebook cell is to the grader: its nbgrader metadata, its grade_id, where it runs,
its points, and the one parser of ``### BEGIN/END HIDDEN TESTS`` blocks.

>>> shown, hidden = hidden_blocks("a = 1\\n### BEGIN HIDDEN TESTS\\nassert a\\n### END HIDDEN TESTS")
>>> shown, hidden
(['a = 1'], ['assert a'])
"""

from __future__ import annotations

import math
from typing import Any

from nbformat import NotebookNode

__all__ = [
    "BEGIN_HIDDEN",
    "END_HIDDEN",
    "cell_role",
    "grade_id_of",
    "hidden_blocks",
    "max_points_of",
    "nbgrader_meta",
]

BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"


def nbgrader_meta(cell: Any) -> dict[str, Any]:
    """A cell's ``metadata.nbgrader`` (an empty dict when absent or malformed)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def grade_id_of(cell: Any) -> str | None:
    """A cell's nbgrader ``grade_id``, or ``None``."""
    value = nbgrader_meta(cell).get("grade_id")
    return value if isinstance(value, str) else None


def hidden_blocks(source: str) -> tuple[list[str], list[str]]:
    """The lines of a test cell outside and inside its hidden-test blocks (markers dropped)."""
    shown: list[str] = []
    hidden: list[str] = []
    inside = False
    for line in source.splitlines():
        marker = line.strip()
        if marker == BEGIN_HIDDEN:
            inside = True
        elif marker == END_HIDDEN:
            inside = False
        else:
            (hidden if inside else shown).append(line)
    return shown, hidden


def cell_role(cell: NotebookNode) -> str:
    """Where a cell of the merged notebook runs: ``"test"`` (trusted process only),
    ``"setup"`` (instructor code: kernel and trusted process), ``"student"`` (kernel only)
    or ``"skip"`` (markdown, raw, empty).

    >>> import nbformat.v4 as v4
    >>> test = v4.new_code_cell("assert f(1) == 1")
    >>> test.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True}
    >>> cell_role(test), cell_role(v4.new_code_cell("x = 1")), cell_role(v4.new_markdown_cell("hi"))
    ('test', 'student', 'skip')
    """
    if cell.get("cell_type") != "code" or not str(cell.get("source", "")).strip():
        return "skip"
    meta = cell.get("metadata", {}).get("nbgrader", {})
    if not isinstance(meta, dict) or meta.get("solution"):
        return "student"
    if meta.get("grade"):
        return "test"
    if meta.get("locked"):
        return "setup"
    return "student"


def max_points_of(meta: dict[str, Any]) -> float:
    """A test cell's points from its nbgrader metadata: a finite number >= 0, else 0.

    >>> max_points_of({"points": 2}), max_points_of({"points": "nan"}), max_points_of({})
    (2.0, 0.0, 0.0)
    """
    try:
        points = float(meta.get("points", 0) or 0)
    except (TypeError, ValueError):
        return 0.0
    return points if math.isfinite(points) and points >= 0 else 0.0
