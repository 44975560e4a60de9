"""Slide mode inside JupyterLab: the lesson shown one slide at a time, its widgets live.

RISE for JupyterLab (``jupyterlab-rise`` 0.43) draws slides in a page of its own that
cannot load the ipywidgets manager of JupyterLab 4.6 (jupyterlab-contrib/rise issue 119:
"Shared module @jupyterlab/console doesn't exist"), so no widget renders there. This widget
gives the same slides (the ``slideshow`` metadata of :mod:`deploylab.slides`, so RISE and it
agree) in JupyterLab itself: every cell outside the current slide is hidden, the font is large,
speaker notes stay hidden (``n`` shows them to the presenter), and the keys are a clicker's:
→, Space or Page Down next; ←, Page Up back; Home/End; Esc leaves. Inside a widget that has
presenter keys (``aria-keyshortcuts``), Space and → belong to that widget's animation.
"""

from __future__ import annotations

import os
import pathlib

import nbformat
import traitlets

from deploylab.widgets.labels import LabelledWidget

__all__ = ["PRESENT_VARIABLE", "SlideMode", "slide_groups"]

#: Set by ``deploylab present`` for JupyterLab and so for its kernels: slide mode starts as
#: soon as the widget is drawn.
PRESENT_VARIABLE = "DEPLOYLAB_PRESENT"


def slide_groups(notebook) -> tuple[list[list[int]], dict[int, str]]:
    """The cell indices on each slide (a slide or sub-slide starts a new one; fragments and
    ``-`` join it; notes are left out), and each slide's speaker notes.

    >>> import nbformat.v4 as v4
    >>> cells = [v4.new_markdown_cell("# T"), v4.new_markdown_cell("say hi"),
    ...          v4.new_code_cell("x"), v4.new_markdown_cell("## Next")]
    >>> for cell, kind in zip(cells, ["slide", "notes", "-", "slide"]):
    ...     cell.metadata["slideshow"] = {"slide_type": kind}
    >>> slide_groups(v4.new_notebook(cells=cells))
    ([[0, 2], [3]], {0: 'say hi'})
    """
    slides: list[list[int]] = []
    notes: dict[int, str] = {}
    for index, cell in enumerate(notebook.cells):
        kind = cell.metadata.get("slideshow", {}).get("slide_type", "-")
        if kind == "notes":
            slide = max(len(slides) - 1, 0)
            notes[slide] = (notes.get(slide, "") + "\n\n" + cell.source).strip()
        elif kind == "skip":
            continue
        elif kind in ("slide", "subslide") or not slides:
            slides.append([index])
        else:
            slides[-1].append(index)
    return slides, notes


class SlideMode(LabelledWidget):
    """A "present as slides" button for the notebook it is shown in (``lesson`` is the
    notebook's file name, read from the kernel's working directory, which is the notebook's).

    >>> import tempfile, nbformat.v4 as v4
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "01-demo.ipynb"
    ...     cell = v4.new_markdown_cell("# T")
    ...     cell.metadata["slideshow"] = {"slide_type": "slide"}
    ...     nbformat.write(v4.new_notebook(cells=[cell]), path)
    ...     SlideMode(path).slides
    [[0]]
    """

    label_table = "slide_mode"
    _esm = pathlib.Path(__file__).with_name("slide_mode.js")
    _css = pathlib.Path(__file__).with_name("theme.css")
    slides = traitlets.List(traitlets.List(traitlets.Int())).tag(sync=True)
    notes = traitlets.Dict().tag(sync=True)
    current = traitlets.Int(0).tag(sync=True)
    presenting = traitlets.Bool(False).tag(sync=True)
    #: Run a slide's code cells when it is entered (needs ``window.jupyterapp``, which
    #: ``deploylab present`` turns on); on by default under ``deploylab present``.
    run_on_entry = traitlets.Bool(False).tag(sync=True)

    def __init__(self, lesson: str | os.PathLike, **kwargs) -> None:
        path = pathlib.Path(lesson)
        if not path.is_file():
            raise FileNotFoundError(
                f"lesson {str(lesson)!r} not found from {pathlib.Path.cwd()}: expected the "
                "notebook's own file name (the kernel runs in the notebook's folder)"
            )
        slides, notes = slide_groups(nbformat.read(path, as_version=4))
        kwargs.setdefault("presenting", os.environ.get(PRESENT_VARIABLE) == "1")
        kwargs.setdefault("run_on_entry", os.environ.get(PRESENT_VARIABLE) == "1")
        super().__init__(slides=slides, notes={str(k): v for k, v in notes.items()}, **kwargs)
