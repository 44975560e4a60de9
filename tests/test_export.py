"""The export's pure parts: choosing lessons, finding widget front ends, inlining scripts.
The browser checks of the exported files are in ``test_export_html.py``."""

from __future__ import annotations

import nbformat
import pytest
from notebooks import ROOT

from deploylab.cli import main
from deploylab.export import html, widget_manager
from deploylab.i18n.languages import language


def test_lessons_are_chosen_by_number_or_name():
    english = html.lesson_paths(ROOT, ["01", "05-vpc-and-cidr"], language("en"))
    assert [path.stem for path in english] == ["01-proxies", "05-vpc-and-cidr"]
    assert [path.parent.name for path in english] == ["lessons", "lessons"]
    korean = html.lesson_paths(ROOT, ["01"], language("ko"))
    assert [(path.parent.name, path.stem) for path in korean] == [("lessons-ko", "01-proxies")]
    assert len(html.lesson_paths(ROOT, [], language("en"))) == len(
        list((ROOT / "lessons").glob("[0-9][0-9]-*.ipynb"))
    )


def test_unknown_lesson_is_named(capsys):
    with pytest.raises(ValueError, match=r"unknown lesson '99'.*00-start-here"):
        html.lesson_paths(ROOT, ["99"], language("en"))
    assert main(["export-html", "99", "--no-pdf", "--root", str(ROOT)]) == 2
    assert "unknown lesson '99'" in capsys.readouterr().err


def test_widget_module_without_front_end_is_named():
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["widgets"] = {
        html.WIDGET_STATE_MIMETYPE: {
            "version_major": 2,
            "version_minor": 0,
            "state": {"m": {"model_module": "no-such-widgets", "state": {}}},
        }
    }
    with pytest.raises(ValueError, match="widget module 'no-such-widgets'"):
        html.notebook_html(notebook, "t", scripts={"requirejs": ""})


def test_installed_widget_libraries_become_named_modules():
    for module in ("anywidget", "bqplot"):
        script = widget_manager.widget_module_script(module)
        assert f'define("{module}", [' in script
        assert "define([" not in script


def test_an_inlined_script_cannot_end_its_element():
    hostile = 'const s = "</script><script>alert(1)</SCRIPT>";'
    notebook = nbformat.v4.new_notebook()
    page = html.notebook_html(notebook, "t", scripts={"requirejs": hostile})
    assert "alert(1)" in page
    assert "</script><script>alert(1)" not in page
    assert "<\\/script><script>alert(1)<\\/SCRIPT>" in page


def test_math_is_typeset_only_where_there_is_math():
    plain = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("costs 5 $")])
    tex = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("$$x^2$$")])
    scripts = {"requirejs": "", "mathjax": "/* mathjax here */"}
    assert "mathjax here" not in html.notebook_html(plain, "t", scripts=scripts)
    assert "mathjax here" in html.notebook_html(tex, "t", scripts=scripts)
