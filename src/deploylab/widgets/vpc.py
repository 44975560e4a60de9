"""Views of :mod:`deploylab.vpc`: a CIDR explorer, a subnet-plan bar, the VPC as a graph and
a route-lookup step-through, gathered here so a lesson imports them from one place.

Every fact shown is computed in Python by ``deploylab.vpc`` and sent to the browser as
traitlets; the JavaScript (``vpc_*.js`` next to this file) only draws and animates. Each view
lives in its own module beside its static matplotlib fallback (``*_figure``) and the facts
both draw: :mod:`.vpc_cidr`, :mod:`.vpc_plan`, :mod:`.vpc_graph`, :mod:`.vpc_route`.
"""

from __future__ import annotations

from deploylab.widgets.vpc_cidr import CidrExplorer, cidr_figure
from deploylab.widgets.vpc_graph import KIND_COLOURS, VpcGraph, vpc_graph_figure, vpc_layout
from deploylab.widgets.vpc_plan import AZ_COLOURS, SubnetPlanBar, plan_figure, plan_segments
from deploylab.widgets.vpc_route import (
    RouteLookupStepper,
    route_lookup_figure,
    route_lookup_steps,
)

__all__ = [
    "AZ_COLOURS",
    "KIND_COLOURS",
    "CidrExplorer",
    "RouteLookupStepper",
    "SubnetPlanBar",
    "VpcGraph",
    "cidr_figure",
    "plan_figure",
    "plan_segments",
    "route_lookup_figure",
    "route_lookup_steps",
    "vpc_graph_figure",
    "vpc_layout",
]
