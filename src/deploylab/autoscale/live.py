"""A live autoscaler of real processes on loopback.

Backends are ``deploylab serve backend`` processes (CPU work per request) behind deploylab's
balancer (:class:`deploylab.balancer.runtime.Balancer`, in this process). A bounded load
generator follows a ramp → spike → drop pattern. Every period the controller measures each
process's real CPU (psutil) and request rate, and runs the SAME core as the simulator: an
:class:`AutoScalingGroup` (launch, health replacement, termination policy) and the policy
objects with :func:`decide`. A launched process joins the balancer after its first passing
health check and then warms up; on scale-in it is drained, removed and stopped; a process that
dies is replaced. Everything stops by itself; every process started is stopped by PID.

This module is the runner: it owns the thread an experiment runs in (:class:`LiveRun`), so a
notebook or a widget only subscribes to the run's events. The parts live beside it, one job
each: :mod:`~deploylab.autoscale.live_config` (what to run), :mod:`~deploylab.autoscale.load`
(the load generator), :mod:`~deploylab.autoscale.processes` (backend processes and the
balancer), :mod:`~deploylab.autoscale.controller` (the control loop) and
:mod:`~deploylab.autoscale.live_cli` (the command's printing).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from deploylab.autoscale.controller import LiveAutoscaler, LiveResult
from deploylab.autoscale.live_config import LIVE_POLICIES, LiveConfig, live_policies, offered_load
from deploylab.autoscale.processes import BackendProcess, BalancerPool
from deploylab.events import EventBus

__all__ = [
    "LIVE_POLICIES",
    "BackendProcess",
    "BalancerPool",
    "LiveAutoscaler",
    "LiveConfig",
    "LiveResult",
    "LiveRun",
    "live_policies",
    "offered_load",
    "run_live",
    "start_live",
]


class LiveRun:
    """One live experiment and the thread it runs in.

    Subscribe to :attr:`bus` before :meth:`start`; :meth:`follow` then calls a function in
    the caller's thread every ``every`` seconds until the run ends (a chart redraws there,
    where widgets may be updated) and returns the :class:`LiveResult`. :meth:`stop` ends the
    run early. An error in the run is raised by :meth:`wait` and :meth:`follow`.
    """

    def __init__(self, config: LiveConfig | None = None, bus: EventBus | None = None) -> None:
        self.bus = bus if bus is not None else EventBus("autoscaler")
        self.autoscaler = LiveAutoscaler(config, self.bus)
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    @property
    def config(self) -> LiveConfig:
        return self.autoscaler.config

    @property
    def result(self) -> LiveResult:
        return self.autoscaler.result

    def start(self) -> LiveRun:
        """Start the experiment in a background thread; returns this run."""
        if self.thread is not None:
            raise RuntimeError("this live run was already started; make a new LiveRun")

        def target() -> None:
            try:
                asyncio.run(self.autoscaler.run())
            except BaseException as error:  # re-raised in the caller's thread
                self.error = error

        self.thread = threading.Thread(target=target, name="deploylab-live-autoscaler", daemon=True)
        self.thread.start()
        return self

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self) -> None:
        """Ask the control loop to stop at its next period (every process is still stopped)."""
        self.autoscaler.stop_requested = True

    def wait(self, timeout: float | None = None) -> LiveResult | None:
        """Wait up to ``timeout`` seconds; the result once the run ended, else ``None``."""
        if self.thread is None:
            raise RuntimeError("start() the live run first")
        self.thread.join(timeout)
        if self.thread.is_alive():
            return None
        if self.error is not None:
            raise self.error
        return self.result

    def follow(self, tick: Callable[[], object], every: float = 0.3) -> LiveResult:
        """Start (if needed) and call ``tick()`` in this thread every ``every`` seconds and
        once at the end; returns the result."""
        if self.thread is None:
            self.start()
        while True:
            result = self.wait(every)
            tick()
            if result is not None:
                return result


def run_live(config: LiveConfig | None = None, bus: EventBus | None = None) -> LiveResult:
    """Run a live experiment to the end (blocking). Works inside Jupyter too: when an event
    loop is already running, the experiment runs in its own thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(LiveAutoscaler(config, bus).run())
    result = LiveRun(config, bus).start().wait()
    assert result is not None  # wait() without a timeout returns only at the end
    return result


def start_live(
    config: LiveConfig | None = None, bus: EventBus | None = None
) -> tuple[LiveAutoscaler, threading.Thread]:
    """Start a live experiment in a background thread; the older form of
    ``LiveRun(config, bus).start()``, returning the autoscaler and its thread."""
    run = LiveRun(config, bus).start()
    assert run.thread is not None
    return run.autoscaler, run.thread
