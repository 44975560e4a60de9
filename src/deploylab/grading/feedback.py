"""Per-student HTML feedback that never shows hidden test source.

``autograder/feedback/<student>/<lab>/<lab>.html`` lists each test cell as passed, partly
passed or failed with the instructor's message (the ``AssertionError`` text), the visible
tests, and the student's own answers. Tracebacks are not shown (their context lines would
quote hidden asserts, nbgrader issue #917), and every text shown goes through
:func:`redact_hidden_tests`, so even a student function that prints its caller's source
cannot smuggle hidden tests into the page.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from deploylab.grading.autograde import GRADED, SubmissionResult, load_results, score_cell
from deploylab.grading.course import Course

__all__ = ["generate_feedback", "hidden_test_lines", "redact_hidden_tests", "visible_part"]

BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
REDACTED = "[hidden test]"
#: Hidden lines shorter than this (``else:``, ``pass``) are too common to be a leak.
MIN_REDACTED_LENGTH = 8
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def visible_part(source: str) -> tuple[str, int]:
    """A test cell's source without its hidden block, and how many hidden lines it had.

    >>> visible_part("assert f(1) == 1\\n### BEGIN HIDDEN TESTS\\nassert f(2) == 2\\n### END HIDDEN TESTS")
    ('assert f(1) == 1', 1)
    """
    kept: list[str] = []
    hidden = 0
    inside = False
    for line in source.splitlines():
        if line.strip() == BEGIN_HIDDEN:
            inside = True
        elif line.strip() == END_HIDDEN:
            inside = False
        elif inside:
            hidden += 1
        else:
            kept.append(line)
    return "\n".join(kept).rstrip(), hidden


def hidden_test_lines(notebook) -> list[str]:
    """Every line that only occurs inside hidden-test blocks of ``notebook``, longest first.

    Lines that also appear outside hidden blocks (``except ValueError:`` in a visible test)
    are public already and are not redacted.
    """
    hidden: set[str] = set()
    public: set[str] = set()
    for cell in notebook.cells:
        inside = False
        for line in str(cell.get("source", "")).splitlines():
            if line.strip() == BEGIN_HIDDEN:
                inside = True
            elif line.strip() == END_HIDDEN:
                inside = False
            elif inside:
                if len(line.strip()) >= MIN_REDACTED_LENGTH:
                    hidden.add(line.strip())
            else:
                public.add(line.strip())
    return sorted(hidden - public, key=len, reverse=True)


def redact_hidden_tests(text: str, hidden_lines: list[str]) -> str:
    """``text`` with every occurrence of a hidden-test line replaced by ``[hidden test]``.

    This is the pipeline's own sanitizer; ``deploylab.grading.integrity`` may provide a
    stricter one with the same name, which :func:`_redact` then uses instead.

    >>> redact_hidden_tests("x\\n    assert secret(3) == 9\\ny", ["assert secret(3) == 9"])
    'x\\n    [hidden test]\\ny'
    """
    text = _ANSI.sub("", text)
    for line in [*hidden_lines, BEGIN_HIDDEN, END_HIDDEN]:
        if line in text:
            text = text.replace(line, REDACTED)
    return text


def _redact(text: str, hidden_lines: list[str], hidden_sources: list[str]) -> str:
    """Our line-based redaction, then the integrity module's sanitizer if it has one."""
    text = redact_hidden_tests(text, hidden_lines)
    try:
        from deploylab.grading import integrity
    except ImportError:
        return text
    sanitizer = getattr(integrity, "redact_hidden_tests", None)
    if sanitizer is None:
        return text
    try:
        return str(sanitizer(text, hidden_sources))
    except Exception:
        return text


def _text_outputs(cell) -> str:
    parts: list[str] = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream" and output.get("name") == "stdout":
            parts.append(str(output.get("text", "")))
    text = "".join(parts)
    return text if len(text) <= 4000 else text[:4000] + "\n[output shortened]"


def _message(cell) -> str:
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            name, value = output.get("ename", "Error"), str(output.get("evalue", ""))
            if name == "AssertionError":
                return value or "a test failed (the test has no message)"
            return f"{name}: {value}" if value else name
    return ""


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem}.summary{font-size:1.1rem;padding:.6rem 1rem;border-radius:.4rem;background:#eef}
.test{border:1px solid #ccc;border-radius:.4rem;margin:1rem 0;padding:.5rem 1rem}
.passed{border-left:.5rem solid #2a2}.partial{border-left:.5rem solid #d90}.failed{border-left:.5rem solid #c22}
.verdict{font-weight:bold}.message{background:#fff3f3;padding:.4rem;white-space:pre-wrap}
pre{background:#f6f6f6;padding:.5rem;overflow-x:auto}.hidden{color:#666;font-style:italic}
"""


def _page(result: SubmissionResult | None, lab: str, student: str, executed) -> str:
    hidden_lines = hidden_test_lines(executed) if executed is not None else []
    hidden_sources = [
        str(cell.source)
        for cell in (executed.cells if executed is not None else [])
        if BEGIN_HIDDEN in str(cell.get("source", ""))
    ]

    def safe(text: str) -> str:
        return html.escape(_redact(text, hidden_lines, hidden_sources))

    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(lab)} feedback for {html.escape(student)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(lab)}: feedback for {html.escape(student)}</h1>",
    ]
    if result is None:
        parts.append("<p class='summary'>No graded submission was found.</p></body></html>")
        return "\n".join(parts)
    if result.status == GRADED:
        parts.append(
            f"<p class='summary'>Score: <b>{result.score:g} / {result.max_score:g}</b></p>"
        )
    else:
        parts.append(
            f"<p class='summary'>Status: <b>{html.escape(result.status)}</b>: "
            f"{safe(result.detail)}. Your instructor will look at this submission; "
            "the results below (if any) are not your grade.</p>"
        )
    if executed is None:
        parts.append("</body></html>")
        return "\n".join(parts)
    for cell in executed.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and not meta.get("grade"):
            parts.append(
                f"<h3>Your answer <code>{html.escape(str(meta.get('grade_id')))}</code></h3>"
                f"<pre>{safe(str(cell.source))}</pre>"
            )
        if not meta.get("grade") or cell.cell_type != "code":
            continue
        earned, max_points = score_cell(cell)
        earned = earned or 0.0
        verdict = "passed" if earned >= max_points else ("partial" if earned > 0 else "failed")
        label = {"passed": "Passed", "partial": "Partly passed", "failed": "Failed"}[verdict]
        visible, hidden_count = visible_part(str(cell.source))
        parts.append(f"<div class='test {verdict}'>")
        parts.append(
            f"<p><span class='verdict'>{label}</span> "
            f"<code>{html.escape(str(meta.get('grade_id')))}</code>: "
            f"{earned:g} / {max_points:g} points</p>"
        )
        message = _message(cell)
        if message:
            parts.append(f"<div class='message'>{safe(message)}</div>")
        printed = _text_outputs(cell)
        if printed.strip():
            parts.append(f"<pre>{safe(printed)}</pre>")
        # The visible tests are exactly the released cell (public already): shown as they are.
        parts.append(
            f"<details><summary>Visible tests</summary><pre>{html.escape(visible)}</pre></details>"
        )
        if hidden_count:
            parts.append(
                "<p class='hidden'>This cell also ran hidden tests of the same kind; "
                "their code is not shown.</p>"
            )
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def generate_feedback(course: Course, lab: str) -> list[Path]:
    """Write one HTML page per graded student of ``lab``; returns the paths written."""
    import nbformat

    written: list[Path] = []
    for result in load_results(course, lab):
        notebook_path = course.autograded_dir(result.student, lab) / f"{lab}.ipynb"
        executed = None
        if notebook_path.is_file():
            executed = nbformat.read(notebook_path, as_version=4)
        page = _page(result, lab, result.student, executed)
        target = course.feedback_dir(result.student, lab)
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"{lab}.html"
        path.write_text(page, encoding="utf-8")
        written.append(path)
    return written
