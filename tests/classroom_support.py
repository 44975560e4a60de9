"""A real classroom hub for tests: real unix users (prefix ``dlt``), a real JupyterHub on a
free loopback port, brought up and down by the ``deploylab classroom`` commands themselves.
Shared by the hub, isolation and browser tests (one hub per test module)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from conftest import require_root, require_tool

from deploylab.classroom.layout import Classroom
from deploylab.loopback import free_port

ROOT = Path(__file__).resolve().parents[1]
OPT_DEPLOYLAB = Path("/opt/deploylab-classroom/venv/bin/deploylab")
PASSWORD = "correct horse battery"
RUNUSER = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin") or "runuser"


@dataclass
class TestClassroom:
    """A running classroom and the people on its roster."""

    classroom: Classroom
    instructor: str
    students: list[str]
    up_seconds: float

    @property
    def url(self) -> str:
        return self.classroom.url

    def as_user(self, username: str, *command: str, env: dict | None = None, timeout=300):
        """Run ``command`` as ``username`` (runuser), from their home, with a clean login
        environment; returns the CompletedProcess."""
        home = os.path.expanduser(f"~{username}")
        environment = {
            "HOME": home,
            "USER": username,
            "PATH": f"{OPT_DEPLOYLAB.parent}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "DEPLOYLAB_CLASSROOM": str(self.classroom.state_dir),
            **(env or {}),
        }
        return subprocess.run(
            [RUNUSER, "-u", username, "--", *command],
            cwd=home,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def instructor_runs(self, *arguments: str, timeout=600) -> subprocess.CompletedProcess:
        """``deploylab classroom ARGUMENTS`` as the instructor's own unix user; must succeed."""
        completed = self.as_user(
            self.instructor, str(OPT_DEPLOYLAB), "classroom", *arguments, timeout=timeout
        )
        assert completed.returncode == 0, (
            f"deploylab classroom {' '.join(arguments)} as {self.instructor} failed:\n"
            f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
        )
        return completed


def require_classroom_tools() -> None:
    """Root (accounts), bubblewrap (grading), npm (the proxy) and Debian's python3-venv."""
    require_root()
    require_tool("bwrap", "bubblewrap")
    require_tool("npm", "npm")
    require_tool("runuser", "util-linux")
    if not Path("/usr/bin/python3").is_file():
        pytest.fail("Debian's /usr/bin/python3 is missing (apt-get install python3 python3-venv)")


@contextlib.contextmanager
def running_classroom(students: int = 3, memory: str = "1G"):
    """A hub from a 1-instructor / ``students``-student roster; everything removed after."""
    require_classroom_tools()
    tag = secrets.token_hex(2)
    instructor = f"dlt{tag}i"
    names = [f"dlt{tag}s{number}" for number in range(1, students + 1)]
    state_dir = Path(f"/srv/deploylab-test-{tag}")
    roster = state_dir.with_name(state_dir.name + ".csv")
    rows = [f"{instructor},instructor,Ina,Structor,ina@example.org"]
    rows += [f"{name},student,Student,{number}," for number, name in enumerate(names, start=1)]
    roster.write_text("username,role,first_name,last_name,email\n" + "\n".join(rows) + "\n")
    port = free_port()
    command = [sys.executable, "-m", "deploylab.cli", "classroom"]
    started = time.monotonic()
    up = subprocess.run(
        [*command, "up", "--roster", str(roster), "--port", str(port), "--memory", memory,
         "--course", f"dlt{tag}", "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    up_seconds = time.monotonic() - started
    try:
        assert up.returncode == 0, f"classroom up failed:\n{up.stdout}\n{up.stderr}"
        yield TestClassroom(Classroom.load(state_dir), instructor, names, up_seconds)
    finally:
        subprocess.run(
            [*command, "down", "--remove-users", "--state-dir", str(state_dir)],
            capture_output=True,
            timeout=120,
        )
        for name in [instructor, *names]:  # accounts from a failed 'up'
            subprocess.run(["userdel", "--remove", name], capture_output=True)
        subprocess.run(["groupdel", f"dlt{tag}-teach"], capture_output=True)
        shutil.rmtree(state_dir, ignore_errors=True)
        roster.unlink(missing_ok=True)


def answered(released: dict, wrong: set[str] = frozenset()) -> nbformat.NotebookNode:
    """The released lab notebook with the instructor's solutions put in every answer cell
    except those whose grade_id is in ``wrong`` (left as the released stub)."""
    notebook = nbformat.from_dict(released)
    lab = notebook_lab(notebook)
    source = nbformat.read(ROOT / "autograder" / "source" / lab / f"{lab}.ipynb", as_version=4)
    solutions = {
        cell.metadata.nbgrader["grade_id"]: cell.source
        for cell in source.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in solutions and grade_id not in wrong:
            cell.source = solutions[grade_id]
    return notebook


def notebook_lab(notebook) -> str:
    """Which lab a released notebook is (by its answer cells' grade ids)."""
    ids = {cell.metadata.get("nbgrader", {}).get("grade_id") for cell in notebook.cells}
    for path in (ROOT / "autograder" / "source").glob("*/*.ipynb"):
        source = nbformat.read(path, as_version=4)
        if ids & {cell.metadata.get("nbgrader", {}).get("grade_id") for cell in source.cells
                  if cell.metadata.get("nbgrader", {}).get("solution")}:  # fmt: skip
            return path.parent.name
    raise AssertionError("not a released lab of this course")
