"""The ``deploylab`` command: parses arguments, calls the library, prints.

Each topic contributes its own subcommands from a ``<topic>/cli.py`` module that defines
``register(commands)``; this file only knows the list of those modules. Topic CLI modules
import nothing heavy at module level, so ``deploylab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

import deploylab

#: Modules that add subcommands. A module that is missing is skipped, so a topic can be
#: added (or be half-built) without breaking the others.
COMMAND_MODULES = (
    "deploylab.workbook",
    "deploylab.slides",
    "deploylab.grading.cli",
    "deploylab.vpc.cli",
    "deploylab.proxy.cli",
    "deploylab.balancer.cli",
    "deploylab.autoscale.cli",
    "deploylab.deploy.cli",
    "deploylab.nginx_lab.cli",
    "deploylab.classroom.cli",
    "deploylab.i18n.cli",
    "deploylab.export.cli",
)

#: Groups of subcommands shared by several topics: ``deploylab serve origin``,
#: ``deploylab serve balancer``, ``deploylab nginx-conf reverse-proxy``, ``deploylab bench lb``…
SHARED_GROUPS = {
    "serve": "run a demo server on loopback (origin, proxies, balancer, backend)",
    "nginx-conf": "print the nginx configuration equivalent to a deploylab set-up",
    "bench": "measure deploylab against its anchor (nginx, plain nbgrader) and print ratios",
}


class UsageError(ValueError):
    """Bad command-line input; the message names the value and what was expected (exit 2)."""


class Commands:
    """What a topic's ``register`` receives: adds top-level commands or joins a shared group."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._top = parser.add_subparsers(dest="command", metavar="COMMAND")
        self._groups: dict[str, argparse._SubParsersAction] = {}
        for name, help_text in SHARED_GROUPS.items():
            group_parser = self._top.add_parser(name, help=help_text, description=help_text)
            group_parser.set_defaults(func=_help_of(group_parser))
            self._groups[name] = group_parser.add_subparsers(dest=f"{name}_what", metavar="WHAT")

    def add(
        self,
        name: str,
        help: str,
        handler: Callable[[argparse.Namespace], int | None],
        group: str | None = None,
    ) -> argparse.ArgumentParser:
        """Add ``deploylab NAME`` (or ``deploylab GROUP NAME``) and return its parser."""
        where = self._top if group is None else self._groups[group]
        parser = where.add_parser(name, help=help, description=help)
        parser.set_defaults(func=handler)
        return parser

    def add_group(self, name: str, help: str) -> Callable[..., argparse.ArgumentParser]:
        """Add ``deploylab NAME SUB`` commands; returns an ``add(sub, help, handler)`` function."""
        group_parser = self._top.add_parser(name, help=help, description=help)
        group_parser.set_defaults(func=_help_of(group_parser))
        subs = group_parser.add_subparsers(dest=f"{name}_what", metavar="WHAT")

        def add(sub: str, help: str, handler: Callable[[argparse.Namespace], int | None]):
            parser = subs.add_parser(sub, help=help, description=help)
            parser.set_defaults(func=handler)
            return parser

        return add


def _help_of(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def show_help(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show_help


def build_parser() -> argparse.ArgumentParser:
    """The whole ``deploylab`` argument parser, with every available topic's commands."""
    parser = argparse.ArgumentParser(
        prog="deploylab",
        description="A workbook and grader for how traffic reaches a service.",
    )
    parser.add_argument("--version", action="version", version=f"deploylab {deploylab.__version__}")
    commands = Commands(parser)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                continue  # that topic is not built yet
            raise
        module.register(commands)
    parser.set_defaults(func=_help_of(parser))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deploylab`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except (UsageError, ValueError) as error:
        print(f"deploylab: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
