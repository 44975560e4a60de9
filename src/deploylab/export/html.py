"""Take-home copies of the lessons: executed, as standalone HTML whose widgets still animate
with no kernel and no network, and as PDF for printing.

A lesson is executed like the tests execute it (a fresh kernel in the lesson's directory; its
servers start and stop within the run). The kernel's widget state is kept in the notebook's
metadata, anywidget's state carries each widget's ESM and the recorded animation data, and
``templates/offline.html.j2`` inlines the widget manager (:mod:`.widget_manager`), so the file
needs nothing but a browser.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploylab.i18n.languages import LANGUAGE_VARIABLE, Language, language
from deploylab.workbook import find_workbook_root

from . import widget_manager
from .widget_manager import widget_modules

TEMPLATES = Path(__file__).with_name("templates")

#: What the export inlines must not end its ``<script>`` element early.
_SCRIPT_END = re.compile(r"</(script)", re.IGNORECASE)

#: Where nbclient keeps the widget state in an executed notebook's metadata.
WIDGET_STATE_MIMETYPE = "application/vnd.jupyter.widget-state+json"

#: TeX in markdown: ``$…$`` (not a lone price), ``$$…$$``, ``\\(…\\)`` or ``\\[…\\]``.
_TEX = re.compile(r"\$[^$\s][^$]*\$|\\\(|\\\[")


@dataclass(frozen=True)
class ExportedLesson:
    """The files written for one lesson."""

    notebook: Path
    html: Path
    pdf: Path | None


def lesson_paths(root: Path, names: Sequence[str], lang: Language) -> list[Path]:
    """The lesson notebooks called ``names`` (``01``, ``01-proxies`` or a path), all by default.

    A ``ValueError`` names the unknown lesson and the choices.
    """
    lessons_dir = root / lang.lessons_dir
    available = sorted(lessons_dir.glob("[0-9][0-9]-*.ipynb"))
    if not names:
        return available
    chosen = []
    for name in names:
        as_path = Path(name)
        if as_path.suffix == ".ipynb" and as_path.is_file():
            chosen.append(as_path.resolve())
            continue
        matches = [path for path in available if path.stem == name or path.stem[:2] == name]
        if len(matches) != 1:
            raise ValueError(
                f"unknown lesson {name!r}: expected one of"
                f" {', '.join(path.stem for path in available)} (or a notebook path)"
            )
        chosen.append(matches[0])
    return chosen


#: Run after the lesson, in its kernel: every live widget's state, as ipywidgets embeds it.
_DUMP_WIDGET_STATE = (
    "import json as _json, ipywidgets as _widgets\n"
    "print(_json.dumps(_widgets.Widget.get_manager_state(drop_defaults=False)))"
)


def execute_lesson(path: Path, lang: str = "en", timeout: int = 180, widget_state: bool = False):
    """Run a notebook top to bottom in a fresh kernel, in its own directory; raises on error.

    ``lang`` is the workbook language the kernel sees (as ``deploylab lab --lang`` sets it),
    so widgets label themselves in that language. With ``widget_state``, the state of every
    widget still open when the lesson ends is asked of the kernel and kept in the notebook's
    metadata, for the HTML export: nbclient's own record misses the updates a live server
    makes from a background task (they answer no cell), such as the requests a live request
    flow drew.
    """
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    os.environ[LANGUAGE_VARIABLE] = lang
    if widget_state:
        notebook.cells.append(nbformat.v4.new_code_cell(_DUMP_WIDGET_STATE))
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    if widget_state:
        dump = notebook.cells.pop()
        printed = "".join(output.get("text", "") for output in dump.outputs)
        notebook.metadata["widgets"] = {WIDGET_STATE_MIMETYPE: json.loads(printed)}
    return notebook


def _inlinable(script: str) -> str:
    """``script`` made safe to sit inside a ``<script>`` element (it cannot end it early)."""
    return _SCRIPT_END.sub(r"<\\/\1", script)


def has_math(notebook) -> bool:
    """Whether any markdown cell holds TeX (``$…$``, ``\\(…\\)``), so MathJax is inlined.

    >>> import nbformat
    >>> has_math(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("$x^2$")]))
    True
    >>> has_math(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("costs 5 USD")]))
    False
    """
    return any(cell.cell_type == "markdown" and _TEX.search(cell.source) for cell in notebook.cells)


def notebook_html(
    notebook, title: str, theme: str = "light", scripts=None, lang: str = "en"
) -> str:
    """An executed notebook as one standalone HTML page: the widget manager, each widget
    library the widget state names and MathJax (if the prose has TeX) are inlined."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        extra_template_paths=[str(TEMPLATES)],
        template_file="offline.html.j2",
        theme=theme,
        embed_images=True,
        language_code=lang,  # <html lang>, so a screen reader reads the Korean copy in Korean
    )
    scripts = dict(scripts if scripts is not None else widget_manager.scripts())
    state = notebook.metadata.get("widgets", {}).get(WIDGET_STATE_MIMETYPE, {})
    modules = {name: widget_manager.widget_module_script(name) for name in widget_modules(state)}
    resources = {
        "metadata": {"name": title},
        "deploylab_scripts": {name: _inlinable(text) for name, text in scripts.items()},
        "deploylab_widget_modules": {name: _inlinable(text) for name, text in modules.items()},
        "deploylab_has_math": has_math(notebook),
    }
    body, _resources = exporter.from_notebook_node(notebook, resources=resources)
    return body


def export_lessons(
    names: Sequence[str] = (),
    out: Path = Path("take-home"),
    lang: str = "en",
    theme: str = "light",
    pdf: bool = True,
    root: Path | None = None,
    log: Callable[[str], object] = print,
    executor: Callable[..., Any] | None = None,
) -> list[ExportedLesson]:
    """Execute each lesson and write ``OUT/<lesson>.html`` (and ``.pdf``); returns what was written.

    ``executor(path, lang=...)`` runs one lesson and returns it with its widget state
    (default: :func:`execute_lesson` with ``widget_state=True``); the tests pass one that
    reuses the lessons they already executed.
    """
    edition = language(lang)
    if theme not in ("light", "dark"):
        raise ValueError(f"unknown theme {theme!r}: expected light or dark")
    root = root or find_workbook_root()
    paths = lesson_paths(root, names, edition)
    scripts = widget_manager.scripts()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        log(f"export: executing {path.relative_to(root) if path.is_relative_to(root) else path}")
        if executor is None:
            notebook = execute_lesson(path, lang=edition.code, widget_state=True)
        else:
            notebook = executor(path, lang=edition.code)
        title = notebook.metadata.get("deploylab", {}).get("title", path.stem)
        html_path = out / f"{path.stem}.html"
        html_path.write_text(
            notebook_html(notebook, title, theme, scripts, edition.code), encoding="utf-8"
        )
        log(f"export: wrote {html_path}")
        written.append(
            ExportedLesson(path, html_path, html_path.with_suffix(".pdf") if pdf else None)
        )
    if pdf:
        from .pdf import print_to_pdf

        pages = [(copy.html, copy.pdf) for copy in written if copy.pdf is not None]
        for printed in print_to_pdf(pages):
            log(f"export: wrote {printed}")
    return written
