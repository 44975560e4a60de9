"""Finding the workbook on disk, opening it in JupyterLab, and checking the machine's tools.

Adds the ``deploylab lab`` and ``deploylab doctor`` commands.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

START_HERE = Path("lessons") / "00-start-here.ipynb"


class WorkbookNotFoundError(FileNotFoundError):
    """No directory with ``lessons/00-start-here.ipynb`` was found."""


def find_workbook_root(start: Path | None = None) -> Path:
    """Return the workbook's root directory (the one holding ``lessons/`` and ``labs/``).

    Looks upward from ``start`` (default: the current directory), then next to the installed
    package (an editable install from a clone).
    """
    candidates = [start or Path.cwd()]
    candidates += list(candidates[0].resolve().parents)
    candidates += [Path(__file__).resolve().parents[2]]
    for directory in candidates:
        if (directory / START_HERE).is_file():
            return directory.resolve()
    raise WorkbookNotFoundError(
        f"no workbook found from {candidates[0]}: expected a directory holding {START_HERE}"
    )


@dataclass(frozen=True)
class SystemTool:
    """An optional program some lessons or tests use, and how to get it on Debian."""

    command: str
    debian_package: str
    needed_by: str

    def path(self) -> str | None:
        """Where the program is on PATH (or a known Debian location), or None."""
        return shutil.which(self.command) or shutil.which(self.command, path="/usr/sbin:/sbin")


SYSTEM_TOOLS = (
    SystemTool(
        "nginx", "nginx", "proxies and load-balancing lessons; nginx parity tests; bench lb"
    ),
    SystemTool("wrk", "wrk", "deploylab bench lb"),
    SystemTool("chromium", "chromium", "browser tests (pytest -m browser)"),
    SystemTool("bwrap", "bubblewrap", "sandboxed grading (deploylab grade autograde)"),
    SystemTool("curl", "curl", "proxy lessons and tests (curl -x, --interface)"),
    SystemTool("ip", "iproute2", "deploylab vpc netns and the kernel route tests (root)"),
    SystemTool("ping", "iputils-ping", "kernel reachability tests between namespaces (root)"),
)


def doctor_report() -> list[tuple[SystemTool, str | None]]:
    """Each optional system tool with its path, or None when it is missing."""
    return [(tool, tool.path()) for tool in SYSTEM_TOOLS]


def _doctor(_args: argparse.Namespace) -> int:
    print(f"python      {sys.version.split()[0]} ({sys.executable})")
    missing = []
    for tool, path in doctor_report():
        mark = path or "MISSING"
        print(f"{tool.command:<11} {mark:<28} needed by: {tool.needed_by}")
        if not path:
            missing.append(tool.debian_package)
    if missing:
        print(f"\nto install: apt-get install -y {' '.join(sorted(set(missing)))}")
    else:
        print("\nall optional tools are present")
    return 0


def jupyter_lab_command(root: Path, port: int, open_browser: bool) -> list[str]:
    """The ``jupyter lab`` command line that serves the workbook on 127.0.0.1."""
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.default_url=/lab/tree/{START_HERE.as_posix()}",
    ]
    if not open_browser:
        command.append("--no-browser")
    if os.geteuid() == 0:
        command.append("--allow-root")
    return command


def _lab(args: argparse.Namespace) -> int:
    root = find_workbook_root(Path(args.root) if args.root else None)
    command = jupyter_lab_command(root, args.port, open_browser=not args.no_browser)
    print(f"deploylab: serving the workbook at {root} on http://127.0.0.1:{args.port}/")
    return subprocess.call(command, cwd=root)


def register(commands) -> None:
    """Add ``deploylab lab`` and ``deploylab doctor``."""
    lab = commands.add("lab", "open the workbook in JupyterLab on 127.0.0.1", _lab)
    lab.add_argument("--port", type=int, default=8888, help="port to listen on (default 8888)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    lab.add_argument("--root", help="workbook directory (default: found from here)")
    commands.add("doctor", "report which optional system tools are present", _doctor)
