"""What formgrader may not do, on a classroom hub and under ``deploylab lab``.

Formgrader's "Autograde" button runs nbgrader's own autograde inside the instructor's server:
the student's code would run as the instructor, with the instructor's files, network and
environment, outside deploylab's sandbox; it also deletes the autograded notebook that
deploylab's grading wrote. This Jupyter server extension (enabled for instructors on the hub,
and by ``deploylab lab``) replaces that action with a refusal that names the command that grades safely. The rest
of formgrader (browsing submissions, manual grading, the gradebook) is unchanged.
"""

from __future__ import annotations

__all__ = ["REFUSAL", "refuse_unsandboxed_autograde"]

REFUSAL = (
    "Autograde from formgrader is turned off: it would run student code unsandboxed, as you. "
    "Grade in a terminal with 'deploylab classroom grade LAB' on a classroom hub, or "
    "'deploylab grade autograde LAB' on one machine (both use the bubblewrap sandbox)."
)


def refuse_unsandboxed_autograde(self, assignment_id, student_id):
    """Stands in for ``NbGraderAPI.autograde``: nothing runs; formgrader shows the refusal."""
    return {"success": False, "error": REFUSAL, "log": REFUSAL}


def _jupyter_server_extension_points():
    return [{"module": "deploylab.classroom.formgrader"}]


def _load_jupyter_server_extension(server_app) -> None:
    from nbgrader.apps.api import NbGraderAPI

    NbGraderAPI.autograde = refuse_unsandboxed_autograde
    server_app.log.info("deploylab: formgrader's unsandboxed autograde is turned off")
