"""How each submission ended, as stored in ``autograder/.deploylab/status.json`` (statuses,
content hashes, scores: a rerun grades only what changed), and the table people read."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from deploylab.grading.course import Course
from deploylab.grading.status import GRADED

__all__ = ["STATUS_FILE", "SubmissionResult", "format_table", "load_results", "printable"]


STATUS_FILE = "status.json"


@dataclass
class SubmissionResult:
    """How one student's submission of one lab ended.

    ``score`` is ``None`` unless ``status`` is ``graded``: the points the tests would have
    given otherwise are kept in ``provisional_score`` for the instructor, never exported as a
    grade. ``cells`` maps each test cell's grade_id to ``[points earned or None, max points]``;
    ``tests`` to the trusted verdict (outcome, points, instructor message) feedback is made of.
    """

    student: str
    lab: str
    status: str
    max_score: float
    score: float | None = None
    provisional_score: float | None = None
    detail: str = ""
    digest: str = ""
    cells: dict[str, list] = field(default_factory=dict)
    tests: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0
    timestamp: str = ""
    reused: bool = False

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("reused")
        return data

    @classmethod
    def from_json(cls, data: dict) -> SubmissionResult:
        known = {name for name in cls.__dataclass_fields__ if name != "reused"}
        return cls(**{key: value for key, value in data.items() if key in known})


def load_results(course: Course, lab: str | None = None) -> list[SubmissionResult]:
    """Stored results (``autograder/.deploylab/status.json``), sorted by lab and student."""
    state = course.read_state(STATUS_FILE)
    results = []
    for lab_name in sorted(state):
        if lab is not None and lab_name != lab:
            continue
        for student in sorted(state[lab_name]):
            results.append(SubmissionResult.from_json(state[lab_name][student]))
    return results


def format_points(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def printable(text: str) -> str:
    """``text`` as printable characters only, for a terminal: control and other unprintable
    characters (a newline, the escape sequences a student put in a folder name or in a
    notebook that an error message quotes) are shown as their escapes, never sent as they are.

    >>> printable("bob\\x1b[2J\\nalice  9  9  graded")
    'bob\\\\x1b[2J\\\\nalice  9  9  graded'
    """
    return "".join(
        character if character.isprintable() else repr(character)[1:-1] for character in text
    )


def format_table(results: list[SubmissionResult]) -> str:
    """The per-student score table: student, score, max, status (and why, if not graded).

    >>> print(format_table([SubmissionResult("ann", "lab", "graded", 9.0, score=7.0),
    ...                     SubmissionResult("bob", "lab", "timed out", 9.0, detail="cell 3")]))
    student  score  max  status
    -------  -----  ---  ------------------
    ann          7    9  graded
    bob          -    9  timed out (cell 3)
    """
    rows = [("student", "score", "max", "status")]
    for result in results:
        detail = result.detail if len(result.detail) <= 70 else result.detail[:67] + "..."
        status = result.status + (f" ({detail})" if detail and result.status != GRADED else "")
        rows.append(
            (
                printable(result.student),
                format_points(result.score),
                format_points(result.max_score),
                printable(status),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = []
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].rjust(widths[2]), row[3]]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
