"""A live autoscaler of real processes on loopback.

Backends are ``deploylab serve backend`` processes (CPU work per request) behind deploylab's
balancer (:class:`deploylab.balancer.runtime.Balancer`, in this process). A bounded load
generator follows a ramp → spike → drop pattern. Every period the controller measures each
process's real CPU (psutil) and request rate, and runs the SAME core as the simulator: an
:class:`AutoScalingGroup` (launch, health replacement, termination policy) and the policy
objects with :func:`decide`. A launched process joins the balancer after its first passing
health check and then warms up; on scale-in it is drained, removed and stopped; a process that
dies is replaced. Everything stops by itself; every process started is stopped by PID.

The balancer is reached through :class:`BalancerPool`, a small add/drain/remove interface, so
another balancer can be swapped in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import psutil

from deploylab.autoscale.alarm import ALARM, Alarm
from deploylab.autoscale.group import IN_SERVICE, PENDING, AutoScalingGroup, LaunchTemplate
from deploylab.autoscale.policies import (
    Policy,
    SimpleScalingPolicy,
    Step,
    StepScalingPolicy,
    TargetTrackingPolicy,
    decide,
)
from deploylab.balancer.backend import backend_url_from, start_backend_process
from deploylab.events import EventBus

LIVE_POLICIES = ("target", "step", "simple")


@dataclass(frozen=True)
class LiveConfig:
    """A bounded live run. Times in seconds of real time (compressed: a 'period' is 0.5 s)."""

    policy: str = "target"
    target: float = 40.0  # CPU % of one core per process
    min_size: int = 1
    max_size: int = 4
    duration: float = 20.0
    period: float = 0.5
    warmup: float = 1.0
    cooldown: float = 2.0
    work_ms: float = 8.0
    low_rps: float = 10.0
    peak_rps: float = 120.0
    kill_at: float | None = None
    high_datapoints: int = 2
    low_datapoints: int = 4
    connections: int = 16
    max_requests: int = 200_000
    startup_timeout: float = 15.0
    drain_timeout: float = 2.0

    def __post_init__(self) -> None:
        if self.policy not in LIVE_POLICIES:
            raise ValueError(f"live policy {self.policy!r} is not one of {list(LIVE_POLICIES)}")
        if not 1 <= self.min_size <= self.max_size <= 16:
            raise ValueError(
                f"min_size {self.min_size} / max_size {self.max_size}: need "
                "1 <= min <= max <= 16 processes"
            )
        if not 0 < self.duration <= 600:
            raise ValueError(f"duration {self.duration} must be in (0, 600] seconds")
        if self.period <= 0 or self.work_ms < 0 or self.peak_rps <= 0:
            raise ValueError("period and peak_rps must be positive and work_ms >= 0")


def offered_load(t: float, config: LiveConfig) -> float:
    """Requests/s the load generator aims for at ``t``: ramp up (0–30%), spike (30–55%),
    drop (55–100% of the run).

    >>> c = LiveConfig(duration=10, low_rps=10, peak_rps=100)
    >>> [round(offered_load(t, c)) for t in (0, 1.5, 4, 8)]
    [10, 32, 100, 10]
    """
    fraction = t / config.duration
    middle = (config.low_rps + config.peak_rps) / 2
    if fraction < 0.3:
        return config.low_rps + (middle - config.low_rps) * fraction / 0.3
    if fraction < 0.55:
        return config.peak_rps
    return config.low_rps


def live_policies(config: LiveConfig) -> list[Policy]:
    """The policy objects of a live run (the simulator's classes, periods in seconds)."""
    if config.policy == "target":
        return [
            TargetTrackingPolicy(
                config.target,
                high_datapoints=config.high_datapoints,
                low_datapoints=config.low_datapoints,
                scale_in_cooldown=config.cooldown,
            )
        ]
    high = min(95.0, config.target + 30)
    low = config.target / 2
    out_alarm = Alarm(high, ">", config.period, config.high_datapoints)
    in_alarm = Alarm(low, "<", config.period, config.low_datapoints)
    if config.policy == "step":
        return [
            StepScalingPolicy(out_alarm, [Step(0, 15, 1), Step(15, None, 2)]),
            StepScalingPolicy(in_alarm, [Step(None, 0, -1)]),
        ]
    return [
        SimpleScalingPolicy(out_alarm, 1, cooldown=config.cooldown),
        SimpleScalingPolicy(in_alarm, -1, cooldown=config.cooldown),
    ]


class BalancerPool:
    """What the controller needs from a balancer: add, drain, remove, per-backend requests.

    Wraps :class:`deploylab.balancer.runtime.Balancer` (created with the first backend, since
    an upstream cannot be empty)."""

    def __init__(self) -> None:
        self.balancer = None

    @property
    def url(self) -> str | None:
        return None if self.balancer is None else self.balancer.url

    async def add(self, url: str) -> None:
        if self.balancer is None:
            from deploylab.balancer.runtime import Balancer

            self.balancer = Balancer([url], algorithm="least_conn", request_events=False)
            await self.balancer.start()
        else:
            self.balancer.add_backend(url)

    async def drain_and_remove(self, url: str, timeout: float) -> None:
        if self.balancer is None:
            return
        with contextlib.suppress(ValueError, TimeoutError):
            await self.balancer.drain_backend(url, timeout)
        with contextlib.suppress(ValueError):
            self.balancer.remove_backend(url)

    def remove_now(self, url: str) -> None:
        if self.balancer is not None:
            with contextlib.suppress(ValueError):
                self.balancer.remove_backend(url)

    def requests(self) -> dict[str, int]:
        """Requests served so far per backend ``HOST:PORT``."""
        if self.balancer is None:
            return {}
        return {b["backend"]: b["requests"] for b in self.balancer.status()["backends"]}

    async def close(self) -> None:
        if self.balancer is not None:
            await self.balancer.stop()


@dataclass
class BackendProcess:
    """A real backend process behind one group instance."""

    instance_id: str
    process: subprocess.Popen
    url: str = ""
    joined: bool = False
    stopping: bool = False
    cpu: psutil.Process | None = None
    last_requests: int = 0

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")


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


async def _http_get(host: str, port: int, path: str, timeout: float = 1.0) -> int:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), timeout)
        return int(line.split()[1])
    finally:
        writer.close()


class LoadGenerator:
    """Open-loop load on keep-alive connections, bounded in time and in requests."""

    def __init__(
        self,
        url_getter: Callable[[], str | None],
        rate: Callable[[float], float],
        connections: int,
        max_requests: int,
    ) -> None:
        self.url_getter = url_getter
        self.rate = rate
        self.connections = connections
        self.max_requests = max_requests
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=connections * 8)
        self.issued = 0
        self.ok = 0
        self.failed = 0
        self.shed = 0
        self._tasks: list[asyncio.Task] = []

    def start(self, clock: Callable[[], float]) -> None:
        self._tasks = [asyncio.create_task(self._dispatch(clock))]
        self._tasks += [asyncio.create_task(self._worker()) for _ in range(self.connections)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _dispatch(self, clock: Callable[[], float]) -> None:
        owed = 0.0
        last = clock()
        while self.issued < self.max_requests:
            await asyncio.sleep(0.01)
            now = clock()
            owed += self.rate(now) * (now - last)
            last = now
            while owed >= 1 and self.issued < self.max_requests:
                owed -= 1
                self.issued += 1
                try:
                    self.queue.put_nowait(None)
                except asyncio.QueueFull:
                    self.shed += 1  # the service is too slow: the request is lost

    async def _worker(self) -> None:
        reader = writer = None
        try:
            while True:
                await self.queue.get()
                url = self.url_getter()
                if url is None:
                    continue
                host, port = url.removeprefix("http://").rsplit(":", 1)
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(host, int(port))
                    writer.write(b"GET / HTTP/1.1\r\nHost: autoscale\r\n\r\n")
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    if length:
                        await reader.readexactly(length)
                    if head.startswith(b"HTTP/1.1 200"):
                        self.ok += 1
                    else:
                        self.failed += 1
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                    self.failed += 1
                    if writer is not None:
                        writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()


class LiveAutoscaler:
    """Runs one bounded live experiment; ``bus`` gets ``sample`` events (one per period) and
    ``launch``/``in_service``/``scaling``/``unhealthy``/``terminate`` events."""

    def __init__(self, config: LiveConfig | None = None, bus: EventBus | None = None) -> None:
        self.config = config or LiveConfig()
        self.bus = bus or EventBus("autoscaler")
        self.pool = BalancerPool()
        self.processes: dict[str, BackendProcess] = {}
        self.result = LiveResult(self.config)
        self._tasks: set[asyncio.Task] = set()
        self._start = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stop_requested = False

    # ---------------------------------------------------------------- helpers
    def now(self) -> float:
        return self._loop.time() - self._start

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
        try:
            line = await asyncio.wait_for(
                self._loop.run_in_executor(None, process.stdout.readline), config.startup_timeout
            )
            try:
                backend.url = backend_url_from(line)
            except RuntimeError as error:
                raise OSError(str(error)) from None
            host, port = backend.address.rsplit(":", 1)
            deadline = self._loop.time() + config.startup_timeout
            while self._loop.time() < deadline:  # health check before joining
                with contextlib.suppress(OSError, TimeoutError, ValueError, IndexError):
                    if await _http_get(host, int(port), "/health") == 200:
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
                await self._loop.run_in_executor(None, process.wait)
        if process.stdout is not None:
            process.stdout.close()
        self.processes.pop(backend.instance_id, None)

    def kill_one(self) -> str | None:
        """Kill one in-service backend process (SIGKILL), as the lesson does on purpose."""
        for backend in self.processes.values():
            if backend.joined and not backend.stopping and backend.process.poll() is None:
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
            instance = self.group.find(instance_id)
            if instance is None or instance.state not in (PENDING, IN_SERVICE, "Unhealthy"):
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
            if now - instance.in_service_time >= warmup:
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
                high, low = _alarm_states(policies)
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


def _alarm_states(policies: list[Policy]) -> tuple[bool, bool]:
    high = low = False
    for policy in policies:
        if isinstance(policy, TargetTrackingPolicy):
            high = high or policy.high_count >= policy.high_datapoints
            low = low or policy.low_count >= policy.low_datapoints
        elif (
            isinstance(policy, StepScalingPolicy | SimpleScalingPolicy)
            and policy.monitor.state == ALARM
        ):
            if policy.alarm.scales_out:
                high = True
            else:
                low = True
    return high, low


def run_live(config: LiveConfig | None = None, bus: EventBus | None = None) -> LiveResult:
    """Run a live experiment to the end (blocking). Works inside Jupyter too: when an event
    loop is already running, the experiment runs in its own thread."""
    autoscaler = LiveAutoscaler(config, bus)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(autoscaler.run())
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(autoscaler.run())
        except BaseException as error:  # re-raised in the caller's thread
            box["error"] = error

    thread = threading.Thread(target=target, name="deploylab-live-autoscaler")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def start_live(
    config: LiveConfig | None = None, bus: EventBus | None = None
) -> tuple[LiveAutoscaler, threading.Thread]:
    """Start a live experiment in a background thread (for live charts); join the thread
    to wait for the end (an error is kept in ``autoscaler.error``).
    ``autoscaler.stop_requested = True`` ends it early."""
    autoscaler = LiveAutoscaler(config, bus)
    autoscaler.error = None

    def target() -> None:
        try:
            asyncio.run(autoscaler.run())
        except BaseException as error:
            autoscaler.error = error

    thread = threading.Thread(target=target, name="deploylab-live-autoscaler", daemon=True)
    thread.start()
    return autoscaler, thread


def run_live_cli(args) -> int:
    config = LiveConfig(
        policy=args.policy,
        duration=args.duration,
        target=args.target,
        min_size=args.min,
        max_size=args.max,
        work_ms=args.work_ms,
        peak_rps=args.peak_rps,
        kill_at=args.kill_at,
        period=args.period,
    )
    bus = EventBus("autoscaler")
    if not args.json:
        print(
            f"live autoscaling: policy {config.policy}, target CPU {config.target:g}%, "
            f"{config.min_size}-{config.max_size} processes, {config.duration:g} s"
        )
        print(
            f"{'t':>6} {'offered':>8} {'served':>8} {'cpu%':>6} {'desired':>7} "
            f"{'in svc':>6} {'pending':>7}  events"
        )
        pending_events: list[str] = []

        def show(event) -> None:
            fields = event.fields
            if event.kind == "sample":
                cpu = "-" if fields["cpu"] is None else f"{fields['cpu']:.0f}"
                print(
                    f"{fields['t']:>6.1f} {fields['offered_rps']:>8.0f} "
                    f"{fields['served_rps']:>8.0f} {cpu:>6} {fields['desired']:>7} "
                    f"{fields['in_service']:>6} {fields['pending']:>7}  "
                    f"{'; '.join(pending_events)}",
                    flush=True,
                )
                pending_events.clear()
            elif event.kind in ("scaling", "killed", "unhealthy", "in_service", "terminated"):
                detail = {
                    "scaling": lambda f: f"desired {f['desired_from']}->{f['desired_to']}",
                }.get(event.kind, lambda f: f.get("instance", ""))(fields)
                pending_events.append(f"{event.kind} {detail}")

        bus.subscribe(show)
    started = time.monotonic()
    result = run_live(config, bus)
    leftover = [
        pid
        for pid in result.started_pids
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    if args.json:
        print(json.dumps(result.as_dict(), indent=1))
    else:
        print(
            f"done in {time.monotonic() - started:.1f} s: {result.requests_ok} requests ok, "
            f"{result.requests_failed} failed; {len(result.started_pids)} processes started, "
            f"{len(leftover)} left running; peak {result.max_in_service} in service"
        )
    return 1 if leftover else 0
