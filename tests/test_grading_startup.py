"""What a fresh ``deploylab grade ...`` process loads (issue 16, item 6: the grading slowdown).

nbformat imports jsonschema, and jsonschema imports ``rfc3987_syntax`` when it can: that
package builds a Lark grammar at import time (1-2 s of CPU here, about a quarter of what a
class of 8 costs the grader; see grading.md) only for a string format notebooks never use.
The grading commands keep it out. When grading/ was split, ``autograde.py`` began importing
nbformat at its top, the handler's first line imported it before the skip ran, and each
``grade autograde`` paid for the grammar again: 0.35 s more per submission, seen only in the
benchmark. So each command runs here as a real process, and its modules are looked at.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_grading_pipeline import (
    SANDBOX_ARGS,
    course_args,
    make_course,
    released_notebook,
    write_submission,
)

from deploylab.cli import Commands
from deploylab.grading.cli import register

#: Runs ``python -m deploylab.grading.cli ARGS`` in this process, then says what it imported.
PROBE = """
import json, runpy, sys
arguments = json.loads(sys.argv[1])
sys.argv = ["deploylab.grading.cli", *arguments]
try:
    runpy.run_module("deploylab.grading.cli", run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as stop:
    code = stop.code
modules = {name: repr(sys.modules.get(name, "absent")) for name in ("jsonschema", "rfc3987_syntax")}
print("PROBE " + json.dumps({"exit": code, "modules": modules}))
"""

#: Arguments after ``grade COMMAND`` for each grading command (the course options come after).
COMMAND_ARGUMENTS = {
    "release": ["ip-basics"],
    "autograde": ["ip-basics", "--quiet", "--jobs", "1", *SANDBOX_ARGS],
    "feedback": ["ip-basics"],
    "export": [],
}


def grading_commands() -> set[str]:
    """The subcommands of ``deploylab grade``, as the grading CLI registers them."""
    parser = argparse.ArgumentParser(prog="deploylab")
    register(Commands(parser))
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    grade = top.choices["grade"]
    subs = next(a for a in grade._actions if isinstance(a, argparse._SubParsersAction))
    return set(subs.choices)


def test_every_grading_command_is_probed():
    assert set(COMMAND_ARGUMENTS) == grading_commands()


@pytest.mark.parametrize("command", sorted(COMMAND_ARGUMENTS))
def test_grading_command_does_not_build_the_iri_grammar(command, tmp_path):
    course = make_course(tmp_path)
    arguments = ["grade", command, *COMMAND_ARGUMENTS[command]]
    if command == "autograde":
        submissions = tmp_path / "submissions"
        write_submission(submissions, "student001", released_notebook("ip-basics"))
        arguments += ["--submissions", str(submissions)]
    arguments += course_args(course)
    environment = dict(os.environ, PYTHONWARNINGS="ignore")
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(arguments)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=Path(course.root).parent,
        timeout=300,
    )
    report = next(
        (line for line in completed.stdout.splitlines() if line.startswith("PROBE ")), None
    )
    assert report is not None, completed.stderr[-2000:]
    probe = json.loads(report.removeprefix("PROBE "))
    assert probe["exit"] == 0, completed.stderr[-2000:]
    # The command did load nbformat's validation (so the check below means something) ...
    assert probe["modules"]["jsonschema"].startswith("<module 'jsonschema'")
    # ... without rfc3987_syntax: blocked (None) or never asked for.
    assert probe["modules"]["rfc3987_syntax"] in ("None", "'absent'"), probe
