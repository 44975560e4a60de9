"""Lessons as live slides: ``deploylab present LESSON`` and the slide metadata of every lesson.

The slides are RISE's (``slideshow`` cell metadata, ``rise`` notebook metadata, so RISE for
JupyterLab reads the same deck: ``deploylab present --rise``); they are shown in JupyterLab
itself by :class:`deploylab.widgets.slide_mode.SlideMode`, because RISE's own page cannot load
the widget manager of JupyterLab 4.6 (jupyterlab-contrib/rise issue 119) and the lessons'
point is their live widgets. Which cell starts a
slide is decided here, once, by :func:`slide_type_of` (a ``##`` heading starts a slide, a
``###`` heading a sub-slide, a cell that would overflow the slide starts a sub-slide of its
own); ``python -m deploylab.slides lessons/*.ipynb`` writes the result into each lesson and a test checks that it stays
written. The notebook-level ``rise`` settings (:data:`RISE_SETTINGS`) give a large font and
start the slideshow as soon as the notebook opens. Under ``deploylab present`` the slides start
with no key pressed: a small JupyterLab extension (:data:`PRESENT_EXTENSIONS`, loaded only
there) runs the lesson's slide-mode cell once its kernel is idle.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = [
    "LESSON_PATTERN",
    "PRESENT_ARGUMENTS",
    "PRESENT_EXTENSIONS",
    "RISE_SETTINGS",
    "SLIDE_LINES",
    "LessonNotFoundError",
    "apply_slide_metadata",
    "find_lesson",
    "lesson_names",
    "rise_url",
    "slide_type_of",
]

#: A lesson file: two digits, a dash, its name (``02-load-balancing.ipynb``).
LESSON_PATTERN = "[0-9][0-9]-*.ipynb"

#: How many source lines fit on one slide at the presentation font before it would overflow
#: (1024 x 768 with ``RISE_SETTINGS``); a cell that would pass it starts a sub-slide.
SLIDE_LINES = 22

#: Notebook metadata read by jupyterlab-rise: start as slides, large font (the CSS below),
#: the slide scrolls rather than clips when a cell is long, and slide numbers for questions.
RISE_SETTINGS = {
    "autolaunch": False,  # True would open RISE beside the notebook (its page has no widgets)
    "scroll": True,
    "enable_chalkboard": False,
    "slideNumber": True,
    "transition": "none",
    "width": "100%",
    "height": "100%",
    "start_slideshow_at": "beginning",
}


class LessonNotFoundError(ValueError):
    """No lesson matches what was asked; the message names the value and the lessons."""


def lesson_names(lessons_dir: Path) -> list[str]:
    """The lessons in ``lessons_dir`` by file stem, in course order.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     for stem in ("01-proxies", "00-start-here"):
    ...         _ = (Path(folder) / f"{stem}.ipynb").write_text("{}")
    ...     lesson_names(Path(folder))
    ['00-start-here', '01-proxies']
    """
    return sorted(path.stem for path in lessons_dir.glob(LESSON_PATTERN))


def find_lesson(lessons_dir: Path, wanted: str) -> Path:
    """The lesson ``wanted`` names: a number (``2`` or ``02``), a name (``load-balancing``),
    a stem (``02-load-balancing``) or a path to a notebook.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for stem in ("00-start-here", "02-load-balancing"):
    ...     _ = (folder / f"{stem}.ipynb").write_text("{}")
    >>> [find_lesson(folder, w).name for w in ("2", "02", "load-balancing")]
    ['02-load-balancing.ipynb', '02-load-balancing.ipynb', '02-load-balancing.ipynb']
    >>> find_lesson(folder, "balancing")
    Traceback (most recent call last):
    ...
    deploylab.slides.LessonNotFoundError: no lesson 'balancing' in ...: expected a number, a name or a path of one of 00-start-here, 02-load-balancing
    >>> import shutil; shutil.rmtree(folder)
    """
    path = Path(wanted)
    if path.suffix == ".ipynb" and path.is_file():
        return path.resolve()
    names = lesson_names(lessons_dir)
    key = wanted.strip().removesuffix(".ipynb")
    if key.isdigit():
        key = f"{int(key):02d}"
    for name in names:
        number, _, topic = name.partition("-")
        if key in (name, number, topic):
            return lessons_dir / f"{name}.ipynb"
    raise LessonNotFoundError(
        f"no lesson {wanted!r} in {lessons_dir}: expected a number, a name or a path "
        f"of one of {', '.join(names) or '(none: the folder has no NN-name.ipynb)'}"
    )


def rise_url(relative_path: str) -> str:
    """The URL path where jupyterlab-rise shows a notebook as slides (its ``/rise/`` page).

    >>> rise_url("lessons/02-load-balancing.ipynb")
    '/rise/lessons/02-load-balancing.ipynb'
    """
    return "/rise/" + relative_path.lstrip("/")


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _lines(cell) -> int:
    """Lines the cell takes on a slide: its source, plus room for a code cell's output."""
    text = _source(cell)
    lines = sum(1 + len(line) // 100 for line in text.splitlines()) or 1
    return lines + (6 if cell.get("cell_type") == "code" else 0)


def slide_type_of(cell, lines_on_slide: int) -> str:
    """The ``slideshow.slide_type`` of ``cell`` given how many lines the slide holds so far.

    Speaker notes stay notes; the slide-mode control cell (``metadata.deploylab.slide_control``)
    joins the slide it is on; a ``#``/``##`` heading starts a slide, a ``###`` heading a
    sub-slide; a cell that would push the slide past :data:`SLIDE_LINES` starts a sub-slide;
    anything else joins the slide (``-``).

    >>> slide_type_of({"cell_type": "markdown", "source": "## Round robin"}, 10)
    'slide'
    >>> slide_type_of({"cell_type": "markdown", "source": "### Weighted"}, 0)
    'subslide'
    >>> slide_type_of({"cell_type": "code", "source": "x = 1"}, 3)
    '-'
    >>> slide_type_of({"cell_type": "code", "source": "x = 1"}, 20)
    'subslide'
    >>> note = {"cell_type": "markdown", "source": "say this", "metadata": {"slideshow": {"slide_type": "notes"}}}
    >>> slide_type_of(note, 0)
    'notes'
    """
    metadata = cell.get("metadata", {})
    if metadata.get("slideshow", {}).get("slide_type") == "notes":
        return "notes"
    if metadata.get("deploylab", {}).get("slide_control"):
        return "-"  # the slide-mode bar: it floats over the slides and takes no room
    text = _source(cell).lstrip()
    if cell.get("cell_type") == "markdown":
        if text.startswith(("# ", "## ")):
            return "slide"
        if text.startswith("### "):
            return "subslide"
    if lines_on_slide and lines_on_slide + _lines(cell) > SLIDE_LINES:
        return "subslide"
    return "-"


def apply_slide_metadata(notebook) -> bool:
    """Give every cell of ``notebook`` its slide type and the notebook its RISE settings;
    returns True when anything changed. Other metadata (nbgrader, deploylab) is kept."""
    changed = False
    lines = 0
    for cell in notebook.cells:
        kind = slide_type_of(cell, lines)
        if kind in ("slide", "subslide"):
            lines = 0
        if kind != "notes":
            lines += _lines(cell)
        slideshow = cell.setdefault("metadata", {}).setdefault("slideshow", {})
        if slideshow.get("slide_type") != kind:
            slideshow["slide_type"] = kind
            changed = True
    if notebook.metadata.get("rise") != RISE_SETTINGS:
        notebook.metadata["rise"] = dict(RISE_SETTINGS)
        changed = True
    return changed


#: The JupyterLab extensions only ``deploylab present`` loads: ``deploylab-present`` runs a
#: lesson's slide-mode cell when the lesson opens, so the slides start with no key pressed.
PRESENT_EXTENSIONS = Path(__file__).with_name("present_labextension")

#: What ``deploylab present`` adds to JupyterLab: kernels learn that slide mode should start
#: at once and run each slide's cells on entry, which needs the page's ``window.jupyterapp``;
#: the slide-mode cell itself is run by the extensions in :data:`PRESENT_EXTENSIONS`.
PRESENT_ARGUMENTS = (
    "--LabApp.expose_app_in_browser=True",
    f"--LabApp.extra_labextensions_path={PRESENT_EXTENSIONS}",
)


def _present(args: argparse.Namespace) -> int:
    from deploylab.i18n.languages import language
    from deploylab.widgets.slide_mode import PRESENT_VARIABLE
    from deploylab.workbook import (
        default_workspace,
        find_workbook_root,
        prepare_learner_workspace,
        serve_workbook,
    )

    lang = language(args.lang)
    root = find_workbook_root(Path(args.root) if args.root else None)
    lesson = find_lesson(root / lang.lessons_dir, args.lesson)
    try:
        relative = lesson.resolve().relative_to(root).as_posix()
    except ValueError:
        raise LessonNotFoundError(
            f"{lesson} is outside the workbook at {root}: expected a lesson under it"
        ) from None
    # Presented from the workspace (as ``deploylab lab`` serves it), so the slides' runs and
    # saves never touch the checkout's tracked lessons.
    workspace = prepare_learner_workspace(
        root, Path(args.workspace) if args.workspace else default_workspace()
    )
    url = rise_url(relative) if args.rise else f"/lab/tree/{relative}"
    print(f"deploylab: presenting {relative} at http://127.0.0.1:{args.port}{url} ({lang.name})")
    if args.rise:
        print("  RISE page: slides only; widgets do not render there (jupyterlab-rise issue 119)")
    else:
        print("  The slides start by themselves once the kernel is ready; each slide's code runs")
        print("  as you enter it. Keys: → / Space / Page Down next, ← / Page Up back, Home, End;")
        print("  in a focused widget Space plays/pauses and → steps; n speaker notes; Esc leaves")
    return serve_workbook(
        root,
        workspace,
        lang,
        args.port,
        not args.no_browser,
        default_url=url,
        extra_arguments=() if args.rise else PRESENT_ARGUMENTS,
        extra_environment={PRESENT_VARIABLE: "1"},
    )


def register(commands) -> None:
    """Add ``deploylab present``."""
    from deploylab.i18n.languages import LANGUAGES

    present = commands.add(
        "present", "open a lesson as live slides (RISE) in JupyterLab on 127.0.0.1", _present
    )
    present.add_argument("lesson", help="lesson number, name or path: 02, load-balancing")
    present.add_argument("--port", type=int, default=8888, help="port (default 8888)")
    present.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    present.add_argument("--root", help="workbook directory (default: found from here)")
    present.add_argument(
        "--workspace",
        help="the copy of the lessons to present from (default: $DEPLOYLAB_WORKSPACE or "
        "~/deploylab-workspace, as for deploylab lab)",
    )
    present.add_argument(
        "--rise", action="store_true", help="open RISE's own slide page instead (no widgets there)"
    )
    present.add_argument(
        "--lang", default="en", choices=sorted(LANGUAGES), help="edition (default: en; ko: 한국어)"
    )


def main(paths: list[str]) -> int:
    """``python -m deploylab.slides LESSON.ipynb...``: write each lesson's slide metadata."""
    import nbformat

    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        if apply_slide_metadata(notebook):
            nbformat.write(notebook, path)
            print(f"updated {path}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
