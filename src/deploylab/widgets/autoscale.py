"""Autoscaling views: bqplot time series of a simulated or live run, sliders that re-run the
simulator, and matplotlib fallbacks for contexts without a browser.

- :class:`AutoscaleChart` — demand vs capacity (with scaling activities as markers), instances
  by state, CPU against the target (with alarm states as markers).
- :class:`AutoscaleExplorer` — policy/trace/target/cooldown/warm-up/min/max controls; every
  change re-runs :func:`deploylab.autoscale.simulate` and shows every policy's metrics side by
  side on the same trace.
- :func:`live_chart` — an :class:`AutoscaleChart` fed by a live autoscaler's ``sample`` events.
- :func:`autoscale_figure`, :func:`live_figure`, :func:`metrics_table_text` — static fallbacks,
  in :mod:`deploylab.widgets.autoscale_figures` (importable from here too).
"""

from __future__ import annotations

import html
import pathlib
import threading
import time
from collections.abc import Sequence

import anywidget
import bqplot
import ipywidgets as widgets
import numpy as np

from deploylab.autoscale.simulate import (
    POLICY_KINDS,
    SimulationConfig,
    SimulationResult,
    simulate,
)
from deploylab.autoscale.traces import TRACE_KINDS, generate_trace
from deploylab.events import EventBus
from deploylab.widgets.autoscale_figures import (
    COLORS,
    METRIC_ROWS,
    autoscale_figure,
    live_demand,
    live_figure,
    metrics_table_text,
)
from deploylab.widgets.autoscale_figures import changes as _changes
from deploylab.widgets.labels import widget_labels
from deploylab.widgets.slider_names import SliderNames

__all__ = [
    "AutoscaleChart",
    "AutoscaleExplorer",
    "PlotFit",
    "autoscale_figure",
    "live_chart",
    "live_demand",
    "live_figure",
    "metrics_table_html",
    "metrics_table_text",
    "run_live_with_chart",
]


class PlotFit(anywidget.AnyWidget):
    """Invisible helper: keeps the bqplot figures of autoscaling charts inside a page that got
    narrower while they were scrolled out of view (see plot_fit.js).

    >>> PlotFit().layout.display is None  # it hides itself in the browser, not in Python
    True
    """

    _esm = pathlib.Path(__file__).with_name("plot_fit.js")
    _css = pathlib.Path(__file__).with_name("theme.css")


def _figure(title: str, y_label: str, marks, x_scale, y_scale, x_label: str, height: int):
    axes = [
        bqplot.Axis(scale=x_scale, label=x_label, grid_lines="none"),
        bqplot.Axis(scale=y_scale, orientation="vertical", label=y_label, grid_lines="dashed"),
    ]
    return bqplot.Figure(
        marks=marks,
        axes=axes,
        title=title,
        animation_duration=0,
        fig_margin={"top": 30, "bottom": 35, "left": 55, "right": 15},
        layout=widgets.Layout(height=f"{height}px", width="100%"),
    )


def _legend(items: Sequence[tuple[str, str, str]]) -> widgets.HTML:
    """A one-line legend (HTML, so it never covers the data): (label, colour, shape)."""
    shapes = {
        "line": "display:inline-block;width:16px;height:3px;vertical-align:middle",
        "up": "display:inline-block;width:0;height:0;border-left:5px solid transparent;"
        "border-right:5px solid transparent;border-bottom:9px solid {c}",
        "down": "display:inline-block;width:0;height:0;border-left:5px solid transparent;"
        "border-right:5px solid transparent;border-top:9px solid {c}",
        "square": "display:inline-block;width:8px;height:8px",
    }
    parts = []
    for label, color, shape in items:
        style = shapes[shape].format(c=color)
        if shape in ("line", "square"):
            style += f";background:{color}"
        parts.append(
            f"<span style='margin-right:14px'><span style='{style}'></span> "
            f"{html.escape(label)}</span>"
        )
    return widgets.HTML(
        f"<div class='dl-autoscale-legend' style='font-size:11px;"
        f"margin-left:60px'>{''.join(parts)}</div>"
    )


class AutoscaleChart(widgets.VBox):
    """Three stacked bqplot panels sharing a time axis.

    >>> chart = AutoscaleChart()
    >>> from deploylab.autoscale import simulate
    >>> chart.show_result(simulate([100.0] * 30 + [900.0] * 90, policy="target"))
    >>> int(max(chart.capacity_lines.y[1]))       # in-service instances went up
    18
    >>> "dl-autoscale-chart" in chart._dom_classes
    True
    """

    def __init__(self, x_label: str = "hours", height: int = 200) -> None:
        x_scale = bqplot.LinearScale()
        count_scale = bqplot.LinearScale(min=0)
        state_scale = bqplot.LinearScale(min=0)
        cpu_scale = bqplot.LinearScale(min=0, max=105)
        self.x_label = x_label
        self.capacity_lines = bqplot.Lines(
            x=[0],
            y=[[0], [0], [0]],
            scales={"x": x_scale, "y": count_scale},
            colors=[COLORS["demand"], COLORS["in_service"], COLORS["desired"]],
            labels=["demand (instances needed)", "capacity (in service)", "desired"],
            line_style="solid",
            interpolation="step-after",
            display_legend=False,
            stroke_width=1.5,
        )
        self.scale_out_marks = bqplot.Scatter(
            x=[],
            y=[],
            scales={"x": x_scale, "y": count_scale},
            marker="triangle-up",
            colors=[COLORS["high"]],
            default_size=18,
            labels=["scale out"],
            display_legend=False,
        )
        self.scale_in_marks = bqplot.Scatter(
            x=[],
            y=[],
            scales={"x": x_scale, "y": count_scale},
            marker="triangle-down",
            colors=[COLORS["low"]],
            default_size=18,
            labels=["scale in"],
            display_legend=False,
        )
        self.state_lines = bqplot.Lines(
            x=[0],
            y=[[0], [0], [0]],
            scales={"x": x_scale, "y": state_scale},
            colors=[COLORS["in_service"], COLORS["pending"], COLORS["unhealthy"]],
            labels=["in service", "pending / warming", "unhealthy"],
            interpolation="step-after",
            display_legend=False,
            stroke_width=1.5,
        )
        self.cpu_lines = bqplot.Lines(
            x=[0],
            y=[[0], [0]],
            scales={"x": x_scale, "y": cpu_scale},
            colors=[COLORS["cpu"], COLORS["target"]],
            labels=["CPU %", "target"],
            line_style="solid",
            display_legend=False,
            stroke_width=1.5,
        )
        self.high_alarm_marks = bqplot.Scatter(
            x=[],
            y=[],
            scales={"x": x_scale, "y": cpu_scale},
            marker="square",
            colors=[COLORS["high"]],
            default_size=12,
            labels=["high alarm"],
            display_legend=False,
        )
        self.low_alarm_marks = bqplot.Scatter(
            x=[],
            y=[],
            scales={"x": x_scale, "y": cpu_scale},
            marker="square",
            colors=[COLORS["low"]],
            default_size=12,
            labels=["low alarm"],
            display_legend=False,
        )
        self.capacity_figure = _figure(
            "demand vs capacity",
            "instances",
            [self.capacity_lines, self.scale_out_marks, self.scale_in_marks],
            x_scale,
            count_scale,
            x_label,
            height,
        )
        self.state_figure = _figure(
            "instances by state",
            "instances",
            [self.state_lines],
            x_scale,
            state_scale,
            x_label,
            int(height * 0.8),
        )
        self.cpu_figure = _figure(
            "CPU vs target",
            "CPU %",
            [self.cpu_lines, self.high_alarm_marks, self.low_alarm_marks],
            x_scale,
            cpu_scale,
            x_label,
            int(height * 0.9),
        )
        super().__init__(
            [
                _legend(
                    [
                        ("demand (instances needed)", COLORS["demand"], "line"),
                        ("capacity (in service)", COLORS["in_service"], "line"),
                        ("desired", COLORS["desired"], "line"),
                        ("scale out", COLORS["high"], "up"),
                        ("scale in", COLORS["low"], "down"),
                    ]
                ),
                self.capacity_figure,
                _legend(
                    [
                        ("in service", COLORS["in_service"], "line"),
                        ("pending / warming", COLORS["pending"], "line"),
                        ("unhealthy", COLORS["unhealthy"], "line"),
                    ]
                ),
                self.state_figure,
                _legend(
                    [
                        ("CPU %", COLORS["cpu"], "line"),
                        ("target", COLORS["target"], "line"),
                        ("high alarm", COLORS["high"], "square"),
                        ("low alarm", COLORS["low"], "square"),
                    ]
                ),
                self.cpu_figure,
                PlotFit(),  # a figure out of view shrinks with the page too
            ]
        )
        self.add_class("dl-autoscale-chart")

    def show_series(
        self,
        x,
        demand,
        in_service,
        desired,
        pending,
        unhealthy,
        cpu,
        target,
        alarm_high,
        alarm_low,
        scale_out=(),
        scale_in=(),
    ) -> None:
        """Replace every series (sequences of equal length; markers as (x, y) pairs)."""
        x = np.asarray(x, dtype=float)
        cpu = np.asarray([np.nan if c is None else c for c in cpu], dtype=float)
        alarm_high = np.asarray(alarm_high, dtype=bool)
        alarm_low = np.asarray(alarm_low, dtype=bool)
        with (
            self.capacity_lines.hold_sync(),
            self.state_lines.hold_sync(),
            self.cpu_lines.hold_sync(),
        ):
            self.capacity_lines.x = x
            self.capacity_lines.y = np.vstack([demand, in_service, desired]).astype(float)
            self.state_lines.x = x
            self.state_lines.y = np.vstack([in_service, pending, unhealthy]).astype(float)
            self.cpu_lines.x = x
            self.cpu_lines.y = np.vstack(
                [np.nan_to_num(cpu, nan=0.0), np.full(len(x), float(target))]
            )
        self.high_alarm_marks.x, self.high_alarm_marks.y = (
            x[alarm_high],
            np.full(int(alarm_high.sum()), 102.0),
        )
        self.low_alarm_marks.x, self.low_alarm_marks.y = (
            x[alarm_low],
            np.full(int(alarm_low.sum()), 2.0),
        )
        out = np.asarray(list(scale_out), dtype=float).reshape(-1, 2)
        down = np.asarray(list(scale_in), dtype=float).reshape(-1, 2)
        self.scale_out_marks.x, self.scale_out_marks.y = out[:, 0], out[:, 1]
        self.scale_in_marks.x, self.scale_in_marks.y = down[:, 0], down[:, 1]

    def show_result(self, result: SimulationResult, max_points: int = 2000) -> None:
        """Draw a simulation (time in hours), thinned to at most ``max_points`` per series."""
        stride = max(1, len(result.time) // max_points)
        pick = slice(None, None, stride)
        hours = result.time / 3600
        out = [(t / 3600, b) for t, a, b, _ in result.activities if b > a]
        down = [(t / 3600, b) for t, a, b, _ in result.activities if b < a]
        self.show_series(
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
            out,
            down,
        )

    def show_samples(
        self, samples: Sequence[dict], target: float, capacity_rps: float | None = None
    ) -> None:
        """Draw a live run's samples (time in seconds). Demand in instances is the offered
        load over what one process serves at the target (``capacity_rps`` = requests/s at
        100% CPU); without it the desired capacity stands in."""
        if not samples:
            return
        x = [s["t"] for s in samples]
        ups, downs = _changes(samples)
        self.show_series(
            x,
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


def metrics_table_html(table: dict[str, dict[str, float]], selected: str | None = None) -> str:
    kinds = list(table)
    head = "".join(
        f"<th style='padding:2px 8px;{'background:var(--jp-layout-color2, #e8f1f8)' if k == selected else ''}'>"
        f"{html.escape(k)}</th>"
        for k in kinds
    )
    rows = []
    for key, label, fmt in METRIC_ROWS:
        best = min(table[k][key] for k in kinds) if key != "jitter" else None
        cells = "".join(
            f"<td style='text-align:right;padding:2px 8px;"
            f"{'background:var(--jp-layout-color2, #e8f1f8);' if k == selected else ''}"
            f"{'font-weight:bold' if best is not None and table[k][key] == best else ''}'>"
            f"{fmt.format(table[k][key])}</td>"
            for k in kinds
        )
        rows.append(f"<tr><td>{html.escape(label)}</td>{cells}</tr>")
    return (
        f"<table class='dl-autoscale-metrics' style='border-collapse:collapse;"
        f"font-size:12px'><tr><th></th>{head}</tr>{''.join(rows)}</table>"
        "<div style='font-size:11px;color:var(--jp-ui-font-color2, #666)'>bold = lowest in the row; accuracies are "
        "mean instances missing / extra; jitter &lt; 0 lags demand, &gt; 0 oscillates</div>"
    )


class AutoscaleExplorer(widgets.VBox):
    """Sliders over the simulator: every change re-runs the chosen policy (drawn) and every
    policy kind (tabled side by side) on the same trace.

    >>> explorer = AutoscaleExplorer(days=1)
    >>> explorer.policy.value, sorted(explorer.table)[:2]
    ('target', ['hpa', 'maintain'])
    >>> explorer.target.value = 70
    >>> explorer.result.config.target
    70
    """

    def __init__(
        self,
        trace: str = "flash-crowd",
        days: float = 7.0,
        policy: str = "target",
        config: SimulationConfig | None = None,
    ) -> None:
        base = config or SimulationConfig()
        words = widget_labels("autoscale")
        style = {"description_width": "80px"}
        slider = {
            "continuous_update": False,
            "style": style,
            "layout": widgets.Layout(width="320px"),
        }
        self.days = days
        self.policy = widgets.Dropdown(
            options=POLICY_KINDS,
            value=policy,
            description=words.get("policy", "policy"),
            style=style,
        )
        self.trace = widgets.Dropdown(
            options=TRACE_KINDS, value=trace, description=words.get("trace", "trace"), style=style
        )
        self.target = widgets.IntSlider(
            int(base.target),
            min=10,
            max=95,
            description=words.get("target %", "target %"),
            **slider,
        )
        self.cooldown = widgets.IntSlider(
            int(base.cooldown),
            min=0,
            max=1800,
            step=30,
            description=words.get("cooldown s", "cooldown s"),
            **slider,
        )
        self.warmup = widgets.IntSlider(
            int(base.warmup),
            min=0,
            max=1800,
            step=30,
            description=words.get("warm-up s", "warm-up s"),
            **slider,
        )
        self.min_size = widgets.IntSlider(
            base.min_size, min=0, max=20, description=words.get("min", "min"), **slider
        )
        self.max_size = widgets.IntSlider(
            base.max_size, min=1, max=60, description=words.get("max", "max"), **slider
        )
        self.status = widgets.HTML()
        self.metrics = widgets.HTML()
        self.chart = AutoscaleChart()
        self.base = base
        self._traces: dict[str, np.ndarray] = {}
        self._table_key = None
        self.table: dict[str, dict[str, float]] = {}
        controls = widgets.VBox(
            [
                self.policy,
                self.trace,
                self.target,
                self.cooldown,
                self.warmup,
                self.min_size,
                self.max_size,
                self.status,
            ]
        )
        # Controls keep their width and the table wraps under them on a narrow page, instead
        # of the controls being squeezed (they were 40 px wide at 1024 px).
        controls.layout = widgets.Layout(flex="0 0 auto", min_width="330px")
        self.metrics.layout = widgets.Layout(flex="1 1 360px", min_width="0", overflow_x="auto")
        super().__init__(
            [
                widgets.HBox([controls, self.metrics], layout=widgets.Layout(flex_flow="row wrap")),
                self.chart,
                SliderNames(),  # gives the sliders accessible names in the browser
            ]
        )
        self.add_class("dl-autoscale-explorer")
        for control in (
            self.policy,
            self.trace,
            self.target,
            self.cooldown,
            self.warmup,
            self.min_size,
            self.max_size,
        ):
            control.observe(self._changed, names="value")
        self.rerun()

    def _changed(self, _change=None) -> None:
        self.rerun()

    def current_config(self) -> SimulationConfig:
        low, high = sorted((self.min_size.value, self.max_size.value))
        return self.base.with_changes(
            policy=self.policy.value,
            target=self.target.value,
            cooldown=self.cooldown.value,
            warmup=self.warmup.value,
            min_size=low,
            max_size=max(high, 1),
        )

    def add_flash_crowd(self, factor: float = 5.0, minutes: int = 45) -> None:
        """Multiply the current trace by ``factor`` for ``minutes`` around its middle (a flash
        crowd, as the instructor's demo button does) and re-run; the other traces keep theirs.

        >>> explorer = AutoscaleExplorer(trace="diurnal", days=1)
        >>> before = explorer.result.demand.max()
        >>> explorer.add_flash_crowd(factor=4, minutes=30)
        >>> bool(explorer.result.demand.max() > 3 * before)
        True
        """
        if factor <= 0 or minutes <= 0:
            raise ValueError(
                f"flash crowd of factor {factor!r} for {minutes!r} min: expected both > 0"
            )
        self.rerun()  # makes sure the current trace exists
        trace = self._traces[self.trace.value].copy()
        step = self.days * 86400 / len(trace)
        middle, width = len(trace) // 2, max(1, round(minutes * 60 / step))
        trace[middle : middle + width] *= factor
        self._traces[self.trace.value] = trace
        self._table_key = None
        self.rerun()

    def rerun(self) -> None:
        """Re-run the simulator with the controls' values and redraw."""
        started = time.perf_counter()
        trace = self._traces.get(self.trace.value)
        if trace is None:
            trace = self._traces[self.trace.value] = generate_trace(
                self.trace.value, days=self.days
            )
        config = self.current_config()
        self.result = simulate(trace, config)
        # the table does not depend on which policy is drawn: switching policies reuses it
        key = (self.trace.value, config.with_changes(policy="target"))
        if self._table_key != key:
            self.table = {
                kind: (
                    self.result.metrics
                    if kind == config.policy
                    else simulate(trace, config, policy=kind).metrics
                )
                for kind in POLICY_KINDS
            }
            self._table_key = key
        self.chart.show_result(self.result)
        self.metrics.value = metrics_table_html(self.table, config.policy)
        elapsed = time.perf_counter() - started
        self.status.value = (
            f"<span style='font-size:11px;color:var(--jp-ui-font-color2, #666)'>{len(trace):,} steps x "
            f"{len(POLICY_KINDS)} policies in {elapsed * 1000:.0f} ms</span>"
        )


def live_chart(
    bus: EventBus, target: float, capacity_rps: float | None = None, refresh: float = 0.25
) -> AutoscaleChart:
    """An :class:`AutoscaleChart` (time in seconds) that follows a live autoscaler's ``sample``
    events on ``bus``, redrawn at most every ``refresh`` seconds."""
    chart = AutoscaleChart(x_label="seconds", height=170)
    samples: list[dict] = []
    lock = threading.Lock()
    last = [0.0]

    def on_event(event) -> None:
        if event.kind == "sample":
            with lock:
                samples.append(dict(event.fields))
                if time.monotonic() - last[0] >= refresh:
                    last[0] = time.monotonic()
                    chart.show_samples(list(samples), target, capacity_rps)
        elif event.kind == "stopped":
            with lock:
                chart.show_samples(list(samples), target, capacity_rps)

    chart.unsubscribe = bus.subscribe(on_event)
    chart.samples = samples
    return chart


def run_live_with_chart(chart: AutoscaleChart, config, refresh: float = 0.3):
    """Run a live experiment (:class:`deploylab.autoscale.live.LiveConfig`) and redraw
    ``chart`` from this thread until it ends; returns the LiveResult.

    The runner (:class:`deploylab.autoscale.live.LiveRun`) owns the experiment's thread; this
    view only subscribes to its samples and redraws in the calling (notebook) thread."""
    from deploylab.autoscale.live import LiveRun

    samples: list[dict] = []
    run = LiveRun(config)
    run.bus.subscribe(
        lambda event: samples.append(dict(event.fields)) if event.kind == "sample" else None
    )
    capacity = 1000 / config.work_ms if config.work_ms else None
    return run.follow(
        lambda: chart.show_samples(list(samples), config.target, capacity), every=refresh
    )
