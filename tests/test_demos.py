"""The instructor's demo buttons act on the lesson's real objects: each test builds what the
lesson builds, presses the button (what a click runs) and checks the real state afterwards
(the process is gone and the balancer says so, the origin was asked again, nginx still
answers with its old workers, the design no longer routes)."""

from __future__ import annotations

import asyncio
import http.client
from pathlib import Path

import psutil
import pytest
from conftest import require_tool

from deploylab import vpc
from deploylab.balancer.backend import DemoBackend
from deploylab.balancer.runtime import Balancer
from deploylab.proxy import ForwardProxy, OriginServer
from deploylab.widgets.autoscale import AutoscaleExplorer
from deploylab.widgets.demos import (
    Demo,
    DemoPanel,
    backend_dies_demo,
    bad_reload_demo,
    flash_crowd_demo,
    route_removed_demo,
    stale_cache_demo,
)
from deploylab.widgets.vpc import VpcGraph

DESIGNS = Path(__file__).resolve().parents[1] / "assets" / "vpc"


def test_a_backend_dies_mid_traffic_really_kills_a_process_and_the_balancer_marks_it():
    async def scenario():
        async with DemoBackend(name="app-1") as survivor:
            balancer = await Balancer([survivor.url]).start()
            try:
                demo = backend_dies_demo(balancer, requests=12, kill_after=4)
                panel = DemoPanel(None, [demo])
                said = await panel.press(demo.label)
                rows = {row["backend"]: row for row in balancer.status()["backends"]}
                return said, rows, panel
            finally:
                await balancer.stop()

    said, rows, panel = asyncio.run(scenario())
    facts = panel.demos["a backend dies mid-traffic"].facts
    assert not psutil.pid_exists(facts["pid"]), f"process {facts['pid']} is still there"
    assert facts["exit_code"] == -9, facts  # SIGKILL
    doomed = rows[facts["backend"]]
    assert doomed["state"] == "failed", f"the balancer did not notice: {rows}"
    assert doomed["failures"] >= 1, doomed
    assert facts["statuses"] == [200] * 12, said  # retried on the survivor
    assert panel.outcome.value.endswith("</span>") and "killed" in panel.outcome.value


def test_a_cached_page_goes_stale_and_the_proxy_asks_the_origin_again():
    async def scenario():
        async with (
            OriginServer(name="origin") as origin,
            ForwardProxy(allow_destinations=["127.0.0.0/8"]) as proxy,
        ):
            page = origin.url + "/cache/max-age/60"
            demo = stale_cache_demo(proxy, page)
            hits_before = origin.hits
            said = await DemoPanel(None, [demo]).press(demo.label)
            return said, origin.hits - hits_before

    said, origin_requests = asyncio.run(scenario())
    # the first fetch fills the cache, the second (after the entry aged) goes to the origin
    assert origin_requests == 2, (origin_requests, said)
    assert "asked the origin again" in said, said


def test_removing_the_route_really_cuts_the_design_off_and_putting_it_back_restores_it():
    shop = vpc.load_design(DESIGNS / "two-tier.toml")
    graph = VpcGraph(shop)
    remove, put_back = route_removed_demo(shop, graph, "rt-public", "web-a")
    panel = DemoPanel(graph, [remove, put_back])
    assert shop.reach("web-a", "internet").reachable
    asyncio.run(panel.press(remove.label))
    assert not shop.reach("web-a", "internet").reachable
    assert "0.0.0.0/0" not in {str(r.destination) for r in shop.route_tables["rt-public"].routes}
    assert graph.caption == shop.reach("web-a", "internet").reason
    asyncio.run(panel.press(put_back.label))
    assert shop.reach("web-a", "internet").reachable


def test_a_flash_crowd_changes_the_trace_the_explorer_simulates():
    explorer = AutoscaleExplorer(trace="diurnal", days=1)
    before = explorer.result.metrics["max_instances"]
    peak_demand = explorer.result.demand.max()
    said = asyncio.run(
        DemoPanel(explorer, [flash_crowd_demo(explorer)]).press("a flash crowd hits")
    )
    assert explorer.result.demand.max() >= 4 * peak_demand
    assert explorer.result.metrics["max_instances"] > before, said


def test_a_broken_reload_is_refused_and_nginx_keeps_serving(tmp_path):
    require_tool("nginx", "nginx")
    from deploylab.nginx import NginxProcess
    from deploylab.proxy.nginx import reverse_proxy_config

    async def scenario(nginx):
        async with OriginServer(name="backend") as backend:
            config = reverse_proxy_config(nginx.port, [backend.url], runtime_dir=nginx.prefix)
            nginx.start(config)
            workers = nginx.worker_pids()

            def ask():
                connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=5)
                connection.request("GET", "/")
                status = connection.getresponse().status
                connection.close()
                return status

            demo = bad_reload_demo(nginx, config, ask)
            # run in a thread, as ask() blocks and the backend is served by this loop
            said = await asyncio.to_thread(demo.run)
            return said, workers, nginx.worker_pids()

    with NginxProcess(prefix=tmp_path) as nginx:
        said, workers_before, workers_after = asyncio.run(scenario(nginx))
    assert "nginx refused it" in said, said
    assert said.endswith("answered by 200"), said
    assert workers_before == workers_after  # no reload happened: the same workers serve


def test_a_failing_demo_is_reported_and_the_buttons_come_back():
    def explode():
        raise RuntimeError("the backend is already gone")

    panel = DemoPanel(None, [Demo("break", "raises", explode)])
    said = asyncio.run(panel.press("break"))
    assert said == "demo failed: RuntimeError: the backend is already gone"
    assert not any(button.disabled for button in panel.buttons)
    with pytest.raises(ValueError, match="no demo 'nope': expected one of break"):
        asyncio.run(panel.press("nope"))
