"""The autoscaling views: charts follow the data they are given; fallbacks draw without a browser."""

from __future__ import annotations

import numpy as np

from deploylab.autoscale import simulate
from deploylab.events import EventBus
from deploylab.widgets.autoscale import (
    AutoscaleChart,
    AutoscaleExplorer,
    autoscale_figure,
    live_chart,
    live_figure,
    metrics_table_text,
)


def test_chart_shows_activities_and_alarms():
    result = simulate([100.0] * 30 + [900.0] * 90 + [100.0] * 60, policy="target", max_size=40)
    chart = AutoscaleChart()
    chart.show_result(result)
    outs = [b for _, a, b, _ in result.activities if b > a]
    ins = [b for _, a, b, _ in result.activities if b < a]
    assert list(chart.scale_out_marks.y) == outs and outs
    assert list(chart.scale_in_marks.y) == ins and ins
    assert len(chart.high_alarm_marks.x) == int(result.alarm_high.sum()) > 0
    assert np.array_equal(chart.cpu_lines.y[1], np.full(len(result.time), 50.0))


def test_explorer_reruns_on_every_control():
    explorer = AutoscaleExplorer(days=1)
    first = explorer.result
    explorer.policy.value = "step"
    assert explorer.result is not first and explorer.result.config.policy == "step"
    explorer.max_size.value = 3
    assert explorer.result.in_service.max() <= 3
    assert "dl-autoscale-metrics" in explorer.metrics.value
    assert set(explorer.table) == {
        "target",
        "step",
        "simple",
        "scheduled",
        "predictive",
        "hpa",
        "maintain",
    }
    assert "instance-hours" in metrics_table_text(explorer.table)


def test_live_chart_follows_sample_events():
    bus = EventBus("autoscaler")
    chart = live_chart(bus, target=40, capacity_rps=100, refresh=0)
    for t, desired in enumerate([1, 1, 2, 2, 1]):
        bus.publish(
            "sample",
            t=t * 0.5,
            offered_rps=60.0 * desired,
            served_rps=50.0,
            measured_rps=50.0,
            desired=desired,
            in_service=desired,
            pending=0,
            warming=0,
            unhealthy=0,
            cpu=45.0,
            cpu_by_instance={},
            alarm_high=False,
            alarm_low=False,
            failed=0,
            shed=0,
        )
    assert list(chart.scale_out_marks.x) == [1.0] and list(chart.scale_in_marks.x) == [2.0]
    # demand in instances: 60 rps / (100 rps x 40%) -> 2; 120 -> 3
    assert list(chart.capacity_lines.y[0]) == [2, 2, 3, 3, 2]
    figure = live_figure(chart.samples, 40, 100)
    assert len(figure.axes) == 3


def test_static_fallback_draws_three_panels():
    figure = autoscale_figure(simulate([300.0] * 60, policy="maintain"))
    assert [ax.get_title() for ax in figure.axes] == [
        "demand vs capacity",
        "instances by state",
        "CPU vs target",
    ]
