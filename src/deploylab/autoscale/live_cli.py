"""``deploylab autoscale live``: run one live experiment and print a line per sample."""

from __future__ import annotations

import json
import time

import psutil

from deploylab.autoscale.live import run_live
from deploylab.autoscale.live_config import LiveConfig
from deploylab.events import EventBus

__all__ = ["run_live_cli"]


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
