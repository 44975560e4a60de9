"""What a fresh ``deploylab grade ...`` process loads (issue 16, item 6: the grading slowdown).

nbformat imports jsonschema, and jsonschema imports ``rfc3987_syntax`` when it can: that
package builds a Lark grammar at import time (1-2.5 s of CPU here, about a fifth of all the
CPU that grading a class of 8 takes; see grading.md) only for a string format notebooks
never use.
The grading commands keep it out. When grading/ was split, ``autograde.py`` began importing
nbformat at its top, the handler's first line imported it before the skip ran, and each
``grade autograde`` paid for the grammar again: 0.35 s more per submission, seen only in the
benchmark. So each grading command and benchmark runs here as a real process (as the
``deploylab`` console script), and its modules are looked at afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

import pytest
from test_grading_pipeline import (
    SANDBOX_ARGS,
    course_args,
    make_course,
    released_notebook,
    write_submission,
)

from deploylab.cli import build_parser

#: Runs ``deploylab ARGS`` (the console script's entry) here, then says what it imported.
PROBE = """
import json, sys
from deploylab.cli import main
code = main(json.loads(sys.argv[1]))
modules = {name: repr(sys.modules.get(name, "absent")) for name in ("jsonschema", "rfc3987_syntax")}
print("PROBE " + json.dumps({"exit": code, "modules": modules}))
"""

#: Each command that loads nbformat: its arguments (the course options come after) and the
#: exit status expected. The benchmarks are asked for a lab the course lacks: they load the
#: grader, then stop with a clear error before grading anything (minutes, otherwise).
COMMANDS = {
    ("grade", "release"): (["ip-basics"], 0),
    ("grade", "autograde"): (["ip-basics", "--quiet", "--jobs", "1", *SANDBOX_ARGS], 0),
    ("grade", "feedback"): (["ip-basics"], 0),
    ("grade", "export"): ([], 0),
    ("bench", "grading"): (["--lab", "no-such-lab", "--submissions", "1"], 2),
    ("bench", "nginx-lab"): (["--rounds", "1"], 2),
}


def subcommands(group: str) -> set[str]:
    """The subcommands of ``deploylab GROUP``."""

    def subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))

    return set(subparsers(subparsers(build_parser()).choices[group]).choices)


def test_every_grading_command_is_probed():
    assert {name for group, name in COMMANDS if group == "grade"} == subcommands("grade")
    assert {name for group, name in COMMANDS if group == "bench"} <= subcommands("bench")


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=" ".join)
def test_grading_command_does_not_build_the_iri_grammar(command, tmp_path):
    course = make_course(tmp_path)
    shutil.rmtree(course.source_dir / "nginx")  # bench nginx-lab stops at the missing lab
    extra, expected_exit = COMMANDS[command]
    arguments = [*command, *extra]
    if command == ("grade", "autograde"):
        submissions = tmp_path / "submissions"
        write_submission(submissions, "student001", released_notebook("ip-basics"))
        arguments += ["--submissions", str(submissions)]
    arguments += course_args(course)
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(arguments)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
        cwd=tmp_path,
        timeout=300,
    )
    report = next(
        (line for line in completed.stdout.splitlines() if line.startswith("PROBE ")), None
    )
    assert report is not None, completed.stderr[-2000:]
    probe = json.loads(report.removeprefix("PROBE "))
    assert probe["exit"] == expected_exit, completed.stderr[-2000:]
    if expected_exit:  # stopped where meant to: at the lab the course lacks
        assert "unknown lab" in completed.stderr, completed.stderr[-2000:]
    # The command did load nbformat's validation (so the check below means something) ...
    assert probe["modules"]["jsonschema"].startswith("<module 'jsonschema'"), probe
    # ... without rfc3987_syntax: blocked (None) or never asked for.
    assert probe["modules"]["rfc3987_syntax"] in ("None", "'absent'"), probe
