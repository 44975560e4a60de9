"""One student's hand-in, read safely and decided before anything runs: the file to grade
(never through a symlink, bounded in size), its digest (a rerun skips what did not change),
whether it is a notebook of this lab at all, and the merged notebook to execute."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from deploylab.grading.cells import grade_id_of, nbgrader_meta
from deploylab.grading.course import Course
from deploylab.grading.merge import merge_submission
from deploylab.grading.reference_imports import reference_imports, reference_names, setup_imports
from deploylab.grading.results import SubmissionResult
from deploylab.grading.status import MISSING, NOT_A_NOTEBOOK, WRONG_LAB

__all__ = [
    "MAX_SUBMISSION_BYTES",
    "MAX_SUBMISSION_CELLS",
    "PIPELINE_VERSION",
    "TIMESTAMP_FILE",
    "prepare_submission",
    "read_regular_file",
]


#: Bump when grading changes in a way that should invalidate stored results. 3: a student's
#: markdown and cell metadata no longer reach the graded notebook that formgrader renders
#: (graded notebooks written before are written again, not reused), and answer-key uses
#: that were missed before are flagged.
PIPELINE_VERSION = "3"


#: nbgrader's submission time file (written by ``nbgrader submit``/``collect``), optional.
TIMESTAMP_FILE = "timestamp.txt"


# ---------------------------------------------------------------------------------------
# The batch
# ---------------------------------------------------------------------------------------
@dataclass
class Submission:
    student: str
    path: Path | None
    digest: str
    result: SubmissionResult | None = None  # decided before execution (bad file, wrong lab)
    notebook: NotebookNode | None = None  # merged notebook to execute
    max_score: float = 0.0
    timestamp: str = ""
    review: str = ""  # a reason a person must look at it, whatever it scores


#: Largest submission file read (bigger files get status "not a notebook").
MAX_SUBMISSION_BYTES = 20 * 1024 * 1024

#: Most cells a hand-in may have (the labs have 11 to 37; more gets "not a notebook"). 20 MiB
#: hold some 300,000 empty cells, which took about 40 s to validate and merge, per student.
MAX_SUBMISSION_CELLS = 2000


class UnreadableSubmission(ValueError):
    """A submission file that must not be read: a symlink, not a regular file, too large."""


def find_notebook(directory: Path, lab: str) -> Path | None:
    """The file to grade in a student's directory (named like the lab if there is one).

    Candidates are listed without following symlinks; the file itself is opened by
    :func:`read_submission`, which refuses symlinks and special files.
    """
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError:
        return None
    names = [entry.name for entry in entries if entry.name != TIMESTAMP_FILE]
    if f"{lab}.ipynb" in names:
        return directory / f"{lab}.ipynb"
    notebooks = [name for name in names if name.endswith(".ipynb")]
    if notebooks:
        return directory / notebooks[0]
    return directory / names[0] if names else None


def read_regular_file(path: Path) -> tuple[bytes, os.stat_result]:
    """The bytes of ``path`` and the status of the very file read (no swap between a check and
    the read): never through a symlink, only from a regular file of at most
    :data:`MAX_SUBMISSION_BYTES`; :class:`UnreadableSubmission` (naming the reason) otherwise,
    ``FileNotFoundError`` when there is nothing at ``path``. Shared by grading and the
    classroom's collect, which read what students wrote.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as error:
        if os.path.islink(path):
            raise UnreadableSubmission(f"{path.name} is a symbolic link, not a file") from None
        raise UnreadableSubmission(f"{path.name} cannot be opened ({error.strerror})") from None
    try:
        # Checked on the descriptor before any read: a directory opens too (and Python's
        # file object refuses it with IsADirectoryError), a FIFO or a device would block.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableSubmission(f"{path.name} is not a regular file")
        if info.st_size > MAX_SUBMISSION_BYTES:
            raise UnreadableSubmission(
                f"{path.name} is {info.st_size / 2**20:.1f} MiB, more than the "
                f"{MAX_SUBMISSION_BYTES >> 20} MiB a submission may be"
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_SUBMISSION_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SUBMISSION_BYTES:
        raise UnreadableSubmission(f"{path.name} is more than {MAX_SUBMISSION_BYTES >> 20} MiB")
    return data, info


def read_submission(path: Path) -> bytes:
    """The bytes of ``path`` as :func:`read_regular_file` reads them;
    :class:`UnreadableSubmission` (naming the reason) when it cannot be read."""
    try:
        return read_regular_file(path)[0]
    except FileNotFoundError as error:
        raise UnreadableSubmission(f"{path.name} cannot be opened ({error.strerror})") from None


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file readable by the course's owner only (never a copy of
    another file's permissions)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def lab_grade_ids(course: Course) -> dict[str, set[str]]:

    ids: dict[str, set[str]] = {}
    for lab in course.labs():
        try:
            notebook = nbformat.read(course.source_notebook(lab), as_version=4)
        except Exception:
            continue
        ids[lab] = {
            grade_id
            for cell in notebook.cells
            if (grade_id := grade_id_of(cell))
            and (nbgrader_meta(cell).get("solution") or nbgrader_meta(cell).get("grade"))
        }
    return ids


def prepare_submission(
    course: Course,
    lab: str,
    student_dir: Path,
    instructor,
    released,
    source_digest: str,
    grade_ids_by_lab: dict[str, set[str]],
) -> Submission:

    student = student_dir.name
    problem = ""
    raw = b""
    path = None
    if student_dir.is_symlink() or not student_dir.is_dir():
        problem = f"{student}/ is a symbolic link or not a directory"
    else:
        path = find_notebook(student_dir, lab)
        if path is not None:
            try:
                raw = read_submission(path)
            except UnreadableSubmission as error:
                problem = str(error)
    timestamp_path = student_dir / TIMESTAMP_FILE
    timestamp = ""
    if not problem:
        with contextlib.suppress(UnreadableSubmission):
            timestamp = read_submission(timestamp_path).decode("utf-8", "replace").strip()[:64]
    digest = hashlib.sha256(
        b"\0".join(
            [
                PIPELINE_VERSION.encode(),
                source_digest.encode(),
                raw,
                timestamp.encode(),
                problem.encode(),
            ]
        )
    ).hexdigest()
    max_score = sum(
        float(nbgrader_meta(cell).get("points", 0) or 0)
        for cell in instructor.cells
        if nbgrader_meta(cell).get("grade")
    )
    submission = Submission(student, path, digest, max_score=max_score, timestamp=timestamp)

    def decided(status: str, detail: str) -> Submission:
        submission.result = SubmissionResult(
            student, lab, status, max_score, detail=detail, digest=digest, timestamp=timestamp
        )
        return submission

    if problem:
        return decided(NOT_A_NOTEBOOK, problem)
    if path is None:
        return decided(NOT_A_NOTEBOOK, f"{student_dir.name}/ holds no file")
    # nbgrader's layout: submitted/<student>/<lab>/<notebook>.ipynb, named as in the source.
    submitted_dir = course.submitted_dir(student, lab)
    if submitted_dir.exists() or submitted_dir.is_symlink():
        from deploylab.grading.sandbox import remove_tree

        remove_tree(submitted_dir)
    submitted_dir.mkdir(parents=True)
    write_private(submitted_dir / f"{lab}.ipynb", raw)
    if timestamp:
        write_private(submitted_dir / TIMESTAMP_FILE, (timestamp + "\n").encode())
    try:
        text = raw.decode("utf-8")
        data = json.loads(text)  # the cells are counted before nbformat validates each one
        cells = data.get("cells") if isinstance(data, dict) else None
        if isinstance(cells, list) and len(cells) > MAX_SUBMISSION_CELLS:
            return decided(
                NOT_A_NOTEBOOK,
                f"{path.name} has {len(cells):,} cells, more than the "
                f"{MAX_SUBMISSION_CELLS:,} a hand-in may have",
            )
        notebook = nbformat.reads(text, as_version=4)
        if not isinstance(notebook.get("cells"), list):
            raise ValueError("no list of cells")
    except Exception as error:
        reason = "the file is empty" if not raw.strip() else parse_problem(error)
        return decided(NOT_A_NOTEBOOK, f"{path.name} is not a Jupyter notebook ({reason[:200]})")
    submitted_ids = {grade_id_of(cell) for cell in notebook.cells if grade_id_of(cell)}
    if not submitted_ids & grade_ids_by_lab.get(lab, set()):
        others = [
            other for other, ids in grade_ids_by_lab.items() if other != lab and submitted_ids & ids
        ]
        where = (
            f"it is the {others[0]!r} lab" if others else f"it has none of the {lab!r} lab's cells"
        )
        if others and path.name != f"{lab}.ipynb":
            return decided(
                MISSING, f"no {lab}.ipynb handed in ({path.name} is the {others[0]!r} lab)"
            )
        return decided(WRONG_LAB, f"{path.name}: {where}")
    try:
        submission.notebook = merge_submission(instructor, released, notebook)
    except Exception as error:
        return decided(NOT_A_NOTEBOOK, f"{path.name} could not be read as a notebook ({error})")
    imported = reference_imports(
        submission.notebook, reference_names(instructor), setup_imports(instructor)
    )
    if imported:
        submission.review = (
            f"imports the course's reference implementation ({', '.join(imported)[:200]})"
        )
    return submission


def parse_problem(error: Exception) -> str:
    """Why a file is not a notebook, without quoting the file: nbformat's "does not appear
    to be JSON" repeats its first bytes, which end up in the status and the feedback page
    (a hard link to a file the student cannot read would show its beginning there).

    >>> from nbformat.reader import NotJSONError
    >>> parse_problem(NotJSONError("Notebook does not appear to be JSON: 'root:$y$j9T$...'"))
    'NotJSONError: the file is not JSON'
    >>> try:
    ...     json.loads("root:$y$j9T$...")
    ... except ValueError as error:
    ...     parse_problem(error)
    'NotJSONError: the file is not JSON (Expecting value at line 1, column 1)'
    """
    if isinstance(error, json.JSONDecodeError):
        where = f"at line {error.lineno}, column {error.colno}"
        return f"NotJSONError: the file is not JSON ({error.msg} {where})"
    if type(error).__name__ == "NotJSONError":
        return "NotJSONError: the file is not JSON"
    return f"{type(error).__name__}: {error}"
