"""The autoscaling views' static side: the colours and metric rows every chart shares, and
the matplotlib and text fallbacks (no browser needed) of :mod:`deploylab.widgets.autoscale`."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from deploylab.autoscale.simulate import SimulationResult

__all__ = [
    "COLORS",
    "METRIC_ROWS",
    "ChartSeries",
    "autoscale_figure",
    "live_demand",
    "live_figure",
    "metrics_table_text",
]


COLORS = {
    "demand": "#e4572e",
    "in_service": "#2e86ab",
    "desired": "#7a7a7a",
    "pending": "#f3a712",
    "unhealthy": "#a23b72",
    "cpu": "#2e86ab",
    "target": "#29a36a",
    "high": "#d62828",
    "low": "#1d70a2",
}


METRIC_ROWS = (
    ("instance_hours", "instance-hours", "{:,.0f}"),
    ("cost_usd", "cost (USD)", "{:,.2f}"),
    ("slo_violation_fraction", "time violating SLO", "{:.1%}"),
    ("accuracy_under", "under-provisioning accuracy", "{:.2f}"),
    ("accuracy_over", "over-provisioning accuracy", "{:.2f}"),
    ("timeshare_under", "timeshare under", "{:.1%}"),
    ("timeshare_over", "timeshare over", "{:.1%}"),
    ("jitter", "jitter (changes/h)", "{:+.2f}"),
    ("scaling_activities", "scaling activities", "{:,.0f}"),
)


def changes(samples: Sequence[dict]) -> tuple[list, list]:
    """``(t, desired)`` of each scale-out and each scale-in in a live run's samples."""
    ups, downs = [], []
    for before, after in itertools.pairwise(samples):
        if after["desired"] > before["desired"]:
            ups.append((after["t"], after["desired"]))
        elif after["desired"] < before["desired"]:
            downs.append((after["t"], after["desired"]))
    return ups, downs


def live_demand(samples: Sequence[dict], target: float, capacity_rps: float | None) -> list:
    """Instances the offered load needs at the target utilisation."""
    if not capacity_rps:
        return [s["desired"] for s in samples]
    per_instance = capacity_rps * target / 100
    return [int(np.ceil(round(s["offered_rps"] / per_instance, 6))) for s in samples]


class ChartSeries(NamedTuple):
    """What every autoscaling chart draws (bqplot or matplotlib), in the order the drawing
    functions take it: equally long series, and scale-out/in markers as ``(x, desired)``."""

    x: Any
    demand: Any  # instances the load needs
    in_service: Any
    desired: Any
    pending: Any  # pending or warming
    unhealthy: Any
    cpu: Any  # None where no datapoint
    target: float
    alarm_high: Any
    alarm_low: Any
    scale_out: Sequence[tuple[float, float]] = ()
    scale_in: Sequence[tuple[float, float]] = ()

    @classmethod
    def of_result(cls, result: SimulationResult, stride: int = 1) -> ChartSeries:
        """A simulation, time in hours, every ``stride``-th step (markers are all kept)."""
        pick = slice(None, None, stride)
        hours = result.time / 3600
        return cls(
            hours[pick],
            result.demand_instances[pick],
            result.in_service[pick],
            result.desired[pick],
            result.pending[pick],
            result.unhealthy[pick],
            result.cpu[pick],
            result.config.target,
            result.alarm_high[pick],
            result.alarm_low[pick],
            [(t / 3600, b) for t, a, b, _ in result.activities if b > a],
            [(t / 3600, b) for t, a, b, _ in result.activities if b < a],
        )

    @classmethod
    def of_samples(
        cls, samples: Sequence[dict], target: float, capacity_rps: float | None = None
    ) -> ChartSeries:
        """A live run's samples, time in seconds (see :func:`live_demand` for the demand).

        >>> series = ChartSeries.of_samples(
        ...     [{"t": 0, "offered_rps": 50, "in_service": 1, "desired": 1, "warming": 0,
        ...       "unhealthy": 0, "cpu": 40.0, "alarm_high": False, "alarm_low": False},
        ...      {"t": 1, "offered_rps": 90, "in_service": 1, "desired": 2, "warming": 1,
        ...       "unhealthy": 0, "cpu": 90.0, "alarm_high": True, "alarm_low": False}],
        ...     target=50, capacity_rps=100)
        >>> series.demand, series.scale_out
        ([1, 2], [(1, 2)])
        """
        ups, downs = changes(samples)
        return cls(
            [s["t"] for s in samples],
            live_demand(samples, target, capacity_rps),
            [s["in_service"] for s in samples],
            [s["desired"] for s in samples],
            [s["warming"] for s in samples],
            [s["unhealthy"] for s in samples],
            [s["cpu"] for s in samples],
            target,
            [s["alarm_high"] for s in samples],
            [s["alarm_low"] for s in samples],
            ups,
            downs,
        )


def metrics_table_text(table: dict[str, dict[str, float]]) -> str:
    """Policies side by side as plain text (the fallback of the explorer's table)."""
    kinds = list(table)
    lines = [f"{'':<30}" + "".join(f"{kind:>12}" for kind in kinds)]
    for key, label, fmt in METRIC_ROWS:
        lines.append(f"{label:<30}" + "".join(f"{fmt.format(table[k][key]):>12}" for k in kinds))
    return "\n".join(lines)


# ------------------------------------------------------------------------ static fallbacks
def _plot_panels(axes, series: ChartSeries, x_label: str) -> None:
    x, demand, in_service, desired, pending, unhealthy, cpu, target, *_ = series
    alarm_high, alarm_low, ups, downs = (
        series.alarm_high,
        series.alarm_low,
        series.scale_out,
        series.scale_in,
    )
    capacity_ax, state_ax, cpu_ax = axes
    capacity_ax.step(
        x, demand, where="post", color=COLORS["demand"], lw=1, label="demand (instances needed)"
    )
    capacity_ax.step(
        x,
        in_service,
        where="post",
        color=COLORS["in_service"],
        lw=1.3,
        label="capacity (in service)",
    )
    capacity_ax.step(
        x, desired, where="post", color=COLORS["desired"], lw=0.8, ls="--", label="desired"
    )
    if ups:
        capacity_ax.scatter(
            *zip(*ups, strict=True),
            marker="^",
            color=COLORS["high"],
            s=14,
            label="scale out",
            zorder=3,
        )
    if downs:
        capacity_ax.scatter(
            *zip(*downs, strict=True),
            marker="v",
            color=COLORS["low"],
            s=14,
            label="scale in",
            zorder=3,
        )
    capacity_ax.set_ylabel("instances")
    capacity_ax.set_title("demand vs capacity", fontsize=10)
    capacity_ax.legend(fontsize=7, loc="upper left", ncol=3)
    state_ax.step(x, in_service, where="post", color=COLORS["in_service"], label="in service")
    state_ax.step(x, pending, where="post", color=COLORS["pending"], label="pending / warming")
    state_ax.step(x, unhealthy, where="post", color=COLORS["unhealthy"], label="unhealthy")
    state_ax.set_ylabel("instances")
    state_ax.set_title("instances by state", fontsize=10)
    state_ax.legend(fontsize=7, loc="upper left", ncol=3)
    cpu = np.asarray([np.nan if c is None else c for c in cpu], dtype=float)
    cpu_ax.plot(x, cpu, color=COLORS["cpu"], lw=1, label="CPU %")
    cpu_ax.axhline(target, color=COLORS["target"], lw=1, ls="--", label="target")
    x = np.asarray(x)
    high, low = np.asarray(alarm_high, bool), np.asarray(alarm_low, bool)
    cpu_ax.scatter(
        x[high], np.full(high.sum(), 102), marker="s", s=6, color=COLORS["high"], label="high alarm"
    )
    cpu_ax.scatter(
        x[low], np.full(low.sum(), 2), marker="s", s=6, color=COLORS["low"], label="low alarm"
    )
    cpu_ax.set_ylim(0, 106)
    cpu_ax.set_ylabel("CPU %")
    cpu_ax.set_xlabel(x_label)
    cpu_ax.set_title("CPU vs target", fontsize=10)
    cpu_ax.legend(fontsize=7, loc="upper left", ncol=4)


def autoscale_figure(result: SimulationResult, title: str | None = None):
    """The chart of a simulation as a matplotlib figure (no browser needed)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 7), layout="constrained")
    axes = figure.subplots(3, 1, sharex=True)
    _plot_panels(axes, ChartSeries.of_result(result), "hours")
    figure.suptitle(title or f"policy {result.config.policy}", fontsize=11)
    return figure


def live_figure(
    samples: Sequence[dict],
    target: float,
    capacity_rps: float | None = None,
    title: str = "live autoscaling",
):
    """A live run's samples as a matplotlib figure."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 6.5), layout="constrained")
    axes = figure.subplots(3, 1, sharex=True)
    _plot_panels(axes, ChartSeries.of_samples(samples, target, capacity_rps), "seconds")
    figure.suptitle(title, fontsize=11)
    return figure
