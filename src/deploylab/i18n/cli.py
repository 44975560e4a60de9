"""``deploylab translate build|check|refresh``: the translated editions and their catalogs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(commands) -> None:
    """Add ``deploylab translate …``."""
    add = commands.add_group(
        "translate",
        "build the translated editions (lessons-ko/, labs-ko/) and check their catalogs",
    )
    p = add(
        "build", "write the translated lessons, labs and glossary from English + catalogs", _build
    )
    _options(p)
    p = add("check", "list cells whose translation is missing or stale (exit 1 if any)", _check)
    _options(p)
    p = add(
        "refresh",
        "add the English of new and changed cells to the catalogs, for a translator",
        _refresh,
    )
    _options(p)


def _options(parser: argparse.ArgumentParser) -> None:
    from deploylab.i18n.languages import LANGUAGES

    parser.add_argument(
        "--lang",
        default="ko",
        choices=[code for code, lang in LANGUAGES.items() if not lang.is_source],
        help="edition (default: ko)",
    )
    parser.add_argument("--root", help="workbook directory (default: found from here)")


def _target(args: argparse.Namespace):
    from deploylab.i18n.languages import language
    from deploylab.workbook import find_workbook_root

    return find_workbook_root(Path(args.root) if args.root else None), language(args.lang)


def _build(args: argparse.Namespace) -> int:
    from deploylab.i18n.build import build_edition, edition_problems

    root, lang = _target(args)
    for path in build_edition(root, lang):
        print(f"wrote {os.path.relpath(path)}")
    problems = edition_problems(root, lang)
    if problems:
        print(
            f"deploylab: {len(problems)} cells kept their English text or a stale translation; "
            "see `deploylab translate check`",
            file=sys.stderr,
        )
    return 0


def _check(args: argparse.Namespace) -> int:
    from deploylab.i18n.build import edition_problems

    root, lang = _target(args)
    problems = edition_problems(root, lang)
    for problem in problems:
        print(problem)
    if problems:
        print(
            f"\n{len(problems)} translation problems in the {lang.name} edition: run "
            f"`deploylab translate refresh --lang {lang.code}`, translate the entries that have "
            "`english`, then `deploylab translate build`",
            file=sys.stderr,
        )
        return 1
    print(f"every prose cell of the {lang.name} edition is translated from the current English")
    return 0


def _refresh(args: argparse.Namespace) -> int:
    from deploylab.i18n.build import refresh_catalogs

    root, lang = _target(args)
    for path in refresh_catalogs(root, lang):
        print(f"updated {os.path.relpath(path)}")
    return 0
