"""The course map: the path a request takes to a service, one stop per lesson.

Shown by ``lessons/00-start-here.ipynb``. In a browser it is an anywidget (SVG drawn and
animated in JavaScript); elsewhere :func:`course_map_figure` draws the same stops with
matplotlib.
"""

from __future__ import annotations

import pathlib
from dataclasses import asdict, dataclass

import traitlets

from deploylab.widgets.esm import widget_esm
from deploylab.widgets.labels import LabelledWidget


@dataclass(frozen=True)
class Stop:
    """One place a request passes through, and the lesson that teaches it."""

    name: str
    lesson: str
    summary: str


#: The stops from a browser to an application process, in order. The widget, the static
#: figure and the start-here notebook's table are all drawn from this one list.
COURSE_STOPS = (
    Stop("client", "00-start-here", "a browser or curl on a laptop"),
    Stop("forward proxy", "01-proxies", "near clients: caches, hides the client's address"),
    Stop("internet", "05-vpc-and-cidr", "IPv4 addresses, classes, CIDR blocks"),
    Stop("VPC + subnets", "05-vpc-and-cidr", "public/private/VPN-only subnets, route tables"),
    Stop("reverse proxy", "01-proxies", "near servers: hides them, passes X-Forwarded-For"),
    Stop("nginx", "04-nginx-and-zero-downtime", "the real proxy: reload, blue-green, rolling"),
    Stop("load balancer", "02-load-balancing", "round robin, weights, least conn, ip_hash"),
    Stop("auto scaling group", "03-autoscaling", "min/max/desired, policies, health checks"),
    Stop("app instances", "02-load-balancing", "scale up (bigger) or scale out (more)"),
)


class CourseMap(LabelledWidget):
    """An animated map of the course: a request travels from client to app instances.

    Clicking a stop selects it; ``selected`` then holds its name, so a cell can react.

    >>> widget = CourseMap()
    >>> [stop["name"] for stop in widget.stops][:2]
    ['client', 'forward proxy']
    >>> widget.selected
    ''
    """

    label_table = "course_map"
    _esm = widget_esm("course_map.js")

    _css = pathlib.Path(__file__).with_name("theme.css")
    stops = traitlets.List(traitlets.Dict()).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    playing = traitlets.Bool(True).tag(sync=True)
    trips = traitlets.Int(0).tag(sync=True)

    def __init__(self, **kwargs) -> None:
        super().__init__(stops=[asdict(stop) for stop in COURSE_STOPS], **kwargs)


def course_map_figure():
    """The course map as a static matplotlib figure (for exports and terminals).

    >>> figure = course_map_figure()
    >>> len(figure.axes[0].patches) == len(COURSE_STOPS)
    True
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    figure = Figure(figsize=(11, 2.6))
    axes = figure.add_subplot()
    axes.set_xlim(-0.6, len(COURSE_STOPS) - 0.4)
    axes.set_ylim(-1.2, 1.0)
    axes.axis("off")
    for index, stop in enumerate(COURSE_STOPS):
        axes.add_patch(
            FancyBboxPatch(
                (index - 0.42, -0.3),
                0.84,
                0.6,
                boxstyle="round,pad=0.02",
                facecolor="#e8f0fe",
                edgecolor="#3367d6",
            )
        )
        axes.text(index, 0.0, stop.name.replace(" ", "\n", 1), ha="center", va="center", fontsize=8)
        axes.text(index, -0.7, stop.lesson, ha="center", va="center", fontsize=7, color="#555555")
        if index:
            axes.annotate(
                "", xy=(index - 0.42, 0), xytext=(index - 0.58, 0), arrowprops={"arrowstyle": "->"}
            )
    figure.tight_layout()
    return figure
