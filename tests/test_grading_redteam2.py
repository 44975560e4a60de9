"""Red-team findings, second round (2026-12-02): a hostile student against the grades, the
hidden tests and the instructor. Each attack is kept as a test, whether it held or broke.

Broke, and fixed:

* Markdown a student writes (a cell of their own, or a markdown answer) reached the
  autograded notebook as it was, and nbgrader's formgrade template renders markdown
  unsanitised in the instructor's own Jupyter origin: ``<script>``, ``<img onerror=…>`` and
  ``javascript:`` links ran as the instructor (who can change every grade). The merge keeps
  student markdown as the text of a code block (:func:`deploylab.grading.merge.inert_markdown`).
* A student function that raised ``StopIteration`` ended the ``map()``/``zip()`` loop of the
  test that called it, as if the cases had run out: a wrong answer passed. It arrives as
  ``RuntimeError`` now (:class:`deploylab.grading.trusted_tests.StudentFunction`).
* A name a test reads could be answered as "a module" with any ``__name__``: the trusted
  process imported that standard-library module (``antigravity`` starts a browser, outside
  the sandbox). Only the module the test names itself is imported now.
* A test cell may use what an earlier test cell defined. A student who kept the trusted
  process busy past a cell's limit (a reply of ints that all hash alike) had it restarted
  without those names, which were then looked up in the student's kernel: ``_cases = []``
  emptied the next test and a wrong answer passed. Names the instructor's cells bind are the
  instructor's for good now, also after a restart
  (:func:`deploylab.grading.trusted_tests.top_level_names`).
* A directory where the notebook should be (in a hand-in on the hub, or in a submissions
  folder) opened fine and then raised ``IsADirectoryError``: the instructor's collect, or the
  whole batch's autograde, stopped for every student. One reader of what students wrote
  (:func:`deploylab.grading.submissions.read_regular_file`) checks the descriptor first.
* On the hub, a student owns their hand-in in the exchange: closing it to the instructors
  (chmod 700) stopped ``classroom collect`` with PermissionError, and bytes that are not
  UTF-8 in its submission secret stopped handing feedback back, for the whole class. Both
  are refused for that student alone (the first is a hub test in test_classroom_hub.py).
* In the proxies lab (and deployment) a setup helper shares a module with the reference the
  hidden tests compare with, so the sandbox can reach the answer key: imported from that
  module (``from deploylab.proxy.cache import freshness_lifetime``), or reached with no import
  (``sys.modules[…].is_storable``, ``helper.__globals__[…]``), it earned full marks, graded,
  with nobody told. It is flagged for review now
  (:func:`deploylab.grading.reference_imports.reference_imports`). Still open: a name built at
  run time (``getattr(m, "fresh" + "ness_lifetime")``) is not seen; only moving the key out
  of the modules the setup cells import closes that.
* Text a student controls reached the instructor's terminal raw: a notebook whose nbformat
  version is a string (quoted in the status table), a hand-in folder named with escape
  sequences (logged by collect). Both are shown as printable escapes now
  (:func:`deploylab.grading.results.printable`).
* A student's own cells could hide their code from the instructor in formgrader
  (``transient.remove_source``, ``jupyter.source_hidden``): they lose their metadata.

Held (kept as regression tests): outputs a student forges to inject markup into formgrader
(a PNG whose data breaks out of its attribute, a stream whose name does, an exception class
named like a tag) are escaped or dropped; forged nbgrader metadata (a new test cell worth
100 points, a solution claiming a test's grade_id, a duplicated or deleted test, a locked
markdown cell turned into code) changes nothing that runs or scores. A kernel that floods
IOPub with raw frames (3 GB of 15 MB messages, or 100 MB ones over the 16 MiB cap) grows the
grader by about 130 MiB at most, and the grading goes on. A hand-in of 300,000 cells (20 MiB)
is refused by its count before nbformat validates it (it took about 40 s).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
from adversarial import CORRECT, HASH_COLLISION_REPLY, WRONG, mini_lab, require_sandbox
from conftest import require_tool
from nbformat.v4 import new_code_cell, new_markdown_cell, new_raw_cell

from deploylab.grading.execute import Limits, run_notebook
from deploylab.grading.merge import merge_submission
from deploylab.grading.sandbox import scratch_directory

ROOT = Path(__file__).resolve().parents[1]

#: JavaScript that records that it ran, under a label naming the attack.
_MARK = "window.__pwned=(window.__pwned||[]).concat"


def _ran(label: str) -> str:
    return f"{_MARK}(['{label}'])"


#: Student markdown cells, each trying to run script when formgrader shows the notebook.
HOSTILE_MARKDOWN = {
    "md-script": f"<script>{_ran('md-script')}</script>",
    "md-img": f'<img src=x onerror="{_ran("md-img")}">',
    "md-svg": f'<svg><animate onbegin="{_ran("md-svg")}" attributeName=x dur=1s>',
    "md-link": f"[click me](javascript:{_ran('md-link')})",
    "md-anchor": f'<a href="javascript:{_ran("md-anchor")}">click me</a>',
    "md-fence-break": f'````\n```\n<img src=x onerror="{_ran("md-fence-break")}">',
}

#: A student cell whose outputs try to carry markup past the grader's output filter.
HOSTILE_OUTPUTS = (
    "import sys\n"
    "from IPython.display import display\n"
    f"display({{'image/png': 'x\" onerror=\"{_ran('png')}\" y=\"'}}, raw=True)\n"
    f"sys.stdout.name = '\"><img src=x onerror={_ran('stream')}>'\n"
    "print('a stream with a forged name')\n"
    "sys.stdout.name = 'stdout'\n"
    f"Tagged = type('<img src=x onerror={_ran('ename')}>', (Exception,), {{}})\n"
    f"raise Tagged('<img src=x onerror={_ran('evalue')}>')\n"
)


def _formgrader_html(notebook) -> str:
    """``notebook`` as nbgrader's formgrader shows it to the instructor (its own exporter
    configuration and template, as in ``FormgradeExtension``)."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config

    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    resources = {
        "assignment_id": "mini",
        "notebook_id": "mini",
        "submission_id": "1",
        "index": 0,
        "total": 1,
        "base_url": "",
        "student": "mallory",
        "last_name": "",
        "first_name": "",
        "notebook_path": "mini.ipynb",
    }
    html, _ = HTMLExporter(config=config).from_notebook_node(notebook, resources=resources)
    return html


@pytest.mark.slow
def test_student_markup_does_not_run_in_the_instructors_formgrader(tmp_path):
    require_sandbox()
    require_tool("chromium", "chromium")
    from playwright.sync_api import sync_playwright

    from deploylab.export.pdf import CHROMIUM_ARGS, block_network, chromium_path

    instructor = mini_lab()
    submitted = mini_lab(CORRECT)
    hostile = [new_markdown_cell(text) for text in HOSTILE_MARKDOWN.values()]
    attached = new_markdown_cell("![look](attachment:a.png)")
    attached.attachments = {"a.png": {"image/png": f'x" onerror="{_ran("attachment")}" y="'}}
    raw = new_raw_cell(f'<img src=x onerror="{_ran("raw")}">')
    answer_at = next(
        index
        for index, cell in enumerate(submitted.cells)
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "answer"
    )
    submitted.cells[answer_at + 1 : answer_at + 1] = [
        *hostile,
        attached,
        raw,
        new_code_cell(HOSTILE_OUTPUTS),
    ]
    merged = merge_submission(instructor, instructor, copy.deepcopy(submitted))
    with scratch_directory(Limits()) as scratch:
        outcome = run_notebook(merged, scratch, cell_timeout=20, notebook_timeout=60)
    assert outcome.status == "graded", outcome.detail
    assert {test.outcome for test in outcome.tests.values()} == {"passed"}
    page = tmp_path / "formgrade.html"
    page.write_text(_formgrader_html(outcome.notebook), encoding="utf-8")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            view = browser.new_page()
            block_network(view)
            view.goto(page.as_uri(), wait_until="load")
            # A javascript: link runs when the instructor clicks it.
            view.eval_on_selector_all(
                "a[href]",
                "links => links.filter(a => /^\\s*javascript:/i.test(a.getAttribute('href')))"
                ".forEach(a => a.click())",
            )
            view.wait_for_timeout(1500)  # the SVG animation begins after a moment
            ran = view.evaluate("window.__pwned || []")
            shown = view.inner_text("body")
        finally:
            browser.close()
    assert ran == [], f"student markup ran in formgrader: {ran}"
    # The instructor still reads what the student wrote, as text.
    for text in HOSTILE_MARKDOWN.values():
        assert text.splitlines()[-1] in shown


# --- what crosses into the trusted process ---------------------------------------------
def test_a_student_stopiteration_cannot_end_a_tests_loop_early(tmp_path):
    """Raised through map() or zip(), StopIteration looked like the end of the cases: every
    check after it was skipped and the cell passed with a wrong answer."""
    from test_grading_boundary import _run_test

    def double(x):
        raise StopIteration

    tests = {
        "all-map": 'assert all(map(lambda c: double(c) == 2 * c, [1, 2, 3])), "double is right"',
        "zip-map": (
            "for got, want in zip(map(double, [1, 2, 3]), [2, 4, 6]):\n"
            '    assert got == want, "double is right"\n'
        ),
    }
    for name, source in tests.items():
        result = _run_test(tmp_path, {"double": double}, source)
        assert result["outcome"] == "failed", (name, result)
    # A test that expects the error still sees one.
    expects = "try:\n    double(1)\nexcept RuntimeError:\n    pass\n"
    assert _run_test(tmp_path, {"double": double}, expects)["outcome"] == "passed"


def test_the_kernel_cannot_choose_a_module_for_the_trusted_process_to_import(tmp_path):
    """A name the test reads is answered as "a module" with any ``__name__`` the student
    gives it, and the trusted process (outside the sandbox, as the instructor) imported that
    standard-library module: ``antigravity`` starts a web browser. Only the module the test
    itself names is imported now."""
    import ipaddress
    import sys
    import types

    from test_grading_boundary import _run_test

    sys.modules.pop("this", None)
    forged = types.ModuleType("this")  # importing `this` prints; `antigravity` runs a browser
    result = _run_test(tmp_path, {"double": forged}, 'assert double(2) == 4, "double works"')
    assert result["outcome"] == "failed"
    assert "this" not in sys.modules
    renamed = _run_test(tmp_path, {"ip": ipaddress}, 'assert ip.ip_address("10.0.0.1").is_private')
    assert renamed["outcome"] == "failed"
    # A module the student imported and the test names still reaches the test.
    named = "assert ipaddress.ip_address('10.0.0.1').is_private, 'ipaddress works'"
    assert _run_test(tmp_path, {"ipaddress": ipaddress}, named)["outcome"] == "passed"


def test_a_student_cannot_hide_a_cell_of_their_own_from_formgrader():
    """Cell metadata that nbconvert honours (``transient.remove_source``,
    ``jupyter.source_hidden``) hid the code of a student's own cell from the instructor who
    reviews the submission in formgrader, though the cell ran."""
    instructor = mini_lab()
    submitted = mini_lab(CORRECT)
    hiders = {
        "transient": {"transient": {"remove_source": True}},
        "source-hidden": {"jupyter": {"source_hidden": True, "outputs_hidden": True}},
        "tags": {"tags": ["remove_cell", "remove-input", "hide-input"], "collapsed": True},
    }
    for label, metadata in hiders.items():
        cell = new_code_cell(f"HIDDEN_FROM_REVIEW_{label.replace('-', '_')} = 1")
        cell.metadata = metadata
        submitted.cells.insert(3, cell)
    html = _formgrader_html(merge_submission(instructor, instructor, submitted))
    for label in hiders:
        assert f"HIDDEN_FROM_REVIEW_{label.replace('-', '_')}" in html, label


# --- the submission file itself ---------------------------------------------------------
def _role_sources(notebook, role: str) -> list[tuple[str, dict]]:
    from deploylab.grading.cells import cell_role

    return [
        (cell.source, dict(cell.metadata.get("nbgrader", {})))
        for cell in notebook.cells
        if cell_role(cell) == role
    ]


def test_forged_cell_metadata_cannot_add_replace_or_drop_a_test():
    """Whatever nbgrader metadata a submission carries, the notebook that runs has exactly
    the instructor's test and setup cells, with their points, and the student's code only
    where the student's code runs."""
    instructor = mini_lab()
    submitted = mini_lab(CORRECT)
    by_id = {cell.metadata["nbgrader"]["grade_id"]: cell for cell in submitted.cells}

    def forged(source: str, cell_type: str = "code", **nbgrader) -> object:
        cell = new_code_cell(source) if cell_type == "code" else new_markdown_cell(source)
        cell.metadata["nbgrader"] = {"schema_version": 3, **nbgrader}
        return cell

    by_id["answer"].metadata["nbgrader"].update(grade=True, points=50)
    by_id["intro"].cell_type = "code"  # a locked markdown cell turned into code
    by_id["intro"].update(outputs=[], execution_count=None, source="FORGED_INTRO = 1")
    submitted.cells = [
        by_id["intro"],
        forged("FORGED_TEST = 1", grade=True, grade_id="free-points", points=100, locked=True),
        forged("FORGED_SOLUTION_OF_TEST = 1", grade_id="double-tests", solution=True),
        forged("FORGED_SETUP = 1", grade_id="setup", solution=True, locked=False),
        by_id["answer"],
        forged("FORGED_DUPLICATE = 1", grade=True, grade_id="double-tests", points=9),
        by_id["double-tests"],
        # negative-tests deleted; setup deleted
    ]
    merged = merge_submission(instructor, instructor, submitted)
    assert _role_sources(merged, "test") == _role_sources(instructor, "test")
    assert _role_sources(merged, "setup") == _role_sources(instructor, "setup")
    students = "\n".join(source for source, _ in _role_sources(merged, "student"))
    assert "FORGED_TEST" in students  # the student's own cell runs, as the student's
    for ignored in ("FORGED_INTRO", "FORGED_SOLUTION_OF_TEST", "FORGED_SETUP", "FORGED_DUPLICATE"):
        assert ignored not in students, ignored
    assert CORRECT.strip() in students
    points = [meta.get("points") for _, meta in _role_sources(merged, "test")]
    assert points == [2, 1]


#: The kernel's side of the call loop, replaced once: the first call is answered with a set
#: of 30,000 ints that all hash alike (under the frame limit, but decoding it keeps the
#: trusted process busy past its limit, so the grader restarts it); later cells get the real
#: call loop again.
STALL_THE_TRUSTED_PROCESS_ONCE = HASH_COLLISION_REPLY.replace(
    "range(5, 200005)", "range(5, 30005)"
).replace(
    "_cl.serve = _serve",
    "_real_serve = _cl.serve\n"
    "def _stall_once(path, namespace):\n"
    "    _cl.serve = _real_serve\n"
    "    _serve(path, namespace)\n"
    "_cl.serve = _stall_once\n",
)
assert "range(5, 30005)" in STALL_THE_TRUSTED_PROCESS_ONCE


@pytest.mark.slow
def test_names_an_earlier_test_cell_defined_never_come_from_the_kernel(tmp_path):
    """A test cell may use what an earlier test cell defined (its cases, a helper). When the
    trusted process had to be restarted (a reply that keeps it busy past the cell's limit),
    those names were gone, so they were looked up in the student's kernel: ``_cases = []``
    made the next test check nothing, and a wrong answer passed."""
    from adversarial import _meta

    require_sandbox()
    notebook = mini_lab(
        WRONG + "_cases = []\n",  # a wrong double, and the test's own name, emptied
        extra=[STALL_THE_TRUSTED_PROCESS_ONCE],
    )
    first, second = (c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade"))
    first.source = '_cases = [1, 2, 5]\nassert double(0) == 0, "double(0) is 0"\n'
    second.source = (
        'for _case in _cases:\n    assert double(_case) == 2 * _case, "double is right"\n'
    )
    second.metadata = _meta("uses-earlier-cases", grade=True, solution=False, locked=True, points=5)
    with scratch_directory(Limits()) as scratch:
        outcome = run_notebook(notebook, scratch, cell_timeout=3, notebook_timeout=60)
    # Decoding the reply takes about 10 s here; on a faster machine it may end within the
    # cell's limit and grace (8 s), and then nothing is restarted: the next test, which
    # restarts the process itself, holds the fix to account either way.
    assert outcome.tests["double-tests"].outcome in ("timed out", "failed"), outcome.tests
    later = outcome.tests["uses-earlier-cases"]
    assert later.outcome == "failed" and not later.points, later


def test_a_restarted_trusted_process_still_owns_the_names_earlier_tests_defined(tmp_path):
    """What the grader does when the trusted process stops answering (restart it, replay the
    setup cells), then a test cell that reads what an earlier test cell defined: that name is
    the instructor's, missing, never the student's ``_cases = []``."""
    import asyncio
    import threading

    from deploylab.grading import call_loop
    from deploylab.grading.trusted_process import TrustedProcess

    kernel = {"double": lambda x: x + 2, "_cases": []}  # a wrong answer, an emptied name
    first = '_cases = [1, 2, 5]\nassert double(1) == 3, "double(1) is 3"\n'
    second = 'for _case in _cases:\n    assert double(_case) == 2 * _case, "double is right"\n'

    async def grade() -> list[dict]:
        control = tmp_path / "calls"
        control.mkdir()
        trusted = TrustedProcess(control, tmp_path)
        await trusted.start()
        results = []
        try:
            for source in (first, second):
                if source is second:  # as execute._trusted_request does after a failure
                    await trusted.stop()
                    await trusted.start()
                path = trusted.next_socket()
                request = {"op": "test", "source": source, "points": 1, "timeout": 10}
                listening = await trusted.request({**request, "socket": path}, 30)
                assert listening.get("listening"), listening
                loop = threading.Thread(target=call_loop.serve, args=(path, kernel), daemon=True)
                loop.start()
                results.append(await trusted.reply(30))
                loop.join(5)
        finally:
            await trusted.stop()
        return results

    earlier, later = asyncio.run(grade())
    assert earlier["outcome"] == "passed", earlier
    assert later["outcome"] == "failed" and not later["points"], later


def _one_lab_course(tmp_path: Path, lab: str):
    """A course of ``lab`` alone in ``tmp_path``: (course, instructor notebook, released
    notebook, the released notebook as plain JSON data to make hand-ins from)."""
    import json
    import shutil

    import nbformat

    from deploylab.grading.course import Course

    root = tmp_path / "autograder"
    shutil.copytree(ROOT / "autograder" / "source" / lab, root / "source" / lab)
    shutil.copy(ROOT / "autograder" / "nbgrader_config.py", root / "nbgrader_config.py")
    course = Course.locate(root, tmp_path / "labs")
    instructor = nbformat.read(root / "source" / lab / f"{lab}.ipynb", as_version=4)
    released = nbformat.read(ROOT / "labs" / lab / f"{lab}.ipynb", as_version=4)
    return course, instructor, released, json.loads(nbformat.writes(released))


def test_malformed_hand_ins_get_a_status_and_stop_nothing(tmp_path):
    """Files that are not a notebook, or are one only in part, are decided before anything
    runs: each gets a status, none raises (one bad file must not stop a class's grading),
    and nothing is read through a link or from something that is not a file."""
    import json
    import os

    from deploylab.grading.submissions import lab_grade_ids, prepare_submission

    lab = "ip-basics"
    course, instructor, released, valid = _one_lab_course(tmp_path, lab)
    cells = valid["cells"]

    def notebook(**changes) -> str:
        return json.dumps({**valid, **changes})

    files: dict[str, bytes | None] = {
        "invalid-utf8": b'{"cells": [], "x": "\xff\xfe"}',
        "deep-nesting": b"[" * 200_000 + b"]" * 200_000,
        "deep-metadata": notebook(metadata={"a": json.loads("[" * 900 + "]" * 900)}).encode(),
        "cells-not-a-list": notebook(cells={"0": cells[0]}).encode(),
        "cells-of-strings": notebook(cells=["x", 1, None]).encode(),
        "cell-metadata-a-string": notebook(cells=[{**cells[0], "metadata": "x"}]).encode(),
        "future-nbformat": notebook(nbformat=99).encode(),
        # two "cells" keys: the last one counts (the answer-less one): graded, not confused
        "duplicate-keys": (notebook()[:-1] + ', "cells": []}').encode(),
        "directory": None,
    }
    for student, data in files.items():
        (tmp_path / "in" / student).mkdir(parents=True)
        target = tmp_path / "in" / student / f"{lab}.ipynb"
        if data is None:
            target.mkdir()
        else:
            target.write_bytes(data)
    (tmp_path / "in" / "device").mkdir()
    os.symlink("/dev/zero", tmp_path / "in" / "device" / f"{lab}.ipynb")

    ids = lab_grade_ids(course)
    statuses = {}
    for student_dir in sorted((tmp_path / "in").iterdir()):
        submission = prepare_submission(
            course, lab, student_dir, instructor, released, "digest", ids
        )
        statuses[student_dir.name] = (
            submission.result.status if submission.result else "to be graded"
        )
    assert statuses == {
        "invalid-utf8": "not a notebook",
        "deep-nesting": "not a notebook",
        "deep-metadata": "not a notebook",
        "cells-not-a-list": "not a notebook",
        "cells-of-strings": "not a notebook",
        "cell-metadata-a-string": "not a notebook",
        "future-nbformat": "not a notebook",
        "duplicate-keys": "wrong lab",
        "directory": "not a notebook",
        "device": "not a notebook",
    }


def test_a_hand_in_of_too_many_cells_is_refused_before_it_is_validated(tmp_path):
    """20 MiB hold some 300,000 empty cells: nbformat validated and the merge walked each of
    them, about 40 s per such student. Past :data:`MAX_SUBMISSION_CELLS` a hand-in is refused
    (named with its count) before nbformat sees it; a lab's own cells with many of a
    student's own added are still graded."""
    import json

    from deploylab.grading.submissions import (
        MAX_SUBMISSION_CELLS,
        lab_grade_ids,
        prepare_submission,
    )

    lab = "ip-basics"
    course, instructor, released, valid = _one_lab_course(tmp_path, lab)
    spare = MAX_SUBMISSION_CELLS - len(valid["cells"])
    added = {"cell_type": "raw", "metadata": {}, "source": ""}
    hand_ins = {
        "at-the-limit": [*valid["cells"], *[added] * spare],
        "one-past-it": [*valid["cells"], *[added] * (spare + 1)],
        "300000-cells": [*valid["cells"], *[added] * 300_000],
    }
    results = {}
    for student, cells in hand_ins.items():
        (tmp_path / "in" / student).mkdir(parents=True)
        path = tmp_path / "in" / student / f"{lab}.ipynb"
        path.write_text(json.dumps({**valid, "cells": cells}))
        submission = prepare_submission(
            course, lab, path.parent, instructor, released, "digest", lab_grade_ids(course)
        )
        results[student] = submission.result and (
            submission.result.status,
            submission.result.detail,
        )
    assert results["at-the-limit"] is None  # to be graded
    assert results["one-past-it"] == (
        "not a notebook",
        f"ip-basics.ipynb has {MAX_SUBMISSION_CELLS + 1:,} cells, more than the "
        f"{MAX_SUBMISSION_CELLS:,} a hand-in may have",
    )
    assert results["300000-cells"][1].startswith(
        f"ip-basics.ipynb has {300_000 + len(valid['cells']):,} cells"
    )


def test_a_directory_in_place_of_a_hand_in_is_refused_not_a_crash(tmp_path):
    """On the hub a student can put a directory where their notebook should be in their own
    hand-in: the instructor's collect opened it, and reading it raised IsADirectoryError,
    which stopped collecting (and grading) for the whole class."""
    import pwd

    from deploylab.classroom.instructor import _copy_submission

    me = pwd.getpwuid(os.getuid()).pw_name
    hand_in = tmp_path / f"{me}+ip-basics+2026-12-02 09:00:00.000000 UTC"
    (hand_in / "ip-basics.ipynb").mkdir(parents=True)
    (hand_in / "submission_secret.txt").write_text("s3cret")
    problem, times = _copy_submission(hand_in, me, "ip-basics", tmp_path / "collected")
    assert problem == "ip-basics.ipynb is not a regular file", problem
    assert times == {}


def test_a_submission_secret_that_is_not_text_does_not_stop_feedback(tmp_path):
    """The submission secret (which names a student's feedback page in the exchange) is a file
    the student wrote into their own hand-in: bytes that are not UTF-8 made handing feedback
    back raise UnicodeDecodeError, and nobody in the class got theirs."""
    from deploylab.classroom.instructor import feedback_name, return_feedback
    from deploylab.classroom.layout import Classroom

    classroom = Classroom(state_dir=tmp_path, course="net101")
    (classroom.exchange_course_dir / "feedback").mkdir(parents=True)
    secrets = {"mallory": b"\xff\xfe not text", "alice": b"a1b2c3\n"}
    for student, secret in secrets.items():
        collected = classroom.course_dir / "collected" / "ip-basics" / student
        collected.mkdir(parents=True)
        (collected / "submission_secret.txt").write_bytes(secret)
        page = classroom.course_dir / "feedback" / student / "ip-basics" / "ip-basics.html"
        page.parent.mkdir(parents=True)
        page.write_text(f"feedback for {student}")
    said: list[str] = []
    assert return_feedback(classroom, "ip-basics", log=said.append) == ["alice"]
    released = classroom.exchange_course_dir / "feedback" / feedback_name("a1b2c3", "ip-basics")
    assert released.read_text() == "feedback for alice"
    assert any("mallory" in line for line in said), said


# --- the answer key inside the sandbox -----------------------------------------------------
#: Three ways to hand in the proxies lab's answer key, which the sandbox can reach: the setup
#: cell imports helpers from deploylab.proxy.cache, where the reference functions live too.
ANSWER_KEY_USES = {
    "fresh": (
        "from deploylab.proxy.cache import freshness_lifetime as _key\n"
        "def freshness_lifetime(response_headers):\n"
        "    return _key(response_headers)\n"
    ),
    "store": (
        "import sys\n"
        "def may_store(method, status, request_headers, response_headers):\n"
        "    key = sys.modules['deploylab.proxy.cache'].is_storable\n"
        "    return key(method, status, request_headers, response_headers)\n"
    ),
    "hop": (
        "def strip_hop_by_hop(headers):\n"
        "    return parse_cache_control.__globals__['remove_hop_by_hop'](headers)\n"
    ),
}


def _proxies_submission(answers: dict[str, str]):
    import nbformat

    released = nbformat.read(ROOT / "labs" / "proxies" / "proxies.ipynb", as_version=4)
    for cell in released.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return released


def test_handing_in_the_answer_key_is_flagged_for_review(tmp_path):
    """In the proxies lab the reference functions share a module with the setup cell's
    helpers, so the sandbox can reach them: imported from that module (rather than from
    deploylab.proxy, where the hidden tests take them), or reached with no import at all,
    they earned full marks, graded, with nobody told. Now each is flagged for review."""
    import shutil

    import nbformat

    from deploylab.grading.course import Course
    from deploylab.grading.submissions import lab_grade_ids, prepare_submission

    root = tmp_path / "autograder"
    shutil.copytree(ROOT / "autograder" / "source" / "proxies", root / "source" / "proxies")
    shutil.copy(ROOT / "autograder" / "nbgrader_config.py", root / "nbgrader_config.py")
    course = Course.locate(root, tmp_path / "labs")
    instructor = nbformat.read(root / "source" / "proxies" / "proxies.ipynb", as_version=4)
    released = nbformat.read(ROOT / "labs" / "proxies" / "proxies.ipynb", as_version=4)
    ids = lab_grade_ids(course)
    for grade_id, answer in ANSWER_KEY_USES.items():
        student = tmp_path / "in" / f"uses-key-{grade_id}"
        student.mkdir(parents=True)
        nbformat.write(_proxies_submission({grade_id: answer}), student / "proxies.ipynb")
        submission = prepare_submission(
            course, "proxies", student, instructor, released, "digest", ids
        )
        assert submission.review.startswith("imports the course's reference"), grade_id
    # The instructor's own answers use no part of the key.
    solutions = {
        cell.metadata["nbgrader"]["grade_id"]: cell.source
        for cell in instructor.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }
    honest = tmp_path / "in" / "honest"
    honest.mkdir()
    nbformat.write(_proxies_submission(solutions), honest / "proxies.ipynb")
    submission = prepare_submission(course, "proxies", honest, instructor, released, "d", ids)
    assert submission.result is None and submission.review == ""


def test_no_labs_own_answers_look_like_the_answer_key():
    """The rule that flags the key must not flag the instructor's own solutions."""
    import nbformat

    from deploylab.grading.reference_imports import (
        reference_imports,
        reference_names,
        setup_imports,
    )

    for path in sorted((ROOT / "autograder" / "source").glob("*/*.ipynb")):
        instructor = nbformat.read(path, as_version=4)
        answers = nbformat.v4.new_notebook(
            cells=[
                new_code_cell(cell.source)
                for cell in instructor.cells
                if cell.metadata.get("nbgrader", {}).get("solution") and cell.cell_type == "code"
            ]
        )
        found = reference_imports(answers, reference_names(instructor), setup_imports(instructor))
        assert found == [], (path.name, found)


def test_the_deployment_labs_key_is_flagged_from_its_own_module_too():
    """deploylab.deploy holds both Step (the setup cell's) and the strategies the hidden tests
    compare with: taken from deploylab.deploy.strategies, or through Step's module."""
    import nbformat

    from deploylab.grading.reference_imports import (
        reference_imports,
        reference_names,
        setup_imports,
    )

    instructor = nbformat.read(
        ROOT / "autograder" / "source" / "deployment" / "deployment.ipynb", as_version=4
    )
    uses = [
        "from deploylab.deploy.strategies import rolling_plan as _plan\n",
        "import sys\n_plan = sys.modules[Step.__module__].rolling_plan\n",
    ]
    for source in uses:
        notebook = nbformat.v4.new_notebook(cells=[new_code_cell(source)])
        found = reference_imports(notebook, reference_names(instructor), setup_imports(instructor))
        assert found == ["deploylab.deploy.rolling_plan"], (source, found)


# --- the instructor's terminal -------------------------------------------------------------
def test_student_text_reaches_the_instructors_terminal_as_printable_text(tmp_path):
    """What a student wrote reached the instructor's terminal raw: a notebook whose nbformat
    version is a string (quoted by the error in the status table), or a hand-in folder named
    with escape sequences and a newline, could clear the screen, set the window title or
    print a forged "graded" row in the table of scores."""
    import json

    import nbformat

    from deploylab.classroom.instructor import collect
    from deploylab.classroom.layout import Classroom
    from deploylab.grading.results import SubmissionResult, format_table
    from deploylab.grading.submissions import parse_problem

    forged = "\x1b[2J\x1b]0;owned\x07\nalice    9    9  graded"
    with pytest.raises(Exception) as raised:
        nbformat.reads(json.dumps({"cells": [], "metadata": {}, "nbformat": forged}), 4)
    detail = parse_problem(raised.value)  # what prepare_submission puts in the status detail
    table = format_table(
        [
            SubmissionResult("mallory", "lab", "not a notebook", 9.0, detail=detail[:60]),
            SubmissionResult("eve\x1b[1A\x1b[2K", "lab", "graded", 9.0, score=9.0),
        ]
    )
    assert len(table.splitlines()) == 4, table  # header, rule, one row per student
    assert "\x1b" not in table and "\x07" not in table

    classroom = Classroom(state_dir=tmp_path, course="net101", members=[])
    inbound = classroom.exchange_course_dir / "inbound"
    (inbound / f"nobody+ip-basics+{forged.replace(chr(10), ' ')}\x1b[1A").mkdir(parents=True)
    classroom.course_dir.mkdir()
    said: list[str] = []
    collect(classroom, "ip-basics", log=said.append)
    assert said and not any("\x1b" in line or "\x07" in line for line in said), said


#: A student cell that sends IOPub messages itself, serialised once and sent as raw frames:
#: far faster than the grader can decode them, bypassing ipykernel's output stream.
_RAW_FRAME_FLOOD = """k = get_ipython().kernel
parent = k.get_parent("shell")
msg = k.session.msg("stream", {{"name": "stdout", "text": "x" * {size}}}, parent=parent)
frames = k.session.serialize(msg)
for _ in range({count}):
    k.iopub_socket.send_multipart(frames)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "count, size",
    [(200, 15_000_000), (20, 100_000_000)],
    ids=["3 GB under the message cap", "2 GB over it"],
)
def test_an_iopub_flood_cannot_fill_the_graders_memory(count, size, tmp_path):
    """The grader decodes each message the kernel sends; a kernel that sends 15 MB messages
    as fast as memory copies (3 GB in all), or 100 MB ones (above the 16 MiB a message may
    be, :class:`deploylab.grading.kernel.BoundedContext`), must not make the grader's own
    memory grow with what was sent: ZeroMQ drops what the grader has no room for, at the
    kernel's end. The cell keeps a bounded output and the grading goes on; the tests after
    it score, unless a message over the cap cut the kernel's link, when the status says the
    flood timed out and no test is scored from what was not seen."""
    import threading
    import time

    import psutil

    from deploylab.grading.kernel import BoundedContext

    require_sandbox()
    me = psutil.Process()
    base = peak = me.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, me.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    flood = _RAW_FRAME_FLOOD.format(size=size, count=count)
    limits = Limits()
    try:
        with scratch_directory(limits) as scratch:
            outcome = run_notebook(
                mini_lab(CORRECT, extra=[flood]), scratch, limits=limits, cell_timeout=10
            )
    finally:
        done.set()
        sampler.join()
    grown_mib = (peak - base) / 2**20
    assert grown_mib < 384, f"the grader grew by {grown_mib:.0f} MiB for {count} x {size:,} B"
    assert outcome.status in {"graded", "timed out"}, (outcome.status, outcome.detail)
    cell = next(c for c in outcome.notebook.cells if "send_multipart" in c.source)
    kept = sum(len(str(output)) for output in cell.outputs)
    assert kept <= limits.max_output_bytes + 4096, kept
    scores = {grade_id: test.points for grade_id, test in outcome.tests.items()}
    if outcome.status == "graded":
        assert scores == {"double-tests": 2, "negative-tests": 1}, scores
    else:  # a message over the cap cuts the kernel's link: what was not seen is not scored
        assert set(scores.values()) <= {None, 2, 1}, scores
    if size < BoundedContext.max_message_bytes:
        assert outcome.status == "graded", outcome.detail
