"""The anywidget modules share their helpers through one file (issue 16, one owner for every
rule): ``shared.js`` is joined in front of each widget's own script by
:func:`deploylab.widgets.esm.widget_esm`. These tests parse every joined module with Node (a
helper declared twice is a syntax error there) and fail when a widget script grows its own
copy of a shared helper again."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_widget_views import ANYWIDGETS

from deploylab.widgets.esm import SHARED_JS, widget_esm

#: Every SVG widget's joined module (the widgets test_widget_views checks too).
JOINED = {cls: cls._esm for cls in ANYWIDGETS}
#: The top-level names shared.js declares (const or function).
SHARED_NAMES = re.findall(r"^(?:const|function) (\w+)", SHARED_JS.read_text(), re.MULTILINE)
#: The slide-mode bar is not an SVG widget: it keeps its own small ``say``.
NOT_YET_JOINED = {"slide_mode.js"}


def test_shared_js_declares_the_helpers():
    assert {"SVG", "say", "presenterKeys", "svgEl"} <= set(SHARED_NAMES)


@pytest.mark.parametrize("widget", list(JOINED), ids=lambda cls: cls.__name__)
def test_each_svg_widget_gets_the_shared_helpers_once(widget):
    source = JOINED[widget]
    assert isinstance(source, str) and source.startswith(SHARED_JS.read_text())
    for name in SHARED_NAMES:
        declarations = re.findall(rf"^(?:const|function) {name}\b", source, re.MULTILINE)
        assert len(declarations) == 1, f"{widget.__name__}: {name} declared {len(declarations)}x"


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to parse the modules")
@pytest.mark.parametrize("widget", list(JOINED), ids=lambda cls: cls.__name__)
def test_each_joined_module_parses_as_an_es_module(widget, tmp_path):
    module = tmp_path / f"{widget.__name__}.mjs"
    module.write_text(JOINED[widget])
    checked = subprocess.run(
        ["node", "--check", str(module)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr


def test_a_redeclared_helper_is_caught(tmp_path):
    """The attack on the test above: a widget script that keeps its own ``say`` next to the
    shared one must not parse (so the Node check can see a copy)."""
    if shutil.which("node") is None:
        pytest.skip("needs Node.js")
    module = tmp_path / "copy.mjs"
    module.write_text(SHARED_JS.read_text() + "\nconst say = () => '';\nexport default {};\n")
    checked = subprocess.run(
        ["node", "--check", str(module)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode != 0 and "say" in checked.stderr


@pytest.mark.parametrize(
    "script",
    sorted(
        path
        for path in Path(SHARED_JS).parent.glob("*.js")
        if path != SHARED_JS and path.name not in NOT_YET_JOINED
    ),
    ids=lambda path: path.name,
)
def test_no_widget_script_keeps_its_own_copy_of_a_shared_helper(script):
    own = re.findall(r"^(?:const|function) (\w+)", script.read_text(), re.MULTILINE)
    copies = sorted(set(own) & set(SHARED_NAMES))
    assert not copies, f"{script.name} declares {copies} again; use shared.js"


def test_an_unknown_widget_module_is_named_in_the_error():
    with pytest.raises(FileNotFoundError, match=r"nope\.js"):
        widget_esm("nope.js")
