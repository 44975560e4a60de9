"""Static checks of the widgets' views (issue 13, §3): every anywidget follows JupyterLab's
theme through theme.css, nothing scrolls the notebook by itself, no drawing has a fixed pixel
width, and clickable SVG parts are reachable by keyboard. The browser test checks the result
in a real page (contrast, accessible names, 1024 px); these fail fast without one."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import anywidget
import pytest

import deploylab.widgets.balancer
import deploylab.widgets.course_map
import deploylab.widgets.deploy_timeline
import deploylab.widgets.request_flow
import deploylab.widgets.vpc
import deploylab.widgets.vpc_cidr
import deploylab.widgets.vpc_graph
import deploylab.widgets.vpc_plan
import deploylab.widgets.vpc_route
from deploylab.widgets.esm import widget_esm

WIDGETS = Path(deploylab.widgets.vpc.__file__).parent
MODULES = [
    deploylab.widgets.balancer,
    deploylab.widgets.course_map,
    deploylab.widgets.deploy_timeline,
    deploylab.widgets.request_flow,
    deploylab.widgets.vpc_cidr,
    deploylab.widgets.vpc_graph,
    deploylab.widgets.vpc_plan,
    deploylab.widgets.vpc_route,
]
ANYWIDGETS = [
    cls
    for module in MODULES
    for _, cls in inspect.getmembers(module, inspect.isclass)
    if issubclass(cls, anywidget.AnyWidget) and cls.__module__ == module.__name__
]
#: Each widget's own script (shared.js is not a widget: it is joined in front of them).
SCRIPTS = sorted(path for path in WIDGETS.glob("*.js") if path.name != "shared.js")


@pytest.mark.parametrize("widget", ANYWIDGETS, ids=lambda cls: cls.__name__)
def test_every_anywidget_uses_the_theme_stylesheet(widget):
    css = widget._css
    assert Path(str(css)).name == "theme.css" or "var(--jp-ui-font-color1" in str(css)


def test_the_theme_uses_jupyterlab_variables_for_text_panels_and_controls():
    css = (WIDGETS / "theme.css").read_text()
    for variable in ("--jp-ui-font-color1", "--jp-layout-color1", "--jp-border-color1"):
        assert f"var({variable}" in css


#: Widgets whose job is to move the page: the slide mode brings the presenter's next slide
#: into view when they press a key (never on its own, while the class reads).
PAGE_NAVIGATORS = {"slide_mode.js"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_widget_script_joins_the_theme_and_never_scrolls_the_notebook(script):
    source = script.read_text()
    assert 'classList.add("dl-widget")' in source
    if script.name not in PAGE_NAVIGATORS:
        assert "scrollIntoView" not in source, f"{script.name} scrolls the page the learner reads"
    fixed = re.findall(r'svgEl\("svg", \{[^}]*width: "(\d+)"', source)
    assert not fixed, f"{script.name}: the drawing has a fixed width of {fixed} px"
    assert "background: #fff" not in source, f"{script.name}: fixed white background"


@pytest.mark.parametrize(
    "script",
    [path for path in SCRIPTS if 'cursor: "pointer"' in path.read_text()],
    ids=lambda path: path.name,
)
def test_clickable_svg_parts_work_with_the_keyboard(script):
    source = widget_esm(script.name)  # its clickable() may come from shared.js
    assert "tabindex" in source and "keydown" in source
    assert '"Enter"' in source and '" "' in source
