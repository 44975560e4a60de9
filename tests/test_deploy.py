"""Zero-downtime deployment: plans (pure) and the real thing with nginx and backend processes."""

from __future__ import annotations

import http.client
import itertools
import json
import subprocess
import sys

import pytest
from conftest import free_port, require_tool
from hypothesis import given
from hypothesis import strategies as st

from deploylab.deploy import (
    Step,
    blue_green_plan,
    make_plan,
    minimum_serving,
    restart_plan,
    rolling_plan,
    run_deployment,
    serving_after_each_step,
)
from deploylab.nginx import NginxConfigError, NginxProcess
from deploylab.proxy.nginx import reverse_proxy_config

fleet_sizes = st.integers(min_value=1, max_value=8)


def fleets(size: int) -> tuple[list[str], list[str]]:
    return [f"v1-{i}" for i in range(size)], [f"v2-{i}" for i in range(size)]


@given(fleet_sizes)
def test_blue_green_never_serves_fewer_than_the_whole_fleet(size):
    old, new = fleets(size)
    serving = serving_after_each_step(old, blue_green_plan(old, new))
    assert min(map(len, serving)) == size
    assert serving[-1] == tuple(new)


@given(fleet_sizes, st.data())
def test_rolling_keeps_all_but_one_batch_serving_and_ends_on_the_new_version(size, data):
    batch = data.draw(st.integers(min_value=1, max_value=size))
    old, new = fleets(size)
    plan = rolling_plan(old, new, batch_size=batch)
    serving = serving_after_each_step(old, plan)
    assert minimum_serving(old, plan) == size - batch
    assert sorted(serving[-1]) == sorted(new)
    # a stopped instance is never routed: every route step lists only running instances
    running = set(old)
    for step in plan:
        if step.action == "start":
            running |= set(step.instances)
        elif step.action == "stop":
            running -= set(step.instances)
        else:
            assert set(step.instances) <= running


@given(fleet_sizes)
def test_restart_in_place_has_downtime(size):
    old, new = fleets(size)
    assert minimum_serving(old, restart_plan(old, new)) == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Step("reboot", ("a",)), "'reboot' is not one of start, stop, route"),
        (lambda: rolling_plan(["a", "b"], ["c", "d"], batch_size=3), "batch_size 3"),
        (lambda: blue_green_plan(["a"], ["a"]), "must differ"),
        (lambda: make_plan("canary"), "'canary' is not one of"),
    ],
)
def test_bad_plans_are_refused_with_a_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.fixture
def two_backends(processes):
    urls = []
    for name in ("v1-1", "v1-2"):
        port = free_port()
        processes.deploylab("serve", "backend", "--port", str(port), "--name", name)
        urls.append(f"http://127.0.0.1:{port}")
    from conftest import wait_for_port

    for url in urls:
        wait_for_port(int(url.rsplit(":", 1)[1]))
    return urls


def get_backend(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", "/")
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200
    return response.getheader("X-Backend")


@pytest.mark.nginx
def test_real_nginx_alternates_and_reloads_to_a_new_upstream(two_backends):
    require_tool("nginx", "nginx")
    port = free_port()
    with NginxProcess() as nginx:
        nginx.start(reverse_proxy_config(port, two_backends, runtime_dir=nginx.prefix))
        seen = [get_backend(port) for _ in range(4)]
        assert sorted(seen) == ["v1-1", "v1-1", "v1-2", "v1-2"]  # the seed: 8080 and 8081 alternate
        assert seen[0] != seen[1]
        workers_before = set(nginx.worker_pids())
        nginx.reload(reverse_proxy_config(port, two_backends[1:], runtime_dir=nginx.prefix))
        assert set(nginx.worker_pids()) - workers_before, "reload started no new worker"
        assert {get_backend(port) for _ in range(4)} == {"v1-2"}


@pytest.mark.nginx
def test_an_invalid_config_is_refused_and_the_old_one_keeps_serving(two_backends):
    require_tool("nginx", "nginx")
    port = free_port()
    with NginxProcess() as nginx:
        nginx.start(reverse_proxy_config(port, two_backends, runtime_dir=nginx.prefix))
        broken = reverse_proxy_config(port, two_backends, runtime_dir=nginx.prefix).replace(
            "proxy_pass", "proxy_passs"
        )
        with pytest.raises(NginxConfigError, match="proxy_passs"):
            nginx.reload(broken)
        assert get_backend(port) in {"v1-1", "v1-2"}


@pytest.mark.nginx
@pytest.mark.slow
def test_blue_green_and_rolling_lose_no_request_while_restart_does():
    require_tool("nginx", "nginx")
    blue_green = run_deployment("blue-green", settle=0.4)
    rolling = run_deployment("rolling", settle=0.4)
    restart = run_deployment("restart", settle=0.4)
    for run in (blue_green, rolling):
        summary = run.summary
        assert summary["requests"] > 100
        assert summary["ok"] == summary["requests"], summary
        # both versions answered, and after the last step only v2 does
        assert {"v1-1", "v1-2", "v2-1", "v2-2"} <= set(summary["served_by"])
        last_step = run.step_times[-1]
        late = [r.served_by for r in run.records if r.started > last_step + 0.1]
        assert late and all(name.startswith("v2") for name in late)
    assert restart.failures_after(0) > 0, "stopping every backend at once must fail requests"


@pytest.mark.nginx
def test_deploy_command_prints_the_steps_and_the_counts():
    require_tool("nginx", "nginx")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "deploylab.cli",
            "deploy",
            "blue-green",
            "--settle",
            "0.3",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [step["action"] for step in report["steps"]] == ["start", "route", "stop"]
    assert report["nginx_reloads"] == 1
    assert report["ok"] == report["requests"] > 0
    assert list(itertools.chain(report["steps"][-1]["serving"])) == ["v2-1", "v2-2"]
