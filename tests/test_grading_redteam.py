"""Red-team findings against the trusted-test grader (2026-12-01), each kept as a test.

* An answer that empties or rewrites the lists a hidden test passes in and reads again
  (to compute the expected value, or to check the result against) forged full marks on
  proxies (hop-tests), deployment (fewest-tests) and vpc (plan-tests): arguments are copied
  back after each call, as in one interpreter. The masters now pass copies and compute the
  expected value before the call.
* Many cells, each with just under the per-cell output limit, kept hundreds of MB in the
  grader and in the autograded notebook: the notebook now has an output limit in all.
* A reply whose set holds ints that all hash alike keeps the trusted process busy in
  quadratic time: the cell ends as timed out within its limit (held; a regression test).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat
import pytest
from adversarial import (
    ARGUMENT_MUTATION,
    HASH_COLLISION_REPLY,
    OUTPUT_PER_CELL_FLOOD,
    mini_lab,
    require_sandbox,
)

from deploylab.grading.autograde import merge_submission, setup_imports
from deploylab.grading.execute import Limits, cell_role, run_notebook
from deploylab.grading.sandbox import scratch_directory

ROOT = Path(__file__).resolve().parents[1]


def _run_lab(lab: str, answers: dict[str, str]):
    """The released ``lab`` with ``answers`` typed into its answer cells, graded like
    autograde does (merged with the master, setup modules only, the lab's folder)."""
    source_dir = ROOT / "autograder" / "source" / lab
    instructor = nbformat.read(source_dir / f"{lab}.ipynb", as_version=4)
    released = nbformat.read(ROOT / "labs" / lab / f"{lab}.ipynb", as_version=4)
    submitted = copy.deepcopy(released)
    for cell in submitted.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    merged = merge_submission(instructor, released, submitted)
    with scratch_directory(Limits()) as scratch:
        return run_notebook(
            merged,
            scratch,
            trusted_dir=source_dir,
            package_modules=tuple(sorted(setup_imports(instructor))),
        )


@pytest.mark.slow
@pytest.mark.parametrize("lab", sorted(ARGUMENT_MUTATION))
def test_changing_the_arguments_earns_nothing(lab):
    require_sandbox()
    answer_id, test_id, answer = ARGUMENT_MUTATION[lab]
    outcome = _run_lab(lab, {answer_id: answer})
    assert outcome.status == "graded", outcome.detail
    assert outcome.tests[test_id].outcome == "failed", outcome.tests[test_id]
    assert not outcome.tests[test_id].points


@pytest.mark.slow
def test_output_is_bounded_for_the_whole_notebook():
    require_sandbox()
    limits = Limits(max_output_bytes=256 * 1024, max_notebook_output_bytes=1024 * 1024)
    notebook = mini_lab(extra=[OUTPUT_PER_CELL_FLOOD] * 12)
    with scratch_directory(limits) as scratch:
        outcome = run_notebook(notebook, scratch, limits=limits, cell_timeout=20)
    assert outcome.status == "graded", outcome.detail
    assert {t.outcome for t in outcome.tests.values()} == {"passed"}
    kept = sum(
        len(json.dumps(cell.get("outputs", [])))
        for cell in outcome.notebook.cells
        if cell_role(cell) != "test"
    )
    assert kept < 1024 * 1024 + 64 * 1024, kept
    notes = json.dumps([cell.get("outputs", []) for cell in outcome.notebook.cells])
    assert "outputs are over 1048576 bytes in all" in notes


@pytest.mark.slow
def test_a_reply_of_colliding_hashes_earns_nothing_within_the_limit():
    """Too large to decode (refused at once) or slow to decode (timed out): never points."""
    require_sandbox()
    notebook = mini_lab(extra=[HASH_COLLISION_REPLY])
    with scratch_directory(Limits()) as scratch:
        outcome = run_notebook(notebook, scratch, cell_timeout=3, notebook_timeout=60)
    assert outcome.status in ("timed out", "graded"), outcome.detail
    assert all(not test.points for test in outcome.tests.values())
    # each test cell: its limit, the trusted side's grace, the kernel's interrupt grace
    assert outcome.seconds < 2 * (3 + 5 + 3) + 20, outcome.seconds


def test_a_file_that_is_not_json_is_not_quoted_in_the_status(tmp_path):
    """A submission hard-linked to a file the student cannot read (say /etc/shadow) used to
    show its first bytes in the status detail, which the feedback page prints."""
    import shutil

    from deploylab.grading import autograde
    from deploylab.grading.course import Course

    root = tmp_path / "autograder"
    shutil.copytree(ROOT / "autograder" / "source" / "ip-basics", root / "source" / "ip-basics")
    shutil.copy(ROOT / "autograder" / "nbgrader_config.py", root / "nbgrader_config.py")
    course = Course.locate(root, tmp_path / "labs")
    student = tmp_path / "submissions" / "mallory"
    student.mkdir(parents=True)
    (student / "ip-basics.ipynb").write_text("root:$y$j9T$SECRET-HASH-q3:19000:0:99999:7:::\n")
    instructor = nbformat.read(root / "source" / "ip-basics" / "ip-basics.ipynb", as_version=4)
    released = nbformat.read(ROOT / "labs" / "ip-basics" / "ip-basics.ipynb", as_version=4)
    submission = autograde._prepare(course, "ip-basics", student, instructor, released, "x", {})
    assert submission.result is not None and submission.result.status == "not a notebook"
    assert "SECRET-HASH" not in submission.result.detail
    assert "root:" not in submission.result.detail


@pytest.mark.slow
def test_a_reply_cannot_make_the_trusted_process_large():
    import threading

    import psutil

    require_sandbox()
    from adversarial import MEMORY_AMPLIFYING_REPLY

    peak = [0]
    done = threading.Event()

    def watch() -> None:
        me = psutil.Process()
        while not done.is_set():
            for child in me.children(recursive=True):
                try:
                    if "deploylab.grading.trusted_tests" in " ".join(child.cmdline()):
                        peak[0] = max(peak[0], child.memory_info().rss)
                except psutil.Error:
                    pass
            done.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        notebook = mini_lab(extra=[MEMORY_AMPLIFYING_REPLY])
        with scratch_directory(Limits()) as scratch:
            run_notebook(notebook, scratch, cell_timeout=15, notebook_timeout=60)
    finally:
        done.set()
        watcher.join()
    assert peak[0] < 256 * 1024 * 1024, f"trusted process peaked at {peak[0] >> 20} MiB"
