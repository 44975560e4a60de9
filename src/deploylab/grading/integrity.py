"""Integrity of a graded run: tamper detection, hidden-test redaction, pass/fail of test cells."""

from __future__ import annotations

from dataclasses import dataclass, field

from nbformat import NotebookNode

__all__ = ["ExecutionPlan", "instrument"]


@dataclass
class ExecutionPlan:
    """The notebook as it is executed (with injected check cells) and how to undo that."""

    notebook: NotebookNode
    nonce: str
    injected: list[int] = field(default_factory=list)

    def original_indices(self, indices: list[int]) -> list[int]:
        injected = sorted(self.injected)
        return [i - sum(1 for j in injected if j < i) for i in indices if i not in self.injected]

    def restore(self, executed: NotebookNode) -> NotebookNode:
        executed.cells = [c for i, c in enumerate(executed.cells) if i not in self.injected]
        return executed

    def findings(self, executed: NotebookNode, partial: bool = False) -> list[str]:
        return []


def instrument(notebook: NotebookNode, nonce: str) -> ExecutionPlan:
    """Prepare ``notebook`` for a graded run (integrity cells are added in a later step)."""
    return ExecutionPlan(notebook=notebook, nonce=nonce)
