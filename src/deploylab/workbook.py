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


def jupyter_lab_command(
    root: Path,
    port: int,
    open_browser: bool,
    lessons_dir: str = "lessons",
    default_url: str | None = None,
) -> list[str]:
    """The ``jupyter lab`` command line that serves the workbook on 127.0.0.1.

    It opens ``default_url`` when given (``deploylab present`` opens a lesson as slides),
    else ``<lessons_dir>/00-start-here.ipynb``: ``lessons-ko`` for the Korean edition.
    """
    start_here = Path(lessons_dir) / START_HERE.name
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.default_url={default_url or '/lab/tree/' + start_here.as_posix()}",
    ]
    if not open_browser:
        command.append("--no-browser")
    if os.geteuid() == 0:
        command.append("--allow-root")
    return command


#: The JupyterLab setting that picks the interface language (a language pack must provide it).
TRANSLATION_SETTING = "@jupyterlab/translation-extension:plugin"


def write_language_overrides(config_dir: Path, locale: str) -> Path:
    """Make ``locale`` JupyterLab's default interface language for servers that read
    ``config_dir`` (put it on ``JUPYTER_CONFIG_PATH``); returns the file written.

    It is a *default* (``labconfig/default_setting_overrides.json``), so a language the learner
    picks in Settings > Language still wins, and the learner's own settings are not touched.

    >>> import json, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = write_language_overrides(Path(folder), "ko_KR")
    ...     json.loads(path.read_text())
    {'@jupyterlab/translation-extension:plugin': {'locale': 'ko_KR'}}
    """
    import json

    path = config_dir / "labconfig" / "default_setting_overrides.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({TRANSLATION_SETTING: {"locale": locale}}), encoding="utf-8")
    return path


def serve_workbook(
    root: Path,
    lang,
    port: int,
    open_browser: bool,
    default_url: str | None = None,
    extra_arguments: tuple[str, ...] = (),
    extra_environment: dict[str, str] | None = None,
) -> int:
    """Run JupyterLab on the workbook at ``root`` in ``lang`` (a :class:`Language`) until it
    stops; returns its exit status. Shared by ``deploylab lab`` and ``deploylab present``."""
    import tempfile

    from deploylab.i18n.languages import LANGUAGE_VARIABLE

    command = jupyter_lab_command(
        root, port, open_browser, lessons_dir=lang.lessons_dir, default_url=default_url
    )
    command += extra_arguments
    # Kernels inherit the server's environment, so widgets learn the language from it.
    env = {**os.environ, LANGUAGE_VARIABLE: lang.code, **(extra_environment or {})}
    with tempfile.TemporaryDirectory(prefix="deploylab-lab-") as config_dir:
        if not lang.is_source:
            write_language_overrides(Path(config_dir), lang.jupyterlab_locale)
            env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
                filter(None, [config_dir, os.environ.get("JUPYTER_CONFIG_PATH")])
            )
        return subprocess.call(command, cwd=root, env=env)


def _lab(args: argparse.Namespace) -> int:
    from deploylab.i18n.languages import language

    lang = language(args.lang)
    root = find_workbook_root(Path(args.root) if args.root else None)
    if not (root / lang.lessons_dir / START_HERE.name).is_file():
        raise ValueError(
            f"{root / lang.lessons_dir} has no {START_HERE.name}: "
            f"run `deploylab translate build --lang {lang.code}` first"
        )
    print(
        f"deploylab: serving the workbook at {root} on http://127.0.0.1:{args.port}/ ({lang.name})"
    )
    return serve_workbook(root, lang, args.port, open_browser=not args.no_browser)


def register(commands) -> None:
    """Add ``deploylab lab`` and ``deploylab doctor``."""
    from deploylab.i18n.languages import LANGUAGES

    lab = commands.add("lab", "open the workbook in JupyterLab on 127.0.0.1", _lab)
    lab.add_argument("--port", type=int, default=8888, help="port to listen on (default 8888)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    lab.add_argument("--root", help="workbook directory (default: found from here)")
    lab.add_argument(
        "--lang",
        default="en",
        choices=sorted(LANGUAGES),
        help="edition to open, and JupyterLab's interface language (default: en; ko: 한국어)",
    )
    commands.add("doctor", "report which optional system tools are present", _doctor)
