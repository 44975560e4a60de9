"""Run a deployment plan for real: backend processes behind a real nginx, under traffic.

:func:`run_deployment` starts version-1 backends (``deploylab serve backend``), puts nginx in
front of them with the seed's reverse-proxy configuration, starts a bounded
:class:`~deploylab.deploy.traffic.TrafficRecorder`, then executes each step of the chosen
plan (start and stop processes; "route" = rewrite the upstream and ``nginx -s reload``) and
returns every request's outcome with the time of each step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field

from deploylab.balancer.backend import read_backend_url, start_backend_process
from deploylab.deploy.strategies import (
    Step,
    blue_green_plan,
    restart_plan,
    rolling_plan,
    serving_after_each_step,
)
from deploylab.deploy.traffic import RequestRecord, TrafficRecorder, summarize
from deploylab.loopback import free_port
from deploylab.nginx import NginxProcess

__all__ = ["STRATEGIES", "BackendFleet", "DeploymentRun", "make_plan", "run_deployment"]

STRATEGIES = ("restart", "blue-green", "rolling")


def make_plan(strategy: str, instances: int = 2) -> tuple[list[str], list[str], list[Step]]:
    """Old names, new names and the plan for ``strategy`` over ``instances`` backends.

    >>> old, new, plan = make_plan("blue-green", 2)
    >>> old, new, [step.action for step in plan]
    (['v1-1', 'v1-2'], ['v2-1', 'v2-2'], ['start', 'route', 'stop'])
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if not 1 <= instances <= 8:
        raise ValueError(f"instances={instances}: expected 1 to 8 backends")
    old = [f"v1-{index}" for index in range(1, instances + 1)]
    new = [f"v2-{index}" for index in range(1, instances + 1)]
    builders = {"restart": restart_plan, "blue-green": blue_green_plan, "rolling": rolling_plan}
    return old, new, builders[strategy](old, new)


class BackendFleet:
    """``deploylab serve backend`` processes by name, each on its own loopback port."""

    def __init__(self) -> None:
        self.ports: dict[str, int] = {}
        self.processes: dict[str, subprocess.Popen] = {}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, names, replaces=()) -> None:
        """Start backends (in parallel) and wait until each listens. ``replaces`` gives each
        new backend the port of the old one at the same position (a restart in place)."""
        replaced = dict(zip(names, replaces, strict=False))
        for name in names:
            # A new backend binds port 0 and says which port it got: a port chosen here and
            # bound later could be taken in between (any outgoing connection may get it).
            self.ports[name] = self.ports[replaced[name]] if name in replaced else 0
            self.processes[name] = start_backend_process(name, port=self.ports[name])
        try:  # the start-up line is printed once the backend listens
            for name in names:
                url = read_backend_url(self.processes[name])
                self.ports[name] = int(url.rsplit(":", 1)[1])
        except RuntimeError as error:
            self.stop_all()
            wanted = self.url(name) if self.ports[name] else "any free loopback port"
            raise RuntimeError(f"{error} (wanted {wanted})") from None

    def stop(self, names) -> None:
        """Stop backends by PID (SIGTERM, then SIGKILL if they linger)."""
        for name in names:
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)

    def stop_all(self) -> None:
        self.stop(list(self.processes))


@dataclass
class DeploymentRun:
    """What happened: the plan, each request, and when each step was taken."""

    strategy: str
    keep_alive: bool
    plan: list[Step]
    serving: list[tuple[str, ...]]
    records: list[RequestRecord] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)
    reloads: int = 0

    @property
    def summary(self) -> dict:
        return {
            "strategy": self.strategy,
            "keep_alive": self.keep_alive,
            "nginx_reloads": self.reloads,
            **summarize(self.records),
        }

    def failures_after(self, step_index: int) -> int:
        """Failed requests (errors or non-2xx) that started after step ``step_index``."""
        since = self.step_times[step_index]
        return sum(not record.ok for record in self.records if record.started >= since)


def run_deployment(
    strategy: str = "blue-green",
    *,
    instances: int = 2,
    keep_alive: bool = False,
    settle: float = 0.6,
    workers: int = 4,
    max_seconds: float = 60.0,
) -> DeploymentRun:
    """Deploy version 2 over version 1 with ``strategy`` while traffic flows through nginx.

    ``settle`` seconds pass between steps so each one's effect is visible in the records.
    Every process started here is stopped before returning.
    """
    old, _new, plan = make_plan(strategy, instances)
    run = DeploymentRun(strategy, keep_alive, plan, serving_after_each_step(old, plan))
    fleet = BackendFleet()
    listen_port = free_port()
    routed = list(old)
    try:
        from deploylab.proxy.nginx import reverse_proxy_config

        with NginxProcess() as nginx:

            def config_for(names: list[str]) -> str:
                return reverse_proxy_config(
                    listen_port, [fleet.url(name) for name in names], runtime_dir=nginx.prefix
                )

            fleet.start(old)
            nginx.start(config_for(routed))
            recorder = TrafficRecorder(
                listen_port, workers=workers, keep_alive=keep_alive, max_seconds=max_seconds
            )
            with recorder:
                time.sleep(settle)
                for step in plan:
                    run.step_times.append(recorder.now())
                    if step.action == "start":
                        fleet.start(step.instances, step.replaces)
                    elif step.action == "stop":
                        fleet.stop(step.instances)
                    else:
                        routed = list(step.instances)
                        nginx.reload(config_for(routed))
                    time.sleep(settle)
                run.records = recorder.stop()
            run.reloads = nginx.reloads
    finally:
        fleet.stop_all()
    return run
