"""The autoscaling chart: bqplot time series of a simulated or live run (demand vs capacity
with scaling activities, instances by state, CPU against the target with alarm states), and
:class:`PlotFit`, which keeps its figures fitted to a narrowing page.

Used by the explorer and the live views of :mod:`deploylab.widgets.autoscale` (which
re-exports these names).
"""

from __future__ import annotations

import html
import pathlib
from collections.abc import Sequence

import anywidget
import bqplot
import ipywidgets as widgets
import numpy as np

from deploylab.autoscale.simulate import (
    SimulationResult,
)
from deploylab.widgets.autoscale_figures import (
    COLORS,
    ChartSeries,
)

__all__ = ["AutoscaleChart", "PlotFit"]


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
        self.show_series(*ChartSeries.of_result(result, stride))

    def show_samples(
        self, samples: Sequence[dict], target: float, capacity_rps: float | None = None
    ) -> None:
        """Draw a live run's samples (time in seconds). Demand in instances is the offered
        load over what one process serves at the target (``capacity_rps`` = requests/s at
        100% CPU); without it the desired capacity stands in."""
        if not samples:
            return
        self.show_series(*ChartSeries.of_samples(samples, target, capacity_rps))
