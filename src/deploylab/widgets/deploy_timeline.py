"""A deployment replayed on a timeline: which instance answered each request, and which failed.

:class:`DeploymentTimeline` (anywidget, SVG animated in the browser) replays a
:class:`~deploylab.deploy.experiment.DeploymentRun` with a play head; the steps of the plan
are vertical markers. :func:`deployment_timeline_figure` draws the same with matplotlib.
"""

from __future__ import annotations

import pathlib

import traitlets

from deploylab.widgets.esm import widget_esm
from deploylab.widgets.labels import LabelledWidget

FAILED_LANE = "failed"


def timeline_data(run) -> dict:
    """The run as plain lists: lanes (instances, then "failed"), points and step markers.

    Each point is ``[started_seconds, lane_index]``; a failed request is on the last lane.
    """
    # every instance of both versions appears in some step of any plan
    lanes = sorted({name for step in run.plan for name in step.instances})
    lanes.append(FAILED_LANE)
    index = {name: position for position, name in enumerate(lanes)}
    points = [
        [
            round(record.started, 4),
            index[record.served_by] if record.ok and record.served_by in index else len(lanes) - 1,
        ]
        for record in run.records
    ]
    steps = [
        [round(at, 4), f"{step.action} {' '.join(step.instances)}"]
        for at, step in zip(run.step_times, run.plan, strict=True)
    ]
    duration = max((record.finished for record in run.records), default=1.0)
    return {"lanes": lanes, "points": points, "steps": steps, "duration": round(duration, 3)}


class DeploymentTimeline(LabelledWidget):
    """Replay of a deployment: a dot per request in the lane of the instance that served it.

    Version 1 instances are blue, version 2 green, failed requests red. ``speed`` is the
    replay speed (1 = real time); ``position`` (seconds) follows the play head.
    """

    label_table = "deploy_timeline"
    _esm = widget_esm("deploy_timeline.js")

    _css = pathlib.Path(__file__).with_name("theme.css")
    lanes = traitlets.List(traitlets.Unicode()).tag(sync=True)
    points = traitlets.List(traitlets.List()).tag(sync=True)  # [started_seconds, lane_index]
    steps = traitlets.List(traitlets.List()).tag(sync=True)  # [at_seconds, label]
    duration = traitlets.Float(1.0).tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    speed = traitlets.Float(1.0).tag(sync=True)
    position = traitlets.Float(0.0).tag(sync=True)

    def __init__(self, run, **kwargs) -> None:
        title = f"{run.strategy} — " + (
            "keep-alive clients" if run.keep_alive else "new connection per request"
        )
        super().__init__(**timeline_data(run), title=title, **kwargs)


def deployment_timeline_figure(run):
    """The same timeline as a static matplotlib figure."""
    from matplotlib.figure import Figure

    data = timeline_data(run)
    figure = Figure(figsize=(10, 0.5 * len(data["lanes"]) + 1.2))
    axes = figure.add_subplot()
    colours = [
        "#d93025" if lane == FAILED_LANE else ("#1a73e8" if lane.startswith("v1") else "#188038")
        for lane in data["lanes"]
    ]
    if data["points"]:
        xs, ys = zip(*data["points"], strict=True)
        axes.scatter(xs, ys, s=4, c=[colours[y] for y in ys], marker="|")
    for at, label in data["steps"]:
        axes.axvline(at, color="#888888", linestyle="--", linewidth=1)
        axes.text(at, len(data["lanes"]) - 0.4, label, fontsize=7, rotation=0, ha="left")
    axes.set_yticks(range(len(data["lanes"])), data["lanes"])
    axes.set_ylim(-0.6, len(data["lanes"]) - 0.2)
    axes.set_xlim(0, data["duration"])
    axes.set_xlabel("seconds since traffic started")
    axes.set_title(
        f"{run.strategy}: {run.summary['ok']} ok, "
        f"{run.summary['non_2xx'] + run.summary['errors']} failed",
        fontsize=10,
    )
    figure.tight_layout()
    return figure
