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
import shutil
import sys
import tempfile
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
    "score_cell",
]

GRADED = "graded"
TIMED_OUT = "timed out"
KERNEL_DIED = "kernel died"
NOT_A_NOTEBOOK = "not a notebook"
WRONG_LAB = "wrong lab"
MISSING = "missing"  # only other labs' notebooks were handed in: nothing of this lab
NEEDS_REVIEW = "needs review"
#: Every status a submission can end with.
STATUSES = (GRADED, TIMED_OUT, KERNEL_DIED, NOT_A_NOTEBOOK, WRONG_LAB, MISSING, NEEDS_REVIEW)

#: Bump when grading changes in a way that should invalidate stored results.
PIPELINE_VERSION = "1"
STATUS_FILE = "status.json"
#: nbgrader's submission time file (written by ``nbgrader submit``/``collect``), optional.
TIMESTAMP_FILE = "timestamp.txt"


@dataclass
class SubmissionResult:
    """How one student's submission of one lab ended.

    ``score`` is ``None`` unless ``status`` is ``graded``: the points the tests would have
    given otherwise are kept in ``provisional_score`` for the instructor, never exported as a
    grade. ``cells`` maps each test cell's grade_id to ``[points earned or None, max points]``.
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
def score_cell(cell) -> tuple[float | None, float]:
    """Points earned by one executed grade cell, with nbgrader's rules but stderr ignored.

    An error output scores 0; a numeric result is partial credit (clamped to the maximum);
    anything else scores full points. Answer cells graded by hand score ``None``.

    >>> import nbformat.v4 as v4
    >>> c = v4.new_code_cell("assert True")
    >>> c.metadata["nbgrader"] = {"grade": True, "solution": False, "points": 2, "grade_id": "t"}
    >>> c.outputs = [v4.new_output("stream", name="stderr", text="debug\\n")]
    >>> score_cell(c)
    (2.0, 2.0)
    >>> c.outputs.append(v4.new_output("execute_result", data={"text/plain": "1.5"}))
    >>> score_cell(c)
    (1.5, 2.0)
    >>> c.outputs.append(v4.new_output("error", ename="AssertionError", evalue="", traceback=[]))
    >>> score_cell(c)
    (0.0, 2.0)
    """
    from nbgrader import utils

    max_points = float(_nbgrader_meta(cell).get("points", 0) or 0)
    if _nbgrader_meta(cell).get("solution") or cell.cell_type != "code":
        if "checksum" in _nbgrader_meta(cell) and _nbgrader_meta(cell)[
            "checksum"
        ] == utils.compute_checksum(cell):
            return 0.0, max_points  # unchanged answer cell: nbgrader's "No response."
        return None, max_points
    if any(output.output_type == "error" for output in cell.outputs):
        return 0.0, max_points
    if cell.get("metadata", {}).get("deploylab", {}).get("hidden_error"):
        return 0.0, max_points  # the runner saw an error the student's code kept off screen
    for output in cell.outputs:
        if output.output_type == "execute_result":
            text = output.get("data", {}).get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else str(text)
            try:
                earned = float(text)
            except ValueError:
                return max_points, max_points
            return min(max(earned, 0.0), max_points), max_points
    return max_points, max_points


def _score_notebook(executed) -> tuple[dict[str, list], float, float]:
    cells: dict[str, list] = {}
    for cell in executed.cells:
        if _nbgrader_meta(cell).get("grade"):
            earned, max_points = score_cell(cell)
            cells[_grade_id(cell)] = [earned, max_points]
    earned_total = sum(earned for earned, _ in cells.values() if earned is not None)
    max_total = sum(max_points for _, max_points in cells.values())
    return cells, earned_total, max_total


# ---------------------------------------------------------------------------------------
# Executing
# ---------------------------------------------------------------------------------------
def _run(
    notebook, scratch_dir: Path, *, sandbox: bool, cell_timeout: float, notebook_timeout: float
):
    """Execute via the sandbox engineer's ``run_notebook``; plain nbclient if it is absent."""
    try:
        from deploylab.grading.execute import run_notebook
    except ImportError:
        if sandbox:
            raise
        return _run_with_nbclient(notebook, scratch_dir, cell_timeout)
    return run_notebook(
        notebook,
        scratch_dir,
        sandbox=sandbox,
        cell_timeout=cell_timeout,
        notebook_timeout=notebook_timeout,
    )


@dataclass
class _PlainOutcome:
    notebook: object
    status: str
    detail: str = ""
    tamper: list[str] = field(default_factory=list)


def _run_with_nbclient(notebook, scratch_dir: Path, cell_timeout: float) -> _PlainOutcome:
    """Unsandboxed fallback used only when ``deploylab.grading.execute`` is missing."""
    import copy

    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    executed = copy.deepcopy(notebook)
    client = NotebookClient(
        executed,
        timeout=cell_timeout,
        allow_errors=True,
        interrupt_on_timeout=True,
        resources={"metadata": {"path": str(scratch_dir)}},
    )
    try:
        client.execute()
    except DeadKernelError:
        return _PlainOutcome(executed, KERNEL_DIED, "the kernel died")
    except CellTimeoutError:
        return _PlainOutcome(executed, TIMED_OUT, f"a cell ran longer than {cell_timeout:g} s")
    return _PlainOutcome(executed, GRADED)


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


def _find_notebook(directory: Path, lab: str) -> Path | None:
    preferred = directory / f"{lab}.ipynb"
    if preferred.is_file():
        return preferred
    notebooks = sorted(path for path in directory.glob("*.ipynb") if path.is_file())
    if notebooks:
        return notebooks[0]
    files = sorted(
        path for path in directory.iterdir() if path.is_file() and path.name != TIMESTAMP_FILE
    )
    return files[0] if files else None


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
    path = _find_notebook(student_dir, lab)
    raw = path.read_bytes() if path is not None else b""
    timestamp_path = student_dir / TIMESTAMP_FILE
    timestamp = ""
    if timestamp_path.is_file():
        timestamp = timestamp_path.read_text(encoding="utf-8", errors="replace").strip()[:64]
    digest = hashlib.sha256(
        b"\0".join([PIPELINE_VERSION.encode(), source_digest.encode(), raw, timestamp.encode()])
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

    if path is None:
        return decided(NOT_A_NOTEBOOK, f"{student_dir.name}/ holds no file")
    # nbgrader's layout: submitted/<student>/<lab>/<notebook>.ipynb, named as in the source.
    submitted_dir = course.submitted_dir(student, lab)
    if submitted_dir.exists():
        shutil.rmtree(submitted_dir)
    submitted_dir.mkdir(parents=True)
    (submitted_dir / f"{lab}.ipynb").write_bytes(raw)
    if timestamp:
        (submitted_dir / TIMESTAMP_FILE).write_text(timestamp + "\n", encoding="utf-8")
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
        if others and path.name != f"{lab}.ipynb":
            return decided(
                MISSING, f"no {lab}.ipynb handed in ({path.name} is the {others[0]!r} lab)"
            )
        return decided(WRONG_LAB, f"{path.name}: {where}")
    try:
        submission.notebook = merge_submission(instructor, released, notebook)
    except Exception as error:
        return decided(NOT_A_NOTEBOOK, f"{path.name} could not be read as a notebook ({error})")
    return submission


def _grade(
    course: Course,
    lab: str,
    submission: _Submission,
    *,
    sandbox: bool,
    cell_timeout: float,
    notebook_timeout: float,
) -> tuple[SubmissionResult, object]:
    """Execute and score one submission (runs in a worker thread; touches no shared state)."""
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix=f"dl-{lab[:12]}-"))
    try:
        # Data files shipped with the lab go next to the notebook, as nbgrader does.
        for extra in sorted((course.source_dir / lab).iterdir()):
            if extra.is_file() and extra.suffix != ".ipynb":
                shutil.copyfile(extra, scratch / extra.name)
        try:
            outcome = _run(
                submission.notebook,
                scratch,
                sandbox=sandbox,
                cell_timeout=cell_timeout,
                notebook_timeout=notebook_timeout,
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
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    executed = outcome.notebook
    cells, earned, max_total = _score_notebook(executed)
    status = outcome.status if outcome.status in STATUSES else NEEDS_REVIEW
    detail = outcome.detail or ""
    for grade_id, (_earned, max_points) in cells.items():
        raw = _partial_result(executed, grade_id)
        if raw is not None and raw > max_points and status == GRADED:
            status, detail = (
                NEEDS_REVIEW,
                f"test cell {grade_id} reported {raw:g} of {max_points:g} points",
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
        seconds=round(time.monotonic() - started, 3),
        timestamp=submission.timestamp,
    )
    return result, executed


def _partial_result(executed, grade_id: str) -> float | None:
    for cell in executed.cells:
        if _grade_id(cell) == grade_id and cell.cell_type == "code":
            for output in cell.outputs:
                if output.output_type == "execute_result":
                    try:
                        return float(str(output.get("data", {}).get("text/plain", "")))
                    except ValueError:
                        return None
    return None


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
        if path.is_dir() and not path.name.startswith(".")
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
