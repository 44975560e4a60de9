"""``deploylab bench nginx-lab``: seconds to grade one submission of the nginx lab.

The target (issue 12): under 5 s per submission with the sandbox on. Grades the instructor's
notebook and a wrong one (a restart instead of a reload: the slowest path, nginx stops and
starts while the clients send requests) one submission at a time through
:func:`deploylab.grading.autograde.autograde`, ``rounds`` times each, and prints the median,
the 95th percentile and the spread. The lab's release (nbgrader's ``generate_assignment``
and a new gradebook) is a one-off step of a grading run, timed and printed apart. Every
round's score is checked, so a fast run that grades wrongly fails instead of printing.
It then runs the master's answers through the harness alone and prints where a job's time
goes (demo apps, ``nginx -t``, nginx start, requests, the change under traffic, teardown).
"""

from __future__ import annotations

import copy
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from deploylab.grading.course import Course

__all__ = ["WRONG_RELOAD_STEPS", "run_benchmark", "summary"]

LAB = "nginx"
#: The wrong submission's answer: stop and start nginx instead of reloading it, so requests
#: fail while the change is applied and nginx -t never runs first (3 of 14 points lost).
WRONG_RELOAD_STEPS = ["nginx -s stop", "nginx"]
_EXPECTED = {"instructor": 14.0, "restart-instead-of-reload": 11.0}


def summary(seconds: list[float]) -> str:
    """Median, 95th percentile and spread of ``seconds``, in one line.

    >>> summary([4.0, 2.0, 3.0, 5.0, 1.0])
    'p50 3.00 s  p95 4.80 s  min 1.00  max 5.00  stdev 1.58  (n=5)'
    >>> summary([2.5])
    'p50 2.50 s  p95 2.50 s  min 2.50  max 2.50  stdev 0.00  (n=1)'
    """
    if not seconds:
        raise ValueError("summary of no timings: expected at least one figure")
    ordered = sorted(seconds)
    p95 = (
        statistics.quantiles(ordered, n=20, method="inclusive")[18]
        if len(ordered) > 1
        else ordered[0]
    )
    spread = statistics.stdev(ordered) if len(ordered) > 1 else 0.0
    return (
        f"p50 {statistics.median(ordered):.2f} s  p95 {p95:.2f} s  "
        f"min {ordered[0]:.2f}  max {ordered[-1]:.2f}  stdev {spread:.2f}  (n={len(ordered)})"
    )


def _submissions(course: Course, directory: Path) -> dict[str, Path]:
    """One folder per submission kind (each holding one student), {student: folder}."""
    import nbformat

    instructor = nbformat.read(course.source_notebook(LAB), as_version=4)
    wrong = copy.deepcopy(instructor)
    for cell in wrong.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "reload":
            start = cell.source.index("reload_steps = ")
            cell.source = cell.source[:start] + f"reload_steps = {WRONG_RELOAD_STEPS!r}\n"
    folders = {}
    for student, notebook in (("instructor", instructor), ("restart-instead-of-reload", wrong)):
        folder = directory / student
        (folder / student).mkdir(parents=True)
        nbformat.write(notebook, folder / student / f"{LAB}.ipynb")
        folders[student] = folder
    return folders


def _answers(course: Course) -> dict:
    """The master's answers: every ``name = literal`` of its solution cells."""
    import ast

    import nbformat

    notebook = nbformat.read(course.source_notebook(LAB), as_version=4)
    answers = {}
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                    answers[node.targets[0].id] = ast.literal_eval(node.value)
    return answers


def _phases(course: Course, sandbox: bool) -> list[tuple[str, float, dict]]:
    """The master's four answers through the harness alone: (job, seconds, phases)."""
    from deploylab.nginx_lab import checks, runner

    answers = _answers(course)
    jobs = [
        ("proxy", answers["site_template"], checks.PROXY_LESSON, None),
        ("two apps", answers["two_apps_template"], checks.TWO_APPS_LESSON, None),
        ("weighted", answers["weighted_template"], checks.WEIGHTED_LESSON, None),
        ("reload", answers["reload_template"], checks.RELOAD_LESSON, answers["reload_steps"]),
    ]
    rows = []
    for name, template, scenario, steps in jobs:
        if not sandbox:
            scenario = checks._remap_ports(scenario)
        job = checks._job(template, scenario, checks._validate_steps(steps) if steps else None)
        started = time.perf_counter()
        result = runner.run_job(job, sandboxed=sandbox)
        rows.append((name, time.perf_counter() - started, result.get("phases", {})))
    return rows


def run_benchmark(course: Course, rounds: int, *, sandbox: bool = True) -> int:
    """Grade each submission kind ``rounds`` times and print the figures; 0, or 1 if any
    round's score was not the expected one."""
    import os

    from deploylab.grading.autograde import autograde, sandbox_problem
    from deploylab.grading.bench import _copy_course
    from deploylab.grading.release import generate_with_nbgrader

    course.check_lab(LAB)
    if sandbox and (problem := sandbox_problem()):
        raise ValueError(f"cannot benchmark with the sandbox: {problem}")
    work = Path(tempfile.mkdtemp(prefix="deploylab-bench-nginx-"))
    times: dict[str, list[float]] = {student: [] for student in _EXPECTED}
    wrong_scores: list[str] = []
    try:
        copied = _copy_course(course, work / "course")
        started = time.perf_counter()
        generate_with_nbgrader(copied, LAB)
        release_seconds = time.perf_counter() - started
        folders = _submissions(copied, work / "submissions")
        load = os.getloadavg()[0]
        print(
            f"grading the {LAB} lab one submission at a time on {os.cpu_count()} cores "
            f"(load {load:.1f}), sandbox {'on' if sandbox else 'OFF'}, {rounds} round(s); "
            f"release once: {release_seconds:.1f} s",
            flush=True,
        )
        for number in range(rounds):
            for student, folder in folders.items():
                started = time.perf_counter()
                (result,) = autograde(
                    copied, LAB, folder, jobs=1, force=True, sandbox=sandbox, progress=False
                )
                seconds = time.perf_counter() - started
                times[student].append(seconds)
                if result.score != _EXPECTED[student]:
                    wrong_scores.append(
                        f"round {number + 1}: {student} scored {result.score} "
                        f"({result.status}), expected {_EXPECTED[student]:g}"
                    )
                print(
                    f"round {number + 1}: {student:<26} {seconds:6.2f} s  score {result.score:g}",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average afterwards: {os.getloadavg()[0]:.1f}")
    for student, durations in times.items():
        print(f"{student:<26} {summary(durations)}")
    every = [value for durations in times.values() for value in durations]
    print(f"{'all submissions':<26} {summary(every)}   (goal: under 5 s per submission)")
    print("where one harness job's time goes (s):")
    for name, seconds, phases in _phases(course, sandbox):
        shown = "  ".join(f"{phase} {value:.3f}" for phase, value in phases.items())
        print(f"  {name:<9} {seconds:.3f}  {shown}")
    for line in wrong_scores:
        print("WRONG SCORE:", line)
    return 1 if wrong_scores else 0
