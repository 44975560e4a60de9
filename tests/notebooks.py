"""Finding and executing the workbook's notebooks (shared by the notebook and browser tests)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]-*.ipynb"))
LAB_SOURCES = sorted((ROOT / "autograder" / "source").glob("*/*.ipynb"))
ALL_NOTEBOOKS = sorted(
    path
    for pattern in ("lessons/*.ipynb", "labs/*/*.ipynb", "autograder/source/*/*.ipynb")
    for path in ROOT.glob(pattern)
)


def lesson_settings(path: Path) -> dict:
    """The lesson's ``metadata.deploylab`` block (browser selector, title)."""
    return nbformat.read(path, as_version=4).metadata.get("deploylab", {})


def execute_notebook(path: Path, timeout: int = 180) -> nbformat.NotebookNode:
    """Run a notebook top to bottom in a fresh kernel, in its own directory; raises on error."""
    notebook = nbformat.read(path, as_version=4)
    os.environ["DEPLOYLAB_TEST"] = "1"
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    return notebook
