"""One owner for the JavaScript the anywidget views share.

anywidget loads each widget's ES module on its own, so widgets cannot ``import`` a common
module. :func:`widget_esm` instead joins ``shared.js`` (the ``say`` translator, the presenter
keys, the SVG helpers) in front of a widget's own file: the one string anywidget receives,
and that an exported page embeds.
"""

from __future__ import annotations

import functools
import pathlib

__all__ = ["SHARED_JS", "widget_esm"]

WIDGETS_DIR = pathlib.Path(__file__).parent
#: The helpers joined in front of every SVG widget's module.
SHARED_JS = WIDGETS_DIR / "shared.js"


@functools.cache
def widget_esm(filename: str) -> str:
    """The ES module of the widget whose own code is ``filename`` (next to this module):
    ``shared.js``, then that file.

    >>> source = widget_esm("balancer.js")
    >>> source.index("function presenterKeys") < source.index("export default")
    True
    >>> widget_esm("no_such_widget.js")
    Traceback (most recent call last):
    ...
    FileNotFoundError: widget module no_such_widget.js is not in deploylab/widgets
    """
    own = WIDGETS_DIR / filename
    if not own.is_file():
        raise FileNotFoundError(f"widget module {filename} is not in deploylab/widgets")
    return f"{SHARED_JS.read_text()}\n// ---- {filename}\n{own.read_text()}"
