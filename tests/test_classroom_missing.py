"""A student whose folder holds only another lab's notebook did not hand this lab in: the
grade table says "missing" (not "wrong lab"), and no code of theirs runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from notebooks import ROOT


def test_a_student_with_only_another_labs_notebook_is_missing(tmp_path):
    shutil.copytree(ROOT / "autograder" / "source", tmp_path / "autograder" / "source")
    shutil.copy(ROOT / "autograder" / "nbgrader_config.py", tmp_path / "autograder")
    submissions = tmp_path / "submissions"
    (submissions / "alice").mkdir(parents=True)
    shutil.copy(ROOT / "labs" / "vpc" / "vpc.ipynb", submissions / "alice" / "vpc.ipynb")
    graded = subprocess.run(
        [sys.executable, "-m", "deploylab.grading.cli", "grade", "autograde", "ip-basics",
         "--submissions", str(submissions), "--course", str(tmp_path / "autograder"),
         "--labs-dir", str(tmp_path / "labs"), "--quiet", "--unsafe-no-sandbox"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert re.search(r"^alice\s+-\s+9\s+missing \(no ip-basics\.ipynb", graded.stdout, re.M), (
        graded.stdout + graded.stderr
    )
    assert "wrong lab" not in graded.stdout
