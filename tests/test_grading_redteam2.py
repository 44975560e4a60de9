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

Held (kept as regression tests): outputs a student forges to inject markup into formgrader
(a PNG whose data breaks out of its attribute, a stream whose name does, an exception class
named like a tag) are escaped or dropped.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from adversarial import CORRECT, mini_lab, require_sandbox
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
