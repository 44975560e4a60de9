"""The Kubernetes Horizontal Pod Autoscaler's calculation, for contrast with EC2 Auto Scaling.

Follows replica_calculator.go (tolerance, missing metrics) and horizontal.go (stabilization
windows, scale-up limit without ``behavior``, behavior policies). Time is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from deploylab.autoscale.policies import Decision, Observation, Policy


def _ceil(value: float) -> int:
    return math.ceil(round(value, 9))


def hpa_desired(
    current_replicas: int, metrics: Sequence[float | None], target: float, tolerance: float = 0.1
) -> int:
    """Replicas the HPA asks for, before stabilization and min/max.

    ``metrics`` holds one utilisation (percent of the request) per pod, ``None`` where the pod
    reported nothing. Missing pods count as 0% when scaling up and as ``max(100, target)``% when
    scaling down; if that recomputed ratio is within the tolerance or flips direction, nothing
    changes.

    >>> hpa_desired(4, [80] * 4, 50)
    7
    >>> hpa_desired(10, [54] * 10, 50), hpa_desired(10, [56] * 10, 50)
    (10, 12)
    >>> hpa_desired(4, [90, 90, 90, None], 50)
    6
    >>> hpa_desired(4, [20, 20, 20, None], 50)
    4
    """
    if target <= 0:
        raise ValueError(f"target {target} must be positive")
    present = [value for value in metrics if value is not None]
    missing = len(metrics) - len(present)
    if not present:
        return current_replicas  # no metrics at all: the controller skips this round
    usage_ratio = sum(present) / len(present) / target
    if missing == 0:
        if abs(1.0 - usage_ratio) <= tolerance:
            return current_replicas
        return _ceil(usage_ratio * len(present))
    if abs(1.0 - usage_ratio) <= tolerance:
        return current_replicas
    fallback = 0.0 if usage_ratio > 1.0 else max(100.0, target)
    new_ratio = (sum(present) + fallback * missing) / len(metrics) / target
    flips = (usage_ratio < 1.0 < new_ratio) or (usage_ratio > 1.0 > new_ratio)
    if abs(1.0 - new_ratio) <= tolerance or flips:
        return current_replicas
    new_replicas = _ceil(new_ratio * len(metrics))
    if (new_ratio < 1.0 and new_replicas > current_replicas) or (
        new_ratio > 1.0 and new_replicas < current_replicas
    ):
        return current_replicas
    return new_replicas


@dataclass(frozen=True)
class HPAScalingPolicy:
    """One ``behavior`` policy: ``kind`` is ``"Pods"`` or ``"Percent"``, per ``period`` seconds."""

    kind: str
    value: int
    period: float = 15.0

    def __post_init__(self) -> None:
        if self.kind not in ("Pods", "Percent"):
            raise ValueError(f"HPA policy type {self.kind!r} is not 'Pods' or 'Percent'")
        if self.value <= 0 or self.period <= 0:
            raise ValueError(f"HPA policy {self}: value and period must be positive")


@dataclass(frozen=True)
class HPAScalingRules:
    """``behavior.scaleUp`` or ``behavior.scaleDown``."""

    stabilization_window: float
    policies: tuple[HPAScalingPolicy, ...]
    select_policy: str = "Max"  # Max, Min or Disabled


#: The v2 defaults applied when ``behavior`` is set without these fields.
DEFAULT_SCALE_UP = HPAScalingRules(
    0.0, (HPAScalingPolicy("Pods", 4), HPAScalingPolicy("Percent", 100))
)
DEFAULT_SCALE_DOWN = HPAScalingRules(300.0, (HPAScalingPolicy("Percent", 100),))


@dataclass
class HorizontalPodAutoscaler:
    """An HPA with its recommendation history. Call :meth:`step` every sync period (15 s).

    Without ``behavior`` (``use_behavior=False``) scale-down recommendations are stabilized
    over 300 s (the highest wins) and scale-up is capped at ``max(2 × current, 4)``. With it,
    each direction has a stabilization window and rate policies.

    >>> hpa = HorizontalPodAutoscaler(min_replicas=1, max_replicas=10, target=50)
    >>> hpa.step(0, 4, [80] * 4)
    7
    >>> hpa.step(15, 7, [10] * 7)   # wants 2, but 7 was recommended within 300 s
    7
    >>> hpa.step(315, 7, [10] * 7)
    2
    """

    min_replicas: int
    max_replicas: int
    target: float
    tolerance: float = 0.1
    use_behavior: bool = False
    scale_up: HPAScalingRules = DEFAULT_SCALE_UP
    scale_down: HPAScalingRules = DEFAULT_SCALE_DOWN
    downscale_stabilization: float = 300.0
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, int]] = field(default_factory=list)  # (time, replica change)

    def step(self, now: float, current_replicas: int, metrics: Sequence[float | None]) -> int:
        """The replica count to set now."""
        proposal = hpa_desired(current_replicas, metrics, self.target, self.tolerance)
        if self.use_behavior:
            desired = self._with_behavior(now, current_replicas, proposal)
        else:
            desired = self._without_behavior(now, current_replicas, proposal)
        desired = min(max(desired, self.min_replicas), self.max_replicas)
        if desired != current_replicas:
            self.events.append((now, desired - current_replicas))
        return desired

    def _without_behavior(self, now: float, current: int, proposal: int) -> int:
        cutoff = now - self.downscale_stabilization
        self.recommendations = [(t, r) for t, r in self.recommendations if t >= cutoff]
        stabilized = max([proposal] + [r for _, r in self.recommendations])
        self.recommendations.append((now, proposal))
        return min(stabilized, max(2 * current, 4))

    def _with_behavior(self, now: float, current: int, proposal: int) -> int:
        up_cutoff = now - self.scale_up.stabilization_window
        down_cutoff = now - self.scale_down.stabilization_window
        up_recommendation = down_recommendation = proposal
        for t, recommendation in self.recommendations:
            if t > up_cutoff:
                up_recommendation = min(up_recommendation, recommendation)
            if t > down_cutoff:
                down_recommendation = max(down_recommendation, recommendation)
        oldest = min(up_cutoff, down_cutoff)
        self.recommendations = [(t, r) for t, r in self.recommendations if t > oldest]
        self.recommendations.append((now, proposal))
        desired = min(max(current, up_recommendation), down_recommendation)
        if desired > current:
            return min(desired, max(current, self._limit(now, current, up=True)))
        if desired < current:
            return max(desired, min(current, self._limit(now, current, up=False)))
        return current

    def _limit(self, now: float, current: int, up: bool) -> int:
        rules = self.scale_up if up else self.scale_down
        if rules.select_policy == "Disabled":
            return current
        limits = []
        for policy in rules.policies:
            since = now - policy.period
            added = sum(c for t, c in self.events if t > since and c > 0)
            removed = -sum(c for t, c in self.events if t > since and c < 0)
            period_start = current - added + removed  # replicas when the period began
            if up:
                limit = (
                    period_start + policy.value
                    if policy.kind == "Pods"
                    else _ceil(period_start * (1 + policy.value / 100))
                )
            else:
                limit = (
                    period_start - policy.value
                    if policy.kind == "Pods"
                    else int(period_start * (1 - policy.value / 100))
                )
            limits.append(limit)
        most_change = rules.select_policy == "Max"
        if up:
            return max(limits) if most_change else min(limits)
        return min(limits) if most_change else max(limits)


class HPAPolicy(Policy):
    """The HPA as a policy for the simulator and the live controller (see
    :func:`deploylab.autoscale.policies.decide`).

    Every ready instance reports the aggregated metric; instances still starting have no
    metrics yet (*model*: Kubernetes also treats not-ready pods pessimistically on scale-up).
    Stabilization and rate limits come from :class:`HorizontalPodAutoscaler`; the group's
    min/max apply.
    """

    def __init__(
        self, target: float, tolerance: float = 0.1, use_behavior: bool = False, name: str = "hpa"
    ) -> None:
        self.hpa = HorizontalPodAutoscaler(0, 10**9, target, tolerance, use_behavior)
        self.name = name

    def evaluate(self, observation: Observation) -> Decision | None:
        if observation.metric is None:
            return None
        metrics = [observation.metric] * observation.ready + [None] * min(
            observation.warming, max(0, observation.desired - observation.ready)
        )
        if not metrics:
            return None
        desired = self.hpa.step(observation.now, observation.desired, metrics)
        if desired == observation.desired:
            return None
        return Decision(
            desired,
            self.name,
            f"ratio {observation.metric / self.hpa.target:.2f} outside tolerance",
        )
