"""The adversarial corpus against run_notebook + integrity: every entry ends with the right
status, the batch always completes, and no hidden test text survives redaction."""

from __future__ import annotations

import json
import resource
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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

from deploylab.grading import integrity
from deploylab.grading.execute import Limits, run_notebook


def _passing(outcome) -> set[str]:
    return {
        cell.metadata["nbgrader"]["grade_id"]
        for cell in outcome.notebook.cells
        if integrity.is_test_cell(cell) and integrity.cell_passed(cell)
    }


def _run_batch(entries: list[Entry], tmp_path: Path, **options) -> dict[str, object]:
    def run(entry: Entry):
        scratch = tmp_path / entry.name.replace(" ", "-").replace(".", "")
        timeouts = {"cell_timeout": entry.cell_timeout, "notebook_timeout": entry.notebook_timeout}
        return run_notebook(entry.notebook(), scratch, **(timeouts | options))

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(run, entries))
    return {entry.name: outcome for entry, outcome in zip(entries, outcomes, strict=True)}


def _check(entries: list[Entry], outcomes: dict[str, object]) -> None:
    problems = []
    for entry in entries:
        outcome = outcomes[entry.name]
        if outcome.status not in entry.statuses:
            problems.append(f"{entry.name}: {outcome.status} ({outcome.detail}; {outcome.tamper})")
        elif entry.passing is not None and _passing(outcome) != set(entry.passing):
            problems.append(f"{entry.name}: passing {_passing(outcome)} != {set(entry.passing)}")
        if outcome.status == "graded" and outcome.tamper:
            problems.append(f"{entry.name}: graded with findings {outcome.tamper}")
        redacted = integrity.redact_hidden_tests(outcome.notebook, mini_lab())
        if HIDDEN_CANARY in json.dumps(redacted):
            problems.append(f"{entry.name}: hidden test text left after redaction")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_honest_and_cheating_submissions(tmp_path):
    require_sandbox()
    entries = honest_entries() + cheat_entries()
    outcomes = _run_batch(entries, tmp_path)
    _check(entries, outcomes)
    # A cheat never turns a wrong answer into points without a review.
    for entry in entries:
        if entry.answer == WRONG and outcomes[entry.name].status == "graded":
            assert _passing(outcomes[entry.name]) == set(), entry.name


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
    # The grader itself did not balloon (memory bomb, huge output stay in the sandbox).
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - grader_peak_before
    assert grown_kib < 400 * 1024
    flood = next(
        c for c in outcomes["traceback flood"].notebook.cells if "showtraceback" in c.source
    )
    assert 1 <= sum(o.output_type == "error" for o in flood.outputs) <= 3
    assert "cell" in outcomes["infinite loop"].detail
    assert "os._exit" in outcomes["os._exit"].detail or "status 3" in outcomes["os._exit"].detail


def test_redaction_removes_hidden_source_from_tracebacks(tmp_path):
    outcome = run_notebook(mini_lab(WRONG), tmp_path, sandbox=False)
    raw = json.dumps(outcome.notebook)
    assert HIDDEN_CANARY in raw  # IPython tracebacks quote the hidden test lines
    redacted = integrity.redact_hidden_tests(outcome.notebook, mini_lab())
    text = json.dumps(redacted)
    assert HIDDEN_CANARY not in text
    assert "expected_double(c) for c in CASES" not in text
    assert "double(0) should be 0" in text  # the instructor's message stays
    assert "double(2) should be 4" in text  # visible tests stay
    assert integrity.HIDDEN_PLACEHOLDER in text
    # The text form used by the feedback page
    traceback = "\n".join(
        "\n".join(output["traceback"])
        for cell in outcome.notebook.cells
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    )
    sources = [c.source for c in mini_lab().cells if integrity.BEGIN_HIDDEN in c.source]
    assert HIDDEN_CANARY in traceback
    assert HIDDEN_CANARY not in integrity.redact_hidden_tests(traceback, sources)


def test_stderr_alone_does_not_fail_a_test_cell(tmp_path):
    outcome = run_notebook(mini_lab(CORRECT), tmp_path, sandbox=False)
    cell = next(c for c in outcome.notebook.cells if "debug:" in c.source)
    assert any(o.get("name") == "stderr" for o in cell.outputs)
    assert integrity.cell_passed(cell)
    assert outcome.status == "graded" and outcome.tamper == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def double(x):\n    return 2 * x", []),
        ("import numpy as np\nnp.random.seed(1)\nprint(sorted([3, 1]))", []),
        ("get_ipython().ast_transformers.append(object())", ["adds IPython AST transformers"]),
        (
            "ip = get_ipython()\nip.events.register('post_run_cell', print)",
            ["registers IPython event hooks"],
        ),
        ("import os\nos._exit(0)", ["calls os._exit (ends the kernel early)"]),
        ("from os import _exit\n_exit(0)", ["calls os._exit (ends the kernel early)"]),
        ("import sys\nsys.modules['ipaddress'] = None", ["changes sys.modules"]),
        ("import sys\ndel sys.modules['ipaddress']", ["changes sys.modules"]),
        ("import sys\nsys.modules.update(ipaddress=None)", ["changes sys.modules"]),
        ("import sys\nIN_COLAB = 'google.colab' in sys.modules", []),
        ("__builtins__.print = None", ["touches __builtins__"]),
        ("%%bash\necho hi", []),
        ("%time x = 1\ny = 2", []),
    ],
)
def test_static_scan(source, expected):
    assert integrity.scan_source(source) == expected


def test_static_scan_flags_writes_to_modules_the_tests_use():
    source = "import ipaddress\nipaddress.ip_network = lambda text: None"
    assert integrity.scan_source(source, frozenset({"ipaddress"})) == [
        "changes the module ipaddress that the tests use"
    ]
    assert integrity.scan_source(source, frozenset()) == []


def test_instrumented_notebook_keeps_the_prelude_out_of_history_and_results():
    lab = mini_lab()
    plan = integrity.instrument(lab)
    kinds = [plan.injected[i].kind for i in sorted(plan.injected)]
    assert kinds[0] == "prelude"
    assert kinds.count("check") == 3  # before each of the two test cells, and at the end
    assert plan.key.hex() in plan.notebook.cells[0].source
    assert len(plan.restore(plan.notebook).cells) == len(lab.cells)
    assert lab.cells[0].source == mini_lab().cells[0].source  # the input is not modified


def test_reusing_names_the_tests_do_not_read_is_not_tampering(tmp_path):
    lab = mini_lab(CORRECT, extra=["example = 5  # a student's own experiment"])
    lab.cells[1].source += "\nexample = 3  # used in the instructions only"
    # an instructor test cell may rebind a name it protects itself
    lab.cells[-2].source = "CASES = CASES + [100]\n" + lab.cells[-2].source
    outcome = run_notebook(lab, tmp_path, sandbox=False)
    assert outcome.status == "graded", outcome.tamper
    assert _passing(outcome) == {"double-tests", "negative-tests"}
