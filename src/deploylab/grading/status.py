"""The one vocabulary of grading outcomes: what a submission ends as, what a test cell earned,
and the one rule that turns points into passed, partly passed or failed.

Every other grading module (the executor, the batch, the trusted tests, the feedback pages)
imports these names instead of writing the strings again.

>>> test_outcome(2.0, 2.0), test_outcome(0.5, 2.0), test_outcome(0.0, 2.0)
('passed', 'partly passed', 'failed')
"""

from __future__ import annotations

__all__ = [
    "EXECUTION_STATUSES",
    "FAILED",
    "GRADED",
    "KERNEL_DIED",
    "MISSING",
    "NEEDS_REVIEW",
    "NOT_A_NOTEBOOK",
    "NOT_RUN",
    "PARTLY_PASSED",
    "PASSED",
    "STATUSES",
    "TEST_OUTCOMES",
    "TEST_TIMED_OUT",
    "TIMED_OUT",
    "WRONG_LAB",
    "test_outcome",
]

# -- a submission's status ----------------------------------------------------------------
GRADED = "graded"
TIMED_OUT = "timed out"
KERNEL_DIED = "kernel died"
NEEDS_REVIEW = "needs review"
NOT_A_NOTEBOOK = "not a notebook"
WRONG_LAB = "wrong lab"
MISSING = "missing"  # only other labs' notebooks were handed in: nothing of this lab

#: Every status running a notebook can end with, most severe first.
EXECUTION_STATUSES = (KERNEL_DIED, TIMED_OUT, NEEDS_REVIEW, GRADED)
#: Every status a submission can end with.
STATUSES = (GRADED, TIMED_OUT, KERNEL_DIED, NOT_A_NOTEBOOK, WRONG_LAB, MISSING, NEEDS_REVIEW)

# -- what one test cell earned ------------------------------------------------------------
PASSED = "passed"
PARTLY_PASSED = "partly passed"
FAILED = "failed"
TEST_TIMED_OUT = "timed out"
NOT_RUN = "not run"
#: Every outcome of a test cell.
TEST_OUTCOMES = (PASSED, PARTLY_PASSED, FAILED, TEST_TIMED_OUT, NOT_RUN)


def test_outcome(earned: float, max_points: float) -> str:
    """The one pass/fail rule: all the points pass, some points partly pass, none fail."""
    if earned >= max_points:
        return PASSED
    return PARTLY_PASSED if earned > 0 else FAILED


test_outcome.__test__ = False  # type: ignore[attr-defined]  # a rule, not a pytest test
