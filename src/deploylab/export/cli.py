"""``deploylab export-html``: take-home copies of the lessons that need no Python."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands) -> None:
    """Add ``deploylab export-html``."""
    from deploylab.i18n.languages import LANGUAGES

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
