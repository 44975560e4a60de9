"""Errors of the grading machine itself (never of a student's code)."""

from __future__ import annotations

__all__ = ["KernelStartError", "SandboxUnavailableError"]


class SandboxUnavailableError(RuntimeError):
    """Grading with the sandbox was asked for but bubblewrap cannot be used here."""


class KernelStartError(RuntimeError):
    """The kernel did not start (before any student code ran): a grader problem, not a student's."""
