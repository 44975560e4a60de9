"""What nbgrader gives each role on a Jupyter server deploylab starts: one owner for both the
classroom hub's single-user servers and ``deploylab lab`` on one machine.

A student gets the Assignments panel but not formgrader, the course list or assignment
creation; nbgrader's Validate dialog is made to say that only the visible tests ran.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "NBGRADER_VALIDATE_SUCCESS",
    "STUDENT_DISABLED_LAB_PLUGINS",
    "STUDENT_DISABLED_SERVER_EXTENSIONS",
    "VALIDATE_SUCCESS",
    "patch_validate_message",
]

#: JupyterLab plug-ins and server extensions students do not get (instructor tools).
STUDENT_DISABLED_LAB_PLUGINS = (
    "@jupyter/nbgrader:formgrader",
    "@jupyter/nbgrader:course-list",
    "@jupyter/nbgrader:create-assignment",
)
STUDENT_DISABLED_SERVER_EXTENSIONS = (
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.course_list",
)

#: nbgrader's Validate dialog claims more than it checked: only the visible tests ran.
NBGRADER_VALIDATE_SUCCESS = "Success! Your notebook passes all the tests."
VALIDATE_SUCCESS = (
    "The visible tests pass. Hidden tests run only when your instructor grades the lab."
)


def patch_validate_message(venv: Path) -> list[Path]:
    """Make nbgrader's JupyterLab extension in ``venv`` say that only the visible tests ran
    (its Validate dialog says "passes all the tests"). Returns the files changed."""
    static = venv / "share" / "jupyter" / "labextensions" / "@jupyter" / "nbgrader" / "static"
    changed = []
    for script in sorted(static.glob("*.js")):
        text = script.read_text(encoding="utf-8")
        if NBGRADER_VALIDATE_SUCCESS in text:
            script.write_text(text.replace(NBGRADER_VALIDATE_SUCCESS, VALIDATE_SUCCESS), "utf-8")
            changed.append(script)
    return changed
