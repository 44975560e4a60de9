"""Accessible names for ipywidgets sliders (a view-only fix, see slider_names.js).

ipywidgets 8 renders a slider's handle with ``role="slider"`` but without a name, so a
screen reader announces "slider" and nothing else. Display :class:`SliderNames` once next to
the sliders (the autoscaling explorer does it for you) and every slider in the notebook is
named after its ``description``.
"""

from __future__ import annotations

import pathlib

import anywidget


class SliderNames(anywidget.AnyWidget):
    """Invisible helper: names every ipywidgets slider in its notebook after its description.

    >>> SliderNames().layout.display is None  # it hides itself in the browser, not in Python
    True
    """

    _esm = pathlib.Path(__file__).with_name("slider_names.js")
    _css = pathlib.Path(__file__).with_name("theme.css")
