"""Translation catalogs: one TOML file per notebook, one entry per prose cell, keyed by cell id.

An entry records the hash of the English cell it was translated from, so a changed English
cell makes its translation *stale* and a new one makes it *missing*; :func:`catalog_problems`
lists both by cell id. The file format is meant to be edited by hand::

    notebook = "lessons/01-proxies.ipynb"

    [[cell]]
    id = "intro"
    source_hash = "3b1f0c2d9e8a7f65"
    text = '''
    # 프록시
    …'''

:func:`refresh_catalog` is the translator's helper: it adds an entry with the English text in
``english`` (and an empty ``text``) for every new cell, and marks changed cells ``stale`` with
the new English beside the old translation; a translator writes ``text`` and deletes the
``english`` and ``stale`` lines.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "TITLE_ID",
    "Catalog",
    "CatalogEntry",
    "CatalogError",
    "CatalogProblem",
    "catalog_problems",
    "catalog_text",
    "prose_cells",
    "read_catalog",
    "refresh_catalog",
    "source_hash",
]

#: The pseudo cell id under which a notebook's title (``metadata.deploylab.title``) is kept.
TITLE_ID = "@title"


class CatalogError(ValueError):
    """A catalog file that cannot be read; the message names the file and what is wrong."""


def source_hash(english: str) -> str:
    """The hash recorded for an English cell: 16 hex digits of SHA-256 of its source.

    >>> source_hash("# Proxies")
    'f2e2a15a35339ad3'
    >>> source_hash("# Proxies ") == source_hash("# Proxies")
    False
    """
    return hashlib.sha256(english.encode("utf-8")).hexdigest()[:16]


def _cell_source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def prose_cells(notebook) -> dict[str, str]:
    """The translatable text of an English notebook, in order: cell id → markdown source.

    The notebook's title (``metadata.deploylab.title``), when it has one, comes first as
    :data:`TITLE_ID`. Code cells are not prose: they exist once, in English.

    >>> import nbformat.v4 as v4
    >>> nb = v4.new_notebook(cells=[v4.new_markdown_cell("# Hi", id="a"),
    ...                             v4.new_code_cell("1", id="b")])
    >>> nb.metadata["deploylab"] = {"title": "Hello"}
    >>> prose_cells(nb)
    {'@title': 'Hello', 'a': '# Hi'}
    """
    units: dict[str, str] = {}
    title = notebook.get("metadata", {}).get("deploylab", {}).get("title")
    if title:
        units[TITLE_ID] = title
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "markdown":
            if not cell.get("id"):
                raise CatalogError(
                    "a markdown cell has no id; save the notebook as nbformat 4.5 or later"
                )
            units[cell["id"]] = _cell_source(cell)
    return units


@dataclass
class CatalogEntry:
    """The translation of one English cell, and the hash of the English it translates."""

    id: str
    source_hash: str
    text: str = ""
    english: str | None = None  # the English to translate, while the entry is a to-do
    stale: bool = False  # set by refresh_catalog when the English changed under the text

    @property
    def translated(self) -> bool:
        return bool(self.text.strip())


@dataclass
class Catalog:
    """All translations of one English notebook into one language."""

    notebook: str  # the English notebook, relative to the workbook root
    entries: dict[str, CatalogEntry] = field(default_factory=dict)

    def translation(self, cell_id: str) -> str | None:
        """The translated text of ``cell_id``, or None when there is none yet."""
        entry = self.entries.get(cell_id)
        return entry.text if entry is not None and entry.translated else None


@dataclass(frozen=True)
class CatalogProblem:
    """Why one cell's translation cannot be trusted: ``missing``, ``stale`` or ``orphaned``."""

    catalog: Path
    cell_id: str
    kind: str

    def __str__(self) -> str:
        reasons = {
            "missing": "no translation (new English cell, or text left empty)",
            "stale": "the English cell changed since it was translated",
            "orphaned": "no English cell has this id any more",
        }
        return f"{self.catalog}: cell {self.cell_id}: {self.kind} — {reasons[self.kind]}"


def read_catalog(path: Path, notebook: str) -> Catalog:
    """The catalog at ``path`` (an empty one for ``notebook`` when the file does not exist)."""
    if not path.is_file():
        return Catalog(notebook)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise CatalogError(f"{path} is not valid TOML: {error}") from error
    catalog = Catalog(data.get("notebook", notebook))
    for number, raw in enumerate(data.get("cell", []), start=1):
        if not isinstance(raw.get("id"), str) or not isinstance(raw.get("source_hash"), str):
            raise CatalogError(f"{path}: cell entry {number} needs an id and a source_hash")
        if raw["id"] in catalog.entries:
            raise CatalogError(f"{path}: cell id {raw['id']!r} has more than one entry")
        unknown = set(raw) - {"id", "source_hash", "text", "english", "stale"}
        if unknown:
            raise CatalogError(f"{path}: cell {raw['id']!r} has unknown keys {sorted(unknown)}")
        catalog.entries[raw["id"]] = CatalogEntry(
            raw["id"],
            raw["source_hash"],
            raw.get("text", ""),
            raw.get("english"),
            bool(raw.get("stale", False)),
        )
    return catalog


def catalog_problems(catalog: Catalog, english: dict[str, str], path: Path) -> list[CatalogProblem]:
    """Every cell of ``english`` (from :func:`prose_cells`) whose translation is missing or
    stale, then every entry whose cell is gone, in notebook order.

    >>> english = {"a": "# One", "b": "Two", "c": "Three"}
    >>> catalog = Catalog("x.ipynb", {
    ...     "a": CatalogEntry("a", source_hash("# One"), "# 하나"),
    ...     "b": CatalogEntry("b", source_hash("2"), "둘"),
    ...     "z": CatalogEntry("z", source_hash("Zed"), "제트")})
    >>> [(p.cell_id, p.kind) for p in catalog_problems(catalog, english, Path("x.toml"))]
    [('b', 'stale'), ('c', 'missing'), ('z', 'orphaned')]
    """
    problems = []
    for cell_id, source in english.items():
        entry = catalog.entries.get(cell_id)
        if entry is None or not entry.translated:
            problems.append(CatalogProblem(path, cell_id, "missing"))
        elif entry.stale or entry.source_hash != source_hash(source):
            problems.append(CatalogProblem(path, cell_id, "stale"))
    problems += [
        CatalogProblem(path, cell_id, "orphaned")
        for cell_id in catalog.entries
        if cell_id not in english
    ]
    return problems


def refresh_catalog(catalog: Catalog, english: dict[str, str]) -> Catalog:
    """A copy of ``catalog`` ready for a translator, in the English notebook's cell order.

    New cells get an empty entry holding their English; entries whose English changed get the
    new hash, the new English and ``stale = true`` (their old text is kept as a starting
    point); entries of cells that no longer exist are dropped.

    >>> catalog = Catalog("x.ipynb", {"a": CatalogEntry("a", source_hash("old"), "옛날")})
    >>> fresh = refresh_catalog(catalog, {"a": "new", "b": "more"})
    >>> [(e.id, e.stale, e.english, e.text) for e in fresh.entries.values()]
    [('a', True, 'new', '옛날'), ('b', False, 'more', '')]
    >>> catalog_problems(fresh, {"a": "new", "b": "more"}, Path("x.toml"))[0].kind
    'stale'
    """
    refreshed = Catalog(catalog.notebook)
    for cell_id, source in english.items():
        entry = catalog.entries.get(cell_id)
        current = source_hash(source)
        if entry is None:
            entry = CatalogEntry(cell_id, current, "", source)
        elif entry.source_hash != current:
            entry = CatalogEntry(cell_id, current, entry.text, source, stale=True)
        elif not entry.translated:
            entry = CatalogEntry(cell_id, current, entry.text, source, entry.stale)
        refreshed.entries[cell_id] = entry
    return refreshed


def _toml_string(text: str) -> str:
    """``text`` as a TOML string a person can edit: a multi-line literal string when it can
    be one (no escapes to read), else a basic string (JSON escapes are valid TOML)."""
    literal = f"'''\n{text}'''"
    can_be_literal = (
        "'''" not in text
        and not text.endswith("'")
        and all(char in "\t\n" or ord(char) >= 0x20 for char in text)
    )
    # TOML drops the newline after the opening quotes; check it changes nothing else.
    if can_be_literal and tomllib.loads(f"x = {literal}")["x"] == text:
        return literal
    return json.dumps(text, ensure_ascii=False)


def catalog_text(catalog: Catalog, comment: str = "") -> str:
    """The TOML file for ``catalog`` (``comment`` lines first); :func:`read_catalog` reads it back.

    >>> catalog = Catalog("x.ipynb", {"a": CatalogEntry("a", "00ff", "# 제목\\n\\n본문")})
    >>> text = catalog_text(catalog)
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "x.toml"
    ...     _ = path.write_text(text, encoding="utf-8")
    ...     read_catalog(path, "x.ipynb") == catalog
    True
    """
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    lines.append(f"notebook = {json.dumps(catalog.notebook)}")
    for entry in catalog.entries.values():
        lines += ["", "[[cell]]", f"id = {json.dumps(entry.id)}"]
        lines.append(f"source_hash = {json.dumps(entry.source_hash)}")
        if entry.stale:
            lines.append("stale = true")
        if entry.english is not None:
            lines.append(f"english = {_toml_string(entry.english)}")
        lines.append(f"text = {_toml_string(entry.text)}")
    return "\n".join(lines) + "\n"
