"""A trace-driven, discrete-time simulation of an Auto Scaling group and its policies.

Each step: instances boot and warm up (:class:`AutoScalingGroup`), scheduled actions and
injected failures happen, the load of the step is spread over in-service instances, their CPU
becomes the policy metric, and the same policy objects the live controller uses decide.
Latency, SLO violations, cost and the elasticity metrics are computed afterwards with numpy,
so the per-step loop stays small (a week at one-minute steps runs in well under 0.2 s).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import numpy.typing as npt

from deploylab.autoscale.alarm import Alarm
from deploylab.autoscale.elasticity import elasticity_metrics
from deploylab.autoscale.group import AutoScalingGroup, LaunchTemplate
from deploylab.autoscale.hpa import HPAPolicy
from deploylab.autoscale.policies import (
    ALARMED_POLICIES,
    PERCENT_CHANGE_IN_CAPACITY,
    Policy,
    PredictivePolicy,
    SimpleScalingPolicy,
    Step,
    StepScalingPolicy,
    TargetTrackingPolicy,
    alarm_states,
    decide,
)
from deploylab.autoscale.schedule import ScheduledAction, check_schedule

#: Policy set-ups the simulator (and its sliders and CLI) can build by name.
POLICY_KINDS = ("target", "step", "simple", "scheduled", "predictive", "hpa", "maintain")


@dataclass(frozen=True)
class SimulationConfig:
    """Everything one run needs besides the trace. Times in seconds.

    ``target`` is the CPU target of target tracking (and of predictive scaling);
    ``cooldown`` is simple scaling's cooldown and target tracking's scale-in cooldown (as
    Application Auto Scaling has; EC2 target tracking relies on warm-up alone: set 0);
    ``scale_out_threshold``/``scale_in_threshold`` are the step and simple policies' alarms
    ("CPU above 80% for 5 minutes" / "below 30% for 5 minutes"). ``failures`` lists
    ``(time, how many in-service instances fail)``. ``startup_cpu``/``startup_seconds`` model
    the CPU burst of a fresh instance (JIT, cache warming): for its first ``startup_seconds``
    in service it reports at least ``startup_cpu``%. A warm-up shorter than that lets the burst
    into the metric and causes over-scaling.
    """

    policy: str = "target"
    target: float = 50.0
    cooldown: float = 300.0
    warmup: float = 300.0
    min_size: int = 2
    max_size: int = 30
    initial: int | None = None
    capacity: float = 100.0
    boot_time: float = 120.0
    step_seconds: float = 60.0
    scale_out_threshold: float = 80.0
    scale_in_threshold: float = 30.0
    alarm_minutes: int = 5
    health_check_grace: float = 300.0
    base_latency_ms: float = 50.0
    slo_ms: float = 200.0
    hourly_price: float = 0.0104
    startup_cpu: float = 0.0
    startup_seconds: float = 0.0
    failures: tuple[tuple[float, int], ...] = ()
    scheduled: tuple[ScheduledAction, ...] | None = None
    availability_zones: tuple[str, ...] = ("us-east-1a", "us-east-1b", "us-east-1c")

    def __post_init__(self) -> None:
        if self.policy not in POLICY_KINDS:
            raise ValueError(f"policy {self.policy!r} is not one of {list(POLICY_KINDS)}")
        if not 0 <= self.min_size <= self.max_size:
            raise ValueError(
                f"min_size {self.min_size} / max_size {self.max_size}: need 0 <= min <= max"
            )
        if self.slo_ms <= self.base_latency_ms:
            raise ValueError(
                f"slo_ms {self.slo_ms} must exceed base_latency_ms {self.base_latency_ms}"
            )
        if self.step_seconds <= 0 or self.capacity <= 0:
            raise ValueError(
                f"step_seconds {self.step_seconds} and capacity {self.capacity} must be positive"
            )

    def with_changes(self, **changes) -> SimulationConfig:
        return replace(self, **changes)


def build_policies(config: SimulationConfig, demand: np.ndarray | None = None) -> list[Policy]:
    """The policy objects for ``config.policy`` (fresh ones: policies keep alarm history)."""
    minutes = max(1, round(config.alarm_minutes * 60 / config.step_seconds))
    out_alarm = Alarm(config.scale_out_threshold, ">", config.step_seconds, minutes)
    in_alarm = Alarm(config.scale_in_threshold, "<", config.step_seconds, minutes)
    per_minute = 60 / config.step_seconds
    if config.policy in ("target", "predictive"):
        policies: list[Policy] = [
            TargetTrackingPolicy(
                config.target,
                high_datapoints=max(1, round(3 * per_minute)),
                low_datapoints=max(1, round(15 * per_minute)),
                scale_in_cooldown=config.cooldown,
            )
        ]
        if config.policy == "predictive":
            policies.append(PredictivePolicy(config.capacity, config.target))
        return policies
    if config.policy == "step":
        return [
            StepScalingPolicy(
                out_alarm,
                [Step(0, 10, 10), Step(10, None, 30)],
                PERCENT_CHANGE_IN_CAPACITY,
                min_adjustment_magnitude=1,
            ),
            StepScalingPolicy(
                in_alarm,
                [Step(-10, 0, -10), Step(None, -10, -30)],
                PERCENT_CHANGE_IN_CAPACITY,
                min_adjustment_magnitude=1,
            ),
        ]
    if config.policy == "hpa":
        return [HPAPolicy(config.target)]
    if config.policy == "simple":
        return [
            SimpleScalingPolicy(out_alarm, 1, cooldown=config.cooldown),
            SimpleScalingPolicy(in_alarm, -1, cooldown=config.cooldown),
        ]
    return []  # "scheduled" and "maintain": no dynamic policy


def default_schedule(config: SimulationConfig, demand: np.ndarray) -> tuple[ScheduledAction, ...]:
    """Business-hours schedule sized from the trace: at 08:00 raise min to what the busiest
    5% of minutes need at the target; at 22:00 drop back."""
    busy = float(np.percentile(demand, 95))
    day_size = min(
        config.max_size,
        max(config.min_size, math.ceil(busy / (config.capacity * config.target / 100))),
    )
    return (
        ScheduledAction("business-hours", recurrence="0 8 * * *", min_size=day_size),
        ScheduledAction(
            "night", recurrence="0 22 * * *", min_size=config.min_size, desired=config.min_size
        ),
    )


@dataclass
class SimulationResult:
    """Per-step series (numpy arrays), scaling activities and summary metrics of one run."""

    config: SimulationConfig
    time: np.ndarray
    demand: np.ndarray  # requests/s
    demand_instances: np.ndarray  # instances needed to meet the SLO
    desired: np.ndarray
    in_service: np.ndarray
    pending: np.ndarray
    unhealthy: np.ndarray
    cpu: np.ndarray  # real utilisation of in-service instances
    latency_ms: np.ndarray
    slo_violation: np.ndarray
    alarm_high: np.ndarray
    alarm_low: np.ndarray
    metric: np.ndarray | None = None  # what the policies saw (NaN = no datapoint)
    activities: list[tuple[float, int, int, str]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def series(self) -> dict[str, list]:
        """The per-step series as plain lists (for JSON and widgets)."""
        names = (
            "time",
            "demand",
            "demand_instances",
            "desired",
            "in_service",
            "pending",
            "unhealthy",
            "cpu",
            "latency_ms",
            "slo_violation",
            "alarm_high",
            "alarm_low",
        )
        return {name: getattr(self, name).tolist() for name in names}

    def as_dict(self) -> dict:
        return {
            "config": _config_dict(self.config),
            "metrics": self.metrics,
            "activities": [
                {"time": t, "from": a, "to": b, "cause": c} for t, a, b, c in self.activities
            ],
        }


def _config_dict(config: SimulationConfig) -> dict:
    data = asdict(config)
    data["scheduled"] = (
        None
        if config.scheduled is None
        else [
            {k: v for k, v in asdict(action).items() if k != "epoch"} for action in config.scheduled
        ]
    )
    return data


def simulate(
    trace: npt.ArrayLike,
    config: SimulationConfig | None = None,
    *,
    policies: Sequence[Policy] | None = None,
    **changes,
) -> SimulationResult:
    """Run the group and its policies over ``trace`` (requests/s per step).

    ``policies`` (fresh objects: they keep alarm history) replaces the set
    ``config.policy`` names, for set-ups the names do not cover (see
    :mod:`deploylab.autoscale.tuning`).

    >>> from deploylab.autoscale.traces import generate_trace
    >>> result = simulate(generate_trace("diurnal", days=1), policy="target", target=50)
    >>> bool(result.in_service.max() > result.in_service.min())   # it scaled
    True
    >>> bool((result.desired >= 2).all() and (result.desired <= 30).all())
    True
    """
    config = replace(config or SimulationConfig(), **changes)
    demand = np.asarray(trace, dtype=float)
    if demand.ndim != 1 or len(demand) == 0:
        raise ValueError(f"trace must be a non-empty 1-D series of requests/s, got {demand.shape}")
    if (demand < 0).any():
        raise ValueError("trace has negative requests/s")
    steps = len(demand)
    dt = config.step_seconds
    capacity = config.capacity
    template = LaunchTemplate(
        capacity=capacity, boot_time=config.boot_time, hourly_price=config.hourly_price
    )
    initial = config.min_size if config.initial is None else config.initial
    initial = min(max(initial, config.min_size), config.max_size)
    # the initial fleet has been running since before the trace starts
    group = AutoScalingGroup(
        template,
        config.min_size,
        config.max_size,
        initial,
        config.availability_zones,
        config.health_check_grace,
        config.cooldown,
        config.warmup,
        now=-config.boot_time - config.warmup - dt,
    )
    group.step(-config.warmup - dt)
    group.step(-dt)
    policies = build_policies(config, demand) if policies is None else list(policies)
    schedule = config.scheduled
    if schedule is None:
        schedule = default_schedule(config, demand) if config.policy == "scheduled" else ()
    actions_at: dict[int, list[ScheduledAction]] = {}
    for action in check_schedule(schedule, 0, steps * dt):
        for when in action.fire_times(0, steps * dt):
            actions_at.setdefault(int(when // dt), []).append(action)
    failures_at: dict[int, int] = {}
    for when, count in config.failures:
        index = int(when // dt)
        if 0 <= index < steps:
            failures_at[index] = failures_at.get(index, 0) + count

    desired = np.empty(steps, dtype=np.int32)
    in_service = np.empty(steps, dtype=np.int32)
    pending = np.empty(steps, dtype=np.int32)
    unhealthy = np.empty(steps, dtype=np.int32)
    metric_seen = np.full(steps, np.nan)
    alarm_high = np.zeros(steps, dtype=bool)
    alarm_low = np.zeros(steps, dtype=bool)
    activities: list[tuple[float, int, int, str]] = []
    demand_list = demand.tolist()
    # the policies that have alarms to mark on the chart (the per-step loop asks only these)
    watched = [p for p in policies if isinstance(p, ALARMED_POLICIES)]
    startup_cpu, startup_seconds, warmup = (
        config.startup_cpu,
        config.startup_seconds,
        config.warmup,
    )

    for i in range(steps):
        now = i * dt
        group.step(now)
        if i in actions_at:
            for action in actions_at[i]:
                group.update_size(
                    now,
                    action.desired,
                    action.min_size,
                    action.max_size,
                    cause=f"scheduled action {action.name}",
                )
        if i in failures_at:
            victims = [inst.id for inst in group.instances if inst.state == "InService"]
            for instance_id in victims[: failures_at[i]]:
                group.mark_unhealthy(instance_id, now)
        serving = group._in_service
        load = demand_list[i]
        observation = group.observe(now, None, load)
        if observation.ready > 0:
            cpu_now = min(100.0, 100.0 * load / (serving * capacity))
            if startup_cpu > cpu_now:
                bursting = 0
                for x in group.instances:
                    since = x.in_service_time
                    if since is None or x.state != "InService":
                        continue
                    if warmup <= now - since < startup_seconds:
                        bursting += 1
                cpu_now += bursting * (startup_cpu - cpu_now) / observation.ready
            observation.metric = cpu_now
            metric_seen[i] = cpu_now
        before = group.desired_capacity
        decision = decide(policies, observation) if policies else None
        if decision is not None:
            after = group.apply(decision, now)
            if after != before:
                activities.append((now, before, after, decision.policy))
        desired[i] = group.desired_capacity
        in_service[i] = group._in_service
        pending[i] = len(group._pending)
        unhealthy[i] = len(group._unhealthy)
        if watched:
            high, low = alarm_states(watched)
            if high:
                alarm_high[i] = True
            if low:
                alarm_low[i] = True

    # Everything per-step below is vectorised.
    time = np.arange(steps) * dt
    served_capacity = in_service * capacity
    with np.errstate(divide="ignore", invalid="ignore"):
        utilisation = np.where(
            served_capacity > 0, demand / np.maximum(served_capacity, 1e-9), np.inf
        )
    cpu = np.minimum(utilisation, 1.0) * 100
    timeout_ms = 10 * config.slo_ms
    with np.errstate(divide="ignore"):
        latency = np.where(
            utilisation < 1.0, config.base_latency_ms / (1.0 - utilisation), timeout_ms
        )
    latency = np.minimum(latency, timeout_ms)
    slo_violation = latency > config.slo_ms
    slo_utilisation = 1.0 - config.base_latency_ms / config.slo_ms
    demand_instances = np.ceil(np.round(demand / (capacity * slo_utilisation), 9)).astype(int)
    billed = in_service + pending + unhealthy
    instance_hours = float(billed.sum() * dt / 3600)
    elasticity = elasticity_metrics(demand_instances, in_service, step=dt / 3600)
    metrics = {
        "steps": steps,
        "hours": steps * dt / 3600,
        "instance_hours": instance_hours,
        "cost_usd": instance_hours * config.hourly_price,
        "slo_violation_fraction": float(slo_violation.mean()),
        "dropped_requests": float((np.clip(demand - served_capacity, 0, None) * dt).sum()),
        "mean_cpu": float(cpu.mean()),
        "max_instances": int(in_service.max()),
        "scaling_activities": len(activities),
        **elasticity,
    }
    return SimulationResult(
        config,
        time,
        demand,
        demand_instances,
        desired,
        in_service,
        pending,
        unhealthy,
        cpu,
        latency,
        slo_violation,
        alarm_high,
        alarm_low,
        metric=metric_seen,
        activities=activities,
        metrics=metrics,
    )


def compare_policies(
    trace: Sequence[float],
    kinds: Sequence[str] = POLICY_KINDS,
    config: SimulationConfig | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of several policy kinds on the same trace, keyed by kind."""
    base = config or SimulationConfig()
    return {kind: simulate(trace, base, policy=kind).metrics for kind in kinds}
