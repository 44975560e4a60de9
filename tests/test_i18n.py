"""The Korean edition: translations are current, the edition is what the builder makes of
them, code and grading metadata come only from the English, and the glossary points at
lessons that really use its terms."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from notebooks import KOREAN_LESSONS, ROOT

from deploylab.cli import main
from deploylab.i18n.build import build_edition, edition_notebooks, edition_problems
from deploylab.i18n.catalog import prose_cells, read_catalog
from deploylab.i18n.glossary import read_glossary
from deploylab.i18n.languages import language

KOREAN = language("ko")
EDITION = edition_notebooks(ROOT, KOREAN)


def edition_id(item) -> str:
    return item.english.as_posix()


def copy_workbook(target: Path) -> Path:
    """The sources a Korean edition is built from, copied so a test may change them."""
    for folder in ("lessons", "labs", "i18n"):
        shutil.copytree(ROOT / folder, target / folder)
    return target


# ---------------------------------------------------------------------------------------
# the staleness check
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("item", EDITION, ids=edition_id)
def test_every_prose_cell_is_translated_from_the_current_english(item):
    """CI fails here when an English markdown cell changed or has no translation yet."""
    problems = [
        problem for problem in edition_problems(ROOT, KOREAN) if problem.catalog == item.catalog
    ]
    assert not problems, (
        f"{item.english}: translations to write or update in {item.catalog} "
        f"(cell ids: {', '.join(p.cell_id for p in problems)}); "
        "run `deploylab translate refresh`, translate, then `deploylab translate build`:\n"
        + "\n".join(map(str, problems))
    )


def test_changing_an_english_cell_makes_its_translation_stale(tmp_path, capsys):
    root = copy_workbook(tmp_path)
    assert edition_problems(root, KOREAN) == edition_problems(ROOT, KOREAN)
    lab = root / "labs" / "proxies" / "proxies.ipynb"
    notebook = nbformat.read(lab, as_version=4)
    markdown = [cell for cell in notebook.cells if cell.cell_type == "markdown"]
    markdown[1].source += "\n\nOne more sentence."
    notebook.cells.insert(1, nbformat.v4.new_markdown_cell("A new paragraph.", id="brand-new"))
    nbformat.write(notebook, lab)

    found = {
        (p.cell_id, p.kind)
        for p in edition_problems(root, KOREAN)
        if p.catalog.name == "proxies.toml"
    }
    assert (markdown[1].id, "stale") in found
    assert ("brand-new", "missing") in found

    capsys.readouterr()
    assert main(["translate", "check", "--root", str(root)]) == 1
    report = capsys.readouterr().out
    assert f"cell {markdown[1].id}: stale" in report
    assert "cell brand-new: missing" in report


def test_refresh_gives_the_translator_the_new_english_and_keeps_the_check_failing(tmp_path):
    root = copy_workbook(tmp_path)
    lab = root / "labs" / "vpc" / "vpc.ipynb"
    notebook = nbformat.read(lab, as_version=4)
    cell = next(cell for cell in notebook.cells if cell.cell_type == "markdown")
    cell.source = cell.source.replace("Lab:", "Lab —")
    nbformat.write(notebook, lab)

    assert main(["translate", "refresh", "--root", str(root)]) == 0
    catalog = read_catalog(root / "i18n" / "ko" / "labs" / "vpc.toml", "labs/vpc/vpc.ipynb")
    entry = catalog.entries[cell.id]
    assert entry.stale and entry.english == cell.source
    assert entry.text.startswith("# 실습")  # the old translation is kept to start from
    vpc_problems = [p for p in edition_problems(root, KOREAN) if p.catalog.name == "vpc.toml"]
    assert [(p.cell_id, p.kind) for p in vpc_problems] == [(cell.id, "stale")]


# ---------------------------------------------------------------------------------------
# the built edition
# ---------------------------------------------------------------------------------------
def test_committed_edition_is_what_the_builder_writes(tmp_path):
    root = copy_workbook(tmp_path)
    (root / "assets").mkdir()
    written = build_edition(root, KOREAN)
    assert written
    for path in written:
        relative = path.relative_to(root)
        assert (ROOT / relative).read_bytes() == path.read_bytes(), (
            f"{relative} is not what `deploylab translate build` writes: rebuild and commit"
        )
    committed = {
        path.relative_to(ROOT)
        for folder in (KOREAN.lessons_dir, KOREAN.labs_dir)
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and ".ipynb_checkpoints" not in path.parts
    }
    assert committed <= {path.relative_to(root) for path in written}, "stale generated files"


@pytest.mark.parametrize("item", EDITION, ids=edition_id)
def test_korean_notebook_keeps_the_english_code_ids_and_grading_metadata(item):
    english = nbformat.read(ROOT / item.english, as_version=4)
    korean = nbformat.read(ROOT / item.output, as_version=4)
    assert item.output.name == item.english.name  # the grader matches notebooks by file name
    assert [c.id for c in korean.cells] == [c.id for c in english.cells]
    assert [c.cell_type for c in korean.cells] == [c.cell_type for c in english.cells]
    for en, ko in zip(english.cells, korean.cells, strict=True):
        grading = dict(en.metadata.get("nbgrader", {}))
        grading.pop("checksum", None)
        assert {k: v for k, v in ko.metadata.get("nbgrader", {}).items() if k != "checksum"} == (
            grading
        )
        if en.cell_type == "code":
            assert ko.source == en.source
        elif en.cell_type == "markdown":
            assert ko.source != en.source, f"cell {en.id} is still in English"
            assert any("\uac00" <= character <= "\ud7a3" for character in ko.source)


@pytest.mark.parametrize(
    "item", [i for i in EDITION if i.english.parts[0] == "labs"], ids=edition_id
)
def test_korean_lab_markdown_checksums_match_the_translation(item):
    """So ``nbgrader validate`` does not report the translated text as a changed locked cell."""
    from nbgrader.utils import compute_checksum

    korean = nbformat.read(ROOT / item.output, as_version=4)
    locked = [c for c in korean.cells if c.metadata.get("nbgrader", {}).get("checksum")]
    assert locked
    for cell in locked:
        assert cell.metadata["nbgrader"]["checksum"] == compute_checksum(cell), cell.id


def test_korean_lessons_link_to_the_korean_labs():
    for lesson in KOREAN_LESSONS:
        text = "\n".join(cell.source for cell in nbformat.read(lesson, as_version=4).cells)
        assert "](../labs/" not in text, f"{lesson.name} links to an English lab"


# ---------------------------------------------------------------------------------------
# the glossary
# ---------------------------------------------------------------------------------------
def _prose(path: Path) -> str:
    notebook = nbformat.read(path, as_version=4)
    return "\n".join(prose_cells(notebook).values())


GLOSSARY = read_glossary(ROOT, KOREAN)


@pytest.mark.parametrize("term", GLOSSARY.terms, ids=lambda term: term.english)
def test_glossary_term_is_used_where_the_glossary_says_it_is_taught(term):
    korean = [ROOT / KOREAN.lessons_dir / f"{stem}.ipynb" for stem in term.lessons]
    korean += [ROOT / KOREAN.labs_dir / lab / f"{lab}.ipynb" for lab in term.labs]
    english = [ROOT / "lessons" / f"{stem}.ipynb" for stem in term.lessons]
    assert any(term.term in _prose(path) for path in korean), (
        f"{term.term!r} appears in none of the Korean notebooks that are said to teach it"
    )
    assert any(term.english.lower() in _prose(path).lower() for path in english), (
        f"{term.english!r} appears in none of the English lessons {term.lessons}"
    )


def test_glossary_page_and_notebook_list_every_term():
    page = (ROOT / KOREAN.glossary_page).read_text(encoding="utf-8")
    notebook = _prose(ROOT / KOREAN.lessons_dir / "glossary.ipynb")
    for term in GLOSSARY.terms:
        row = f"| {term.term} | {term.english} | {term.definition} |"
        assert row in page and row in notebook
    assert "](../lessons-ko/03-autoscaling.ipynb)" in page
    assert "](./03-autoscaling.ipynb)" in notebook


# ---------------------------------------------------------------------------------------
# deploylab lab --lang ko
# ---------------------------------------------------------------------------------------
def test_korean_language_pack_is_installed_for_the_locale_lab_asks_for():
    from jupyterlab_server.translation_utils import get_language_packs

    packs, _message = get_language_packs()
    assert KOREAN.jupyterlab_locale in packs, sorted(packs)


def test_lab_opens_the_korean_start_here_with_korean_as_default_interface(tmp_path):
    import json

    from deploylab.workbook import jupyter_lab_command, write_language_overrides

    command = jupyter_lab_command(ROOT, 8899, open_browser=False, lessons_dir=KOREAN.lessons_dir)
    assert "--LabApp.default_url=/lab/tree/lessons-ko/00-start-here.ipynb" in command
    assert (ROOT / KOREAN.lessons_dir / "00-start-here.ipynb").is_file()
    overrides = json.loads(write_language_overrides(tmp_path, "ko_KR").read_text())
    assert overrides["@jupyterlab/translation-extension:plugin"]["locale"] == "ko_KR"


def test_lab_refuses_an_unknown_language(capsys):
    with pytest.raises(SystemExit):
        main(["lab", "--lang", "fr", "--no-browser"])
    assert "invalid choice: 'fr'" in capsys.readouterr().err
