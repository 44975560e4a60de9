"""Seeded, generated traffic traces (requests/s per step) with the shapes public traces show.

Public traces (World Cup 98 logs, Azure Functions 2019, Wikimedia page views) share three
features: a daily cycle (busy afternoon, quiet night), a weekly cycle (quieter weekends) and
flash crowds (a sudden multiple of normal load that fades over an hour or so), plus noise. No
network is reachable here, so traces are generated from those features instead of downloaded:

- ``diurnal``: daily cycle peaking at 14:00 UTC, trough at 02:00, weekends at 60%, noise.
- ``flash-crowd``: ``diurnal`` plus a flash crowd on day 3 at 11:00 (×3 in 5 minutes, decaying
  with a 45-minute time constant); ``flash_hour`` moves it (hours from the start).
- ``ramp``: load rising linearly from ``base`` to ``peak`` over the trace.
- ``spike``: flat ``base`` with a square spike to ``peak`` in the middle third.
- ``sawtooth``: alternating 20-minute high and low plateaus: what makes autoscalers flap.

Time 0 is a Monday 00:00 UTC (``deploylab.autoscale.policies.EPOCH``).
"""

from __future__ import annotations

import numpy as np

TRACE_KINDS = ("diurnal", "flash-crowd", "ramp", "spike", "sawtooth")


def generate_trace(
    kind: str = "diurnal",
    days: float = 7.0,
    step_seconds: float = 60.0,
    base: float = 200.0,
    peak: float = 1000.0,
    noise: float = 0.05,
    seed: int = 0,
    flash_hour: float | None = None,
) -> np.ndarray:
    """Requests/s at each step of ``days`` days.

    >>> trace = generate_trace("diurnal", days=7)
    >>> len(trace), bool(trace.min() > 0)
    (10080, True)
    >>> bool(trace[14 * 60] > trace[2 * 60])          # Monday 14:00 busier than 02:00
    True
    >>> bool(generate_trace(seed=1)[100] == generate_trace(seed=1)[100])   # seeded
    True
    """
    if kind not in TRACE_KINDS:
        raise ValueError(f"trace kind {kind!r} is not one of {list(TRACE_KINDS)}")
    if days <= 0 or step_seconds <= 0:
        raise ValueError(f"days {days} and step_seconds {step_seconds} must be positive")
    if not 0 < base <= peak:
        raise ValueError(f"need 0 < base ({base}) <= peak ({peak})")
    steps = round(days * 86400 / step_seconds)
    seconds = np.arange(steps) * step_seconds
    hours = seconds / 3600.0
    rng = np.random.default_rng(seed)
    if kind in ("diurnal", "flash-crowd"):
        daily = 0.5 - 0.5 * np.cos(2 * np.pi * (hours - 2.0) / 24.0)  # 0 at 02:00, 1 at 14:00
        weekday = (hours // 24).astype(int) % 7
        weekly = np.where(weekday >= 5, 0.6, 1.0)
        load = (base + (peak - base) * daily) * weekly
        if kind == "flash-crowd":
            start = 2 * 24 + 11.0 if flash_hour is None else float(flash_hour)  # Wed 11:00
            since = hours - start
            rise = np.clip(since / (5 / 60), 0, 1)
            decay = np.exp(-np.clip(since - 5 / 60, 0, None) / 0.75)
            load = load * (1 + 2.0 * np.where(since >= 0, rise * decay, 0.0))
    elif kind == "ramp":
        load = base + (peak - base) * np.linspace(0, 1, steps)
    elif kind == "spike":
        load = np.full(steps, base, dtype=float)
        load[steps // 3 : 2 * steps // 3] = peak
    else:  # sawtooth
        period_steps = max(1, round(1200 / step_seconds))
        high = (np.arange(steps) // period_steps) % 2 == 0
        load = np.where(high, peak, base).astype(float)
    if noise > 0:
        # AR(1) multiplicative noise: neighbouring minutes are alike, as in real traces
        shocks = rng.normal(0.0, noise * 0.6, steps)  # 0.6 = sqrt(1 - 0.8²): stationary sd = noise
        load = load * np.exp(_ar1(shocks, 0.8))
    return load


def _ar1(shocks: np.ndarray, coefficient: float) -> np.ndarray:
    """x[i] = c·x[i-1] + shock[i], computed with a linear filter instead of a Python loop."""
    # closed form with a truncated kernel: c**k is < 1e-9 after ~100 terms for c = 0.8
    kernel = coefficient ** np.arange(100)
    return np.convolve(shocks, kernel)[: len(shocks)]
