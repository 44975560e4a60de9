"""The route-lookup step-through: longest prefix match shown route by route (which prefix bits
agree with the destination, which route wins), drawn by ``vpc_route.js``, with its static
matplotlib fallback."""

from __future__ import annotations

import pathlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypedDict

import traitlets

from deploylab import vpc as v
from deploylab.widgets.esm import widget_esm
from deploylab.widgets.labels import LabelledWidget

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "LookupStep",
    "LookupSteps",
    "RouteLookupStepper",
    "route_lookup_figure",
    "route_lookup_steps",
]

_HERE = pathlib.Path(__file__).parent


class LookupStep(TypedDict):
    """One route of the table, compared with the destination bit by bit."""

    route: str
    destination: str
    target: str
    prefixlen: int
    network_bits: str
    matches: bool
    agreeing_bits: int
    winner: bool


class LookupSteps(TypedDict):
    """What the step-through shows (its ``data`` trait)."""

    destination: str
    address_bits: str
    table: str
    steps: list[LookupStep]
    explanation: str


def route_lookup_steps(
    table: v.RouteTable | Iterable[tuple[str, str]], destination: str
) -> LookupSteps:
    """One step per route of ``table``: does it match ``destination``, how many bits, and
    which route wins (from :meth:`RouteTable.lookup`).

    >>> table = v.RouteTable("rt", local_cidrs=["10.0.0.0/16"])
    >>> _ = table.add_route("0.0.0.0/0", "igw-1")
    >>> steps = route_lookup_steps(table, "10.0.3.3")
    >>> [(s["route"], s["matches"], s["winner"]) for s in steps["steps"]]
    [('10.0.0.0/16 -> local', True, True), ('0.0.0.0/0 -> igw-1', True, False)]
    """
    if not isinstance(table, v.RouteTable):
        routes = table
        table = v.RouteTable("routes")
        for destination_cidr, target in routes:
            table.add_route(destination_cidr, target)
    answer = table.lookup(destination)
    address_bits = format(int(answer.destination), "032b")
    steps: list[LookupStep] = []
    for route in table.routes:
        network_bits = format(int(route.destination.network_address), "032b")
        prefix = route.destination.prefixlen
        same = next((i for i in range(prefix) if network_bits[i] != address_bits[i]), prefix)
        steps.append(
            {
                "route": str(route),
                "destination": str(route.destination),
                "target": route.target,
                "prefixlen": prefix,
                "network_bits": network_bits,
                "matches": route in answer.candidates,
                "agreeing_bits": same,
                "winner": route == answer.route,
            }
        )
    return {
        "destination": str(answer.destination),
        "address_bits": address_bits,
        "table": table.name,
        "steps": steps,
        "explanation": answer.explain(),
    }


class RouteLookupStepper(LabelledWidget):
    """Step through a longest-prefix-match lookup: each route's prefix bits are compared with
    the destination's, matching routes light up, and the most specific one wins.

    >>> table = v.RouteTable("rt", local_cidrs=["10.0.0.0/16"])
    >>> stepper = RouteLookupStepper(table, "8.8.8.8")
    >>> stepper.data["steps"][0]["matches"]
    False
    >>> stepper.destination = "10.0.0.9"
    >>> stepper.data["steps"][0]["winner"]
    True
    """

    label_table = "vpc_route"
    _esm = widget_esm("vpc_route.js")

    _css = _HERE / "theme.css"
    destination = traitlets.Unicode("").tag(sync=True)
    data = traitlets.Dict().tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self, table: v.RouteTable | Iterable[tuple[str, str]], destination: str, **kwargs: Any
    ) -> None:
        self._table = table
        super().__init__(**kwargs)
        self.destination = destination
        self._recompute()

    @traitlets.observe("destination")
    def _recompute(self, _change: object = None) -> None:
        try:
            self.data = dict(route_lookup_steps(self._table, self.destination))  # a plain dict
            self.error = ""
        except ValueError as error:
            self.error = str(error)


def route_lookup_figure(
    table: v.RouteTable | Iterable[tuple[str, str]], destination: str
) -> Figure:
    """The step-through's final state as a static figure: one row per route, matching rows
    shaded, the winner outlined.

    >>> table = v.RouteTable("rt", local_cidrs=["10.0.0.0/16"])
    >>> figure = route_lookup_figure(table, "10.0.0.1")
    >>> len(figure.axes[0].patches)
    1
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    data = route_lookup_steps(table, destination)
    rows = data["steps"]
    figure = Figure(figsize=(9, 0.5 + 0.4 * (len(rows) + 1)))
    axes = figure.add_subplot()
    axes.set_xlim(0, 10)
    axes.set_ylim(len(rows) + 0.8, -0.8)
    axes.axis("off")
    axes.text(
        0, -0.3, f"lookup {data['destination']} in {data['table']}", fontsize=9, weight="bold"
    )
    for index, step in enumerate(rows, start=1):
        colour = "#e6f4ea" if step["matches"] else "#f1f3f4"
        axes.add_patch(
            Rectangle(
                (0, index - 0.4),
                10,
                0.8,
                facecolor=colour,
                edgecolor="#188038" if step["winner"] else "none",
                linewidth=2,
            )
        )
        verdict = (
            "WINNER"
            if step["winner"]
            else "matches, less specific"
            if step["matches"]
            else f"no match (differs at bit {step['agreeing_bits'] + 1})"
        )
        axes.text(0.2, index, step["route"], va="center", fontsize=8, family="monospace")
        axes.text(5.5, index, f"/{step['prefixlen']}  {verdict}", va="center", fontsize=8)
    return figure
