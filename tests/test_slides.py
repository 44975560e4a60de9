"""``deploylab present`` and the lessons' slide metadata (RISE for JupyterLab)."""

from __future__ import annotations

import copy

import nbformat
import pytest
from notebooks import KOREAN_LESSONS, LESSONS, ROOT

from deploylab.cli import main
from deploylab.slides import RISE_SETTINGS, apply_slide_metadata, find_lesson, rise_url
from deploylab.workbook import jupyter_lab_command


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda path: path.stem)
def test_every_lesson_carries_its_slide_metadata(lesson):
    """The metadata ``apply_slide_metadata`` decides is the metadata committed (run
    ``python -m deploylab.slides lessons/*.ipynb`` after editing a lesson)."""
    notebook = nbformat.read(lesson, as_version=4)
    assert not apply_slide_metadata(copy.deepcopy(notebook)), (
        f"{lesson.name}: slide metadata is stale: run python -m deploylab.slides {lesson}"
    )
    kinds = [cell.metadata["slideshow"]["slide_type"] for cell in notebook.cells]
    assert kinds[0] == "slide"
    assert kinds.count("slide") >= 3, f"{lesson.name}: {kinds.count('slide')} slides"
    assert "notes" in kinds, f"{lesson.name} has no speaker notes"
    assert notebook.metadata["rise"] == RISE_SETTINGS


@pytest.mark.parametrize("lesson", KOREAN_LESSONS, ids=lambda path: path.stem)
def test_the_korean_edition_keeps_the_slides_and_translates_the_notes(lesson):
    korean = nbformat.read(lesson, as_version=4)
    english = nbformat.read(ROOT / "lessons" / lesson.name, as_version=4)
    assert [c.metadata.get("slideshow") for c in korean.cells] == [
        c.metadata.get("slideshow") for c in english.cells
    ]
    assert korean.metadata["rise"] == english.metadata["rise"]
    notes = [c.source for c in korean.cells if c.metadata["slideshow"]["slide_type"] == "notes"]
    assert notes and all(note.startswith("**발표자 노트.**") for note in notes)


def test_a_lesson_is_found_by_number_name_stem_or_path():
    lessons = ROOT / "lessons"
    expected = lessons / "02-load-balancing.ipynb"
    for wanted in ("2", "02", "load-balancing", "02-load-balancing", str(expected)):
        assert find_lesson(lessons, wanted).resolve() == expected.resolve(), wanted
    assert find_lesson(ROOT / "lessons-ko", "02").parent.name == "lessons-ko"


def test_an_unknown_lesson_is_refused_with_the_lessons_that_exist(capsys):
    assert main(["present", "balancing", "--no-browser", "--root", str(ROOT)]) == 2
    error = capsys.readouterr().err
    assert "no lesson 'balancing'" in error
    for lesson in LESSONS:
        assert lesson.stem in error


def test_present_opens_the_rise_page_of_the_lesson_on_loopback():
    command = jupyter_lab_command(
        ROOT, 8899, False, default_url=rise_url("lessons/02-load-balancing.ipynb")
    )
    assert "--ip=127.0.0.1" in command
    assert "--LabApp.default_url=/rise/lessons/02-load-balancing.ipynb" in command


def test_rise_for_jupyterlab_is_installed_with_the_workbook():
    from importlib.metadata import requires

    assert any(r.startswith("jupyterlab-rise") for r in requires("deploylab"))
    import jupyterlab_rise  # noqa: F401  (the server extension serving /rise/)


def test_present_loads_the_extension_that_starts_the_slides_with_no_key():
    """``deploylab present`` (only it) hands JupyterLab the ``deploylab-present`` extension,
    found as JupyterLab finds any prebuilt extension, with the script its loader fetches; the
    browser test ``test_lesson_runs_as_slides_with_the_keyboard`` presses no key to start."""
    from jupyterlab_server.config import get_federated_extensions

    from deploylab.slides import PRESENT_ARGUMENTS, PRESENT_EXTENSIONS

    assert f"--LabApp.extra_labextensions_path={PRESENT_EXTENSIONS}" in PRESENT_ARGUMENTS
    found = get_federated_extensions([str(PRESENT_EXTENSIONS)])
    assert list(found) == ["deploylab-present"]
    build = found["deploylab-present"]["jupyterlab"]["_build"]
    script = PRESENT_EXTENSIONS / "deploylab-present" / build["load"]
    assert build["extension"] == "./extension" and script.is_file()
    assert '"deploylab-present"' in script.read_text()  # the container name JupyterLab looks up
    # plain deploylab lab does not load it
    command = jupyter_lab_command(ROOT, 8899, False)
    assert not any("extra_labextensions_path" in part for part in command)


@pytest.mark.parametrize("lesson", LESSONS + KOREAN_LESSONS, ids=lambda path: path.as_posix())
def test_every_lesson_has_the_one_slide_mode_cell_the_extension_runs(lesson):
    """``deploylab-present`` runs the code cell marked ``metadata.deploylab.slide_control``:
    each lesson, English and Korean, has exactly one, on the first slide, and it draws the
    lesson's own slides."""
    from deploylab.widgets.slide_mode import slide_groups

    notebook = nbformat.read(lesson, as_version=4)
    marked = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and cell.metadata.get("deploylab", {}).get("slide_control")
    ]
    assert len(marked) == 1, f"{lesson.name}: slide-mode cells at {marked}, expected one"
    slides, _notes = slide_groups(notebook)
    assert marked[0] in slides[0], f"{lesson.name}: the slide-mode cell is not on slide 1"
    assert f'SlideMode("{lesson.name}")' in notebook.cells[marked[0]].source
