"""nbgrader's gradebook: the lab recorded in it, and each submission's rows (what formgrader
and its export read). Every access goes through :func:`open_gradebook`, quietly.

nbgrader is imported inside the functions: :func:`deploylab.grading.autograde.autograde`
starts the kernels first and imports nbgrader while they boot.
"""

from __future__ import annotations

import contextlib
import warnings

from deploylab.grading.course import Course
from deploylab.grading.results import SubmissionResult
from deploylab.grading.status import GRADED

__all__ = ["ensure_lab_recorded", "has_submission", "open_gradebook", "save_grades"]


def ensure_lab_recorded(course: Course, lab: str, source_digest: str) -> None:
    """Have nbgrader record the lab (and its current source) in the gradebook if needed."""
    from nbgrader.api import MissingEntry

    from deploylab.grading.release import generate_with_nbgrader

    known = False
    if (course.root / "gradebook.db").is_file() and course.release_dir(lab).is_dir():
        with open_gradebook(course) as gradebook:
            try:
                gradebook.find_notebook(lab, lab)
                known = True
            except MissingEntry:
                known = False
    if not known or course.read_state("release.json").get(lab) != source_digest:
        generate_with_nbgrader(course, lab)


@contextlib.contextmanager
def open_gradebook(course: Course):
    """nbgrader's gradebook, quietly: nbgrader 0.9.6 with SQLAlchemy 2.x warns on every new
    submission ("not in session"), which is harmless."""
    from nbgrader.api import Gradebook

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(course.db_url, "deploylab") as gradebook:
            yield gradebook


def _submission_time(text: str) -> dict:
    """``{"timestamp": datetime}`` for nbgrader (late penalties), or ``{}`` if absent/bad."""
    if not text:
        return {}
    from nbgrader.utils import parse_utc

    try:
        return {"timestamp": parse_utc(text)}
    except (ValueError, OverflowError):
        return {}


def save_grades(gradebook, lab: str, result: SubmissionResult) -> None:
    """One submission's rows in nbgrader's gradebook (what formgrader and its export read)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gradebook.update_or_create_student(result.student)
        submission = gradebook.update_or_create_submission(
            lab, result.student, **_submission_time(result.timestamp)
        )
        for submitted_notebook in submission.notebooks:
            for grade in submitted_notebook.grades:
                earned = result.cells.get(grade.name, [None])[0]
                if result.status == GRADED and earned is not None:
                    grade.auto_score = earned
                    grade.needs_manual_grade = grade.manual_score is not None
                else:
                    # Not gradable automatically: formgrader lists it as needing a person.
                    grade.auto_score = None
                    grade.needs_manual_grade = True
            for comment in submitted_notebook.comments:
                earned = result.cells.get(comment.name, [None])[0]
                comment.auto_comment = (
                    "No response."
                    if result.status == GRADED and earned == 0.0 and comment.name in result.cells
                    else None
                )
                if result.status != GRADED:
                    comment.auto_comment = f"{result.status}: {result.detail}"
        gradebook.db.commit()


def has_submission(gradebook, lab: str, student: str) -> bool:
    from nbgrader.api import MissingEntry

    try:
        gradebook.find_submission(lab, student)
    except MissingEntry:
        return False
    return True
