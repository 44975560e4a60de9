"""Scaling policies as EC2 Auto Scaling applies them: simple, step, target tracking, predictive,
and scheduled actions (kept in :mod:`deploylab.autoscale.schedule`, re-exported here).

Every policy is a small object with ``evaluate(observation) -> Decision | None``. It keeps its
own alarm history, and the time comes in with the observation, so the simulator and the live
controller run exactly the same code. :func:`decide` combines several policies the way AWS does.

The four dynamic policy kinds share the observation, decision and cooldown types and
:func:`decide` must see them all, so they live together; each class is small and doctested.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from deploylab.autoscale.alarm import ALARM, Alarm, AlarmMonitor

# Scheduled actions moved to their own module; their names stay importable from here.
from deploylab.autoscale.schedule import EPOCH as EPOCH
from deploylab.autoscale.schedule import Cron as Cron
from deploylab.autoscale.schedule import ScheduledAction as ScheduledAction
from deploylab.autoscale.schedule import check_schedule as check_schedule

CHANGE_IN_CAPACITY = "ChangeInCapacity"
EXACT_CAPACITY = "ExactCapacity"
PERCENT_CHANGE_IN_CAPACITY = "PercentChangeInCapacity"
ADJUSTMENT_TYPES = (CHANGE_IN_CAPACITY, EXACT_CAPACITY, PERCENT_CHANGE_IN_CAPACITY)


def _ceil(value: float) -> int:
    """Ceiling that ignores float noise (10 * 0.55 / 0.5 must be 11, not 12)."""
    return math.ceil(round(value, 9))


def percent_change(current: int, percent: float) -> int:
    """Instances to add (or remove, if negative) for ``percent`` of ``current``, rounded as AWS
    does: above 1 round down, between 0 and 1 make it 1, between -1 and 0 make it -1, below -1
    round toward zero.

    >>> [percent_change(10, p) for p in (10, 33, 5, -5, -14, -39)]
    [1, 3, 1, -1, -1, -3]
    """
    change = current * percent / 100
    change = round(change, 9)
    if change > 1:
        return math.floor(change)
    if 0 < change < 1:
        return 1
    if -1 < change < 0:
        return -1
    if change < -1:
        return math.ceil(change)
    return int(change)


def step_adjustment(
    current: int, adjustment_type: str, value: float, min_adjustment_magnitude: int | None = None
) -> int:
    """The new desired capacity after one adjustment (before the group's min/max are applied).

    Parameters
    ----------
    current : the group's current (desired) capacity
    adjustment_type : ``"ChangeInCapacity"`` (+value), ``"ExactCapacity"`` (=value) or
        ``"PercentChangeInCapacity"`` (value percent of current, AWS rounding)
    value : the scaling adjustment
    min_adjustment_magnitude : for percentage changes, the smallest number of instances to move

    Examples
    --------
    >>> step_adjustment(10, "ChangeInCapacity", 2)
    12
    >>> step_adjustment(10, "ExactCapacity", 4)
    4
    >>> step_adjustment(11, "PercentChangeInCapacity", 30)   # 3.3 -> 3
    14
    >>> step_adjustment(4, "PercentChangeInCapacity", 25, min_adjustment_magnitude=2)
    6
    """
    if adjustment_type not in ADJUSTMENT_TYPES:
        raise ValueError(
            f"adjustment type {adjustment_type!r} is not one of {list(ADJUSTMENT_TYPES)}"
        )
    if current < 0:
        raise ValueError(f"current capacity {current} must not be negative")
    if adjustment_type == EXACT_CAPACITY:
        if value < 0 or value != int(value):
            raise ValueError(f"ExactCapacity value {value} must be a whole number >= 0")
        return int(value)
    if adjustment_type == CHANGE_IN_CAPACITY:
        if value != int(value):
            raise ValueError(f"ChangeInCapacity value {value} must be a whole number")
        return current + int(value)
    change = percent_change(current, value)
    if min_adjustment_magnitude is not None:
        if min_adjustment_magnitude < 1:
            raise ValueError(
                f"min_adjustment_magnitude {min_adjustment_magnitude} must be at least 1"
            )
        if 0 < abs(change) < min_adjustment_magnitude:
            change = min_adjustment_magnitude if change > 0 else -min_adjustment_magnitude
    return current + change


def target_tracking_desired(
    current: int, metric: float, target: float, scale_in_margin: float = 0.1
) -> int:
    """Desired capacity a target-tracking policy asks for (the *model* AWS describes).

    ``ceil(current × metric / target)``: rounding up both ways is the conservative choice (1.5
    instances to add → add 2; 1.5 to remove → remove 1). Scale-in happens only when the metric
    is well below target: at least ``scale_in_margin`` (10%) lower.

    >>> target_tracking_desired(4, 80, 50)       # 6.4 -> 7
    7
    >>> target_tracking_desired(10, 35, 50)      # 7.0 -> 7: remove 3
    7
    >>> target_tracking_desired(100, 47, 50)     # only 6% below target: keep
    100
    """
    if target <= 0:
        raise ValueError(f"target {target} must be positive")
    if current < 0:
        raise ValueError(f"current capacity {current} must not be negative")
    proposal = _ceil(current * metric / target)
    if proposal < current and metric > target * (1 - scale_in_margin):
        return current
    return proposal


# --------------------------------------------------------------------------------------------
# What a policy sees and what it answers


@dataclass(slots=True)
class Observation:
    """The group as a policy sees it at ``now``.

    ``ready`` counts in-service instances past their warm-up; ``metric`` is their aggregated
    metric (None when no
    instance reported: the alarm gets a missing datapoint). ``warming`` counts instances
    launching or still in their warm-up; ``load`` is the total demand (requests/s), used by
    predictive scaling.
    """

    now: float
    desired: int
    min_size: int
    max_size: int
    in_service: int
    ready: int
    warming: int
    metric: float | None
    load: float = 0.0
    cooldown_active: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy's answer: the desired capacity it wants, and why."""

    desired: int
    policy: str
    reason: str
    cooldown: float | None = None  # simple scaling: seconds to wait after the activity
    holds: bool = False  # a target-tracking "keep as is", which vetoes scale-in


class Policy:
    """Base class: a named policy that answers an :class:`Observation`."""

    name = "policy"

    def evaluate(self, observation: Observation) -> Decision | None:  # pragma: no cover
        raise NotImplementedError


def decide(policies: Iterable[Policy], observation: Observation) -> Decision | None:
    """Combine policies as AWS does: of all proposals the largest capacity wins.

    A "hold" proposal (``holds=True``) is a floor: a target-tracking policy that does not want
    to scale in holds the current size, so the group scales in only when every target-tracking
    policy agrees; a predictive forecast holds the forecast capacity for the hour. Every policy
    is evaluated (they keep alarm history). Returns the decision when it changes the desired
    capacity, else None.
    """
    proposals = [d for d in (policy.evaluate(observation) for policy in policies) if d is not None]
    if not proposals:
        return None
    best = max(proposals, key=lambda d: d.desired)
    current = observation.desired
    if best.desired == current:
        return None
    if not best.holds:
        return best
    if best.desired > current:
        return None
    movers = [d for d in proposals if not d.holds and d.desired < current]
    if not movers:
        return None
    mover = movers[0]
    return Decision(
        best.desired,
        mover.policy,
        f"{mover.reason}; floor {best.desired} from {best.policy}",
        mover.cooldown,
    )


# --------------------------------------------------------------------------------------------
# Step and simple scaling


@dataclass(frozen=True)
class Step:
    """One step adjustment: bounds relative to the alarm threshold (None = infinity).

    Above the threshold a step covers ``[lower, upper)``; below it ``(lower, upper]``.
    """

    lower: float | None
    upper: float | None
    adjustment: float

    def contains(self, difference: float, above: bool) -> bool:
        lower = -math.inf if self.lower is None else self.lower
        upper = math.inf if self.upper is None else self.upper
        if above:
            return lower <= difference < upper
        return lower < difference <= upper


def check_steps(steps: Sequence[Step]) -> list[Step]:
    """Steps sorted by bound; raises ValueError on overlaps, gaps or more than one open end."""
    if not steps:
        raise ValueError("a step scaling policy needs at least one step adjustment")
    ordered = sorted(steps, key=lambda s: -math.inf if s.lower is None else s.lower)
    for step in ordered:
        if step.lower is not None and step.upper is not None and step.lower >= step.upper:
            raise ValueError(f"step {step}: lower bound must be below upper bound")
    for before, after in itertools.pairwise(ordered):
        if before.upper is None or after.lower is None:
            raise ValueError(f"steps {before} and {after} overlap (an open bound in the middle)")
        if before.upper > after.lower:
            raise ValueError(f"steps {before} and {after} overlap")
        if before.upper < after.lower:
            raise ValueError(f"gap between steps {before} and {after}: bounds must meet")
    return ordered


def find_step(steps: Sequence[Step], difference: float, above: bool) -> Step | None:
    """The step whose range holds ``metric - threshold``, or None.

    >>> steps = [Step(10, 20, 10), Step(20, None, 30)]
    >>> find_step(steps, 20, above=True).adjustment
    30
    >>> find_step([Step(-20, -10, -10), Step(None, -20, -30)], -20, above=False).adjustment
    -30
    """
    for step in steps:
        if step.contains(difference, above):
            return step
    return None


class StepScalingPolicy(Policy):
    """Step scaling: the alarm's breach size picks a step; re-invoked every period in ALARM.

    While instances warm up they count toward the current capacity, so repeated breaches in
    the same step do not add again; a bigger step adds only the difference. Scale-in waits
    until warm-up is over. No cooldown.
    """

    def __init__(
        self,
        alarm: Alarm,
        steps: Sequence[Step],
        adjustment_type: str = CHANGE_IN_CAPACITY,
        min_adjustment_magnitude: int | None = None,
        name: str | None = None,
    ) -> None:
        if adjustment_type not in ADJUSTMENT_TYPES:
            raise ValueError(
                f"adjustment type {adjustment_type!r} is not one of {list(ADJUSTMENT_TYPES)}"
            )
        self.alarm = alarm
        self.monitor = AlarmMonitor(alarm)
        self.steps = check_steps(steps)
        self.adjustment_type = adjustment_type
        self.min_adjustment_magnitude = min_adjustment_magnitude
        self.name = name or f"step-{'out' if alarm.scales_out else 'in'}"

    def evaluate(self, observation: Observation) -> Decision | None:
        metric = observation.metric
        if self.monitor.add(metric) != ALARM or metric is None:
            return None
        step = find_step(self.steps, metric - self.alarm.threshold, self.alarm.scales_out)
        if step is None:
            return None
        warming = observation.warming > 0
        base = observation.ready if warming else observation.desired
        desired = step_adjustment(
            base, self.adjustment_type, step.adjustment, self.min_adjustment_magnitude
        )
        if warming and desired <= observation.desired:
            return None  # same step again, or a scale-in while warming up: wait
        return Decision(desired, self.name, f"{self.alarm.metric_name} {metric:.1f} in step {step}")


class SimpleScalingPolicy(Policy):
    """Simple scaling: one alarm, one adjustment, then wait for the activity to finish plus
    the cooldown (default 300 s) before reacting again."""

    def __init__(
        self,
        alarm: Alarm,
        adjustment: float,
        adjustment_type: str = CHANGE_IN_CAPACITY,
        cooldown: float = 300.0,
        min_adjustment_magnitude: int | None = None,
        name: str | None = None,
    ) -> None:
        if adjustment_type not in ADJUSTMENT_TYPES:
            raise ValueError(
                f"adjustment type {adjustment_type!r} is not one of {list(ADJUSTMENT_TYPES)}"
            )
        if cooldown < 0:
            raise ValueError(f"cooldown {cooldown} must be >= 0 seconds")
        self.alarm = alarm
        self.monitor = AlarmMonitor(alarm)
        self.adjustment = adjustment
        self.adjustment_type = adjustment_type
        self.cooldown = cooldown
        self.min_adjustment_magnitude = min_adjustment_magnitude
        self.name = name or f"simple-{'out' if alarm.scales_out else 'in'}"

    def evaluate(self, observation: Observation) -> Decision | None:
        state = self.monitor.add(observation.metric)
        if state != ALARM or observation.cooldown_active:
            return None
        desired = step_adjustment(
            observation.desired,
            self.adjustment_type,
            self.adjustment,
            self.min_adjustment_magnitude,
        )
        return Decision(
            desired, self.name, f"alarm {self.alarm.metric_name} in ALARM", cooldown=self.cooldown
        )


# --------------------------------------------------------------------------------------------
# Target tracking


class TargetTrackingPolicy(Policy):
    """Target tracking: keep the metric near ``target``; AWS manages the two alarms.

    The high alarm fires when ``high_datapoints`` consecutive datapoints are above target (3 of
    3 one-minute datapoints, as users report), the low alarm when ``low_datapoints`` are more
    than ``scale_in_margin`` below (15 of 15). Warming instances are left out of the metric and
    block scale-in. ``scale_in_cooldown``/``scale_out_cooldown`` are Application Auto
    Scaling's; EC2 uses warm-up only (both 0).
    """

    def __init__(
        self,
        target: float,
        high_datapoints: int = 3,
        low_datapoints: int = 15,
        scale_in_margin: float = 0.1,
        scale_in_cooldown: float = 0.0,
        scale_out_cooldown: float = 0.0,
        disable_scale_in: bool = False,
        name: str | None = None,
    ) -> None:
        if target <= 0:
            raise ValueError(f"target {target} must be positive")
        if high_datapoints < 1 or low_datapoints < 1:
            raise ValueError(f"datapoints ({high_datapoints}, {low_datapoints}) must be at least 1")
        self.target = target
        self.high_datapoints = high_datapoints
        self.low_datapoints = low_datapoints
        self.scale_in_margin = scale_in_margin
        self.scale_in_cooldown = scale_in_cooldown
        self.scale_out_cooldown = scale_out_cooldown
        self.disable_scale_in = disable_scale_in
        self.name = name or f"target-{target:g}"
        self.high_count = 0
        self.low_count = 0
        self.last_scale_out = -math.inf
        self.last_scale_in = -math.inf

    def evaluate(self, observation: Observation) -> Decision | None:
        metric = observation.metric
        hold = Decision(observation.desired, self.name, "within target", holds=True)
        if metric is None:  # no datapoint: both alarms lack data, nothing happens
            return hold
        target = self.target
        self.high_count = self.high_count + 1 if metric > target else 0
        low = metric < target * (1 - self.scale_in_margin)
        self.low_count = self.low_count + 1 if low else 0
        now = observation.now
        if self.high_count >= self.high_datapoints:
            if now - self.last_scale_out < self.scale_out_cooldown:
                return hold
            desired = _ceil(observation.ready * metric / target)
            if desired > observation.desired:
                self.last_scale_out = now
                return Decision(desired, self.name, f"metric {metric:.1f} > target {target:g}")
            return hold
        if (
            self.low_count >= self.low_datapoints
            and not self.disable_scale_in
            and observation.warming == 0
            and now - self.last_scale_in >= self.scale_in_cooldown
            and now - self.last_scale_out >= self.scale_in_cooldown
        ):
            desired = _ceil(observation.desired * metric / target)
            if desired < observation.desired:
                self.last_scale_in = now
                return Decision(desired, self.name, f"metric {metric:.1f} < target {target:g}")
        return hold


# --------------------------------------------------------------------------------------------
# Predictive scaling


class PredictivePolicy(Policy):
    """Predictive scaling, simplified: at the start of each hour, forecast the load as the mean
    of the same hour on up to ``max_days`` past days (needs at least one full day), and raise
    the desired capacity to serve it at ``target`` utilisation. It never scales in.

    ``hour`` and ``day`` are in seconds so a live demo can compress time.
    """

    def __init__(
        self,
        capacity_per_instance: float,
        target: float = 50.0,
        max_days: int = 14,
        hour: float = 3600.0,
        day: float = 86400.0,
        name: str = "predictive",
    ) -> None:
        if capacity_per_instance <= 0 or not 0 < target <= 100:
            raise ValueError(
                f"capacity_per_instance {capacity_per_instance} must be > 0 and target "
                f"{target} in (0, 100]"
            )
        self.capacity_per_instance = capacity_per_instance
        self.target = target
        self.max_days = max_days
        self.hour = hour
        self.day = day
        self.name = name
        self.hourly_sum: dict[int, float] = {}
        self.hourly_count: dict[int, int] = {}
        self.start: float | None = None
        self.forecast_capacity = 0
        self._current_hour: int | None = None

    def forecast(self, hour_index: int) -> float | None:
        """Forecast load (requests/s) for hour ``hour_index`` from the same hour of past days."""
        hours_per_day = round(self.day / self.hour)
        values = []
        for days_back in range(1, self.max_days + 1):
            past = hour_index - days_back * hours_per_day
            if past < 0:
                break
            if self.hourly_count.get(past):
                values.append(self.hourly_sum[past] / self.hourly_count[past])
        return sum(values) / len(values) if values else None

    def evaluate(self, observation: Observation) -> Decision | None:
        if self.start is None:
            self.start = observation.now
        hour_index = int((observation.now - self.start) // self.hour)
        self.hourly_sum[hour_index] = self.hourly_sum.get(hour_index, 0.0) + observation.load
        self.hourly_count[hour_index] = self.hourly_count.get(hour_index, 0) + 1
        if hour_index != self._current_hour:
            self._current_hour = hour_index
            load = self.forecast(hour_index)
            per_instance = self.capacity_per_instance * self.target / 100
            self.forecast_capacity = 0 if load is None else _ceil(load / per_instance)
        if not self.forecast_capacity:
            return None
        return Decision(
            self.forecast_capacity,
            self.name,
            f"forecast needs {self.forecast_capacity} instances this hour",
            holds=self.forecast_capacity <= observation.desired,
        )


#: The policy kinds with alarms (their own, or target tracking's managed pair).
ALARMED_POLICIES = (TargetTrackingPolicy, StepScalingPolicy, SimpleScalingPolicy)


def alarm_states(policies: Iterable[Policy]) -> tuple[bool, bool]:
    """Whether any policy's scale-out alarm (first) and any scale-in alarm (second) is in
    ALARM now: step and simple scaling's own alarms, target tracking's managed pair. What the
    charts mark; the simulator and the live controller both ask this function.

    >>> tracking = TargetTrackingPolicy(50, high_datapoints=1)
    >>> _ = tracking.evaluate(Observation(0, 2, 1, 10, 2, 2, 0, metric=90.0))
    >>> alarm_states([tracking])
    (True, False)
    """
    high = low = False
    for policy in policies:
        if isinstance(policy, TargetTrackingPolicy):
            high = high or policy.high_count >= policy.high_datapoints
            low = low or policy.low_count >= policy.low_datapoints
        elif (
            isinstance(policy, StepScalingPolicy | SimpleScalingPolicy)
            and policy.monitor.state == ALARM
        ):
            if policy.alarm.scales_out:
                high = True
            else:
                low = True
    return high, low
