"""``deploylab bench grading``: plain ``nbgrader autograde`` against ``deploylab grade autograde``.

Builds N realistic submissions of one lab (complete, half answered, answered with prints,
broken by a syntax error), grades the same files with nbgrader's own CLI and with ours (both
as fresh processes, so both pay their start-up), checks that the scores agree wherever both
finished, and prints seconds per submission and the ratio.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deploylab.grading.course import Course

__all__ = ["build_submissions", "run_benchmark"]

#: The kinds of submission, cycled through: a class is rarely all right or all wrong.
KINDS = ("complete", "half answered", "other half, with prints", "syntax error")


def build_submissions(course: Course, lab: str, count: int, directory: Path) -> dict[str, str]:
    """Write ``count`` submissions to ``directory/<student>/<lab>.ipynb``; {student: kind}."""
    import nbformat

    from deploylab.grading.release import student_version

    instructor = nbformat.read(course.source_notebook(lab), as_version=4)
    released = student_version(course, lab)
    answers = {
        cell.metadata["nbgrader"]["grade_id"]: cell.source
        for cell in instructor.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }
    answer_ids = list(answers)
    kinds: dict[str, str] = {}
    for number in range(count):
        kind = KINDS[number % len(KINDS)]
        student = f"student{number + 1:03d}"
        notebook = copy.deepcopy(released)
        for cell in notebook.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id not in answers:
                continue
            position = answer_ids.index(grade_id)
            if kind == "complete" or (kind == "half answered" and position % 2 == 0):
                cell.source = answers[grade_id]
            elif kind == "other half, with prints" and position % 2 == 1:
                cell.source = answers[grade_id] + "\nprint('checking my answer')"
            elif kind == "syntax error":
                cell.source = answers[grade_id]
                if position == 0:
                    cell.source += "\ndef broken(:\n    pass"
        folder = directory / student
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, folder / f"{lab}.ipynb")
        kinds[student] = kind
    return kinds


def _copy_course(course: Course, target: Path) -> Course:
    root = target / "autograder"
    shutil.copytree(course.source_dir, root / "source")
    shutil.copy(course.root / "nbgrader_config.py", root / "nbgrader_config.py")
    return Course.locate(root, target / "labs")


def _environment() -> dict[str, str]:
    environment = dict(os.environ)
    scripts = str(Path(sys.executable).parent)
    environment["PATH"] = scripts + os.pathsep + environment.get("PATH", "")
    environment["PYTHONWARNINGS"] = "ignore"
    return environment


def _plain_nbgrader(course: Course, lab: str, submissions: Path) -> tuple[float, dict[str, float]]:
    """Time ``nbgrader autograde LAB`` (one CLI run for the whole class); {student: score}."""
    from nbgrader.api import Gradebook, MissingEntry

    environment = _environment()
    subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", lab, "--force"],
        cwd=course.root,
        env=environment,
        check=True,
        capture_output=True,
    )
    students = sorted(path.name for path in submissions.iterdir() if path.is_dir())
    for student in students:
        target = course.submitted_dir(student, lab)
        target.mkdir(parents=True)
        shutil.copy(submissions / student / f"{lab}.ipynb", target / f"{lab}.ipynb")
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "nbgrader", "autograde", lab],
        cwd=course.root,
        env=environment,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        print(f"note: nbgrader autograde exited with {completed.returncode}", file=sys.stderr)
    scores: dict[str, float] = {}
    with Gradebook(course.db_url) as gradebook:
        for student in students:
            try:
                submission = gradebook.find_submission(lab, student)
            except MissingEntry:
                continue
            if (course.autograded_dir(student, lab) / f"{lab}.ipynb").is_file():
                scores[student] = float(submission.score)
    return seconds, scores


def _deploylab(course: Course, lab: str, submissions: Path, jobs: int, sandbox: bool):
    """Time ``deploylab grade autograde`` as a fresh process; {student: (status, score)}."""
    from deploylab.grading.autograde import load_results
    from deploylab.grading.release import generate_with_nbgrader

    generate_with_nbgrader(course, lab)  # the same set-up step nbgrader's run had
    command = [
        sys.executable,
        "-m",
        "deploylab.grading.cli",
        "grade",
        "autograde",
        lab,
        "--submissions",
        str(submissions),
        "--jobs",
        str(jobs),
        "--quiet",
        "--course",
        str(course.root),
        "--labs-dir",
        str(course.labs_dir),
    ]
    if not sandbox:
        command.append("--unsafe-no-sandbox")
    started = time.perf_counter()
    completed = subprocess.run(command, env=_environment(), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"deploylab grade autograde failed: {completed.stderr.strip()[-500:]}")
    results = {result.student: result for result in load_results(course, lab)}
    return seconds, results


def run_benchmark(
    course: Course, lab: str, count: int, *, jobs: int, sandbox: bool, repeat: int = 1
) -> int:
    """Run both graders on the same ``count`` submissions and print the figures.

    With ``repeat`` > 1 both graders run that many times, alternately, each on a fresh copy
    of the course; the best and the median times are reported (a shared machine is noisy).
    """
    import statistics

    from deploylab.grading.autograde import GRADED, sandbox_problem

    lab = course.check_lab(lab)
    if sandbox and (problem := sandbox_problem()):
        raise ValueError(f"cannot benchmark with the sandbox: {problem}")
    work = Path(tempfile.mkdtemp(prefix="deploylab-bench-"))
    plain_times: list[float] = []
    ours_times: list[float] = []
    rounds = []
    try:
        submissions = work / "submissions"
        kinds = build_submissions(course, lab, count, submissions)
        print(
            f"grading {count} submissions of {lab} on {os.cpu_count()} cores "
            f"({', '.join(KINDS)}; cycled), {repeat} round(s)",
            flush=True,
        )
        for number in range(repeat):
            plain_seconds, plain_scores = _plain_nbgrader(
                _copy_course(course, work / f"nbgrader-{number}"), lab, submissions
            )
            ours_seconds, ours = _deploylab(
                _copy_course(course, work / f"deploylab-{number}"), lab, submissions, jobs, sandbox
            )
            plain_times.append(plain_seconds)
            ours_times.append(ours_seconds)
            rounds.append((plain_scores, ours))
            print(
                f"round {number + 1}: nbgrader {plain_seconds:.1f} s, deploylab {ours_seconds:.1f} s",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{'student':<12} {'kind':<26} {'nbgrader':>9} {'deploylab':>10}  status")
    agree = compared = 0
    for plain_scores, ours in rounds:
        for student in sorted(kinds):
            plain = plain_scores.get(student)
            result = ours.get(student)
            ours_score = result.score if result is not None else None
            if plain is not None and result is not None and result.status == GRADED:
                compared += 1
                agree += plain == ours_score
    plain_scores, ours = rounds[-1]
    for student in sorted(kinds):
        plain = plain_scores.get(student)
        result = ours.get(student)
        ours_score = result.score if result is not None else None
        print(
            f"{student:<12} {kinds[student]:<26} "
            f"{'-' if plain is None else f'{plain:g}':>9} "
            f"{'-' if ours_score is None else f'{ours_score:g}':>10}  "
            f"{result.status if result else 'missing'}"
        )
    mode = "sandbox on" if sandbox else "NO sandbox"
    for label, pick in (("best", min), ("median", statistics.median)):
        if label == "median" and repeat < 3:
            continue
        plain_each, ours_each = pick(plain_times) / count, pick(ours_times) / count
        print(
            f"{label:>6}: plain nbgrader autograde (CLI)  {plain_each:5.2f} s/submission; "
            f"deploylab grade autograde ({jobs} jobs, {mode})  {ours_each:5.2f} s/submission; "
            f"speed-up {plain_each / ours_each:.1f}x (goal: at least 3x)"
        )
    print(f"scores agree on {agree} of {compared} gradings both finished")
    return 0 if agree == compared else 1
