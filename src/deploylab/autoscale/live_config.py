"""What a live autoscaling run is: its bounded configuration, the load it offers over time,
and the policy objects it runs (the simulator's own classes, periods in seconds)."""

from __future__ import annotations

from dataclasses import dataclass

from deploylab.autoscale.alarm import Alarm
from deploylab.autoscale.policies import (
    Policy,
    SimpleScalingPolicy,
    Step,
    StepScalingPolicy,
    TargetTrackingPolicy,
)

__all__ = ["LIVE_POLICIES", "LiveConfig", "live_policies", "offered_load"]


LIVE_POLICIES = ("target", "step", "simple")


@dataclass(frozen=True)
class LiveConfig:
    """A bounded live run. Times in seconds of real time (compressed: a 'period' is 0.5 s)."""

    policy: str = "target"
    target: float = 40.0  # CPU % of one core per process
    min_size: int = 1
    max_size: int = 4
    duration: float = 20.0
    period: float = 0.5
    warmup: float = 1.0
    cooldown: float = 2.0
    work_ms: float = 8.0
    low_rps: float = 10.0
    peak_rps: float = 120.0
    kill_at: float | None = None
    high_datapoints: int = 2
    low_datapoints: int = 4
    connections: int = 16
    max_requests: int = 200_000
    startup_timeout: float = 15.0
    drain_timeout: float = 2.0

    def __post_init__(self) -> None:
        if self.policy not in LIVE_POLICIES:
            raise ValueError(f"live policy {self.policy!r} is not one of {list(LIVE_POLICIES)}")
        if not 1 <= self.min_size <= self.max_size <= 16:
            raise ValueError(
                f"min_size {self.min_size} / max_size {self.max_size}: need "
                "1 <= min <= max <= 16 processes"
            )
        if not 0 < self.duration <= 600:
            raise ValueError(f"duration {self.duration} must be in (0, 600] seconds")
        if self.period <= 0 or self.work_ms < 0 or self.peak_rps <= 0:
            raise ValueError("period and peak_rps must be positive and work_ms >= 0")


def offered_load(t: float, config: LiveConfig) -> float:
    """Requests/s the load generator aims for at ``t``: ramp up (0–30%), spike (30–55%),
    drop (55–100% of the run).

    >>> c = LiveConfig(duration=10, low_rps=10, peak_rps=100)
    >>> [round(offered_load(t, c)) for t in (0, 1.5, 4, 8)]
    [10, 32, 100, 10]
    """
    fraction = t / config.duration
    middle = (config.low_rps + config.peak_rps) / 2
    if fraction < 0.3:
        return config.low_rps + (middle - config.low_rps) * fraction / 0.3
    if fraction < 0.55:
        return config.peak_rps
    return config.low_rps


def live_policies(config: LiveConfig) -> list[Policy]:
    """The policy objects of a live run (the simulator's classes, periods in seconds)."""
    if config.policy == "target":
        return [
            TargetTrackingPolicy(
                config.target,
                high_datapoints=config.high_datapoints,
                low_datapoints=config.low_datapoints,
                scale_in_cooldown=config.cooldown,
            )
        ]
    high = min(95.0, config.target + 30)
    low = config.target / 2
    out_alarm = Alarm(high, ">", config.period, config.high_datapoints)
    in_alarm = Alarm(low, "<", config.period, config.low_datapoints)
    if config.policy == "step":
        return [
            StepScalingPolicy(out_alarm, [Step(0, 15, 1), Step(15, None, 2)]),
            StepScalingPolicy(in_alarm, [Step(None, 0, -1)]),
        ]
    return [
        SimpleScalingPolicy(out_alarm, 1, cooldown=config.cooldown),
        SimpleScalingPolicy(in_alarm, -1, cooldown=config.cooldown),
    ]
