"""Autoscaling views: bqplot time series of a simulated or live run, sliders that re-run the
simulator, and matplotlib fallbacks for contexts without a browser.

- :class:`AutoscaleChart` — demand vs capacity (with scaling activities as markers), instances
  by state, CPU against the target (with alarm states as markers); in
  :mod:`deploylab.widgets.autoscale_chart` (importable from here too).
- :class:`AutoscaleExplorer` — policy/trace/target/cooldown/warm-up/min/max controls; every
  change re-runs :func:`deploylab.autoscale.simulate` and shows every policy's metrics side by
  side on the same trace.
- :func:`live_chart` — an :class:`AutoscaleChart` fed by a live autoscaler's ``sample`` events.
- :func:`autoscale_figure`, :func:`live_figure`, :func:`metrics_table_text` — static fallbacks,
  in :mod:`deploylab.widgets.autoscale_figures` (importable from here too).
"""

from __future__ import annotations

import html
import threading
import time

import ipywidgets as widgets
import numpy as np

from deploylab.autoscale.simulate import (
    POLICY_KINDS,
    SimulationConfig,
    simulate,
)
from deploylab.autoscale.traces import TRACE_KINDS, generate_trace
from deploylab.events import EventBus
from deploylab.widgets.autoscale_chart import AutoscaleChart, PlotFit
from deploylab.widgets.autoscale_figures import (
    METRIC_ROWS,
    autoscale_figure,
    live_demand,
    live_figure,
    metrics_table_text,
)
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
        self._table_key: tuple[str, SimulationConfig] | None = None  # what self.table shows
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
        # of the controls being squeezed (they were 40 px wide at 1024 px). The table's basis
        # is its own width ("auto"), so it wraps as soon as it would not fit beside them (a
        # fixed 360 px basis kept it beside them at 1024 px, 20 px past the notebook).
        controls.layout = widgets.Layout(flex="0 0 auto", min_width="330px")
        self.metrics.layout = widgets.Layout(flex="1 1 auto", min_width="0", overflow_x="auto")
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
