"""Grade a class: every submission of a lab, in parallel, with an honest status for each.

For each ``DIR/<student>/<notebook>.ipynb`` we copy the file into nbgrader's
``submitted/<student>/<lab>/``, rebuild the notebook from the instructor version (locked and
test cells, including deleted ones, come back from the source; only the student's answer
cells and extra cells of their own are kept), run it with
:func:`deploylab.grading.execute.run_notebook` (sandboxed), score the test cells with
nbgrader's rules except that harmless stderr does not zero a correct answer, and save the
grades in nbgrader's gradebook so formgrader keeps working. Statuses, content hashes and
scores also go to ``autograder/.deploylab/status.json`` (git-ignored): a rerun grades only new
or changed submissions, and a failure is never shown as a silent 0.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import os
import shutil
import stat
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploylab.grading.course import Course, CourseError

__all__ = [
    "STATUSES",
    "SubmissionResult",
    "autograde",
    "format_table",
    "load_results",
    "merge_submission",
    "reference_imports",
    "score_tests",
    "setup_imports",
]

GRADED = "graded"
TIMED_OUT = "timed out"
KERNEL_DIED = "kernel died"
NOT_A_NOTEBOOK = "not a notebook"
WRONG_LAB = "wrong lab"
NEEDS_REVIEW = "needs review"
#: Every status a submission can end with.
STATUSES = (GRADED, TIMED_OUT, KERNEL_DIED, NOT_A_NOTEBOOK, WRONG_LAB, NEEDS_REVIEW)

#: Bump when grading changes in a way that should invalidate stored results.
PIPELINE_VERSION = "2"
STATUS_FILE = "status.json"
#: nbgrader's submission time file (written by ``nbgrader submit``/``collect``), optional.
TIMESTAMP_FILE = "timestamp.txt"


@dataclass
class SubmissionResult:
    """How one student's submission of one lab ended.

    ``score`` is ``None`` unless ``status`` is ``graded``: the points the tests would have
    given otherwise are kept in ``provisional_score`` for the instructor, never exported as a
    grade. ``cells`` maps each test cell's grade_id to ``[points earned or None, max points]``;
    ``tests`` to the trusted verdict (outcome, points, instructor message) feedback is made of.
    """

    student: str
    lab: str
    status: str
    max_score: float
    score: float | None = None
    provisional_score: float | None = None
    detail: str = ""
    digest: str = ""
    cells: dict[str, list] = field(default_factory=dict)
    tests: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0
    timestamp: str = ""
    reused: bool = False

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("reused")
        return data

    @classmethod
    def from_json(cls, data: dict) -> SubmissionResult:
        known = {name for name in cls.__dataclass_fields__ if name != "reused"}
        return cls(**{key: value for key, value in data.items() if key in known})


# ---------------------------------------------------------------------------------------
# Building the notebook that is executed
# ---------------------------------------------------------------------------------------
def _nbgrader_meta(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def _grade_id(cell) -> str | None:
    grade_id = _nbgrader_meta(cell).get("grade_id")
    return grade_id if isinstance(grade_id, str) else None


def merge_submission(instructor, released, submitted):
    """The notebook to execute: the instructor's cells, with the student's answers in them.

    ``instructor`` is the source notebook (hidden tests included), ``released`` the student
    version nbgrader generated (its stubs and checksums), ``submitted`` what the student
    handed in. Every cell of the instructor version appears, in its order, with its metadata;
    a solution cell takes the source of the student's cell with the same grade_id (the stub
    if the student deleted it). Cells the student added keep their place after the preceding
    instructor cell and lose any nbgrader metadata; the student's copies of locked cells are
    ignored, so edited or deleted tests are restored.

    >>> import nbformat.v4 as v4
    >>> def cell(source, grade_id, solution):
    ...     c = v4.new_code_cell(source)
    ...     c.metadata["nbgrader"] = {"grade_id": grade_id, "solution": solution,
    ...                               "grade": not solution, "locked": not solution}
    ...     return c
    >>> source = v4.new_notebook(cells=[cell("x = 1", "answer", True), cell("assert x == 1", "test", False)])
    >>> student = v4.new_notebook(cells=[cell("x = 2", "answer", True), v4.new_code_cell("y = 3"),
    ...                                  cell("pass", "test", False)])
    >>> [c.source for c in merge_submission(source, source, student).cells]
    ['x = 2', 'y = 3', 'assert x == 1']
    """
    import copy

    import nbformat

    released_by_id = {_grade_id(cell): cell for cell in released.cells if _grade_id(cell)}
    instructor_ids = [_grade_id(cell) for cell in instructor.cells]
    solution_ids = {
        _grade_id(cell) for cell in instructor.cells if _nbgrader_meta(cell).get("solution")
    }
    answers: dict[str, object] = {}
    extras: dict[str | None, list] = {}
    anchor: str | None = None
    for cell in submitted.cells:
        grade_id = _grade_id(cell)
        if grade_id in solution_ids and grade_id not in answers:
            answers[grade_id] = cell
            anchor = grade_id
        elif grade_id in instructor_ids:
            anchor = grade_id  # a locked cell: the instructor's copy is used instead
        elif cell.get("cell_type") in ("code", "markdown", "raw"):
            extra = copy.deepcopy(cell)
            extra.get("metadata", {}).pop("nbgrader", None)
            extras.setdefault(anchor, []).append(extra)

    merged = copy.deepcopy(instructor)
    merged.cells = []
    merged.cells.extend(extras.get(None, []))
    for index, cell in enumerate(instructor.cells):
        grade_id = _grade_id(cell)
        new_cell = copy.deepcopy(cell)
        meta = new_cell.metadata.get("nbgrader")
        if grade_id in released_by_id and meta is not None:
            checksum = _nbgrader_meta(released_by_id[grade_id]).get("checksum")
            if checksum:
                meta["checksum"] = checksum
        if grade_id in solution_ids:
            answer = answers.get(grade_id, released_by_id.get(grade_id, cell))
            source = answer.get("source", "")
            new_cell.source = "".join(source) if isinstance(source, list) else str(source)
        if new_cell.cell_type == "code":
            new_cell.outputs = []
            new_cell.execution_count = None
        new_cell.setdefault("id", f"cell-{index}")
        merged.cells.append(new_cell)
        merged.cells.extend(extras.get(grade_id, []) if grade_id else [])
    # Student cells carry their own ids; make them unique and valid for nbformat 4.5.
    seen: set[str] = set()
    for number, cell in enumerate(merged.cells):
        if cell.get("id") in seen or not cell.get("id"):
            cell["id"] = f"student-{number}"
        seen.add(cell["id"])
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.validate(merged)
    return merged


# ---------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------
def score_tests(tests: dict, notebook) -> tuple[dict[str, list], float, float]:
    """Points per graded cell, earned and possible, from the trusted tests' outcomes.

    ``tests`` maps a test cell's grade_id to its :class:`~deploylab.grading.execute.TestOutcome`
    (or its JSON form). A cell that did not run scores ``None``, as does an answer cell that a
    person grades. Nothing is read from what the notebook printed.

    >>> from deploylab.grading.execute import TestOutcome
    >>> import nbformat.v4 as v4
    >>> nb = v4.new_notebook()
    >>> score_tests({"a": TestOutcome("passed", 2.0, 2.0), "b": TestOutcome("not run", None, 3.0)}, nb)
    ({'a': [2.0, 2.0], 'b': [None, 3.0]}, 2.0, 5.0)
    """
    cells: dict[str, list] = {}
    for grade_id, outcome in tests.items():
        data = outcome if isinstance(outcome, dict) else outcome.to_json()
        cells[grade_id] = [data.get("points"), float(data.get("max_points") or 0)]
    for cell in notebook.cells:
        meta = _nbgrader_meta(cell)
        if meta.get("grade") and meta.get("solution") and _grade_id(cell) not in cells:
            cells[_grade_id(cell)] = [None, float(meta.get("points", 0) or 0)]
    earned_total = sum(earned for earned, _ in cells.values() if earned is not None)
    max_total = sum(max_points for _, max_points in cells.values())
    return cells, earned_total, max_total


# ---------------------------------------------------------------------------------------
# Executing
# ---------------------------------------------------------------------------------------
def _run(
    notebook,
    scratch_dir: Path,
    *,
    sandbox: bool,
    cell_timeout: float,
    notebook_timeout: float,
    trusted_dir: Path,
    package_modules: tuple[str, ...] | None,
):
    from deploylab.grading.execute import run_notebook

    return run_notebook(
        notebook,
        scratch_dir,
        sandbox=sandbox,
        cell_timeout=cell_timeout,
        notebook_timeout=notebook_timeout,
        trusted_dir=trusted_dir,
        package_modules=package_modules,
    )


def sandbox_problem() -> str | None:
    """Why the sandbox cannot be used here, or ``None`` when it can."""
    try:
        from deploylab.grading import sandbox as sandbox_module
    except ImportError:
        return "deploylab.grading.sandbox is not available"
    try:
        sandbox_module.check_available()
    except Exception as error:
        return str(error) or type(error).__name__
    return None


# ---------------------------------------------------------------------------------------
# The batch
# ---------------------------------------------------------------------------------------
@dataclass
class _Submission:
    student: str
    path: Path | None
    digest: str
    result: SubmissionResult | None = None  # decided before execution (bad file, wrong lab)
    notebook: object = None  # merged notebook to execute
    max_score: float = 0.0
    timestamp: str = ""
    review: str = ""  # a reason a person must look at it, whatever it scores


def setup_imports(instructor) -> dict[str, set[str]]:
    """What the lab's locked setup cells import from deploylab: {module: names} (an empty set
    for ``import module``). Grading kernels can import these modules and nothing else of the
    package, and a student's own import of anything else is flagged for review.

    >>> import nbformat.v4 as v4
    >>> setup = v4.new_code_cell("from deploylab.deploy import Step\\nimport math")
    >>> setup.metadata["nbgrader"] = {"locked": True, "grade": False, "solution": False}
    >>> setup_imports(v4.new_notebook(cells=[setup]))
    {'deploylab.deploy': {'Step'}}
    """
    imports: dict[str, set[str]] = {}
    for cell in instructor.cells:
        meta = _nbgrader_meta(cell)
        if cell.get("cell_type") != "code" or not meta.get("locked") or meta.get("grade"):
            continue
        for module, names in _deploylab_imports(str(cell.source)):
            imports.setdefault(module, set()).update(names)
    return imports


def _deploylab_imports(source: str) -> list[tuple[str, set[str]]]:
    """``(module, names)`` for each import of deploylab in ``source`` (strings given to
    ``__import__``/``import_module`` count as imports of that module)."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    found: list[tuple[str, set[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, set()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, {alias.name for alias in node.names}))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            name = getattr(function, "id", None) or getattr(function, "attr", None)
            if name in ("__import__", "import_module") and isinstance(node.args[0].value, str):
                found.append((node.args[0].value, set()))
    return [
        (module, names)
        for module, names in found
        if module == "deploylab" or module.startswith("deploylab.")
    ]


def reference_imports(notebook, allowed: dict[str, set[str]]) -> list[str]:
    """The deploylab modules or names the student's own cells import beyond what the setup
    cells do: the course's reference implementation used as an answer.

    >>> import nbformat.v4 as v4
    >>> answer = v4.new_code_cell("from deploylab.autoscale import step_adjustment")
    >>> reference_imports(v4.new_notebook(cells=[answer]), {})
    ['deploylab.autoscale.step_adjustment']
    """
    found: list[str] = []
    for cell in notebook.cells:
        meta = _nbgrader_meta(cell)
        if cell.get("cell_type") != "code" or (meta.get("locked") and not meta.get("solution")):
            continue
        for module, names in _deploylab_imports(str(cell.get("source", ""))):
            if module not in allowed:
                found += [f"{module}.{name}" for name in sorted(names)] or [module]
            else:
                found += [f"{module}.{name}" for name in sorted(names - allowed[module])]
    return sorted(set(found))


#: Largest submission file read (bigger files get status "not a notebook").
MAX_SUBMISSION_BYTES = 20 * 1024 * 1024


class _Unreadable(ValueError):
    """A submission file that must not be read: a symlink, not a regular file, too large."""


def _find_notebook(directory: Path, lab: str) -> Path | None:
    """The file to grade in a student's directory (named like the lab if there is one).

    Candidates are listed without following symlinks; the file itself is opened by
    :func:`_read_submission`, which refuses symlinks and special files.
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


def _read_submission(path: Path) -> bytes:
    """The bytes of ``path``, never through a symlink, only from a regular file of at most
    :data:`MAX_SUBMISSION_BYTES`; :class:`_Unreadable` (naming the reason) otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if os.path.islink(path):
            raise _Unreadable(f"{path.name} is a symbolic link, not a file") from None
        raise _Unreadable(f"{path.name} cannot be opened ({error.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _Unreadable(f"{path.name} is not a regular file")
        if info.st_size > MAX_SUBMISSION_BYTES:
            raise _Unreadable(
                f"{path.name} is {info.st_size / 2**20:.1f} MiB, more than the "
                f"{MAX_SUBMISSION_BYTES >> 20} MiB a submission may be"
            )
        data = handle.read(MAX_SUBMISSION_BYTES + 1)
    if len(data) > MAX_SUBMISSION_BYTES:
        raise _Unreadable(f"{path.name} is more than {MAX_SUBMISSION_BYTES >> 20} MiB")
    return data


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file readable by the course's owner only (never a copy of
    another file's permissions)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _lab_grade_ids(course: Course) -> dict[str, set[str]]:
    import nbformat

    ids: dict[str, set[str]] = {}
    for lab in course.labs():
        try:
            notebook = nbformat.read(course.source_notebook(lab), as_version=4)
        except Exception:
            continue
        ids[lab] = {
            _grade_id(cell)
            for cell in notebook.cells
            if _grade_id(cell)
            and (_nbgrader_meta(cell).get("solution") or _nbgrader_meta(cell).get("grade"))
        }
    return ids


def _ensure_in_gradebook(course: Course, lab: str, source_digest: str) -> None:
    """Have nbgrader record the lab (and its current source) in the gradebook if needed."""
    from nbgrader.api import MissingEntry

    from deploylab.grading.release import generate_with_nbgrader

    known = False
    if (course.root / "gradebook.db").is_file() and (course.root / "release" / lab).is_dir():
        with _open_gradebook(course) as gradebook:
            try:
                gradebook.find_notebook(lab, lab)
                known = True
            except MissingEntry:
                known = False
    if not known or course.read_state("release.json").get(lab) != source_digest:
        generate_with_nbgrader(course, lab)


@contextlib.contextmanager
def _open_gradebook(course: Course):
    """nbgrader's gradebook, quietly: nbgrader 0.9.6 with SQLAlchemy 2.x warns on every new
    submission ("not in session"), which is harmless."""
    from nbgrader.api import Gradebook

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(course.db_url, "deploylab") as gradebook:
            yield gradebook


def _prepare(
    course: Course,
    lab: str,
    student_dir: Path,
    instructor,
    released,
    source_digest: str,
    grade_ids_by_lab: dict[str, set[str]],
) -> _Submission:
    import nbformat

    student = student_dir.name
    problem = ""
    raw = b""
    path = None
    if student_dir.is_symlink() or not student_dir.is_dir():
        problem = f"{student}/ is a symbolic link or not a directory"
    else:
        path = _find_notebook(student_dir, lab)
        if path is not None:
            try:
                raw = _read_submission(path)
            except _Unreadable as error:
                problem = str(error)
    timestamp_path = student_dir / TIMESTAMP_FILE
    timestamp = ""
    if not problem:
        with contextlib.suppress(_Unreadable):
            timestamp = _read_submission(timestamp_path).decode("utf-8", "replace").strip()[:64]
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
        float(_nbgrader_meta(cell).get("points", 0) or 0)
        for cell in instructor.cells
        if _nbgrader_meta(cell).get("grade")
    )
    submission = _Submission(student, path, digest, max_score=max_score, timestamp=timestamp)

    def decided(status: str, detail: str) -> _Submission:
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
    _write_private(submitted_dir / f"{lab}.ipynb", raw)
    if timestamp:
        _write_private(submitted_dir / TIMESTAMP_FILE, (timestamp + "\n").encode())
    try:
        notebook = nbformat.reads(raw.decode("utf-8"), as_version=4)
        if not isinstance(notebook.get("cells"), list):
            raise ValueError("no list of cells")
    except Exception as error:
        reason = "the file is empty" if not raw.strip() else f"{type(error).__name__}: {error}"
        return decided(NOT_A_NOTEBOOK, f"{path.name} is not a Jupyter notebook ({reason[:200]})")
    submitted_ids = {_grade_id(cell) for cell in notebook.cells if _grade_id(cell)}
    if not submitted_ids & grade_ids_by_lab.get(lab, set()):
        others = [
            other for other, ids in grade_ids_by_lab.items() if other != lab and submitted_ids & ids
        ]
        where = (
            f"it is the {others[0]!r} lab" if others else f"it has none of the {lab!r} lab's cells"
        )
        return decided(WRONG_LAB, f"{path.name}: {where}")
    try:
        submission.notebook = merge_submission(instructor, released, notebook)
    except Exception as error:
        return decided(NOT_A_NOTEBOOK, f"{path.name} could not be read as a notebook ({error})")
    imported = reference_imports(submission.notebook, setup_imports(instructor))
    if imported:
        submission.review = (
            f"imports the course's reference implementation ({', '.join(imported)[:200]})"
        )
    return submission


def _grade(
    course: Course,
    lab: str,
    submission: _Submission,
    *,
    sandbox: bool,
    cell_timeout: float,
    notebook_timeout: float,
    package_modules: tuple[str, ...] | None = None,
) -> tuple[SubmissionResult, object]:
    """Execute and score one submission (runs in a worker thread; touches no shared state)."""
    from deploylab.grading.execute import Limits
    from deploylab.grading.sandbox import scratch_directory

    started = time.monotonic()
    lab_dir = course.source_dir / lab
    with scratch_directory(Limits(), prefix=f"dl-{lab[:12]}-") as scratch:
        # Data files shipped with the lab go next to the notebook, as nbgrader does.
        for extra in sorted(lab_dir.iterdir()):
            if extra.is_file() and not extra.is_symlink() and extra.suffix != ".ipynb":
                shutil.copyfile(extra, scratch / extra.name)
        try:
            outcome = _run(
                submission.notebook,
                scratch,
                sandbox=sandbox,
                cell_timeout=cell_timeout,
                notebook_timeout=notebook_timeout,
                trusted_dir=lab_dir,
                package_modules=package_modules,
            )
        except Exception as error:
            # Not the student's fault (the kernel did not start, the sandbox broke): flag it
            # and do not cache it, so the next run tries again.
            result = SubmissionResult(
                submission.student,
                lab,
                NEEDS_REVIEW,
                submission.max_score,
                detail=f"grader problem, not graded: {type(error).__name__}: {error}",
                digest="",
            )
            return result, None
    executed = outcome.notebook
    cells, earned, max_total = score_tests(outcome.tests, executed)
    status = outcome.status if outcome.status in STATUSES else NEEDS_REVIEW
    detail = outcome.detail or ""
    if submission.review and status == GRADED:
        status, detail = NEEDS_REVIEW, submission.review
    for grade_id, test in outcome.tests.items():
        if test.raw_points is not None and test.raw_points > test.max_points and status == GRADED:
            status, detail = (
                NEEDS_REVIEW,
                f"test cell {grade_id} reported {test.raw_points:g} of {test.max_points:g} points",
            )
    result = SubmissionResult(
        submission.student,
        lab,
        status,
        max_total,
        score=earned if status == GRADED else None,
        provisional_score=None if status == GRADED else earned,
        detail=detail,
        digest=submission.digest,
        cells=cells,
        tests={grade_id: test.to_json() for grade_id, test in outcome.tests.items()},
        seconds=round(time.monotonic() - started, 3),
        timestamp=submission.timestamp,
    )
    return result, executed


def _save(course: Course, gradebook, lab: str, result: SubmissionResult, executed) -> None:
    """Gradebook rows (nbgrader's tables), the autograded notebook, and our status entry."""
    import nbformat

    _save_grades(gradebook, lab, result)
    autograded = course.autograded_dir(result.student, lab)
    if autograded.exists():
        shutil.rmtree(autograded)
    if executed is not None:
        autograded.mkdir(parents=True)
        nbformat.write(executed, autograded / f"{lab}.ipynb")

    state = course.read_state(STATUS_FILE)
    state.setdefault(lab, {})[result.student] = result.to_json()
    course.write_state(STATUS_FILE, state)


def _submission_time(text: str) -> dict:
    """``{"timestamp": datetime}`` for nbgrader (late penalties), or ``{}`` if absent/bad."""
    if not text:
        return {}
    from nbgrader.utils import parse_utc

    try:
        return {"timestamp": parse_utc(text)}
    except (ValueError, OverflowError):
        return {}


def _save_grades(gradebook, lab: str, result: SubmissionResult) -> None:
    """One submission's rows in nbgrader's gradebook (what formgrader and its export read)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gradebook.update_or_create_student(result.student)
        submission = gradebook.update_or_create_submission(
            lab, result.student, **_submission_time(result.timestamp)
        )
        for submitted_notebook in submission.notebooks:
            for grade in submitted_notebook.grades:
                earned = result.cells.get(grade.name, [None])[0]
                if result.status == GRADED and earned is not None:
                    grade.auto_score = earned
                    grade.needs_manual_grade = grade.manual_score is not None
                else:
                    # Not gradable automatically: formgrader lists it as needing a person.
                    grade.auto_score = None
                    grade.needs_manual_grade = True
            for comment in submitted_notebook.comments:
                earned = result.cells.get(comment.name, [None])[0]
                comment.auto_comment = (
                    "No response."
                    if result.status == GRADED and earned == 0.0 and comment.name in result.cells
                    else None
                )
                if result.status != GRADED:
                    comment.auto_comment = f"{result.status}: {result.detail}"
        gradebook.db.commit()


def _in_gradebook(gradebook, lab: str, student: str) -> bool:
    from nbgrader.api import MissingEntry

    try:
        gradebook.find_submission(lab, student)
    except MissingEntry:
        return False
    return True


def load_results(course: Course, lab: str | None = None) -> list[SubmissionResult]:
    """Stored results (``autograder/.deploylab/status.json``), sorted by lab and student."""
    state = course.read_state(STATUS_FILE)
    results = []
    for lab_name in sorted(state):
        if lab is not None and lab_name != lab:
            continue
        for student in sorted(state[lab_name]):
            results.append(SubmissionResult.from_json(state[lab_name][student]))
    return results


class _Progress:
    """A one-line progress bar on stderr (tqdm is not a dependency)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled and total > 0
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()

    def advance(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        width = 24
        filled = int(width * self.done / self.total)
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        line = (
            f"grading [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"{elapsed:5.1f}s eta {eta:4.0f}s  {label[:30]}"
        )
        if self.tty:
            sys.stderr.write("\r" + line.ljust(90))
            if self.done == self.total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def autograde(
    course: Course,
    lab: str,
    submissions_dir: str | Path,
    *,
    jobs: int = 1,
    force: bool = False,
    sandbox: bool = True,
    cell_timeout: float = 30,
    notebook_timeout: float = 300,
    progress: bool = True,
) -> list[SubmissionResult]:
    """Grade every ``submissions_dir/<student>/<notebook>.ipynb`` of ``lab``; one result each.

    Raises :class:`CourseError` (a ``ValueError``) for a bad lab or directory, and when the
    sandbox is asked for but unavailable. Never raises because of what a submission holds.
    """
    import nbformat

    course.check_lab(lab)
    submissions_dir = Path(submissions_dir)
    if not submissions_dir.is_dir():
        raise CourseError(
            f"submissions directory {submissions_dir} does not exist; expected DIR/<student>/<notebook>.ipynb"
        )
    if sandbox:
        problem = sandbox_problem()
        if problem:
            hint = (
                ""
                if "--unsafe-no-sandbox" in problem
                else (
                    "; install bubblewrap (apt-get install bubblewrap) or pass --unsafe-no-sandbox"
                )
            )
            raise CourseError(f"cannot isolate student code: {problem}{hint}")
    else:
        print(
            "WARNING: grading WITHOUT a sandbox: student code runs as you, with your files and network",
            file=sys.stderr,
        )

    source_path = course.source_notebook(lab)
    source_digest = hashlib.sha256(source_path.read_bytes()).hexdigest()
    released_path = course.root / "release" / lab / f"{lab}.ipynb"
    if course.read_state("release.json").get(lab) != source_digest or not released_path.is_file():
        from deploylab.grading.release import generate_with_nbgrader

        generate_with_nbgrader(course, lab)
    instructor = nbformat.read(source_path, as_version=4)
    released = nbformat.read(released_path, as_version=4)
    grade_ids_by_lab = _lab_grade_ids(course)

    previous = course.read_state(STATUS_FILE).get(lab, {})
    student_dirs = sorted(
        path
        for path in submissions_dir.iterdir()
        if (path.is_dir() or path.is_symlink()) and not path.name.startswith(".")
    )
    results: dict[str, SubmissionResult] = {}
    bar = _Progress(len(student_dirs), progress)
    decided: list[SubmissionResult] = []
    to_run: list[_Submission] = []
    for student_dir in student_dirs:
        submission = _prepare(
            course, lab, student_dir, instructor, released, source_digest, grade_ids_by_lab
        )
        stored = previous.get(submission.student)
        if not force and stored and stored.get("digest") == submission.digest:
            result = SubmissionResult.from_json(stored)
            result.reused = True
            results[submission.student] = result
            bar.advance(f"{submission.student} (unchanged)")
        elif submission.result is not None:
            decided.append(submission.result)
        else:
            to_run.append(submission)

    # The deploylab modules a grading kernel may import: those the setup cells need.
    package_modules = tuple(sorted(setup_imports(instructor)))
    if sandbox and to_run:
        from deploylab.grading.sandbox import package_files

        package_files(package_modules)  # once, before the workers need it
    # Kernels start first; nbgrader's import and the gradebook are set up while they run.
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {
            pool.submit(
                _grade,
                course,
                lab,
                submission,
                sandbox=sandbox,
                cell_timeout=cell_timeout,
                notebook_timeout=notebook_timeout,
                package_modules=package_modules,
            ): submission
            for submission in to_run
        }
        _ensure_in_gradebook(course, lab, source_digest)
        with _open_gradebook(course) as gradebook:
            for result in results.values():
                # Unchanged submissions are not regraded, but a gradebook that lost them (deleted
                # or recreated) gets them back; rows that exist keep any manual grades.
                if result.reused and not _in_gradebook(gradebook, lab, result.student):
                    _save_grades(gradebook, lab, result)
            for result in decided:
                _save(course, gradebook, lab, result, None)
                results[result.student] = result
                bar.advance(result.student)
            for future in concurrent.futures.as_completed(futures):
                submission = futures[future]
                try:
                    result, executed = future.result()
                except Exception as error:  # a bug of ours must not stop the batch
                    result = SubmissionResult(
                        submission.student,
                        lab,
                        NEEDS_REVIEW,
                        submission.max_score,
                        detail=f"grader error: {type(error).__name__}: {error}",
                    )
                    executed = None
                _save(course, gradebook, lab, result, executed)
                results[submission.student] = result
                bar.advance(submission.student)
    return [results[student] for student in sorted(results)]


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def format_table(results: list[SubmissionResult]) -> str:
    """The per-student score table: student, score, max, status (and why, if not graded).

    >>> print(format_table([SubmissionResult("ann", "lab", "graded", 9.0, score=7.0),
    ...                     SubmissionResult("bob", "lab", "timed out", 9.0, detail="cell 3")]))
    student  score  max  status
    -------  -----  ---  ------------------
    ann          7    9  graded
    bob          -    9  timed out (cell 3)
    """
    rows = [("student", "score", "max", "status")]
    for result in results:
        detail = result.detail if len(result.detail) <= 70 else result.detail[:67] + "..."
        status = result.status + (f" ({detail})" if detail and result.status != GRADED else "")
        rows.append((result.student, _points(result.score), _points(result.max_score), status))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = []
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].rjust(widths[2]), row[3]]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
