"""Grades out of the gradebook, with each submission's status next to its score.

Two CSV shapes: ``wide`` (one row per student: a column per lab, total, status — for people
and LMS imports) and ``nbgrader`` (the columns of nbgrader's ``CsvExportPlugin``, one row per
student and lab, plus ``status``). A submission that was not graded automatically (timed out,
kernel died, not a notebook, wrong lab, needs review) has an EMPTY score, never 0, until the
instructor grades it in formgrader; a lab a student never handed in is ``missing``.
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass
from typing import TypedDict

from deploylab.grading.course import Course
from deploylab.grading.results import load_results
from deploylab.grading.status import GRADED

__all__ = ["NBGRADER_COLUMNS", "LabGrade", "collect_grades", "export_csv", "spreadsheet_safe"]

#: nbgrader 0.9.6 ``CsvExportPlugin`` columns, in its order.
NBGRADER_COLUMNS = [
    "assignment",
    "duedate",
    "timestamp",
    "student_id",
    "last_name",
    "first_name",
    "email",
    "raw_score",
    "late_submission_penalty",
    "score",
    "max_score",
]
MISSING = "missing"


class _Shared(TypedDict):
    """The fields of a :class:`LabGrade` that come from the lab and the student alone."""

    duedate: str
    last_name: str
    first_name: str
    email: str


@dataclass
class LabGrade:
    """One student's grade for one lab as exported; ``score`` is ``None`` when not graded."""

    lab: str
    student: str
    status: str
    score: float | None
    max_score: float
    raw_score: float | None = None
    penalty: float = 0.0
    timestamp: str = ""
    duedate: str = ""
    last_name: str = ""
    first_name: str = ""
    email: str = ""


def collect_grades(course: Course) -> list[LabGrade]:
    """Every (lab, student) pair the gradebook or our status file knows, sorted."""
    from nbgrader.api import Gradebook, MissingEntry

    statuses = {(result.lab, result.student): result for result in load_results(course)}
    grades: list[LabGrade] = []
    if not (course.root / "gradebook.db").is_file():
        return grades
    with warnings.catch_warnings(), Gradebook(course.db_url, "deploylab") as gradebook:
        warnings.simplefilter("ignore")
        labs = sorted(assignment.name for assignment in gradebook.assignments)
        students = {student.id: student for student in gradebook.students}
        for lab in labs:
            assignment = gradebook.find_assignment(lab)
            for student_id in sorted(students):
                student = students[student_id]
                common: _Shared = {
                    "duedate": "" if assignment.duedate is None else str(assignment.duedate),
                    "last_name": student.last_name or "",
                    "first_name": student.first_name or "",
                    "email": student.email or "",
                }
                stored = statuses.get((lab, student_id))
                try:
                    submission = gradebook.find_submission(lab, student_id)
                except MissingEntry:
                    grades.append(
                        LabGrade(lab, student_id, MISSING, None, assignment.max_score, **common)
                    )
                    continue
                status = stored.status if stored else GRADED
                reviewed = not submission.needs_manual_grade
                score = raw = None
                if status == GRADED or reviewed:
                    raw = float(submission.score)
                    score = max(0.0, raw - float(submission.late_submission_penalty or 0.0))
                    if status != GRADED:
                        status = f"{status}, reviewed"
                elif status == GRADED:
                    status = "needs manual grade"
                grades.append(
                    LabGrade(
                        lab,
                        student_id,
                        status,
                        score,
                        float(submission.max_score),
                        raw_score=raw,
                        penalty=float(submission.late_submission_penalty or 0.0),
                        timestamp="" if submission.timestamp is None else str(submission.timestamp),
                        **common,
                    )
                )
    return grades


def spreadsheet_safe(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet shows as text, never runs as a formula (OWASP's
    CSV injection advice: a leading ``=``, ``+``, ``-``, ``@``, tab or CR gets a quote).

    >>> spreadsheet_safe("=HYPERLINK(1)"), spreadsheet_safe("ann")
    ("'=HYPERLINK(1)", 'ann')
    """
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def export_csv(course: Course, shape: str = "wide") -> str:
    """The CSV text of all grades, ``wide`` or ``nbgrader``-shaped."""
    grades = collect_grades(course)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if shape == "nbgrader":
        writer.writerow([*NBGRADER_COLUMNS, "status"])
        for grade in grades:
            writer.writerow(
                [
                    grade.lab,
                    grade.duedate,
                    grade.timestamp,
                    spreadsheet_safe(grade.student),
                    spreadsheet_safe(grade.last_name),
                    spreadsheet_safe(grade.first_name),
                    spreadsheet_safe(grade.email),
                    _number(grade.raw_score),
                    _number(grade.penalty),
                    _number(grade.score),
                    _number(grade.max_score),
                    spreadsheet_safe(grade.status),
                ]
            )
        return out.getvalue()
    if shape != "wide":
        raise ValueError(f"unknown export format {shape!r}: expected 'wide' or 'nbgrader'")
    labs = sorted({grade.lab for grade in grades})
    by_student: dict[str, dict[str, LabGrade]] = {}
    for grade in grades:
        by_student.setdefault(grade.student, {})[grade.lab] = grade
    writer.writerow(["student_id", *labs, "total", "max_total", "status"])
    for student in sorted(by_student):
        row = by_student[student]
        scores = [row[lab].score if lab in row else None for lab in labs]
        total = sum(score for score in scores if score is not None)
        max_total = sum(row[lab].max_score for lab in labs if lab in row)
        problems = [
            f"{lab}: {row[lab].status}" for lab in labs if lab in row and row[lab].status != GRADED
        ]
        writer.writerow(
            [
                spreadsheet_safe(student),
                *(_number(score) for score in scores),
                _number(total) if any(score is not None for score in scores) else "",
                _number(max_total),
                spreadsheet_safe("; ".join(problems) or GRADED),
            ]
        )
    return out.getvalue()
