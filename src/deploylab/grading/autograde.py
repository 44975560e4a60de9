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

This module is the batch; each step is its own module: :mod:`~deploylab.grading.submissions`
(read and decide), :mod:`~deploylab.grading.merge`, :mod:`~deploylab.grading.execute`,
:mod:`~deploylab.grading.scoring`, :mod:`~deploylab.grading.gradebook` and
:mod:`~deploylab.grading.results` (``status.json`` and the table).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import shutil
import sys
import time
from pathlib import Path

import nbformat

from deploylab.grading import sandbox as sandbox_module
from deploylab.grading.course import Course, CourseError
from deploylab.grading.execute import run_notebook
from deploylab.grading.gradebook import (
    ensure_lab_recorded,
    has_submission,
    open_gradebook,
    save_grades,
)
from deploylab.grading.limits import Limits
from deploylab.grading.merge import merge_submission
from deploylab.grading.reference_imports import reference_imports, reference_names, setup_imports
from deploylab.grading.results import (
    STATUS_FILE,
    SubmissionResult,
    format_table,
    load_results,
    printable,
)
from deploylab.grading.scoring import score_tests
from deploylab.grading.scratch import scratch_directory
from deploylab.grading.status import GRADED, NEEDS_REVIEW, STATUSES
from deploylab.grading.submissions import Submission, lab_grade_ids, prepare_submission

__all__ = [
    "STATUSES",
    "SubmissionResult",
    "autograde",
    "format_table",
    "load_results",
    "merge_submission",
    "reference_imports",
    "reference_names",
    "score_tests",
    "setup_imports",
]

#: The old private name of :func:`~deploylab.grading.submissions.prepare_submission`.
_prepare = prepare_submission


def sandbox_problem() -> str | None:
    """Why the sandbox cannot be used here, or ``None`` when it can."""
    try:
        sandbox_module.check_available()
    except Exception as error:
        return str(error) or type(error).__name__
    return None


def _grade(
    course: Course,
    lab: str,
    submission: Submission,
    *,
    sandbox: bool,
    cell_timeout: float,
    notebook_timeout: float,
    package_modules: tuple[str, ...] | None = None,
) -> tuple[SubmissionResult, object]:
    """Execute and score one submission (runs in a worker thread; touches no shared state)."""
    started = time.monotonic()
    lab_dir = course.source_dir / lab
    with scratch_directory(Limits(), prefix=f"dl-{lab[:12]}-") as scratch:
        # Data files shipped with the lab go next to the notebook, as nbgrader does.
        for extra in sorted(lab_dir.iterdir()):
            if extra.is_file() and not extra.is_symlink() and extra.suffix != ".ipynb":
                shutil.copyfile(extra, scratch / extra.name)
        assert submission.notebook is not None  # undecided submissions were merged
        try:
            outcome = run_notebook(
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
    save_grades(gradebook, lab, result)
    autograded = course.autograded_dir(result.student, lab)
    if autograded.exists():
        shutil.rmtree(autograded)
    if executed is not None:
        autograded.mkdir(parents=True)
        nbformat.write(executed, autograded / f"{lab}.ipynb")

    state = course.read_state(STATUS_FILE)
    state.setdefault(lab, {})[result.student] = result.to_json()
    course.write_state(STATUS_FILE, state)


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
            f"{elapsed:5.1f}s eta {eta:4.0f}s  {printable(label)[:30]}"
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
    lab = course.check_lab(lab)
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

    source_path = lab.source_notebook
    source_digest = hashlib.sha256(source_path.read_bytes()).hexdigest()
    released_path = lab.released_notebook
    if course.read_state("release.json").get(lab) != source_digest or not released_path.is_file():
        from deploylab.grading.release import generate_with_nbgrader

        generate_with_nbgrader(course, lab)
    instructor = nbformat.read(source_path, as_version=4)
    released = nbformat.read(released_path, as_version=4)
    grade_ids_by_lab = lab_grade_ids(course)

    previous = course.read_state(STATUS_FILE).get(lab, {})
    student_dirs = sorted(
        path
        for path in submissions_dir.iterdir()
        if (path.is_dir() or path.is_symlink()) and not path.name.startswith(".")
    )
    results: dict[str, SubmissionResult] = {}
    bar = _Progress(len(student_dirs), progress)
    decided: list[SubmissionResult] = []
    to_run: list[Submission] = []
    for student_dir in student_dirs:
        submission = prepare_submission(
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

    # nbformat compiles its schema validators on first use; do it here, before the worker
    # threads run, because Python's compiler is not thread-safe (CPython gh-106905).
    nbformat.validate(released)
    # The deploylab modules a grading kernel may import: those the setup cells need.
    package_modules = tuple(sorted(setup_imports(instructor)))
    if sandbox and to_run:
        sandbox_module.package_files(package_modules)  # once, before the workers need it
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
        ensure_lab_recorded(course, lab, source_digest)
        with open_gradebook(course) as gradebook:
            for result in results.values():
                # Unchanged submissions are not regraded, but a gradebook that lost them (deleted
                # or recreated) gets them back; rows that exist keep any manual grades.
                if result.reused and not has_submission(gradebook, lab, result.student):
                    save_grades(gradebook, lab, result)
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
