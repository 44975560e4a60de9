"""A scaling set-up written as plain data, checked and run by the simulator: what the
autoscaling lab's tuning task grades.

A *tuning* is a dict a learner can write in a notebook cell (so it crosses the grading
boundary as plain data)::

    {
        "min_size": 2, "max_size": 30, "warmup": 180,
        "policies": [
            {"type": "target-tracking", "target": 55},
            {"type": "scheduled", "name": "mornings", "recurrence": "0 7 * * 1-5", "min_size": 6},
        ],
    }

Rule types: ``target-tracking`` (``target``, optional ``disable_scale_in``), ``step``
(``when`` ``"above"``/``"below"``, ``threshold``, ``minutes``, ``steps`` of
``[lower, upper, adjustment]``, optional ``adjustment_type``), ``simple`` (``when``,
``threshold``, ``minutes``, ``adjustment``, optional ``cooldown``) and ``scheduled``
(``name``, ``recurrence``, any of ``min_size``/``max_size``/``desired``).

:func:`missing_rule` is the rule the lesson teaches ("always write both a scale-out and a
scale-in rule"): a dynamic set that can only grow (or only shrink) is rejected, and
:func:`build_tuning` says why.

>>> missing_rule([{"type": "simple", "when": "above", "threshold": 80, "minutes": 5,
...                "adjustment": 1}])
'scale-in'
>>> missing_rule([{"type": "target-tracking", "target": 50}]) is None
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deploylab.autoscale.alarm import Alarm
from deploylab.autoscale.policies import (
    CHANGE_IN_CAPACITY,
    PERCENT_CHANGE_IN_CAPACITY,
    Policy,
    ScheduledAction,
    SimpleScalingPolicy,
    Step,
    StepScalingPolicy,
    TargetTrackingPolicy,
)
from deploylab.autoscale.simulate import SimulationConfig, simulate
from deploylab.autoscale.traces import generate_trace

__all__ = [
    "RULE_TYPES",
    "TUNING_KEYS",
    "TuningError",
    "TuningGoal",
    "TuningReport",
    "build_tuning",
    "evaluate_tuning",
    "missing_rule",
]

#: The rule types a tuning may use, with the keys each accepts (required ones first).
RULE_TYPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "target-tracking": (("target",), ("disable_scale_in",)),
    "step": (("when", "threshold", "minutes", "steps"), ("adjustment_type",)),
    "simple": (("when", "threshold", "minutes", "adjustment"), ("cooldown", "adjustment_type")),
    "scheduled": (("name", "recurrence"), ("min_size", "max_size", "desired")),
}
#: The top-level keys of a tuning.
TUNING_KEYS = ("min_size", "max_size", "warmup", "policies")


class TuningError(ValueError):
    """A tuning that cannot be run; ``reason`` is a short key (``"no-scale-in"``, …)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _direction(rule: dict) -> set[str]:
    """Which ways a dynamic rule moves the group: {"out"}, {"in"}, both, or none."""
    kind = rule.get("type")
    if kind == "target-tracking":
        return {"out"} if rule.get("disable_scale_in") else {"out", "in"}
    if kind in ("step", "simple"):
        return {"out"} if rule.get("when") == "above" else {"in"}
    return set()


def missing_rule(rules: Sequence[dict]) -> str | None:
    """``"scale-in"`` or ``"scale-out"`` when a set of dynamic rules can move the group only
    one way; None when it has both, or no dynamic rule at all (a fixed or scheduled group).

    A set that only scales out never gives instances back (cost grows after every peak); one
    that only scales in never adds them (the SLO breaks at the first peak).

    >>> missing_rule([{"type": "step", "when": "below", "threshold": 30, "minutes": 10,
    ...                "steps": [[None, 0, -1]]}])
    'scale-out'
    >>> missing_rule([{"type": "target-tracking", "target": 50, "disable_scale_in": True}])
    'scale-in'
    >>> missing_rule([{"type": "scheduled", "name": "night", "recurrence": "0 22 * * *",
    ...                "desired": 2}]) is None
    True
    """
    ways: set[str] = set()
    dynamic = False
    for rule in rules:
        moves = _direction(rule) if type(rule) is dict else set()
        dynamic = dynamic or bool(moves)
        ways |= moves
    if not dynamic:
        return None
    if "in" not in ways:
        return "scale-in"
    if "out" not in ways:
        return "scale-out"
    return None


def _number(where: str, value, *, low: float | None = None, whole: bool = False) -> float:
    if type(value) not in (int, float) or value != value:
        raise TuningError("bad-value", f"{where} is {value!r}: expected a number")
    if whole and value != int(value):
        raise TuningError("bad-value", f"{where} is {value!r}: expected a whole number")
    if low is not None and value < low:
        raise TuningError("bad-value", f"{where} is {value!r}: expected at least {low:g}")
    return value


def _alarm(where: str, rule: dict) -> Alarm:
    if rule["when"] not in ("above", "below"):
        raise TuningError(
            "bad-value", f"{where}: when is {rule['when']!r}: expected above or below"
        )
    threshold = _number(f"{where}: threshold", rule["threshold"], low=0)
    minutes = int(_number(f"{where}: minutes", rule["minutes"], low=1, whole=True))
    comparison = ">" if rule["when"] == "above" else "<"
    return Alarm(threshold, comparison, 60.0, minutes)


def _adjustment_type(where: str, rule: dict) -> str:
    kind = rule.get("adjustment_type", CHANGE_IN_CAPACITY)
    if kind not in (CHANGE_IN_CAPACITY, PERCENT_CHANGE_IN_CAPACITY):
        raise TuningError(
            "bad-value",
            f"{where}: adjustment_type {kind!r}: expected ChangeInCapacity or "
            "PercentChangeInCapacity",
        )
    return kind


def _check_sign(where: str, rule: dict, adjustment: float) -> None:
    if (rule["when"] == "above") != (adjustment > 0):
        raise TuningError(
            "wrong-direction",
            f"{where}: a rule for a metric {rule['when']} its threshold must "
            f"{'add' if rule['when'] == 'above' else 'remove'} instances, not adjust by "
            f"{adjustment:g}",
        )


def build_tuning(
    tuning: dict, base: SimulationConfig | None = None
) -> tuple[SimulationConfig, list[Policy]]:
    """The simulator's config and fresh policy objects for ``tuning``.

    Raises
    ------
    TuningError
        For a malformed tuning (the message names the key and value), and with reason
        ``"no-scale-in"``/``"no-scale-out"`` for a dynamic set missing one direction.

    Examples
    --------
    >>> config, policies = build_tuning({"min_size": 2, "max_size": 10, "warmup": 120,
    ...     "policies": [{"type": "target-tracking", "target": 60}]})
    >>> config.min_size, config.warmup, type(policies[0]).__name__
    (2, 120.0, 'TargetTrackingPolicy')
    >>> build_tuning({"min_size": 2, "max_size": 10, "warmup": 120, "policies": [
    ...     {"type": "simple", "when": "above", "threshold": 70, "minutes": 3, "adjustment": 2}]})
    Traceback (most recent call last):
    ...
    deploylab.autoscale.tuning.TuningError: the policies have a scale-out rule but no scale-in rule: the group would never give instances back after a peak; add a rule for a metric below a threshold
    """
    base = base or SimulationConfig()
    if type(tuning) is not dict:
        raise TuningError("bad-value", f"the tuning is {type(tuning).__name__}: expected a dict")
    unknown = sorted(set(tuning) - set(TUNING_KEYS), key=str)
    if unknown:
        raise TuningError(
            "unknown-key", f"unknown key {unknown[0]!r}: expected {', '.join(TUNING_KEYS)}"
        )
    for key in TUNING_KEYS:
        if key not in tuning:
            raise TuningError("missing-key", f"the tuning has no {key!r}")
    min_size = int(_number("min_size", tuning["min_size"], low=0, whole=True))
    max_size = int(_number("max_size", tuning["max_size"], low=1, whole=True))
    if min_size > max_size:
        raise TuningError("bad-value", f"min_size {min_size} is above max_size {max_size}")
    if max_size > base.max_size:
        raise TuningError(
            "bad-value", f"max_size {max_size} is above the account's limit of {base.max_size}"
        )
    warmup = _number("warmup", tuning["warmup"], low=0)
    rules = tuning["policies"]
    if type(rules) is not list:
        raise TuningError("bad-value", "policies must be a list of rules (dicts)")
    policies: list[Policy] = []
    schedule: list[ScheduledAction] = []
    for index, rule in enumerate(rules):
        where = f"policies[{index}]"
        if type(rule) is not dict or rule.get("type") not in RULE_TYPES:
            raise TuningError(
                "bad-value",
                f"{where}: expected a dict whose type is one of {', '.join(RULE_TYPES)}",
            )
        required, optional = RULE_TYPES[rule["type"]]
        for key in required:
            if key not in rule:
                raise TuningError("missing-key", f"{where}: a {rule['type']} rule needs {key!r}")
        extra = sorted(set(rule) - {"type", *required, *optional}, key=str)
        if extra:
            raise TuningError("unknown-key", f"{where}: unknown key {extra[0]!r}")
        try:
            policies_or_action = _build_rule(where, rule)
        except TuningError:
            raise
        except (ValueError, TypeError) as error:
            raise TuningError("bad-value", f"{where}: {error}") from None
        if isinstance(policies_or_action, ScheduledAction):
            schedule.append(policies_or_action)
        else:
            policies.append(policies_or_action)
    missing = missing_rule(rules)
    if missing == "scale-in":
        raise TuningError(
            "no-scale-in",
            "the policies have a scale-out rule but no scale-in rule: the group would never "
            "give instances back after a peak; add a rule for a metric below a threshold",
        )
    if missing == "scale-out":
        raise TuningError(
            "no-scale-out",
            "the policies have a scale-in rule but no scale-out rule: the group could never "
            "grow for a peak; add a rule for a metric above a threshold",
        )
    config = base.with_changes(
        policy="maintain",
        min_size=min_size,
        max_size=max_size,
        warmup=float(warmup),
        initial=min_size,
        scheduled=tuple(schedule),
    )
    return config, policies


def _build_rule(where: str, rule: dict) -> Policy | ScheduledAction:
    kind = rule["type"]
    if kind == "target-tracking":
        target = _number(f"{where}: target", rule["target"], low=1)
        if target > 100:
            raise TuningError("bad-value", f"{where}: target {target:g} is above 100% CPU")
        return TargetTrackingPolicy(
            target, 3, 15, disable_scale_in=bool(rule.get("disable_scale_in", False))
        )
    if kind == "step":
        alarm = _alarm(where, rule)
        steps = []
        if type(rule["steps"]) is not list or not rule["steps"]:
            raise TuningError(
                "bad-value", f"{where}: steps must be a list of [lower, upper, adjustment]"
            )
        for step in rule["steps"]:
            if type(step) not in (list, tuple) or len(step) != 3:
                raise TuningError(
                    "bad-value", f"{where}: step {step!r}: expected [lower, upper, adjustment]"
                )
            lower, upper, adjustment = step
            _check_sign(where, rule, _number(f"{where}: adjustment", adjustment))
            steps.append(Step(lower, upper, adjustment))
        return StepScalingPolicy(alarm, steps, _adjustment_type(where, rule), 1)
    if kind == "simple":
        alarm = _alarm(where, rule)
        adjustment = _number(f"{where}: adjustment", rule["adjustment"])
        _check_sign(where, rule, adjustment)
        cooldown = _number(f"{where}: cooldown", rule.get("cooldown", 300), low=0)
        return SimpleScalingPolicy(
            alarm, adjustment, _adjustment_type(where, rule), cooldown, min_adjustment_magnitude=1
        )
    sizes = {key: rule[key] for key in ("min_size", "max_size", "desired") if key in rule}
    for key, value in sizes.items():
        _number(f"{where}: {key}", value, low=0, whole=True)
    return ScheduledAction(str(rule["name"]), recurrence=str(rule["recurrence"]), **sizes)


@dataclass(frozen=True)
class TuningGoal:
    """What a tuning must achieve on a week of traffic: at most ``slo_limit`` of the minutes
    in violation of the latency SLO, for at most ``budget_usd``; the trace is
    :func:`~deploylab.autoscale.traces.generate_trace` with these parameters."""

    slo_limit: float = 0.01
    budget_usd: float = 20.0
    kind: str = "flash-crowd"
    days: float = 7.0
    base: float = 200.0
    peak: float = 1000.0
    seed: int = 0
    flash_hour: float | None = None
    #: the CPU burst of a fresh instance (see :class:`SimulationConfig`): what warm-up is for
    startup_cpu: float = 0.0
    startup_seconds: float = 0.0

    def environment(self) -> SimulationConfig:
        """The simulator's fixed settings for this goal (a tuning changes only its own keys)."""
        return SimulationConfig(startup_cpu=self.startup_cpu, startup_seconds=self.startup_seconds)

    def trace(self) -> np.ndarray:
        """The goal's traffic (requests/s per minute)."""
        return generate_trace(
            self.kind,
            days=self.days,
            base=self.base,
            peak=self.peak,
            seed=self.seed,
            flash_hour=self.flash_hour,
        )


@dataclass(frozen=True)
class TuningReport:
    """How a tuning did against a goal."""

    slo_violation_fraction: float
    cost_usd: float
    slo_ok: bool
    cost_ok: bool

    @property
    def passed(self) -> bool:
        return self.slo_ok and self.cost_ok


def evaluate_tuning(
    tuning: dict, goal: TuningGoal, base: SimulationConfig | None = None
) -> TuningReport:
    """Simulate ``tuning`` on ``goal``'s trace; raises :class:`TuningError` if it cannot run.

    >>> goal = TuningGoal(days=1, slo_limit=0.05, budget_usd=5)
    >>> tuning = {"min_size": 2, "max_size": 30, "warmup": 120,
    ...           "policies": [{"type": "target-tracking", "target": 50}]}
    >>> evaluate_tuning(tuning, goal).passed
    True
    """
    config, policies = build_tuning(tuning, base or goal.environment())
    result = simulate(goal.trace(), config, policies=policies)
    violations = result.metrics["slo_violation_fraction"]
    cost = result.metrics["cost_usd"]
    return TuningReport(
        round(violations, 6),
        round(cost, 4),
        violations <= goal.slo_limit,
        cost <= goal.budget_usd,
    )
