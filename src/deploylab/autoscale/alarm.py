"""CloudWatch metric alarms as Auto Scaling sees them: M of the last N datapoints breach.

Pure code: datapoints are handed in (one per period, newest last, ``None`` where the period
had no data); nothing reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

OK = "OK"
ALARM = "ALARM"
INSUFFICIENT_DATA = "INSUFFICIENT_DATA"

#: CloudWatch comparison operators and the test each one applies to ``(value, threshold)``.
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
    "GreaterThanOrEqualToThreshold": lambda value, threshold: value >= threshold,
    "LessThanThreshold": lambda value, threshold: value < threshold,
    "LessThanOrEqualToThreshold": lambda value, threshold: value <= threshold,
}

#: Short spellings accepted for ``comparison``.
COMPARISON_ALIASES = {
    ">": "GreaterThanThreshold",
    ">=": "GreaterThanOrEqualToThreshold",
    "<": "LessThanThreshold",
    "<=": "LessThanOrEqualToThreshold",
}

#: How missing datapoints are treated (CloudWatch ``TreatMissingData``); ``missing`` is the default.
MISSING_DATA_TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")

STATISTICS = ("Average", "Sum", "Minimum", "Maximum", "SampleCount")


class AlarmConfigError(ValueError):
    """An alarm setting is out of range; the message names it and what was expected."""


@dataclass(frozen=True)
class Alarm:
    """A CloudWatch metric alarm.

    ``evaluation_periods`` is N, ``datapoints_to_alarm`` is M (default N). "CPU above 80% for
    5 minutes" is ``Alarm(threshold=80, comparison=">", period=60, evaluation_periods=5)``.

    >>> cpu_high = Alarm(threshold=80, comparison=">", period=60, evaluation_periods=5)
    >>> cpu_high.evaluate([85, 90, 88, 95, 81])
    'ALARM'
    >>> cpu_high.evaluate([85, 90, 70, 95, 81])
    'OK'
    >>> Alarm(threshold=80, comparison=">", evaluation_periods=5, datapoints_to_alarm=3).evaluate(
    ...     [85, 70, 90, 60, 81])
    'ALARM'
    >>> cpu_high.evaluate([None] * 5)
    'INSUFFICIENT_DATA'
    """

    threshold: float
    comparison: str = "GreaterThanThreshold"
    period: float = 60.0
    evaluation_periods: int = 1
    datapoints_to_alarm: int | None = None
    statistic: str = "Average"
    treat_missing_data: str = "missing"
    metric_name: str = "CPUUtilization"

    def __post_init__(self) -> None:
        comparison = COMPARISON_ALIASES.get(self.comparison, self.comparison)
        if comparison not in COMPARISONS:
            raise AlarmConfigError(
                f"comparison {self.comparison!r} is not one of {sorted(COMPARISONS)} or > >= < <="
            )
        object.__setattr__(self, "comparison", comparison)
        needed = self.datapoints_to_alarm
        if needed is None:
            needed = self.evaluation_periods
            object.__setattr__(self, "datapoints_to_alarm", needed)
        if self.evaluation_periods < 1:
            raise AlarmConfigError(
                f"evaluation_periods {self.evaluation_periods} must be at least 1"
            )
        if not 1 <= needed <= self.evaluation_periods:
            raise AlarmConfigError(
                f"datapoints_to_alarm {needed} must be between 1 and "
                f"evaluation_periods ({self.evaluation_periods})"
            )
        if self.period <= 0:
            raise AlarmConfigError(f"period {self.period} must be positive (seconds)")
        if self.treat_missing_data not in MISSING_DATA_TREATMENTS:
            raise AlarmConfigError(
                f"treat_missing_data {self.treat_missing_data!r} is not one of "
                f"{list(MISSING_DATA_TREATMENTS)}"
            )
        if self.statistic not in STATISTICS and not _is_percentile(self.statistic):
            raise AlarmConfigError(
                f"statistic {self.statistic!r} is not one of {list(STATISTICS)} or pNN"
            )

    @property
    def scales_out(self) -> bool:
        """True when breaching means the metric is above the threshold."""
        return self.comparison.startswith("Greater")

    def breaches(self, value: float) -> bool:
        """Whether one datapoint is on the alarming side of the threshold."""
        return COMPARISONS[self.comparison](value, self.threshold)

    def datapoint(self, samples: Iterable[float]) -> float | None:
        """Reduce the raw samples of one period with the alarm's statistic (None if empty).

        >>> Alarm(threshold=1, statistic="Maximum").datapoint([3, 9, 4])
        9
        >>> Alarm(threshold=1, statistic="p50").datapoint([1, 2, 3, 4])
        2
        """
        values = sorted(samples)
        if not values:
            return None
        if self.statistic == "Average":
            return sum(values) / len(values)
        if self.statistic == "Sum":
            return sum(values)
        if self.statistic == "Minimum":
            return values[0]
        if self.statistic == "Maximum":
            return values[-1]
        if self.statistic == "SampleCount":
            return len(values)
        rank = float(self.statistic[1:]) / 100  # nearest-rank percentile
        return values[max(0, math.ceil(rank * len(values)) - 1)]

    def evaluate(
        self, datapoints: Sequence[float | None], previous_state: str = INSUFFICIENT_DATA
    ) -> str:
        """The alarm state after the newest datapoint: ``'OK'``, ``'ALARM'`` or
        ``'INSUFFICIENT_DATA'``.

        Only the last ``evaluation_periods`` datapoints count; ``None`` is a period without
        data. With ``missing`` (the default) and ``ignore``, only present datapoints are
        judged; if none is present the alarm goes to INSUFFICIENT_DATA (``missing``) or keeps
        ``previous_state`` (``ignore``). *Model*: CloudWatch may also look further back for
        data; this does not.
        """
        window = list(datapoints)[-self.evaluation_periods :]
        needed = self.datapoints_to_alarm
        assert needed is not None  # __post_init__ fills it in
        breaching = 0
        present = 0
        for value in window:
            if value is None:
                if self.treat_missing_data == "breaching":
                    breaching += 1
                    present += 1
                elif self.treat_missing_data == "notBreaching":
                    present += 1
                continue
            present += 1
            if self.breaches(value):
                breaching += 1
        if breaching >= needed:
            return ALARM
        if present == 0:
            return previous_state if self.treat_missing_data == "ignore" else INSUFFICIENT_DATA
        return OK


def _is_percentile(statistic: str) -> bool:
    if not statistic.startswith("p"):
        return False
    try:
        return 0 < float(statistic[1:]) <= 100
    except ValueError:
        return False


class AlarmMonitor:
    """An alarm with its own history: feed one datapoint per period, read the state.

    >>> monitor = AlarmMonitor(Alarm(threshold=80, comparison=">", evaluation_periods=3))
    >>> [monitor.add(value) for value in (90, 95, 99, 50)]
    ['OK', 'OK', 'ALARM', 'OK']
    """

    __slots__ = ("alarm", "history", "state")

    def __init__(self, alarm: Alarm) -> None:
        self.alarm = alarm
        self.history: list[float | None] = []
        self.state = INSUFFICIENT_DATA

    def add(self, datapoint: float | None) -> str:
        history = self.history
        history.append(datapoint)
        if len(history) > self.alarm.evaluation_periods:
            del history[0]
        self.state = self.alarm.evaluate(history, self.state)
        return self.state
