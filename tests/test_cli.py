"""The ``deploylab`` command: help, version, doctor, and clear errors."""

from __future__ import annotations

import subprocess
import sys

import deploylab
from deploylab.cli import build_parser, main
from deploylab.workbook import find_workbook_root, jupyter_lab_command


def run(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deploylab.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_lists_every_subcommand_with_a_description():
    result = run("--help")
    assert result.returncode == 0
    for command in ("lab", "doctor", "serve", "nginx-conf", "bench"):
        assert command in result.stdout
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0]
    for action in subcommands._choices_actions:
        assert action.help, f"subcommand {action.dest} has no one-line description"


def test_version_matches_the_package():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"deploylab {deploylab.__version__}"


def test_doctor_reports_each_tool(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for tool in ("nginx", "wrk", "chromium", "bwrap", "curl", "ip"):
        assert tool in out


def test_workbook_root_is_found_from_inside_it_and_from_elsewhere(tmp_path):
    root = find_workbook_root()
    assert (root / "lessons" / "00-start-here.ipynb").is_file()
    assert find_workbook_root(root / "lessons") == root
    # outside any checkout, the editable install's own checkout is used
    assert find_workbook_root(tmp_path) == root


def test_jupyterlab_listens_on_loopback_only():
    command = jupyter_lab_command(find_workbook_root(), 8123, open_browser=False)
    assert "--ip=127.0.0.1" in command
    assert "--port=8123" in command
    assert "--no-browser" in command
    assert any(part.endswith("lessons/00-start-here.ipynb") for part in command)


def test_unknown_subcommand_exits_2():
    result = run("no-such-command")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
