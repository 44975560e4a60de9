"""``deploylab grade ...`` (release, autograde, export, feedback) and ``deploylab bench grading``.

Only argument parsing lives here; nbgrader and the pipeline are imported inside handlers so
``deploylab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import cast

#: What a grading command runs with its parsed arguments (its exit status, ``None`` for 0).
Handler = Callable[[argparse.Namespace], int | None]

#: Submissions graded at once: two per core, because a notebook under test is two processes
#: (sandboxed kernel, trusted tests) that mostly wait for each other.
DEFAULT_JOBS = min(2 * (os.cpu_count() or 1), 16)


def register(commands) -> None:
    add_to_group = commands.add_group(
        "grade", "release labs and grade a class with nbgrader (sandboxed, parallel)"
    )

    def add(name: str, help: str, handler: Handler) -> argparse.ArgumentParser:
        return add_to_group(name, help, _without_slow_optional_imports(handler))

    p = add(
        "release", "regenerate labs/<lab>/ from autograder/source/<lab>/ (deterministic)", _release
    )
    p.add_argument("labs", nargs="*", metavar="LAB", help="labs to release (default: all)")
    _course_options(p)

    p = add("autograde", "grade every submission of a lab and print a score table", _autograde)
    p.add_argument("lab", metavar="LAB")
    p.add_argument(
        "--submissions", required=True, metavar="DIR", help="DIR/<student_id>/<notebook>.ipynb"
    )
    p.add_argument(
        "--jobs",
        type=_positive_int,
        default=DEFAULT_JOBS,
        metavar="N",
        help=f"submissions graded at once (default: {DEFAULT_JOBS}, two per core)",
    )
    p.add_argument("--force", action="store_true", help="regrade unchanged submissions too")
    p.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="run student code without bubblewrap isolation (only where bwrap is missing)",
    )
    p.add_argument("--cell-timeout", type=float, default=30, metavar="S", help="seconds per cell")
    p.add_argument(
        "--notebook-timeout", type=float, default=300, metavar="S", help="seconds per notebook"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _course_options(p)

    p = add("export", "export grades: one row per student (wide) or nbgrader's CSV", _export)
    p.add_argument("--csv", metavar="FILE", help="write here instead of standard output")
    p.add_argument("--format", choices=("wide", "nbgrader"), default="wide")
    _course_options(p)

    p = add("feedback", "write per-student HTML feedback without hidden test source", _feedback)
    p.add_argument("lab", metavar="LAB")
    _course_options(p)

    p = commands.add(
        "grading",
        "grade N generated submissions with plain nbgrader and with deploylab",
        _without_slow_optional_imports(_bench),
        group="bench",
    )
    p.add_argument("--submissions", type=_positive_int, default=8, metavar="N")
    p.add_argument("--lab", default="ip-basics")
    p.add_argument("--jobs", type=_positive_int, default=DEFAULT_JOBS, metavar="N")
    p.add_argument(
        "--repeat",
        type=_positive_int,
        default=1,
        metavar="R",
        help="run both graders R times; report best and median (default: 1)",
    )
    p.add_argument(
        "--unsafe-no-sandbox", action="store_true", help="measure deploylab without bubblewrap"
    )
    _course_options(p)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _course_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--course", metavar="DIR", help="nbgrader course root (default: ./autograder)"
    )
    parser.add_argument("--labs-dir", metavar="DIR", help="student versions (default: DIR/../labs)")


def _skip_slow_optional_imports() -> None:
    """Keep jsonschema (imported by nbformat) from loading ``rfc3987_syntax``.

    That optional package builds a parser at import time (0.8-2.5 s here, a third of a short
    grading run; see grading.md) only to check the "iri" string format, which the notebook
    schema never uses. jsonschema treats it as absent. Only done before jsonschema loads.
    """
    if "jsonschema" not in sys.modules:
        # None in sys.modules makes an import fail (the import system's documented rule);
        # typeshed types the mapping as modules only.
        modules = cast("dict[str, ModuleType | None]", sys.modules)
        modules.setdefault("rfc3987_syntax", None)


def _without_slow_optional_imports(handler: Handler) -> Handler:
    """``handler`` with :func:`_skip_slow_optional_imports` done before anything it runs.

    Done here, around every grading command, because a handler's first line imports a
    grading module and most of them import nbformat (so jsonschema) at their top: a skip
    inside the handler comes too late (it did, and cost each ``grade autograde`` a second
    or two of CPU).
    """

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int | None:
        _skip_slow_optional_imports()
        return handler(args)

    return run


def _course(args: argparse.Namespace):
    from deploylab.grading.course import Course

    return Course.locate(args.course, args.labs_dir)


def _release(args: argparse.Namespace) -> int:
    from deploylab.grading.release import release

    course = _course(args)
    labs = [course.check_lab(lab) for lab in args.labs] or course.labs()
    for lab, files in release(course, labs).items():
        for path in files:
            print(f"{lab}: wrote {os.path.relpath(path)}")
    return 0


def _autograde(args: argparse.Namespace) -> int:
    from deploylab.grading.autograde import autograde, format_table

    course = _course(args)
    results = autograde(
        course,
        course.check_lab(args.lab),
        args.submissions,
        jobs=args.jobs,
        force=args.force,
        sandbox=not args.unsafe_no_sandbox,
        cell_timeout=args.cell_timeout,
        notebook_timeout=args.notebook_timeout,
        progress=not args.quiet,
    )
    print(format_table(results))
    return 0 if all(result.status for result in results) else 1


def _export(args: argparse.Namespace) -> int:
    from deploylab.grading.export import export_csv

    text = export_csv(_course(args), args.format)
    if args.csv:
        with open(args.csv, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        print(f"wrote {args.csv}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _feedback(args: argparse.Namespace) -> int:
    from deploylab.grading.feedback import generate_feedback

    course = _course(args)
    for path in generate_feedback(course, course.check_lab(args.lab)):
        print(f"wrote {os.path.relpath(path)}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    # Skipping rfc3987_syntax speeds up our side only: nbgrader's CLI runs in its own process.
    from deploylab.grading.bench import run_benchmark

    return run_benchmark(
        _course(args),
        args.lab,
        args.submissions,
        jobs=args.jobs,
        sandbox=not args.unsafe_no_sandbox,
        repeat=args.repeat,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m deploylab.grading.cli grade ...``: only the grading commands.

    The benchmark runs this so it measures grading, not other topics' command modules.
    """
    from deploylab.cli import Commands

    parser = argparse.ArgumentParser(prog="deploylab")
    register(Commands(parser))
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ValueError as error:
        print(f"deploylab: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
