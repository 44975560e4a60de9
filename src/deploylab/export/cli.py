"""``deploylab export-html`` and ``deploylab build-lite``: take-home copies of the lessons that
need no Python, and the browser-only site."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(commands) -> None:
    """Add ``deploylab export-html`` and ``deploylab build-lite``."""
    from deploylab.i18n.languages import LANGUAGES

    register_lite(commands)

    parser = commands.add(
        "export-html",
        "execute lessons and write each as standalone HTML (widgets animate offline) and PDF",
        _export_html,
    )
    parser.add_argument(
        "lessons", nargs="*", metavar="LESSON", help="01, 01-proxies or a path (default: all)"
    )
    parser.add_argument("--out", default="take-home", help="output directory (default: take-home)")
    parser.add_argument("--lang", default="en", choices=list(LANGUAGES), help="edition")
    parser.add_argument("--theme", default="light", choices=["light", "dark"], help="page theme")
    parser.add_argument("--no-pdf", action="store_true", help="write HTML only")
    parser.add_argument("--root", help="workbook directory (default: found from here)")
    parser.add_argument(
        "--fetch-only",
        action="store_true",
        help="only fetch the widget manager from npm (once, into the venv), then exit",
    )


def _export_html(args: argparse.Namespace) -> int:
    from . import widget_manager

    if args.fetch_only:
        print(f"widget manager in {widget_manager.fetch()}")
        return 0
    from .html import export_lessons

    export_lessons(
        args.lessons,
        out=Path(args.out),
        lang=args.lang,
        theme=args.theme,
        pdf=not args.no_pdf,
        root=Path(args.root) if args.root else None,
    )
    return 0


def register_lite(commands) -> None:
    """Add ``deploylab build-lite``."""
    parser = commands.add(
        "build-lite",
        "build the browser-only site (JupyterLite + Pyodide, served offline) for the VPC core",
        _build_lite,
    )
    parser.add_argument("--out", default="lite-site", help="output directory (default: lite-site)")
    parser.add_argument("--root", help="workbook directory (default: found from here)")


def _build_lite(args: argparse.Namespace) -> int:
    from deploylab.workbook import find_workbook_root

    from .lite import LiteBuildError, build_lite

    root = find_workbook_root(Path(args.root) if args.root else None)
    try:
        page = build_lite(Path(args.out), root)
    except LiteBuildError as error:
        print(f"deploylab build-lite: {error}", file=sys.stderr)
        return 2
    print(f"build-lite: serve {args.out} over http (a service worker needs it), then open {page}")
    return 0
