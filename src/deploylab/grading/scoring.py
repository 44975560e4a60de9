"""What the test cells earned: one :class:`TestOutcome` per cell, and the points per graded
cell, earned and possible, that the gradebook stores. Nothing is read from what the notebook
printed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deploylab.grading.cells import grade_id_of, nbgrader_meta

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = ["TestOutcome", "score_tests"]


@dataclass
class TestOutcome:
    """What one test cell earned, in the trusted process's words.

    ``outcome`` is ``passed``, ``partly passed``, ``failed``, ``timed out`` or ``not run``;
    ``points`` is ``None`` when the cell did not run; ``message`` is instructor text only.
    """

    outcome: str
    points: float | None
    max_points: float
    message: str = ""
    raw_points: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "points": self.points,
            "max_points": self.max_points,
            "message": self.message,
        }


def finite_points(value: Any, limit: float | None) -> float | None:
    if type(value) not in (int, float) or not math.isfinite(value):
        return None
    return float(value) if limit is None else min(max(float(value), 0.0), limit)


# ---------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------
def score_tests(
    tests: Mapping[str, Any], notebook: NotebookNode
) -> tuple[dict[str, list[float | None]], float, float]:
    """Points per graded cell, earned and possible, from the trusted tests' outcomes.

    ``tests`` maps a test cell's grade_id to its :class:`~deploylab.grading.execute.TestOutcome`
    (or its JSON form). A cell that did not run scores ``None``, as does an answer cell that a
    person grades. Nothing is read from what the notebook printed.

    >>> from deploylab.grading.execute import TestOutcome
    >>> import nbformat.v4 as v4
    >>> nb = v4.new_notebook()
    >>> score_tests({"a": TestOutcome("passed", 2.0, 2.0), "b": TestOutcome("not run", None, 3.0)}, nb)
    ({'a': [2.0, 2.0], 'b': [None, 3.0]}, 2.0, 5.0)
    """
    cells: dict[str, list[float | None]] = {}
    for grade_id, outcome in tests.items():
        data = outcome if isinstance(outcome, dict) else outcome.to_json()
        cells[grade_id] = [data.get("points"), float(data.get("max_points") or 0)]
    for cell in notebook.cells:
        meta = nbgrader_meta(cell)
        cell_id = grade_id_of(cell)
        if meta.get("grade") and meta.get("solution") and cell_id and cell_id not in cells:
            cells[cell_id] = [None, float(meta.get("points", 0) or 0)]
    earned_total = sum(earned for earned, _ in cells.values() if earned is not None)
    max_total = sum(max_points for _, max_points in cells.values() if max_points is not None)
    return cells, earned_total, max_total
