"""Self-check answers for the lessons: say right or wrong, with a hint, never the answer.

A lesson's self-check cell starts with every answer set to ``None`` so that the learner
predicts before anything is revealed; :func:`check` then compares each prediction with the
value the reference implementation computes. The worked answers stay in a collapsed
``<details>`` block in the lesson, so reading them is a choice, not an accident.
"""

from __future__ import annotations

from typing import Any

from deploylab.widgets.labels import widget_labels

__all__ = ["check"]

#: The English words of :func:`check`; other languages come from ``labels.WIDGET_LABELS``.
SELF_CHECK_WORDS = {
    "unanswered": "question {question}: not answered yet. "
    "Write your prediction in place of None, then run the cell.",
    "right": "question {question}: right.",
    "wrong": "question {question}: not quite (you said {answer}). Hint: {hint}",
}


def check(question: int | str, answer: Any, expected: Any, hint: str) -> bool | None:
    """Print whether ``answer`` to ``question`` is right; return True, False or None.

    ``None`` means "not answered yet": the learner is reminded to predict first, and
    nothing about the expected value is shown. A wrong answer prints ``hint`` (which
    should point at the reasoning, not give the value away).

    >>> check(1, None, 5, "count the weights")
    question 1: not answered yet. Write your prediction in place of None, then run the cell.
    >>> check(1, 5, 5, "count the weights")
    question 1: right.
    True
    >>> check("1", 4, 5, "count the weights")
    question 1: not quite (you said 4). Hint: count the weights
    False
    """
    # The fixed words follow the workbook's language (the same table the widgets use).
    words = {**SELF_CHECK_WORDS, **widget_labels("selfcheck")}
    if answer is None:
        print(words["unanswered"].format(question=question))
        return None
    if answer == expected:
        print(words["right"].format(question=question))
        return True
    print(words["wrong"].format(question=question, answer=repr(answer), hint=hint))
    return False
