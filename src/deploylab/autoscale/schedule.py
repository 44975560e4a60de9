"""Scheduled actions and their cron recurrences: set desired/min/max at a moment or on a
schedule, as EC2 Auto Scaling's scheduled scaling does.

Pure code: times are seconds from :data:`EPOCH` (a Monday, 00:00 UTC); nothing reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = ["EPOCH", "Cron", "ScheduledAction", "check_schedule"]

_CRON_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)


def _parse_cron_field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"cron {name} step {step_text!r} must be a positive number")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, _, last = body.partition("-")
            if not (first.isdigit() and last.isdigit()):
                raise ValueError(f"cron {name} range {body!r} must be NUMBER-NUMBER")
            start, end = int(first), int(last)
        elif body.isdigit():
            start = end = int(body)
            if step_text:
                end = high
        else:
            raise ValueError(f"cron {name} field {part!r} is not *, N, N-M, a list or a step")
        if not (low <= start <= end <= high):
            raise ValueError(f"cron {name} {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A 5-field cron recurrence (minute hour day-of-month month day-of-week), UTC.

    >>> cron = Cron.parse("0 8 * * 1-5")          # 08:00 on weekdays
    >>> cron.matches(datetime(2026, 1, 5, 8, 0, tzinfo=UTC))   # a Monday
    True
    >>> cron.matches(datetime(2026, 1, 4, 8, 0, tzinfo=UTC))   # a Sunday
    False
    """

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_restricted: bool
    weekday_restricted: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        fields = expression.split()
        if len(fields) != 5:
            raise ValueError(
                f"cron expression {expression!r} needs 5 fields: minute hour day month weekday"
            )
        parsed = [
            _parse_cron_field(text, *spec) for text, spec in zip(fields, _CRON_FIELDS, strict=True)
        ]
        weekdays = frozenset(day % 7 for day in parsed[4])
        return cls(
            parsed[0], parsed[1], parsed[2], parsed[3], weekdays, fields[2] != "*", fields[4] != "*"
        )

    def matches(self, moment: datetime) -> bool:
        if moment.minute not in self.minutes or moment.hour not in self.hours:
            return False
        if moment.month not in self.months:
            return False
        day_ok = moment.day in self.days
        weekday_ok = (moment.isoweekday() % 7) in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return day_ok or weekday_ok  # classic cron: either one
        return day_ok and weekday_ok

    def times(self, start: datetime, end: datetime) -> Iterable[datetime]:
        """Every matching minute in ``[start, end)``, day by day (not minute by minute)."""
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        while day < end:
            probe = day.replace(hour=min(self.hours), minute=min(self.minutes))
            if self.matches(probe):  # the date fields match this day
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        moment = day.replace(hour=hour, minute=minute)
                        if start <= moment < end:
                            yield moment
            day += timedelta(days=1)


#: Simulation clocks count seconds from this instant (a Monday, 00:00 UTC) unless told otherwise.
EPOCH = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass(frozen=True)
class ScheduledAction:
    """Set any of desired/min/max at ``at`` (seconds from ``EPOCH``) or on a cron ``recurrence``.

    Scheduled actions ignore cooldowns.

    >>> action = ScheduledAction("business-hours", recurrence="0 8 * * 1-5", min_size=4)
    >>> action.fire_times(0, 2 * 86400)
    [28800.0, 115200.0]
    """

    name: str
    at: float | None = None
    recurrence: str | None = None
    desired: int | None = None
    min_size: int | None = None
    max_size: int | None = None
    epoch: datetime = field(default=EPOCH, compare=False)

    def __post_init__(self) -> None:
        if (self.at is None) == (self.recurrence is None):
            raise ValueError(
                f"scheduled action {self.name!r} needs exactly one of at= or recurrence="
            )
        if self.desired is None and self.min_size is None and self.max_size is None:
            raise ValueError(f"scheduled action {self.name!r} sets none of desired/min/max")
        if self.recurrence is not None:
            Cron.parse(self.recurrence)

    def fire_times(self, start: float, end: float) -> list[float]:
        """Seconds (from the epoch) at which the action fires within ``[start, end)``."""
        if self.at is not None:
            return [float(self.at)] if start <= self.at < end else []
        assert self.recurrence is not None  # __post_init__ requires at= or recurrence=
        cron = Cron.parse(self.recurrence)
        first = self.epoch + timedelta(seconds=start)
        last = self.epoch + timedelta(seconds=end)
        return [(moment - self.epoch).total_seconds() for moment in cron.times(first, last)]


def check_schedule(
    actions: Iterable[ScheduledAction], start: float = 0.0, end: float = 14 * 86400.0
) -> list[ScheduledAction]:
    """Scheduled actions of one group must have unique names and never start at the same
    moment (AWS rejects both); raises ValueError naming the clash.

    >>> check_schedule([ScheduledAction("a", at=60, desired=2),
    ...                 ScheduledAction("b", recurrence="1 0 * * *", desired=3)])
    Traceback (most recent call last):
    ...
    ValueError: scheduled actions 'a' and 'b' both start at 60 s
    """
    actions = list(actions)
    names: set[str] = set()
    starts: dict[float, str] = {}
    for action in actions:
        if action.name in names:
            raise ValueError(f"scheduled action name {action.name!r} is used twice")
        names.add(action.name)
        for moment in action.fire_times(start, end):
            if moment in starts:
                raise ValueError(
                    f"scheduled actions {starts[moment]!r} and {action.name!r} "
                    f"both start at {moment:g} s"
                )
            starts[moment] = action.name
    return actions
