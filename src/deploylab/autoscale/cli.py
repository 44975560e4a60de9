"""``deploylab autoscale simulate|live`` and ``deploylab bench autoscale``."""

from __future__ import annotations

import argparse
import json

POLICY_CHOICES = ("target", "step", "simple", "scheduled", "predictive", "hpa", "maintain")
TRACE_CHOICES = ("diurnal", "flash-crowd", "ramp", "spike", "sawtooth")


def _load_trace(args: argparse.Namespace):
    import numpy as np

    from deploylab.autoscale.traces import TRACE_KINDS, generate_trace

    if args.trace in TRACE_KINDS:
        return generate_trace(args.trace, days=args.days, step_seconds=args.step, seed=args.seed)
    try:
        values = np.loadtxt(args.trace, delimiter=",", ndmin=1, comments="#")
    except (OSError, ValueError):
        raise ValueError(
            f"trace {args.trace!r} is neither one of {list(TRACE_KINDS)} nor a "
            "readable CSV file of requests/s per step"
        ) from None
    return values if values.ndim == 1 else values[:, -1]


def _simulate(args: argparse.Namespace) -> int:
    from deploylab.autoscale.simulate import SimulationConfig, simulate

    trace = _load_trace(args)
    failures = tuple((float(minute) * 60, count) for minute, count in args.fail)
    config = SimulationConfig(
        policy=args.policy,
        target=args.target,
        cooldown=args.cooldown,
        warmup=args.warmup,
        min_size=args.min,
        max_size=args.max,
        boot_time=args.boot_time,
        capacity=args.capacity,
        step_seconds=args.step,
        failures=failures,
    )
    result = simulate(trace, config)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    print(
        f"policy {args.policy} on trace {args.trace}: {result.metrics['steps']} steps "
        f"({result.metrics['hours']:.0f} h)"
    )
    labels = {
        "instance_hours": "instance-hours",
        "cost_usd": "cost (USD)",
        "slo_violation_fraction": "time violating SLO",
        "mean_cpu": "mean CPU %",
        "max_instances": "max instances",
        "scaling_activities": "scaling activities",
        "accuracy_under": "under-provisioning accuracy (instances)",
        "accuracy_over": "over-provisioning accuracy (instances)",
        "timeshare_under": "timeshare under-provisioned",
        "timeshare_over": "timeshare over-provisioned",
        "jitter": "jitter (changes/hour)",
    }
    for key, label in labels.items():
        value = result.metrics[key]
        shown = (
            f"{value:.1%}"
            if key in ("slo_violation_fraction", "timeshare_under", "timeshare_over")
            else f"{value:,.3f}".rstrip("0").rstrip(".")
        )
        print(f"  {label:<42} {shown}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from deploylab.autoscale.bench import run_bench

    return run_bench(repeat=args.repeat)


def _live(args: argparse.Namespace) -> int:
    from deploylab.autoscale.live_cli import run_live_cli

    return run_live_cli(args)


def _failure(text: str) -> tuple[float, int]:
    minute, _, count = text.partition(":")
    try:
        return float(minute), int(count or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--fail {text!r}: expected MINUTE[:COUNT], e.g. 600:2"
        ) from None


def register(commands) -> None:
    """Add ``deploylab autoscale simulate|live`` and ``deploylab bench autoscale``."""
    add = commands.add_group("autoscale", "simulate or run an autoscaler (EC2-style policies)")
    p = add("simulate", "run a policy over a traffic trace and print the metrics", _simulate)
    p.add_argument(
        "--policy",
        choices=POLICY_CHOICES,
        default="target",
        help="scaling policy set-up (default target tracking)",
    )
    p.add_argument(
        "--trace",
        default="diurnal",
        help=f"generated trace ({', '.join(TRACE_CHOICES)}) or a CSV file of "
        "requests/s per step (default diurnal)",
    )
    p.add_argument("--days", type=float, default=7, help="days of generated trace (default 7)")
    p.add_argument("--step", type=float, default=60, help="seconds per step (default 60)")
    p.add_argument("--seed", type=int, default=0, help="trace seed (default 0)")
    p.add_argument("--target", type=float, default=50, help="target CPU %% (default 50)")
    p.add_argument("--cooldown", type=float, default=300, help="cooldown s (default 300)")
    p.add_argument("--warmup", type=float, default=300, help="instance warm-up s (default 300)")
    p.add_argument("--boot-time", type=float, default=120, help="launch to InService s")
    p.add_argument(
        "--capacity",
        type=float,
        default=100,
        help="requests/s one instance serves at 100%% CPU (default 100)",
    )
    p.add_argument("--min", type=int, default=2, help="group minimum size (default 2)")
    p.add_argument("--max", type=int, default=30, help="group maximum size (default 30)")
    p.add_argument(
        "--fail",
        type=_failure,
        action="append",
        default=[],
        metavar="MINUTE[:COUNT]",
        help="fail COUNT in-service instances at MINUTE",
    )
    p.add_argument("--json", action="store_true", help="print config, metrics and activities")

    p = add("live", "autoscale real backend processes behind a balancer (bounded run)", _live)
    p.add_argument("--policy", choices=("target", "step", "simple"), default="target")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load (default 20)")
    p.add_argument("--target", type=float, default=40.0, help="target CPU %% (default 40)")
    p.add_argument("--max", type=int, default=4, help="most backend processes (default 4)")
    p.add_argument("--period", type=float, default=0.5, help="seconds per datapoint (0.5)")
    p.add_argument("--work-ms", type=float, default=8.0, help="CPU ms per request (default 8)")
    p.add_argument("--peak-rps", type=float, default=120.0, help="peak requests/s (default 120)")
    p.add_argument("--min", type=int, default=1, help="fewest backend processes (default 1)")
    p.add_argument(
        "--kill-at",
        type=float,
        default=None,
        help="kill one backend at this second to show replacement",
    )
    p.add_argument("--json", action="store_true", help="print the timeline as JSON")

    p = commands.add(
        "autoscale",
        "time the autoscaling simulator (a week at 1-minute steps)",
        _bench,
        group="bench",
    )
    p.add_argument("--repeat", type=int, default=5, help="runs per policy (default 5)")
