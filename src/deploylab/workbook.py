"""Finding the workbook on disk, opening it in JupyterLab, and checking the machine's tools.

Adds the ``deploylab lab`` and ``deploylab doctor`` commands. ``deploylab lab`` serves the
learner's *workspace* (default ``~/deploylab-workspace``, outside the checkout), a copy of the
lessons, labs, Korean edition and assets kept in step by :mod:`deploylab.workspace`; the
checkout itself, with ``autograder/`` (solutions and hidden tests), is not served.
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
#: Environment variable naming the learner's workspace (``deploylab lab --workspace`` wins).
WORKSPACE_VARIABLE = "DEPLOYLAB_WORKSPACE"


class WorkbookNotFoundError(FileNotFoundError):
    """No directory with ``lessons/00-start-here.ipynb`` was found."""


def find_workbook_root(start: Path | None = None) -> Path:
    """Return the workbook's root directory (the one holding ``lessons/`` and ``labs/``).

    Looks upward from ``start`` (default: the current directory), then next to the installed
    package (an editable install from a clone). A learner's workspace (which also holds
    ``lessons/00-start-here.ipynb``, and its manifest) is never taken for the workbook.
    """
    from deploylab.workspace import MANIFEST

    candidates = [start or Path.cwd()]
    candidates += list(candidates[0].resolve().parents)
    candidates += [Path(__file__).resolve().parents[2]]
    for directory in candidates:
        if (directory / START_HERE).is_file() and not (directory / MANIFEST).exists():
            return directory.resolve()
    raise WorkbookNotFoundError(
        f"no workbook found from {candidates[0]}: expected a directory holding {START_HERE} "
        "(a workspace of yours is not one)"
    )


class WorkspaceError(ValueError):
    """The workspace asked for cannot be used; the message names it and says why."""


def default_workspace() -> Path:
    """``$DEPLOYLAB_WORKSPACE``, else ``~/deploylab-workspace``."""
    return Path(os.environ.get(WORKSPACE_VARIABLE) or Path.home() / "deploylab-workspace")


def check_workspace(workspace: Path, root: Path) -> Path:
    """``workspace`` resolved, if it neither is nor holds nor sits inside the checkout ``root``
    (served as JupyterLab's root, it must not reach ``autograder/`` or tracked files).

    >>> check_workspace(Path("/srv/ws"), Path("/src/deploylab"))
    PosixPath('/srv/ws')
    >>> check_workspace(Path("/src/deploylab/lessons"), Path("/src/deploylab"))
    Traceback (most recent call last):
    ...
    deploylab.workbook.WorkspaceError: workspace /src/deploylab/lessons overlaps the checkout /src/deploylab; expected a directory outside it (default ~/deploylab-workspace)
    """
    workspace, root = workspace.expanduser().resolve(), root.resolve()
    if workspace == root or root in workspace.parents or workspace in root.parents:
        raise WorkspaceError(
            f"workspace {workspace} overlaps the checkout {root}; expected a directory outside "
            "it (default ~/deploylab-workspace)"
        )
    return workspace


def prepare_learner_workspace(root: Path, workspace: Path, *, log=print) -> Path:
    """Fill or update the learner's ``workspace`` from the checkout ``root`` (never
    overwriting their changes, see :func:`deploylab.workspace.sync_workspace`); says in the
    terminal what it did. Returns the workspace."""
    from deploylab.workspace import sync_workspace

    workspace = check_workspace(workspace, root)
    for line in sync_workspace(root, workspace).lines():
        log(f"deploylab: {line}")
    return workspace


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


def link_course(workspace: Path, root: Path) -> Path:
    """``workspace/course``: a link to the checkout's ``autograder/`` for formgrader (which
    only works on a course inside the server's root); only ``deploylab lab --instructor``."""
    link, target = workspace / "course", root / "autograder"
    if link.is_symlink() and link.resolve() == target.resolve():
        return link
    if link.exists() or link.is_symlink():
        raise WorkspaceError(f"{link} exists and is not a link to {target}; move it away")
    link.symlink_to(target, target_is_directory=True)
    return link


def write_nbgrader_settings(
    config_dir: Path, root: Path, workspace: Path, *, instructor: bool = False
) -> list[Path]:
    """The nbgrader set-up of a ``deploylab lab`` server, in ``config_dir`` (put on
    ``JUPYTER_CONFIG_PATH``); returns the files written.

    Both roles get an exchange of their own (so the Assignments panel finds one) with labs
    fetched into the workspace. A learner gets what a student gets on the hub: no formgrader
    and no course list. An ``instructor`` gets formgrader on the checkout's course (through
    ``workspace/course``, see :func:`link_course`) without its unsandboxed Autograde button.
    """
    import json

    from deploylab.nbgrader_roles import (
        STUDENT_DISABLED_LAB_PLUGINS,
        STUDENT_DISABLED_SERVER_EXTENSIONS,
    )

    exchange = workspace.parent / f".{workspace.name}-exchange"
    for part in ("inbound", "outbound", "feedback"):
        (exchange / "deploylab" / part).mkdir(parents=True, exist_ok=True)
    lines = [
        "# Written by 'deploylab lab' for this server only.",
        "c = get_config()  # noqa: F821",
        "c.CourseDirectory.course_id = 'deploylab'",
        f"c.Exchange.root = {str(exchange)!r}",
        f"c.Exchange.assignment_dir = {str(workspace)!r}",
    ]
    if instructor:
        lines.append(f"c.CourseDirectory.root = {str(link_course(workspace, root))!r}")
        extensions = {"deploylab.classroom.formgrader": True}
        plugins: tuple[str, ...] = ()
    else:
        course_link = workspace / "course"
        if course_link.is_symlink() and course_link.resolve() == (root / "autograder").resolve():
            course_link.unlink()  # left by an --instructor run: learners do not see the course
        extensions = dict.fromkeys(STUDENT_DISABLED_SERVER_EXTENSIONS, False)
        plugins = STUDENT_DISABLED_LAB_PLUGINS
    settings = config_dir / "nbgrader_config.py"
    settings.write_text("\n".join(lines) + "\n", encoding="utf-8")
    server = config_dir / "jupyter_server_config.json"
    server.write_text(json.dumps({"ServerApp": {"jpserver_extensions": extensions}}), "utf-8")
    page = config_dir / "labconfig" / "page_config.json"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(json.dumps({"disabledExtensions": dict.fromkeys(plugins, True)}), "utf-8")
    return [settings, server, page]


def serve_workbook(
    root: Path,
    workspace: Path,
    lang,
    port: int,
    open_browser: bool,
    *,
    instructor: bool = False,
    default_url: str | None = None,
    extra_arguments: tuple[str, ...] = (),
    extra_environment: dict[str, str] | None = None,
) -> int:
    """Run JupyterLab on the learner's ``workspace`` (filled from the checkout ``root``) in
    ``lang`` (a :class:`Language`) until it stops; returns its exit status. Shared by
    ``deploylab lab`` and ``deploylab present``."""
    import tempfile

    from deploylab.i18n.languages import LANGUAGE_VARIABLE
    from deploylab.nbgrader_roles import patch_validate_message

    patch_validate_message(Path(sys.prefix))
    command = jupyter_lab_command(
        workspace, port, open_browser, lessons_dir=lang.lessons_dir, default_url=default_url
    )
    command += extra_arguments
    # Kernels inherit the server's environment, so widgets learn the language from it.
    env = {**os.environ, LANGUAGE_VARIABLE: lang.code, **(extra_environment or {})}
    with tempfile.TemporaryDirectory(prefix="deploylab-lab-") as config_dir:
        write_nbgrader_settings(Path(config_dir), root, workspace, instructor=instructor)
        if not lang.is_source:
            write_language_overrides(Path(config_dir), lang.jupyterlab_locale)
        env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
            filter(None, [config_dir, os.environ.get("JUPYTER_CONFIG_PATH")])
        )
        return subprocess.call(command, cwd=workspace, env=env)


def _lab(args: argparse.Namespace) -> int:
    from deploylab.i18n.languages import language

    lang = language(args.lang)
    root = find_workbook_root(Path(args.root) if args.root else None)
    if not (root / lang.lessons_dir / START_HERE.name).is_file():
        raise ValueError(
            f"{root / lang.lessons_dir} has no {START_HERE.name}: "
            f"run `deploylab translate build --lang {lang.code}` first"
        )
    workspace = prepare_learner_workspace(
        root, Path(args.workspace) if args.workspace else default_workspace()
    )
    print(
        f"deploylab: serving your workspace {workspace} on http://127.0.0.1:{args.port}/ "
        f"({lang.name}); the course is {root}"
    )
    return serve_workbook(
        root, workspace, lang, args.port, not args.no_browser, instructor=args.instructor
    )


def register(commands) -> None:
    """Add ``deploylab lab`` and ``deploylab doctor``."""
    from deploylab.i18n.languages import LANGUAGES

    lab = commands.add("lab", "open the workbook in JupyterLab on 127.0.0.1", _lab)
    lab.add_argument("--port", type=int, default=8888, help="port to listen on (default 8888)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    lab.add_argument("--root", help="workbook directory (default: found from here)")
    lab.add_argument(
        "--workspace",
        help="your copy of the lessons and labs, served by JupyterLab "
        "(default: $DEPLOYLAB_WORKSPACE or ~/deploylab-workspace)",
    )
    lab.add_argument(
        "--instructor",
        action="store_true",
        help="also open formgrader on the checkout's course (workspace/course links to "
        "autograder/, with solutions and hidden tests: not for learners)",
    )
    lab.add_argument(
        "--lang",
        default="en",
        choices=sorted(LANGUAGES),
        help="edition to open, and JupyterLab's interface language (default: en; ko: 한국어)",
    )
    commands.add("doctor", "report which optional system tools are present", _doctor)
