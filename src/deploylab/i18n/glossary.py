"""The glossary back to the source notes: their terms, the English ones, where each is taught.

One data file, ``i18n/<lang>/glossary.toml``, gives each term (the notes' own word, the English
term the lessons use, a one-line definition, the lessons and labs that teach it). From it
:func:`write_glossary` writes a notebook in the edition (``lessons-<lang>/glossary.ipynb``) and
a page in ``assets/`` for readers without JupyterLab, so the two never disagree.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from deploylab.i18n.catalog import TITLE_ID, read_catalog
from deploylab.i18n.languages import Language
from deploylab.workspace import NOTEBOOK_KERNELSPEC

__all__ = [
    "Glossary",
    "GlossaryError",
    "GlossaryTerm",
    "glossary_markdown",
    "glossary_path",
    "read_glossary",
    "write_glossary",
]

GLOSSARY_NOTEBOOK = "glossary.ipynb"


class GlossaryError(ValueError):
    """A glossary entry that is malformed or points at a lesson or lab that does not exist."""


@dataclass(frozen=True)
class GlossaryTerm:
    """One term of the source notes and where the course teaches it."""

    term: str  # as the source notes write it
    english: str
    definition: str
    lessons: tuple[str, ...]  # lesson stems, e.g. "03-autoscaling"
    labs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Glossary:
    """A language's glossary: its title, introduction, column headings and terms."""

    title: str
    introduction: str
    columns: tuple[str, str, str, str]  # term, English, definition, where it is taught
    lab_label: str  # the word for "lab" in the where-taught links
    terms: tuple[GlossaryTerm, ...]


def glossary_path(root: Path, lang: Language) -> Path:
    """Where ``lang``'s glossary data lives: ``i18n/<lang>/glossary.toml``."""
    return Path(root) / "i18n" / lang.code / "glossary.toml"


def read_glossary(root: Path, lang: Language) -> Glossary | None:
    """``lang``'s glossary, checked against the workbook; None when the language has none."""
    root = Path(root)
    path = glossary_path(root, lang)
    if not path.is_file():
        return None
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    terms = []
    for raw in data.get("term", []):
        try:
            term = GlossaryTerm(
                raw["term"],
                raw["english"],
                raw["definition"],
                tuple(raw.get("lessons", ())),
                tuple(raw.get("labs", ())),
            )
        except KeyError as error:
            raise GlossaryError(f"{path}: a term lacks {error.args[0]!r}: {raw}") from None
        if not term.lessons:
            raise GlossaryError(f"{path}: {term.term!r} names no lesson that teaches it")
        for lesson in term.lessons:
            if not (root / "lessons" / f"{lesson}.ipynb").is_file():
                raise GlossaryError(
                    f"{path}: {term.term!r} names lesson {lesson!r}, which does not exist"
                )
        for lab in term.labs:
            if not (root / "labs" / lab / f"{lab}.ipynb").is_file():
                raise GlossaryError(
                    f"{path}: {term.term!r} names lab {lab!r}, which does not exist"
                )
        terms.append(term)
    return Glossary(
        data["title"],
        data["introduction"].strip(),
        tuple(data["columns"]),
        data["lab_label"],
        tuple(terms),
    )


def _lesson_titles(root: Path, lang: Language) -> dict[str, str]:
    """Lesson stem → its title in ``lang`` (from the lesson's catalog, else its English title)."""
    import nbformat

    titles = {}
    for path in sorted((root / "lessons").glob("[0-9][0-9]-*.ipynb")):
        english = nbformat.read(path, as_version=4).metadata.get("deploylab", {}).get("title")
        catalog = read_catalog(root / "i18n" / lang.code / "lessons" / f"{path.stem}.toml", "")
        titles[path.stem] = catalog.translation(TITLE_ID) or english or path.stem
    return titles


def glossary_markdown(glossary: Glossary, titles: dict[str, str], lessons: str, labs: str) -> str:
    """The glossary as Markdown, grouped by the first lesson that teaches each term (in the
    data file's order, which follows the course).

    ``lessons`` and ``labs`` are the link prefixes to the edition's lesson and lab folders,
    as seen from where the Markdown will live.
    """
    groups: dict[str, list[GlossaryTerm]] = {}
    for term in glossary.terms:
        groups.setdefault(term.lessons[0], []).append(term)
    lines = [f"# {glossary.title}", "", glossary.introduction]
    for stem in sorted(groups):
        lines += ["", f"## {stem[:2]} {titles.get(stem, stem)}", ""]
        lines += ["| " + " | ".join(glossary.columns) + " |", "|---|---|---|---|"]
        for term in groups[stem]:
            where = [
                f"[{stem_[:2]} {titles.get(stem_, stem_)}]({lessons}/{stem_}.ipynb)"
                for stem_ in term.lessons
            ]
            where += [
                f"[{glossary.lab_label} {lab}]({labs}/{lab}/{lab}.ipynb)" for lab in term.labs
            ]
            cells = [term.term, term.english, term.definition, " · ".join(where)]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def write_glossary(root: Path, lang: Language) -> list[Path]:
    """Write ``lang``'s glossary notebook and its ``assets/`` page; returns the files written."""
    import nbformat

    root = Path(root)
    glossary = read_glossary(root, lang)
    if glossary is None or lang.glossary_page is None:
        return []
    titles = _lesson_titles(root, lang)
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell(
            glossary_markdown(glossary, titles, ".", f"../{lang.labs_dir}"), id="glossary"
        )
    ]
    notebook.metadata["deploylab"] = {
        "title": glossary.title,
        "generated_from": glossary_path(root, lang).relative_to(root).as_posix(),
    }
    notebook.metadata["kernelspec"] = dict(NOTEBOOK_KERNELSPEC)
    notebook_path = root / lang.lessons_dir / GLOSSARY_NOTEBOOK
    notebook_path.parent.mkdir(parents=True, exist_ok=True)
    notebook_path.write_text(nbformat.writes(notebook, version=4) + "\n", encoding="utf-8")
    page_path = root / lang.glossary_page
    page_path.parent.mkdir(parents=True, exist_ok=True)
    depth = "/".join([".."] * (len(Path(lang.glossary_page).parts) - 1)) or "."
    source = glossary_path(root, lang).relative_to(root).as_posix()
    page = glossary_markdown(
        glossary, titles, f"{depth}/{lang.lessons_dir}", f"{depth}/{lang.labs_dir}"
    )
    page_path.write_text(
        f"<!-- generated from {source} by `deploylab translate build`; edit that file -->\n\n"
        + page
        + "\n",
        encoding="utf-8",
    )
    return [notebook_path, page_path]
