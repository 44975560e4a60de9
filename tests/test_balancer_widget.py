"""The load-balancing widget's data comes from the core and follows a live balancer."""

from __future__ import annotations

import asyncio

import httpx

from deploylab.balancer.backend import DemoBackend
from deploylab.balancer.runtime import Balancer
from deploylab.widgets.balancer import BalancerWidget, balancer_scenario, scenario_figure


def test_scenario_matches_the_reference_example_and_failures():
    data = balancer_scenario(["round_robin"], weights=(5, 1, 1), requests=14)
    assert "".join("abc"[s["server"]] for s in data["columns"][0]["steps"]) == "aabacaa" * 2
    failed = balancer_scenario(["round_robin", "ip_hash"], requests=30, toggles=[(10, 0)])
    for column in failed["columns"]:
        assert all(s["server"] != 0 for s in column["steps"][10:]), column["algorithm"]
    everything_down = balancer_scenario(
        ["least_conn"], weights=(1, 1), requests=5, toggles=[(2, 0), (2, 1)]
    )
    assert [s["server"] for s in everything_down["columns"][0]["steps"]][2:] == [-1, -1, -1]


def test_toggle_button_recomputes_and_recovers():
    widget = BalancerWidget(requests=20)
    widget.toggle = {"step": 5, "server": 1, "at": 1}
    widget.toggle = {"step": 12, "server": 1, "at": 2}
    steps = widget.scenario["columns"][0]["steps"]
    assert steps[4]["down"][1] is False and steps[5]["down"][1] is True
    assert steps[12]["down"][1] is False
    assert len(scenario_figure(widget.scenario).axes) == 3


def test_live_mode_follows_balancer_events():
    async def main():
        async with (
            DemoBackend(name="a") as a,
            DemoBackend(name="b") as b,
            Balancer([a.url, b.url]) as lb,
        ):
            widget = BalancerWidget(requests=1).follow(lb)
            async with httpx.AsyncClient() as client:
                for _ in range(4):
                    await client.get(lb.url + "/")
            widget.unfollow()
            return widget

    widget = asyncio.run(main())
    assert widget.live is False
    assert widget.live_counts == [2, 2]
    assert [r["server"] for r in widget.live_requests] == [0, 1, 0, 1]
