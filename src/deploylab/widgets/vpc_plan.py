"""The subnet-plan bar: a VPC's address space as planned subnets (coloured by Availability
Zone) and free gaps, drawn by ``vpc_plan.js``, with its static matplotlib fallback."""

from __future__ import annotations

import ipaddress
import pathlib
from typing import TYPE_CHECKING, Any, TypedDict

import traitlets

from deploylab import vpc as v
from deploylab.widgets.esm import widget_esm
from deploylab.widgets.labels import LabelledWidget

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["AZ_COLOURS", "PlanLayout", "Segment", "SubnetPlanBar", "plan_figure", "plan_segments"]

_HERE = pathlib.Path(__file__).parent

#: Colours for Availability Zones, in order of their names.
AZ_COLOURS = ["#8e24aa", "#00897b", "#e53935", "#3949ab", "#6d4c41", "#c0ca33"]


class Segment(TypedDict):
    """A stretch of the address space: a subnet, or a free gap (``free``, no name)."""

    name: str
    cidr: str
    az: str
    tier: str
    start: int
    size: int
    free: bool
    aws_usable: int | None


class PlanLayout(TypedDict):
    """What the bar draws (its ``layout_data`` trait)."""

    space: str
    total: int
    segments: list[Segment]
    az_colours: dict[str, str]


def plan_segments(plan_or_vpc: v.SubnetPlan | v.Vpc) -> PlanLayout:
    """The address space of a :class:`~deploylab.vpc.SubnetPlan` or a
    :class:`~deploylab.vpc.Vpc` as ordered segments (subnets and free gaps).

    >>> plan = v.plan_subnets("10.0.0.0/24", [("a", 100, "az1"), ("b", 20, "az2")])
    >>> [(s["name"], s["start"], s["size"]) for s in plan_segments(plan)["segments"]]
    [('a', 0, 128), ('b', 128, 32), ('', 160, 32), ('', 192, 64)]
    """
    subnets: list[tuple[str, ipaddress.IPv4Network, str | None, str]]
    if isinstance(plan_or_vpc, v.SubnetPlan):
        space = plan_or_vpc.vpc
        subnets = [(s.name, s.network, s.az, s.tier or "") for s in plan_or_vpc.subnets]
        free = list(plan_or_vpc.free)
    else:
        space = plan_or_vpc.cidr
        subnets = [
            (s.name, s.cidr, s.az, plan_or_vpc.classify(s.name))
            for s in plan_or_vpc.subnets.values()
            if s.cidr.subnet_of(space)
        ]
        free = v.free_blocks(space, [cidr for _, cidr, _, _ in subnets])
    azs = sorted({az for _, _, az, _ in subnets if az})
    base = int(space.network_address)
    segments: list[Segment] = [
        {
            "name": name,
            "cidr": str(cidr),
            "az": az or "",
            "tier": tier,
            "start": int(cidr.network_address) - base,
            "size": cidr.num_addresses,
            "free": False,
            "aws_usable": cidr.num_addresses - 5 if cidr.prefixlen <= 28 else None,
        }
        for name, cidr, az, tier in subnets
    ]
    segments += [
        {
            "name": "",
            "cidr": str(cidr),
            "az": "",
            "tier": "",
            "free": True,
            "start": int(cidr.network_address) - base,
            "size": cidr.num_addresses,
            "aws_usable": None,
        }
        for cidr in free
    ]
    segments.sort(key=lambda segment: segment["start"])
    return {
        "space": str(space),
        "total": space.num_addresses,
        "segments": segments,
        "az_colours": {az: AZ_COLOURS[i % len(AZ_COLOURS)] for i, az in enumerate(azs)},
    }


class SubnetPlanBar(LabelledWidget):
    """The VPC's address space as a bar: planned subnets (coloured by AZ) and free gaps.

    >>> bar = SubnetPlanBar(v.plan_subnets("10.0.0.0/16", [("web", 500, "a"), ("db", 200, "b")]))
    >>> [s["cidr"] for s in bar.layout_data["segments"] if not s["free"]]
    ['10.0.0.0/23', '10.0.2.0/24']
    """

    label_table = "vpc_plan"
    _esm = widget_esm("vpc_plan.js")

    _css = _HERE / "theme.css"
    layout_data = traitlets.Dict().tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)

    def __init__(self, plan_or_vpc: v.SubnetPlan | v.Vpc, **kwargs: Any) -> None:
        super().__init__(layout_data=plan_segments(plan_or_vpc), **kwargs)

    def show(self, plan_or_vpc: v.SubnetPlan | v.Vpc) -> None:
        """Replace what the bar shows (the browser animates the change)."""
        self.layout_data = dict(plan_segments(plan_or_vpc))  # the trait holds a plain dict


def plan_figure(plan_or_vpc: v.SubnetPlan | v.Vpc) -> Figure:
    """The plan bar as a static matplotlib figure.

    >>> figure = plan_figure(v.plan_subnets("10.0.0.0/24", [("a", 100), ("b", 20)]))
    >>> len(figure.axes[0].patches)
    4
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    data = plan_segments(plan_or_vpc)
    total = data["total"]
    figure = Figure(figsize=(10, 1.9))
    axes = figure.add_subplot()
    axes.set_xlim(0, 1)
    axes.set_ylim(-0.9, 1.3)
    axes.axis("off")
    for segment in data["segments"]:
        x, width = segment["start"] / total, segment["size"] / total
        colour = "#ffffff" if segment["free"] else data["az_colours"].get(segment["az"], "#9e9e9e")
        axes.add_patch(
            Rectangle(
                (x, 0),
                width,
                0.8,
                facecolor=colour,
                edgecolor="#555555",
                hatch="//" if segment["free"] else None,
                alpha=0.85,
            )
        )
        if width > 0.09:
            label = "free" if segment["free"] else segment["name"]
            axes.text(x + width / 2, 0.5, label, ha="center", va="center", fontsize=8)
            axes.text(x + width / 2, 0.2, segment["cidr"], ha="center", va="center", fontsize=7)
    axes.text(0, 1.05, f"{data['space']} ({total:,} addresses)", fontsize=9)
    for index, (az, colour) in enumerate(data["az_colours"].items()):
        axes.add_patch(Rectangle((index * 0.18, -0.6), 0.02, 0.25, facecolor=colour))
        axes.text(index * 0.18 + 0.03, -0.48, az, fontsize=8, va="center")
    return figure
