"""``deploylab classroom ...``: bring a class's JupyterHub up and down (root), and the
instructor's release / collect / grade / export (as the instructor's own unix user).

Only argument parsing lives here; the work is in :mod:`deploylab.classroom.hub` and
:mod:`deploylab.classroom.instructor`, imported inside handlers so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _state_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="the classroom's state directory (default: $DEPLOYLAB_CLASSROOM or "
        "/srv/deploylab-classroom)",
    )


def register(commands) -> None:
    add = commands.add_group(
        "classroom", "a whole class on one JupyterHub: accounts, hand-out, hand-in, grading"
    )
    p = add("setup", "install the shared hub environment under /opt (root; idempotent)", _setup)
    p = add("up", "create accounts from a roster and start JupyterHub on 127.0.0.1 (root)", _up)
    p.add_argument("--roster", required=True, metavar="CSV", help="username,role,first_name,...")
    p.add_argument("--port", type=int, default=8000, help="the hub's port (default 8000)")
    p.add_argument("--course", default="deploylab", help="nbgrader course id (default deploylab)")
    p.add_argument("--memory", default="1G", help="memory per person's server (default 1G)")
    p.add_argument("--cpus", type=float, default=1.0, help="CPU cores per server (default 1)")
    p.add_argument(
        "--idle-timeout", type=int, default=3600, metavar="S", help="cull servers idle S seconds"
    )
    _state_option(p)
    p = add("down", "stop the hub and every server it started (root)", _down)
    p.add_argument(
        "--remove-users", action="store_true", help="also delete the accounts 'up' created"
    )
    _state_option(p)
    p = add("status", "who is on the roster and whose server is running (root)", _status)
    _state_option(p)
    for name, help_text, handler in (
        ("release", "hand a lab out: students fetch it in the Assignments panel", _release),
        ("collect", "copy each student's latest hand-in of a lab into the course", _collect),
        ("grade", "collect, autograde in the sandbox and hand feedback back", _grade),
    ):
        p = add(name, help_text + " (as an instructor)", handler)
        p.add_argument("lab", metavar="LAB")
        _state_option(p)
        if name == "grade":
            p.add_argument("--jobs", type=int, default=None, metavar="N")
    p = add("export", "grades of every roster student as CSV (as an instructor)", _export)
    p.add_argument("--csv", metavar="FILE", help="write here instead of standard output")
    p.add_argument("--format", choices=("wide", "nbgrader"), default="wide")
    _state_option(p)
    p = commands.add(
        "classroom",
        "log N students into a classroom hub and run a lesson in all their servers at once",
        _bench,
        group="bench",
    )
    p.add_argument("--students", type=int, default=4, metavar="N")
    p.add_argument("--lesson", default="02-load-balancing", help="lesson file stem to run")
    p.add_argument("--timeout", type=float, default=900, metavar="S", help="give up after S s")


def _load(args: argparse.Namespace):
    from deploylab.classroom.layout import Classroom

    return Classroom.load(args.state_dir)


def _setup(_args: argparse.Namespace) -> int:
    from deploylab.classroom.install import install_environment

    print(f"classroom: environment ready in {install_environment()}")
    return 0


def _up(args: argparse.Namespace) -> int:
    import time

    from deploylab.classroom.hub import bring_up
    from deploylab.classroom.layout import DEFAULT_STATE_DIR
    from deploylab.classroom.roster import read_roster

    started = time.monotonic()
    members = read_roster(args.roster)
    classroom = bring_up(
        members,
        state_dir=Path(args.state_dir or DEFAULT_STATE_DIR),
        port=args.port,
        course=args.course,
        memory=args.memory,
        cpus=args.cpus,
        idle_timeout=args.idle_timeout,
    )
    print(
        f"classroom: up in {time.monotonic() - started:.1f} s. Students open {classroom.url}/ "
        "and choose their password at first login."
    )
    return 0


def _down(args: argparse.Namespace) -> int:
    from deploylab.classroom.hub import bring_down

    bring_down(_load(args), remove_users=args.remove_users)
    return 0


def _status(args: argparse.Namespace) -> int:
    from deploylab.classroom.hub import status

    rows = status(_load(args))
    print(f"{'username':<20} {'role':<11} {'server':<9} {'memory':>9}  last activity")
    for row in rows:
        memory = f"{row['memory'] / 2**20:.0f} MiB" if row["memory"] else "-"
        print(
            f"{row['username']:<20} {row['role']:<11} {row['server']:<9} {memory:>9}  "
            f"{row['last_activity']}"
        )
    return 0


def _release(args: argparse.Namespace) -> int:
    from deploylab.classroom.instructor import release

    release(_load(args), args.lab)
    return 0


def _collect(args: argparse.Namespace) -> int:
    from deploylab.classroom.instructor import collect

    collect(_load(args), args.lab)
    return 0


def _grade(args: argparse.Namespace) -> int:
    from deploylab.classroom.instructor import grade

    return grade(_load(args), args.lab, jobs=args.jobs)


def _export(args: argparse.Namespace) -> int:
    from deploylab.classroom.instructor import export

    return export(_load(args), args.csv, args.format)


def _bench(args: argparse.Namespace) -> int:
    from deploylab.classroom.bench import run_benchmark

    return run_benchmark(args.students, lesson=args.lesson, timeout=args.timeout)


if __name__ == "__main__":  # pragma: no cover
    from deploylab.cli import main

    sys.exit(main(["classroom", *sys.argv[1:]]))
