"""``deploylab bench nginx-lab``: seconds to grade one nginx lab submission."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(commands) -> None:
    """Add ``deploylab bench nginx-lab``."""
    from deploylab.grading.cli import (
        _course_options,
        _positive_int,
        _without_slow_optional_imports,
    )

    p = commands.add(
        "nginx-lab",
        "grade the nginx lab's master and a wrong submission N times; seconds per submission",
        _without_slow_optional_imports(_bench),
        group="bench",
    )
    p.add_argument("--rounds", type=_positive_int, default=5, metavar="N")
    p.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="grade without the sandbox (only to compare; student code runs as you)",
    )
    _course_options(p)


def _bench(args: argparse.Namespace) -> int:
    from deploylab.grading.cli import _course
    from deploylab.nginx_lab.bench import run_benchmark

    return run_benchmark(_course(args), args.rounds, sandbox=not args.unsafe_no_sandbox)
