"""Where a classroom lives on disk, who owns each part and with which mode.

One *state directory* (default ``/srv/deploylab-classroom``) holds one classroom::

    classroom.json        world-readable description: course, port, members and roles
    material/             world-readable: lessons, lessons-ko, assets (workspaces copy these)
    hub/                  root only (0700): hub config, database, passwords, token, logs
    config/student/       Jupyter config for students' servers (nbgrader without formgrader)
    config/instructor/    ... for instructors (formgrader on the course directory)
    course/               the nbgrader course root: instructors only (group, 2770)
    exchange/<course>/    nbgrader's exchange: outbound readable, inbound write-only

The single-user environment (JupyterHub, JupyterLab, nbgrader, deploylab) is a virtual
environment made from Debian's ``/usr/bin/python3`` under ``/opt/deploylab-classroom``, so
students' accounts can read it (one made from a Python under ``/root`` cannot be).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_STATE_DIR",
    "Classroom",
    "ClassroomError",
    "check_course_name",
]

#: The shared, world-readable install of the hub and the single-user environment.
DEFAULT_PREFIX = Path(os.environ.get("DEPLOYLAB_CLASSROOM_PREFIX", "/opt/deploylab-classroom"))
#: Where ``classroom up`` puts one classroom's state unless told otherwise.
DEFAULT_STATE_DIR = Path(os.environ.get("DEPLOYLAB_CLASSROOM", "/srv/deploylab-classroom"))

COURSE_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,23}$")

#: The folder in each home that a learner works in (their copy of the lessons, fetched labs).
WORKSPACE = "deploylab"


class ClassroomError(ValueError):
    """The classroom cannot do what was asked; the message says what is wrong and what to do."""


def check_course_name(course: str) -> str:
    """``course`` if it is a safe nbgrader course id (also used in a unix group name).

    >>> check_course_name("net101")
    'net101'
    >>> check_course_name("Net 101")
    Traceback (most recent call last):
    ...
    deploylab.classroom.layout.ClassroomError: course name 'Net 101' is not allowed; expected a lower-case letter then up to 23 lower-case letters, digits, '-' or '_'
    """
    if not COURSE_PATTERN.match(course):
        raise ClassroomError(
            f"course name {course!r} is not allowed; expected a lower-case letter then up to "
            "23 lower-case letters, digits, '-' or '_'"
        )
    return course


@dataclass
class Classroom:
    """One classroom's description, as written to ``classroom.json`` by ``classroom up``."""

    state_dir: Path
    course: str = "deploylab"
    port: int = 8000
    prefix: Path = DEFAULT_PREFIX
    members: list[dict] = field(default_factory=list)  # {"username", "role"} only

    # -- places ------------------------------------------------------------------------
    @property
    def description_file(self) -> Path:
        return self.state_dir / "classroom.json"

    @property
    def hub_dir(self) -> Path:
        return self.state_dir / "hub"

    @property
    def material_dir(self) -> Path:
        """Root-owned copy of what each student's workspace is filled from."""
        return self.state_dir / "material"

    @property
    def course_dir(self) -> Path:
        return self.state_dir / "course"

    @property
    def exchange_root(self) -> Path:
        return self.state_dir / "exchange"

    @property
    def exchange_course_dir(self) -> Path:
        return self.exchange_root / self.course

    def config_dir(self, role: str) -> Path:
        return self.state_dir / "config" / role

    @property
    def venv(self) -> Path:
        return self.prefix / "venv"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def instructors_group(self) -> str:
        return f"{self.course}-teach"[:32]

    @property
    def students(self) -> list[str]:
        return [member["username"] for member in self.members if member["role"] == "student"]

    @property
    def instructors(self) -> list[str]:
        return [member["username"] for member in self.members if member["role"] == "instructor"]

    # -- the description file ------------------------------------------------------------
    def save(self) -> None:
        data = asdict(self)
        data["state_dir"] = str(self.state_dir)
        data["prefix"] = str(self.prefix)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.description_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        temporary.chmod(0o644)
        temporary.replace(self.description_file)

    @classmethod
    def load(cls, state_dir: str | os.PathLike | None = None) -> Classroom:
        """The classroom whose state is in ``state_dir`` (default: $DEPLOYLAB_CLASSROOM or
        /srv/deploylab-classroom); a clear error when none was brought up there."""
        directory = Path(state_dir or DEFAULT_STATE_DIR)
        path = directory / "classroom.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ClassroomError(
                f"no classroom at {directory} (no classroom.json); run "
                "'deploylab classroom up --roster FILE' first or pass --state-dir"
            ) from None
        except (OSError, ValueError) as error:
            raise ClassroomError(f"cannot read {path}: {error}") from None
        return cls(
            state_dir=Path(data["state_dir"]),
            course=data["course"],
            port=int(data["port"]),
            prefix=Path(data["prefix"]),
            members=list(data["members"]),
        )
