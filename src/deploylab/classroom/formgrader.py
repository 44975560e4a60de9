"""What formgrader may not do, on a classroom hub and under ``deploylab lab``.

Formgrader's "Autograde" button runs nbgrader's own autograde inside the instructor's server:
the student's code would run as the instructor, with the instructor's files, network and
environment, outside deploylab's sandbox; it also deletes the autograded notebook that
deploylab's grading wrote. Its "Generate Feedback" buttons write nbgrader's own feedback
pages, which show the hidden tests, to the very path deploylab's feedback (made without
them) is handed back from. This Jupyter server extension (enabled for instructors on the
hub, and by ``deploylab lab``) replaces both actions with a refusal that names the command
that does the job safely. The rest of formgrader (browsing submissions, manual grading, the
gradebook) is unchanged.
"""

from __future__ import annotations

__all__ = [
    "FEEDBACK_REFUSAL",
    "REFUSAL",
    "refuse_feedback_with_hidden_tests",
    "refuse_unsandboxed_autograde",
]

REFUSAL = (
    "Autograde from formgrader is turned off: it would run student code unsandboxed, as you. "
    "Grade in a terminal with 'deploylab classroom grade LAB' on a classroom hub, or "
    "'deploylab grade autograde LAB' on one machine (both use the bubblewrap sandbox)."
)


FEEDBACK_REFUSAL = (
    "Generate Feedback from formgrader is turned off: nbgrader's own feedback pages show "
    "the hidden tests to the students. Make feedback with 'deploylab classroom grade LAB' on "
    "a classroom hub (it hands it back too), or 'deploylab grade feedback LAB' on one machine "
    "(both leave the hidden tests out)."
)


def refuse_unsandboxed_autograde(self, assignment_id, student_id, force=True, create=True):
    """Stands in for ``NbGraderAPI.autograde``: nothing runs; formgrader shows the refusal."""
    return {"success": False, "error": REFUSAL, "log": REFUSAL}


def refuse_feedback_with_hidden_tests(self, assignment_id, student_id=None, force=True):
    """Stands in for ``NbGraderAPI.generate_feedback`` (one student's or the whole class's):
    nothing is written; formgrader shows the refusal."""
    return {"success": False, "error": FEEDBACK_REFUSAL, "log": FEEDBACK_REFUSAL}


def _jupyter_server_extension_points():
    return [{"module": "deploylab.classroom.formgrader"}]


def _load_jupyter_server_extension(server_app) -> None:
    from nbgrader.apps.api import NbGraderAPI

    NbGraderAPI.autograde = refuse_unsandboxed_autograde
    NbGraderAPI.generate_feedback = refuse_feedback_with_hidden_tests
    server_app.log.info(
        "deploylab: formgrader's unsandboxed autograde and its feedback with hidden tests "
        "are turned off"
    )
