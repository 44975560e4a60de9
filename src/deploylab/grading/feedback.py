"""Per-student HTML feedback built only from the instructor's text and the grader's verdicts.

``autograder/feedback/<student>/<lab>/<lab>.html`` lists each test cell as passed, partly
passed, failed or not run, with its points and the message the trusted tests reported (the
literal text of the failing ``assert`` in the instructor's master, see
:mod:`deploylab.grading.trusted_tests`), the visible tests as the student was given them,
the student's own answers, and what the instructor entered in formgrader (manual scores and
comments, read back from nbgrader's gradebook by :func:`instructor_review`). Nothing the student's code printed, raised or returned is
shown: the hidden tests never ran where that code could see them, and their text is never
put on the page, so no encoding of output can carry them here.
"""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from deploylab.grading.cells import hidden_blocks
from deploylab.grading.course import Course
from deploylab.grading.results import SubmissionResult, load_results
from deploylab.grading.status import FAILED, GRADED, NOT_RUN, PARTLY_PASSED, PASSED, TEST_TIMED_OUT

__all__ = ["InstructorReview", "generate_feedback", "instructor_review", "visible_part"]


def visible_part(source: str) -> tuple[str, int]:
    """A test cell's source without its hidden block, and how many hidden lines it had.

    >>> visible_part("assert f(1) == 1\\n### BEGIN HIDDEN TESTS\\nassert f(2) == 2\\n### END HIDDEN TESTS")
    ('assert f(1) == 1', 1)
    """
    shown, hidden = hidden_blocks(source)
    return "\n".join(shown).rstrip(), len(hidden)


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem}.summary{font-size:1.1rem;padding:.6rem 1rem;border-radius:.4rem;background:#eef}
.test{border:1px solid #ccc;border-radius:.4rem;margin:1rem 0;padding:.5rem 1rem}
.passed{border-left:.5rem solid #2a2}.partial{border-left:.5rem solid #d90}.failed{border-left:.5rem solid #c22}
.notrun{border-left:.5rem solid #888}
.instructor{background:#eef7ee;padding:.4rem;white-space:pre-wrap}
.verdict{font-weight:bold}.message{background:#fff3f3;padding:.4rem;white-space:pre-wrap}
pre{background:#f6f6f6;padding:.5rem;overflow-x:auto}.hidden{color:#666;font-style:italic}
"""


_LABELS = {
    PASSED: ("passed", "Passed"),
    PARTLY_PASSED: ("partial", "Partly passed"),
    FAILED: ("failed", "Failed"),
    TEST_TIMED_OUT: ("failed", "Timed out"),
    NOT_RUN: ("notrun", "Not run"),
}


@dataclass(frozen=True)
class InstructorReview:
    """What the instructor entered in formgrader for one submission, from the gradebook."""

    manual_scores: dict[str, float] = field(default_factory=dict)  # grade id -> points
    comments: dict[str, str] = field(default_factory=dict)  # cell id -> comment
    score: float | None = None  # the gradebook's total: automatic and manual points
    penalty: float = 0.0  # late-submission penalty


def instructor_review(course: Course, lab: str, student: str) -> InstructorReview:
    """Manual scores, comments and the total that formgrader (nbgrader's gradebook) holds for
    ``student``'s ``lab``; empty when the gradebook has no such submission."""
    from nbgrader.api import Gradebook, MissingEntry

    if not (course.root / "gradebook.db").is_file():
        return InstructorReview()
    with warnings.catch_warnings(), Gradebook(course.db_url, "deploylab") as gradebook:
        warnings.simplefilter("ignore")  # nbgrader 0.9 with SQLAlchemy 2 warns on queries
        try:
            submission = gradebook.find_submission(lab, student)
        except MissingEntry:
            return InstructorReview()
        scores, comments = {}, {}
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                if grade.manual_score is not None:
                    scores[grade.name] = float(grade.manual_score)
            for comment in notebook.comments:
                if comment.manual_comment:
                    comments[comment.name] = str(comment.manual_comment)
        return InstructorReview(
            scores,
            comments,
            float(submission.score),
            float(submission.late_submission_penalty or 0.0),
        )


def _comment_html(review: InstructorReview, cell_id: str) -> str:
    comment = review.comments.get(cell_id)
    if not comment:
        return ""
    return f"<div class='instructor'><b>Your instructor:</b> {html.escape(comment)}</div>"


def _summary(result: SubmissionResult, review: InstructorReview) -> str:
    by_hand = bool(review.manual_scores) and review.score is not None
    if by_hand or (result.status == GRADED and result.score is not None):
        total = review.score if by_hand else result.score
        assert total is not None  # by_hand or a graded score, checked just above
        late = ""
        if review.penalty:
            late = f" (after a late penalty of {review.penalty:g})"
            total = max(0.0, total - review.penalty)
        note = " Includes points your instructor gave by hand." if by_hand else ""
        return f"<p class='summary'>Score: <b>{total:g} / {result.max_score:g}</b>{late}.{note}</p>"
    return (
        f"<p class='summary'>Status: <b>{html.escape(result.status)}</b>: "
        f"{html.escape(result.detail)}. Your instructor will look at this submission; "
        "the results below (if any) are not your grade.</p>"
    )


def _page(
    result: SubmissionResult | None,
    lab: str,
    student: str,
    instructor,
    executed,
    review: InstructorReview | None = None,
) -> str:
    """The feedback page: verdicts and messages from ``result``, test text from the
    ``instructor`` master (visible part only), answers from the student's ``executed`` copy,
    manual scores and comments from the instructor's ``review``."""
    review = review or InstructorReview()
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(lab)} feedback for {html.escape(student)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(lab)}: feedback for {html.escape(student)}</h1>",
    ]
    if result is None:
        parts.append("<p class='summary'>No graded submission was found.</p></body></html>")
        return "\n".join(parts)
    parts.append(_summary(result, review))
    answers = {}
    for cell in executed.cells if executed is not None else []:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and not meta.get("grade"):
            answers[str(meta.get("grade_id"))] = str(cell.get("source", ""))
    for cell in instructor.cells if instructor is not None else []:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        grade_id = str(meta.get("grade_id"))
        if grade_id in answers:
            parts.append(
                f"<h3>Your answer <code>{html.escape(grade_id)}</code></h3>"
                f"<pre>{html.escape(answers[grade_id])}</pre>"
            )
            parts.append(_comment_html(review, grade_id))
        max_points = float(meta.get("points", 0) or 0)
        if meta.get("grade") and (meta.get("solution") or cell.cell_type != "code"):
            given = review.manual_scores.get(grade_id)
            shown = "not graded yet" if given is None else f"{given:g} / {max_points:g} points"
            parts.append(
                f"<p><span class='verdict'>Graded by your instructor</span> "
                f"<code>{html.escape(grade_id)}</code>: {shown}</p>"
            )
            continue
        if not meta.get("grade") or meta.get("solution"):
            continue
        test = result.tests.get(grade_id) or {"outcome": "not run", "points": None}
        css, label = _LABELS.get(str(test.get("outcome")), _LABELS["not run"])
        points = test.get("points")
        shown = "-" if points is None else f"{points:g}"
        visible, hidden_count = visible_part(str(cell.source))
        parts.append(f"<div class='test {css}'>")
        parts.append(
            f"<p><span class='verdict'>{label}</span> <code>{html.escape(grade_id)}</code>: "
            f"{shown} / {max_points:g} points</p>"
        )
        message = str(test.get("message") or "")
        if message and test.get("outcome") != PASSED:
            parts.append(f"<div class='message'>{html.escape(message)}</div>")
        if grade_id in review.manual_scores:
            parts.append(
                f"<p class='instructor'>Your instructor changed this to "
                f"<b>{review.manual_scores[grade_id]:g} / {max_points:g}</b> points.</p>"
            )
        parts.append(_comment_html(review, grade_id))
        parts.append(
            f"<details><summary>Visible tests</summary><pre>{html.escape(visible)}</pre></details>"
        )
        if hidden_count:
            parts.append(
                "<p class='hidden'>This cell also ran hidden tests of the same kind; "
                "their code is not shown.</p>"
            )
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def generate_feedback(course: Course, lab: str) -> list[Path]:
    """Write one HTML page per graded student of ``lab``; returns the paths written."""
    import nbformat

    instructor = nbformat.read(course.source_notebook(lab), as_version=4)
    written: list[Path] = []
    for result in load_results(course, lab):
        notebook_path = course.autograded_dir(result.student, lab) / f"{lab}.ipynb"
        executed = None
        if notebook_path.is_file() and not notebook_path.is_symlink():
            executed = nbformat.read(notebook_path, as_version=4)
        review = instructor_review(course, lab, result.student)
        page = _page(result, lab, result.student, instructor, executed, review)
        target = course.feedback_dir(result.student, lab)
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"{lab}.html"
        path.write_text(page, encoding="utf-8")
        written.append(path)
    return written
