"""What a graded notebook keeps of its cells' outputs: bounded in bytes and errors, text and
PNG only (HTML and JavaScript never reach formgrader), and the trusted verdict of each test
cell in place of anything the student's code printed there.
"""

from __future__ import annotations

from typing import Any

import nbformat
from nbformat import NotebookNode

from deploylab.grading.scoring import TestOutcome

MAX_ERRORS_PER_CELL = 3


#: Output types kept from a student's cell (HTML and JavaScript never reach formgrader).
KEPT_MIME_TYPES = ("text/plain", "image/png")


def make_output(output_type: str, **fields: Any) -> NotebookNode:
    """A notebook output, built without nbformat's validation: validating compiles a schema
    (Python's compiler is not safe to run in several threads at once, CPython gh-106905), and
    every field here is made by the grader itself."""
    node = {"output_type": output_type, **fields}
    if output_type in ("execute_result", "display_data"):
        node.setdefault("metadata", {})
    if output_type == "execute_result":
        node.setdefault("execution_count", None)
    return nbformat.from_dict(node)


def note_output(text: str) -> NotebookNode:
    return make_output("stream", name="stdout", text=text + "\n")


def test_outputs(outcome: TestOutcome) -> list[NotebookNode]:
    """What formgrader shows for a test cell: the trusted verdict, never student output."""
    points = "-" if outcome.points is None else f"{outcome.points:g}"
    outputs = [note_output(f"{outcome.outcome}: {points} / {outcome.max_points:g} points")]
    if outcome.outcome in ("failed", "timed out") and outcome.message:
        outputs.append(
            make_output("error", ename="AssertionError", evalue=outcome.message, traceback=[])
        )
    return outputs


class BoundedOutputs:
    """A cell's outputs, bounded in bytes and errors, text and PNG only."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self.errors = 0
        self.truncated = False
        self.limit_note = f"[output truncated: more than {max_bytes} bytes]"
        self.outputs: list[NotebookNode] = []

    def note(self, text: str) -> None:
        self.outputs.append(note_output(text))

    def add(self, kind: str | None, content: dict) -> None:
        if kind == "clear_output":
            self.outputs = []
            return
        if kind == "error":
            self.errors += 1
            if self.errors <= MAX_ERRORS_PER_CELL:
                error = make_output(
                    "error",
                    ename=str(content.get("ename", "Error"))[:200],
                    evalue=str(content.get("evalue", ""))[:2000],
                    traceback=bounded_traceback(
                        [str(line) for line in content.get("traceback", [])][:200],
                        max(0, self.max_bytes - self.used),
                    ),
                )
                # Errors are always kept (name and message), and count against the budget.
                self.used += len(error.evalue) + sum(len(line) for line in error.traceback)
                self.outputs.append(error)
            return
        if kind == "stream":
            text = str(content.get("text", ""))
            room = self.max_bytes - self.used
            if len(text) > room:
                text = text[: max(0, room)]
                self._truncate()
            if text:
                self.used += len(text)
                self.outputs.append(
                    make_output("stream", name=str(content.get("name", "stdout"))[:10], text=text)
                )
            return
        if kind in ("execute_result", "display_data"):
            data = content.get("data") or {}
            kept = {
                mime: value
                for mime, value in data.items()
                if mime in KEPT_MIME_TYPES and isinstance(value, str)
            }
            size = sum(len(value) for value in kept.values())
            if not kept:
                return
            if self.used + size > self.max_bytes:
                self._truncate()
                return
            self.used += size
            if kind == "execute_result":
                self.outputs.append(
                    make_output(
                        "execute_result",
                        data=kept,
                        execution_count=content.get("execution_count")
                        if type(content.get("execution_count")) is int
                        else None,
                    )
                )
            else:
                self.outputs.append(make_output("display_data", data=kept))

    def _truncate(self) -> None:
        if not self.truncated:
            self.truncated = True
            self.note(self.limit_note)


def bounded_traceback(traceback: list[str], limit: int) -> list[str]:
    """The last frames of ``traceback`` that fit in ``limit`` bytes (the error line is last)."""
    kept: list[str] = []
    used = 0
    for line in reversed(traceback):
        if used + len(line) > limit:
            room = limit - used
            kept.append(line[-room:] if not kept and room > 0 else "[traceback truncated]")
            break
        kept.append(line)
        used += len(line)
    return list(reversed(kept))
