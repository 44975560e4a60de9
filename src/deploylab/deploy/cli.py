"""``deploylab deploy STRATEGY``: a real deployment behind nginx, under traffic."""

from __future__ import annotations

import argparse
import json

STRATEGY_NAMES = ("restart", "blue-green", "rolling")


def _deploy(args: argparse.Namespace) -> int:
    from deploylab.deploy.experiment import run_deployment

    run = run_deployment(
        args.strategy, instances=args.instances, keep_alive=args.keep_alive, settle=args.settle
    )
    if args.json:
        print(
            json.dumps(
                {
                    **run.summary,
                    "steps": [
                        {
                            "at": round(at, 3),
                            "action": step.action,
                            "instances": list(step.instances),
                            "serving": list(serving),
                        }
                        for at, step, serving in zip(
                            run.step_times, run.plan, run.serving, strict=True
                        )
                    ],
                },
                indent=2,
            )
        )
        return 0
    print(
        f"{run.strategy} deployment of v2 over v1 behind nginx "
        f"({'keep-alive' if run.keep_alive else 'new connection per request'} clients)"
    )
    for at, step, serving in zip(run.step_times, run.plan, run.serving, strict=True):
        print(
            f"  t={at:5.2f}s  {step.action:<5} {' '.join(step.instances):<24} "
            f"serving after: {' '.join(serving) or 'NOBODY'}"
        )
    summary = run.summary
    print(
        f"requests {summary['requests']}: ok {summary['ok']}, non-2xx {summary['non_2xx']}, "
        f"connection errors {summary['errors']}; nginx reloads {summary['nginx_reloads']}"
    )
    print(
        "served by: "
        + ", ".join(f"{name} {count}" for name, count in sorted(summary["served_by"].items()))
    )
    return 0


def register(commands) -> None:
    """Add ``deploylab deploy``."""
    parser = commands.add(
        "deploy", "run a restart / blue-green / rolling deployment behind a real nginx", _deploy
    )
    parser.add_argument("strategy", choices=STRATEGY_NAMES, help="how to replace v1 with v2")
    parser.add_argument("--instances", type=int, default=2, help="backends per version (1-8)")
    parser.add_argument(
        "--keep-alive",
        action="store_true",
        help="clients reuse connections (shows errors at reload)",
    )
    parser.add_argument("--settle", type=float, default=0.6, help="seconds between steps")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
