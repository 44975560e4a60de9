"""The adversarial corpus against run_notebook: every entry ends with the right status, no
cheat turns a wrong answer into points, the batch always completes, and nothing of the
hidden tests ever reaches the student's kernel (so no output can carry it)."""

from __future__ import annotations

import base64
import json
import os
import resource
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from adversarial import (
    CORRECT,
    HIDDEN_CANARY,
    WRONG,
    Entry,
    cheat_entries,
    honest_entries,
    mini_lab,
    require_sandbox,
    resource_entries,
)

from deploylab.grading.execute import Limits, cell_role, run_notebook
from deploylab.grading.sandbox import remove_tree, scratch_directory


def _passing(outcome) -> set[str]:
    return {grade_id for grade_id, test in outcome.tests.items() if test.outcome == "passed"}


def _run_batch(entries: list[Entry], tmp_path: Path, **options) -> dict[str, object]:
    def run(entry: Entry):
        timeouts = {"cell_timeout": entry.cell_timeout, "notebook_timeout": entry.notebook_timeout}
        with scratch_directory(options.get("limits") or Limits()) as scratch:
            started = time.monotonic()
            outcome = run_notebook(entry.notebook(), scratch, **(timeouts | options))
            outcome.wall = time.monotonic() - started
            return outcome

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(run, entries))
    return {entry.name: outcome for entry, outcome in zip(entries, outcomes, strict=True)}


def _check(entries: list[Entry], outcomes: dict[str, object]) -> None:
    problems = []
    for entry in entries:
        outcome = outcomes[entry.name]
        if outcome.status not in entry.statuses:
            problems.append(f"{entry.name}: {outcome.status} ({outcome.detail})")
        elif entry.passing is not None and _passing(outcome) != set(entry.passing):
            problems.append(f"{entry.name}: passing {_passing(outcome)} != {set(entry.passing)}")
        if HIDDEN_CANARY in json.dumps(_student_outputs(outcome.notebook)):
            problems.append(f"{entry.name}: hidden test text reached the student's kernel")
        for test in outcome.tests.values():
            if outcome.status != "graded" and test.outcome == "passed" and test.points is None:
                problems.append(f"{entry.name}: a test shown as passed without points")
    assert not problems, "\n".join(problems)


def _student_outputs(notebook) -> list:
    return [cell.get("outputs", []) for cell in notebook.cells if cell_role(cell) != "test"]


@pytest.mark.slow
def test_honest_and_cheating_submissions(tmp_path):
    require_sandbox()
    entries = honest_entries() + cheat_entries()
    outcomes = _run_batch(entries, tmp_path)
    _check(entries, outcomes)
    # The control: an honest correct submission in the same batch still gets full marks.
    assert outcomes["correct"].status == "graded"
    assert sum(t.points for t in outcomes["correct"].tests.values()) == 3
    for entry in entries:
        if entry.answer == WRONG or entry.passing == ():
            earned = sum(t.points or 0 for t in outcomes[entry.name].tests.values())
            assert earned <= 0, f"{entry.name} earned {earned} points without a right answer"
    # What the leaking answer printed (decoded) holds no test code: it never saw any.
    leak = outcomes["leaks caller source"].notebook
    printed = "".join(
        output.get("text", "")
        for cell in leak.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )
    for line in printed.splitlines():
        if line.startswith("LEAK "):
            decoded = zlib.decompress(base64.b64decode(line.split()[1])).decode()
            assert HIDDEN_CANARY not in decoded and "should be 4" not in decoded
    # HTML and JavaScript outputs never reach the notebook formgrader renders.
    shown = json.dumps(_student_outputs(outcomes["script output"].notebook))
    assert "<b>bold</b>" not in shown and "application/javascript" not in shown
    assert "text/html" not in shown
    # A student's exception text never becomes a test message.
    markup = outcomes["raises markup"]
    assert all("STUDENT-TEXT" not in t.message for t in markup.tests.values())
    assert "double() raised ValueError" in markup.tests["double-tests"].message
    assert "cannot be checked" in outcomes["always equal"].tests["double-tests"].message
    # A reply too large to accept fails fast instead of holding the worker.
    assert outcomes["huge reply"].wall < 30


@pytest.mark.slow
def test_resource_abuse_is_contained(tmp_path):
    require_sandbox()
    entries = resource_entries()
    grader_peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    limits = Limits(memory_bytes=1024 * 1024 * 1024, cpu_seconds=20, max_output_bytes=64 * 1024)
    outcomes = _run_batch(entries, tmp_path, limits=limits)
    _check(entries, outcomes)
    # Bounded output: what the grader keeps of a 20 MB print is the limit plus a note.
    huge = outcomes["huge output"].notebook
    kept = sum(len(json.dumps(cell.get("outputs", []))) for cell in huge.cells)
    assert kept < 4 * limits.max_output_bytes
    assert "output truncated" in json.dumps(huge)
    # A 20 MB message is dropped or cut; the cell limit holds either way.
    assert outcomes["huge print"].wall < 5 + 15
    # The grader itself did not balloon (memory bomb, huge output stay in the sandbox).
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - grader_peak_before
    assert grown_kib < 400 * 1024
    flood = next(
        c for c in outcomes["traceback flood"].notebook.cells if "showtraceback" in c.source
    )
    assert 1 <= sum(o.output_type == "error" for o in flood.outputs) <= 3
    assert "cell" in outcomes["infinite loop"].detail
    assert "os._exit" in outcomes["os._exit"].detail or "status 3" in outcomes["os._exit"].detail
    # A kernel killed before any test ran: every test "not run", no points, the signal named.
    killed = outcomes["killed before the tests"]
    assert "SIGKILL" in killed.detail
    assert {t.outcome for t in killed.tests.values()} == {"not run"}
    assert all(t.points is None for t in killed.tests.values())


@pytest.mark.slow
def test_scratch_is_bounded_and_always_removed(tmp_path):
    require_sandbox()
    if os.geteuid() != 0:
        pytest.skip(
            "the scratch tmpfs needs root (grading as an ordinary user uses a plain directory)"
        )
    limits = Limits(max_scratch_files=512, tmp_bytes=32 * 1024 * 1024)
    entry = next(e for e in resource_entries() if e.name == "fills the disk")
    with scratch_directory(limits) as scratch:
        outcome = run_notebook(entry.notebook(), scratch, limits=limits, cell_timeout=20)
        made = json.dumps(outcome.notebook).split("MADE ")[1][:6]
        assert int("".join(ch for ch in made if ch.isdigit())) < 512
        assert os.statvfs(scratch).f_blocks * os.statvfs(scratch).f_frsize <= 32 * 1024 * 1024
    assert not scratch.exists()


def test_remove_tree_handles_deep_trees_and_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    root = tmp_path / "scratch"
    path = root
    path.mkdir()
    (root / "link").symlink_to(outside)
    descriptor = os.open(root, os.O_RDONLY)
    try:
        for _ in range(1500):  # deeper than recursion or PATH_MAX allow
            os.mkdir("d", dir_fd=descriptor)
            new = os.open("d", os.O_RDONLY, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = new
        os.close(os.open("f", os.O_CREAT | os.O_WRONLY, dir_fd=descriptor))
    finally:
        os.close(descriptor)
    remove_tree(root)
    assert not root.exists()
    assert (outside / "keep.txt").read_text() == "keep"


def test_stderr_alone_does_not_fail_a_test_cell(tmp_path):
    outcome = run_notebook(mini_lab(CORRECT), tmp_path, sandbox=False)
    assert outcome.status == "graded"
    assert _passing(outcome) == {"double-tests", "negative-tests"}


def test_messages_are_instructor_text_and_f_strings_keep_only_their_literal_parts(tmp_path):
    outcome = run_notebook(mini_lab(WRONG), tmp_path, sandbox=False)
    # x + 2 passes double(2) == 4; the first hidden case fails with an f-string message
    assert outcome.tests["double-tests"].message == "double(…) should be …"
    assert outcome.tests["negative-tests"].message == "double(10) should be 20"
    assert outcome.tests["double-tests"].points == 0
    # The executed notebook shows the verdict, never the test's own traceback.
    assert HIDDEN_CANARY not in json.dumps(outcome.notebook.cells[-1].outputs)


def test_instructor_names_stay_the_instructors(tmp_path):
    lab = mini_lab(CORRECT, extra=["example = 5  # a student's own experiment", "CASES = [1]"])
    lab.cells[1].source += "\nexample = 3  # used in the instructions only"
    # an instructor test cell may rebind names it owns
    lab.cells[-2].source = "CASES = CASES + [100]\n" + lab.cells[-2].source
    outcome = run_notebook(lab, tmp_path, sandbox=False)
    assert outcome.status == "graded"
    assert _passing(outcome) == {"double-tests", "negative-tests"}


def test_in_place_changes_to_arguments_reach_the_tests(tmp_path):
    lab = mini_lab("def bump(servers):\n    servers[0]['n'] += 1\n    servers.append({'n': 9})\n")
    lab.cells[-2].source = (
        "servers = [{'n': 1}]\nfirst = servers[0]\nbump(servers)\n"
        "assert servers == [{'n': 2}, {'n': 9}], 'bump changes the list in place'\n"
        "assert first is servers[0], 'the same dict object'\n"
    )
    lab.cells[-1].source = "try:\n    bump(None)\nexcept TypeError:\n    pass\n"
    outcome = run_notebook(lab, tmp_path, sandbox=False)
    assert _passing(outcome) == {"double-tests", "negative-tests"}, outcome.tests


def test_partial_credit_comes_from_the_trusted_value_only(tmp_path):
    lab = mini_lab(
        CORRECT + "get_ipython().display_formatter.formatters['text/plain'].for_type(int, "
        "lambda value, printer, cycle: printer.text('2'))\n"
    )
    lab.cells[-1].source = "points = 0\nif double(1) == 3:\n    points += 1\npoints\n"
    outcome = run_notebook(lab, tmp_path, sandbox=False)
    test = outcome.tests["negative-tests"]
    assert (test.outcome, test.points) == ("failed", 0.0)
    assert nbformat.validate(outcome.notebook) is None
