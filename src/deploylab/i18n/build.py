"""Writing a translated edition: English notebooks + catalogs → ``lessons-<lang>/``, ``labs-<lang>/``.

Which notebooks are translated, and where each one's catalog and output live, is decided
here once (:func:`edition_notebooks`); the builder, the staleness check and the translator's
refresh all walk the same list. Translated notebooks are generated and committed, like
``labs/``: learners browsing the repository see them, the notebook and browser tests run the
very files a learner opens, and CI regenerates them and checks ``git diff``.

A translated notebook is the English one with each markdown cell's source replaced by its
translation (cell ids, code cells, nbgrader metadata unchanged), so a Korean lab is the same
nbgrader assignment with the same grade ids and file name as the English one.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path

from deploylab.i18n.catalog import (
    TITLE_ID,
    CatalogProblem,
    catalog_problems,
    catalog_text,
    prose_cells,
    read_catalog,
    refresh_catalog,
)
from deploylab.i18n.languages import Language

__all__ = [
    "EditionNotebook",
    "build_edition",
    "edition_notebooks",
    "edition_problems",
    "refresh_catalogs",
    "translated_notebook",
]

CATALOG_DIRECTORY = "i18n"


@dataclass(frozen=True)
class EditionNotebook:
    """One English notebook, its catalog and its translated copy (paths relative to the root)."""

    english: Path
    catalog: Path
    output: Path


def edition_notebooks(root: Path, lang: Language) -> list[EditionNotebook]:
    """Every notebook of ``lang``'s edition: each lesson, then each lab's student version.

    Labs are translated from ``labs/<lab>/<lab>.ipynb`` (what ``deploylab grade release``
    writes), so the translation carries the same stubs, checksums and grade ids.
    """
    root = Path(root)
    catalogs = Path(CATALOG_DIRECTORY) / lang.code
    items = [
        EditionNotebook(
            path.relative_to(root),
            catalogs / "lessons" / f"{path.stem}.toml",
            Path(lang.lessons_dir) / path.name,
        )
        for path in sorted((root / "lessons").glob("[0-9][0-9]-*.ipynb"))
    ]
    items += [
        EditionNotebook(
            path.relative_to(root),
            catalogs / "labs" / f"{path.stem}.toml",
            Path(lang.labs_dir) / path.parent.name / path.name,
        )
        for path in sorted((root / "labs").glob("*/*.ipynb"))
        if path.stem == path.parent.name
    ]
    return items


def _read_notebook(path: Path):
    import nbformat

    return nbformat.read(path, as_version=4)


def translated_notebook(english_notebook, catalog, lang: Language, english_path: str):
    """A copy of ``english_notebook`` with its prose from ``catalog``.

    Cells with no translation keep their English text (the staleness check reports them);
    locked nbgrader cells get a checksum of their new text, so ``nbgrader validate`` does not
    take the translation for a student's edit.
    """
    notebook = copy.deepcopy(english_notebook)
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        text = catalog.translation(cell.id)
        if text is None:
            continue
        cell.source = text
        nbgrader = cell.metadata.get("nbgrader")
        if nbgrader and "checksum" in nbgrader:
            from nbgrader.utils import compute_checksum

            nbgrader["checksum"] = compute_checksum(cell)
    settings = notebook.metadata.setdefault("deploylab", {})
    title = catalog.translation(TITLE_ID)
    if title is not None:
        settings["title"] = title
    settings["translation"] = {"language": lang.code, "source": english_path}
    return notebook


def _notebook_text(notebook) -> str:
    """The committed form: no outputs or execution counts, as ``labs/`` is written."""
    import nbformat

    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    notebook.metadata.pop("widgets", None)
    return nbformat.writes(notebook, version=4) + "\n"


def build_edition(root: Path, lang: Language) -> list[Path]:
    """Write every translated notebook of ``lang`` (and the glossary); returns the files written.

    Files in the edition's directories that no notebook produces any more are removed, and a
    lab's other files (data, images) are copied beside its notebook.
    """
    from deploylab.i18n.glossary import write_glossary

    root = Path(root)
    items = edition_notebooks(root, lang)
    written: list[Path] = []
    for item in items:
        english = _read_notebook(root / item.english)
        catalog = read_catalog(root / item.catalog, item.english.as_posix())
        notebook = translated_notebook(english, catalog, lang, item.english.as_posix())
        output = root / item.output
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(_notebook_text(notebook), encoding="utf-8")
        written.append(output)
        if item.english.parts[0] == "labs":
            for extra in sorted((root / item.english).parent.rglob("*")):
                if extra.is_file() and extra.suffix != ".ipynb":
                    target = output.parent / extra.relative_to((root / item.english).parent)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(extra, target)
                    written.append(target)
    written += write_glossary(root, lang)
    keep = {path.resolve() for path in written}
    for folder in (root / lang.lessons_dir, root / lang.labs_dir):
        for path in sorted(folder.rglob("*"), reverse=True):
            if (
                path.is_file()
                and path.resolve() not in keep
                and ".ipynb_checkpoints" not in path.parts
            ):
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    return written


def edition_problems(root: Path, lang: Language) -> list[CatalogProblem]:
    """Every missing, stale or orphaned translation in ``lang``'s catalogs, by cell id."""
    root = Path(root)
    problems: list[CatalogProblem] = []
    for item in edition_notebooks(root, lang):
        english = prose_cells(_read_notebook(root / item.english))
        catalog = read_catalog(root / item.catalog, item.english.as_posix())
        problems += catalog_problems(catalog, english, item.catalog)
    return problems


def refresh_catalogs(root: Path, lang: Language) -> list[Path]:
    """Rewrite ``lang``'s catalogs for a translator (see :func:`refresh_catalog`); returns the
    catalogs that changed."""
    root = Path(root)
    changed = []
    for item in edition_notebooks(root, lang):
        english = prose_cells(_read_notebook(root / item.english))
        path = root / item.catalog
        catalog = read_catalog(path, item.english.as_posix())
        comment = (
            f"{lang.name} ({lang.code}) prose of {item.english.as_posix()}, one entry per markdown cell.\n"
            "Write `text`; delete `english` and `stale` when done. source_hash is the hash of the\n"
            "English cell the text translates: `deploylab translate refresh` updates it and marks\n"
            "the entry stale when the English changes. Build with `deploylab translate build`."
        )
        text = catalog_text(refresh_catalog(catalog, english), comment)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed
