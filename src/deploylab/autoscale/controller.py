"""The live autoscaler's control loop: every period it measures each process's real CPU
(psutil) and request rate and runs the SAME core as the simulator (an
:class:`AutoScalingGroup` and the policy objects with :func:`decide`), launching, draining,
replacing and stopping real processes. It runs in one event loop; who runs that loop (a
thread, the CLI) is :mod:`deploylab.autoscale.live`'s business."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
from dataclasses import asdict, dataclass, field

import psutil

from deploylab.autoscale.group import IN_SERVICE, PENDING, AutoScalingGroup, LaunchTemplate
from deploylab.autoscale.live_config import LiveConfig, live_policies, offered_load
from deploylab.autoscale.load import LoadGenerator, http_get
from deploylab.autoscale.policies import (
    alarm_states,
    decide,
)
from deploylab.autoscale.processes import BackendProcess, BalancerPool
from deploylab.balancer.backend import backend_url_from, start_backend_process
from deploylab.events import EventBus

__all__ = ["LiveAutoscaler", "LiveResult"]


@dataclass
class LiveResult:
    """What a live run recorded: one sample per period, the events, every PID started."""

    config: LiveConfig
    samples: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    started_pids: list[int] = field(default_factory=list)
    requests_ok: int = 0
    requests_failed: int = 0

    @property
    def max_in_service(self) -> int:
        return max((s["in_service"] for s in self.samples), default=0)

    def as_dict(self) -> dict:
        return {
            "config": asdict(self.config),
            "samples": self.samples,
            "events": self.events,
            "started_pids": self.started_pids,
            "requests_ok": self.requests_ok,
            "requests_failed": self.requests_failed,
        }


class LiveAutoscaler:
    """Runs one bounded live experiment; ``bus`` gets ``sample`` events (one per period) and
    ``launch``/``in_service``/``scaling``/``unhealthy``/``terminate`` events."""

    def __init__(self, config: LiveConfig | None = None, bus: EventBus | None = None) -> None:
        self.config = config or LiveConfig()
        self.bus = bus or EventBus("autoscaler")
        self.pool = BalancerPool()
        # None: reserved for an instance whose process _launch is starting
        self.processes: dict[str, BackendProcess | None] = {}
        self.result = LiveResult(self.config)
        self._tasks: set[asyncio.Task] = set()
        self._start = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stop_requested = False

    # ---------------------------------------------------------------- helpers
    def now(self) -> float:
        return self._running_loop().time() - self._start

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The loop :meth:`run` runs in (the helpers below are only called from it)."""
        if self._loop is None:
            raise RuntimeError("the live autoscaler is not running: call run() first")
        return self._loop

    def _event(self, kind: str, **fields) -> None:
        fields.setdefault("t", round(self.now(), 3))
        event = self.bus.publish(kind, **fields)
        if kind != "sample":
            self.result.events.append(event.as_dict())

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------- processes
    async def _launch(self, instance_id: str) -> None:
        config = self.config
        process = start_backend_process(instance_id, work_ms=config.work_ms)
        self.result.started_pids.append(process.pid)
        backend = BackendProcess(instance_id, process)
        self.processes[instance_id] = backend
        self._event("launch", instance=instance_id, pid=process.pid)
        loop = self._running_loop()
        stdout = process.stdout
        assert stdout is not None  # start_backend_process pipes it: the start-up line
        try:
            line = await asyncio.wait_for(
                loop.run_in_executor(None, stdout.readline), config.startup_timeout
            )
            try:
                backend.url = backend_url_from(line)
            except RuntimeError as error:
                raise OSError(str(error)) from None
            host, port = backend.address.rsplit(":", 1)
            deadline = loop.time() + config.startup_timeout
            while loop.time() < deadline:  # health check before joining
                with contextlib.suppress(OSError, TimeoutError, ValueError, IndexError):
                    if await http_get(host, int(port), "/health") == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise OSError("health check never passed")
        except (OSError, TimeoutError) as error:
            self._event("launch_failed", instance=instance_id, reason=str(error))
            await self._stop_process(backend)
            instance = self.group.find(instance_id)
            if instance is not None and instance.state in (PENDING, IN_SERVICE):
                self.group.mark_unhealthy(instance_id, self.now())
            return
        instance = self.group.find(instance_id)
        if backend.stopping or instance is None or instance.state != PENDING:
            await self._stop_process(backend)  # scaled in while it was starting
            return
        await self.pool.add(backend.url)
        backend.cpu = psutil.Process(process.pid)
        backend.cpu.cpu_percent(None)  # first call starts the measurement
        backend.joined = True
        self.group.mark_in_service(instance_id, self.now())
        self._event("in_service", instance=instance_id, url=backend.url)

    async def _retire(self, backend: BackendProcess) -> None:
        backend.stopping = True
        if backend.joined:
            await self.pool.drain_and_remove(backend.url, self.config.drain_timeout)
        await self._stop_process(backend)
        self._event("terminated", instance=backend.instance_id, pid=backend.process.pid)

    async def _stop_process(self, backend: BackendProcess) -> None:
        backend.stopping = True
        process = backend.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            for _ in range(40):
                if process.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await self._running_loop().run_in_executor(None, process.wait)
        if process.stdout is not None:
            process.stdout.close()
        self.processes.pop(backend.instance_id, None)

    def kill_one(self) -> str | None:
        """Kill one in-service backend process (SIGKILL), as the lesson does on purpose."""
        for backend in self.processes.values():
            if (
                backend is not None
                and backend.joined
                and not backend.stopping
                and backend.process.poll() is None
            ):
                os.killpg(backend.process.pid, signal.SIGKILL)
                self._event("killed", instance=backend.instance_id, pid=backend.process.pid)
                return backend.instance_id
        return None

    # ---------------------------------------------------------------- control loop
    def _reconcile(self) -> None:
        """Make processes follow the group: start new instances, retire terminated ones."""
        for instance in self.group.instances:
            if instance.state == PENDING and instance.id not in self.processes:
                self.processes[instance.id] = None  # reserved until _launch fills it
                self._spawn(self._launch(instance.id))
        for instance_id, backend in list(self.processes.items()):
            if backend is None or backend.stopping:
                continue
            found = self.group.find(instance_id)
            if found is None or found.state not in (PENDING, IN_SERVICE, "Unhealthy"):
                backend.stopping = True
                self._event("terminate", instance=instance_id)
                self._spawn(self._retire(backend))

    def _health(self) -> None:
        now = self.now()
        for instance_id, backend in list(self.processes.items()):
            if backend is None or backend.stopping or not backend.joined:
                continue
            if backend.process.poll() is not None:
                self.pool.remove_now(backend.url)  # the balancer must stop using it at once
                instance = self.group.find(instance_id)
                if instance is not None and instance.state == IN_SERVICE:
                    self.group.mark_unhealthy(instance_id, now)
                    self._event("unhealthy", instance=instance_id)

    def _measure(self, elapsed: float) -> tuple[float | None, float, dict[str, float]]:
        served = self.pool.requests()
        warmup = self.config.warmup
        now = self.now()
        cpus: dict[str, float] = {}
        ready_cpus = []
        total_rps = 0.0
        for instance in self.group.instances:
            backend = self.processes.get(instance.id)
            if instance.state != IN_SERVICE or backend is None or backend.cpu is None:
                continue
            try:
                cpu = backend.cpu.cpu_percent(None)
            except psutil.Error:
                continue
            cpus[instance.id] = cpu
            requests = served.get(backend.address, backend.last_requests)
            total_rps += (requests - backend.last_requests) / elapsed
            backend.last_requests = requests
            since = instance.in_service_time
            if since is not None and now - since >= warmup:
                ready_cpus.append(cpu)
        metric = sum(ready_cpus) / len(ready_cpus) if ready_cpus else None
        return metric, total_rps, cpus

    async def run(self) -> LiveResult:
        """Run the experiment; returns when the duration is over and all processes stopped."""
        config = self.config
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        template = LaunchTemplate(
            name="demo-backend", boot_time=math.inf, capacity=1000 / max(config.work_ms, 0.1)
        )
        self.group = AutoScalingGroup(
            template,
            config.min_size,
            config.max_size,
            config.min_size,
            ("local-a", "local-b"),
            health_check_grace_period=0,
            instance_warmup=config.warmup,
            now=0.0,
        )
        policies = live_policies(config)
        load = LoadGenerator(
            lambda: self.pool.url,
            lambda t: offered_load(t, config),
            config.connections,
            config.max_requests,
        )
        try:
            self._reconcile()
            deadline = self._loop.time() + config.startup_timeout
            while self.pool.url is None:  # the balancer starts with the first healthy backend
                if self._loop.time() > deadline:
                    raise RuntimeError(
                        f"no backend became healthy within {config.startup_timeout} s"
                    )
                await asyncio.sleep(0.05)
            self._start = self._loop.time()
            load.start(self.now)
            killed = False
            previous_ok = 0
            last = self.now()
            while self.now() < config.duration and not self.stop_requested:
                await asyncio.sleep(config.period)
                now = self.now()
                elapsed = max(now - last, 1e-3)
                last = now
                if config.kill_at is not None and not killed and now >= config.kill_at:
                    killed = self.kill_one() is not None
                self._health()
                self.group.step(now)
                metric, rps, cpus = self._measure(elapsed)
                observation = self.group.observe(now, metric, rps)
                before = self.group.desired_capacity
                decision = decide(policies, observation)
                if decision is not None:
                    after = self.group.apply(decision, now)
                    if after != before:
                        self._event(
                            "scaling",
                            desired_from=before,
                            desired_to=after,
                            policy=decision.policy,
                            reason=decision.reason,
                        )
                self._reconcile()
                high, low = alarm_states(policies)
                sample = {
                    "t": round(now, 3),
                    "offered_rps": round(offered_load(now, config), 1),
                    "served_rps": round((load.ok - previous_ok) / elapsed, 1),
                    "measured_rps": round(rps, 1),
                    "desired": self.group.desired_capacity,
                    "in_service": self.group.count(IN_SERVICE),
                    "pending": self.group.count(PENDING),
                    "warming": observation.warming,
                    "unhealthy": self.group.count("Unhealthy"),
                    "cpu": None if metric is None else round(metric, 1),
                    "cpu_by_instance": {k: round(v, 1) for k, v in cpus.items()},
                    "alarm_high": high,
                    "alarm_low": low,
                    "failed": load.failed,
                    "shed": load.shed,
                }
                previous_ok = load.ok
                self.result.samples.append(sample)
                self._event("sample", **sample)
        finally:
            await load.stop()
            self.result.requests_ok, self.result.requests_failed = load.ok, load.failed
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, config.startup_timeout)
            for backend in list(self.processes.values()):
                if backend is not None:
                    await self._stop_process(backend)
            await self.pool.close()
            self._event("stopped", started=len(self.result.started_pids))
        return self.result
