"""Where a course lives: the nbgrader course root (``autograder/``), its labs and our state.

Every grading step takes a :class:`Course` so tests can point the whole pipeline at a
temporary copy of the course instead of the real ``autograder/`` directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Course", "CourseError", "Lab", "find_course_root"]

#: Files under the course root that belong to deploylab rather than to nbgrader.
STATE_DIRECTORY = ".deploylab"


class CourseError(ValueError):
    """The course directory or a lab in it is missing or malformed; the message says which."""


def find_course_root(start: Path | None = None) -> Path:
    """The ``autograder/`` directory above ``start`` (default: the current directory).

    Falls back to the ``autograder/`` of the source checkout this package was imported from.
    """
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / "nbgrader_config.py").is_file() and (directory / "source").is_dir():
            return directory
        candidate = directory / "autograder"
        if (candidate / "nbgrader_config.py").is_file():
            return candidate
    checkout = Path(__file__).resolve().parents[3] / "autograder"
    if (checkout / "nbgrader_config.py").is_file():
        return checkout
    raise CourseError(
        f"no nbgrader course (a directory with nbgrader_config.py and source/) above {here}; "
        "run from the deploylab checkout or pass --course DIR"
    )


@dataclass(frozen=True)
class Course:
    """An nbgrader course root plus the ``labs/`` directory its student versions go to."""

    root: Path
    labs_dir: Path

    @classmethod
    def locate(
        cls, root: str | os.PathLike | None = None, labs_dir: str | os.PathLike | None = None
    ):
        """The course at ``root`` (or found from the current directory); ``labs/`` beside it."""
        course_root = Path(root).resolve() if root else find_course_root()
        if not (course_root / "source").is_dir():
            raise CourseError(
                f"{course_root} has no source/ directory; expected an nbgrader course root"
            )
        labs = Path(labs_dir).resolve() if labs_dir else course_root.parent / "labs"
        return cls(course_root, labs)

    # -- paths -------------------------------------------------------------------------
    @property
    def source_dir(self) -> Path:
        return self.root / "source"

    @property
    def state_dir(self) -> Path:
        """deploylab's own git-ignored state: statuses, content hashes, scratch directories."""
        return self.root / STATE_DIRECTORY

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.root / 'gradebook.db'}"

    def labs(self) -> list[str]:
        """Every lab with an instructor notebook ``source/<lab>/<lab>.ipynb``, sorted."""
        return sorted(
            path.parent.name
            for path in self.source_dir.glob("*/*.ipynb")
            if path.stem == path.parent.name
        )

    def check_lab(self, lab: str) -> Lab:
        """``lab`` as a :class:`Lab` of this course, or :class:`CourseError` naming the labs
        there are. A :class:`Lab` of this course is returned as it is (validated once)."""
        if isinstance(lab, Lab) and lab.course == self:
            return lab
        labs = self.labs()
        if lab not in labs:
            known = ", ".join(labs) or "none"
            raise CourseError(
                f"unknown lab {lab!r}: expected one of {known} "
                f"(a lab is {self.source_dir}/<lab>/<lab>.ipynb)"
            )
        return Lab(lab, self)

    def source_notebook(self, lab: str) -> Path:
        return self.source_dir / lab / f"{lab}.ipynb"

    def release_notebook(self, lab: str) -> Path:
        """The student version in the checkout: ``labs/<lab>/<lab>.ipynb``."""
        return self.labs_dir / lab / f"{lab}.ipynb"

    def release_dir(self, lab: str) -> Path:
        """nbgrader's generated student version: ``<course>/release/<lab>/``."""
        return self.root / "release" / lab

    def released_notebook(self, lab: str) -> Path:
        """The notebook nbgrader generated for ``lab`` (its stubs and checksums)."""
        return self.release_dir(lab) / f"{lab}.ipynb"

    def submitted_dir(self, student: str, lab: str) -> Path:
        return self.root / "submitted" / student / lab

    def autograded_dir(self, student: str, lab: str) -> Path:
        return self.root / "autograded" / student / lab

    def feedback_dir(self, student: str, lab: str) -> Path:
        return self.root / "feedback" / student / lab

    # -- nbgrader ------------------------------------------------------------------------
    def nbgrader_config(self):
        """nbgrader's configuration from ``nbgrader_config.py``, rooted at this course.

        nbgrader's Python API does not read the file by itself, so we do, and pin the root
        and the gradebook to this course (the file does not name them, so copies work).
        """
        from traitlets.config import Config
        from traitlets.config.loader import PyFileConfigLoader

        _put_interpreter_tools_on_path()

        config = Config()
        config_file = self.root / "nbgrader_config.py"
        if config_file.is_file():
            config.merge(PyFileConfigLoader(config_file.name, path=str(self.root)).load_config())
        config.CourseDirectory.root = str(self.root)
        config.CourseDirectory.db_url = self.db_url
        return config

    def coursedir(self, lab: str | None = None):
        """An nbgrader ``CourseDirectory`` for this course (and ``lab``, if given)."""
        from nbgrader.coursedir import CourseDirectory

        coursedir = CourseDirectory(config=self.nbgrader_config())
        if lab is not None:
            coursedir.assignment_id = lab
        return coursedir

    # -- deploylab state -------------------------------------------------------------------
    def read_state(self, name: str) -> dict:
        path = self.state_dir / name
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def write_state(self, name: str, data: dict) -> None:
        """Replace ``state_dir/name`` with ``data`` as strict JSON (no NaN or infinity: a
        ``ValueError`` instead of a file other programs cannot read), atomically."""
        text = json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / name
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)


class Lab(str):
    """A lab of a course, validated once (:meth:`Course.check_lab`), carrying the paths of
    each stage of its life. It is its name, a ``str``, so it keys the gradebook, the status
    file and nbgrader's directories exactly as the bare name did.

    >>> course = Course(Path("/course"), Path("/labs"))
    >>> lab = Lab("ip-basics", course)
    >>> lab == "ip-basics", str(lab.source_notebook), str(lab.released_notebook)
    (True, '/course/source/ip-basics/ip-basics.ipynb', '/course/release/ip-basics/ip-basics.ipynb')
    >>> str(lab.autograded_dir("ann"))
    '/course/autograded/ann/ip-basics'
    """

    course: Course

    def __new__(cls, name: str, course: Course) -> Lab:
        lab = super().__new__(cls, name)
        lab.course = course
        return lab

    def __reduce__(self) -> tuple:
        return (Lab, (str(self), self.course))

    @property
    def name(self) -> str:
        return str(self)

    @property
    def source_dir(self) -> Path:
        """The instructor master's folder (its data files are copied next to each run)."""
        return self.course.source_dir / self

    @property
    def source_notebook(self) -> Path:
        return self.course.source_notebook(self)

    @property
    def release_dir(self) -> Path:
        return self.course.release_dir(self)

    @property
    def released_notebook(self) -> Path:
        return self.course.released_notebook(self)

    @property
    def student_version(self) -> Path:
        return self.course.release_notebook(self)

    def submitted_dir(self, student: str) -> Path:
        return self.course.submitted_dir(student, self)

    def autograded_dir(self, student: str) -> Path:
        return self.course.autograded_dir(student, self)

    def feedback_dir(self, student: str) -> Path:
        return self.course.feedback_dir(student, self)


def _put_interpreter_tools_on_path() -> None:
    """nbgrader creates a new gradebook by running the ``alembic`` script from PATH; make the
    one installed next to this interpreter findable even when the venv is not activated."""
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
