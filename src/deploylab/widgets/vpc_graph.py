"""The VPC as a graph: Availability Zones grouping subnets, route tables, gateways and the
outside, laid out in Python (:func:`vpc_layout`) and drawn by ``vpc_graph.js``, with its static
matplotlib fallback using the same layout."""

from __future__ import annotations

import pathlib
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, TypedDict

import traitlets

from deploylab import vpc as v
from deploylab.widgets.esm import widget_esm
from deploylab.widgets.labels import LabelledWidget

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "KIND_COLOURS",
    "GraphEdge",
    "GraphGroup",
    "GraphLayout",
    "GraphNode",
    "VpcGraph",
    "vpc_graph_figure",
    "vpc_layout",
]

_HERE = pathlib.Path(__file__).parent

#: Colours by subnet kind, shared by the widgets and the static figures.
KIND_COLOURS = {"public": "#34a853", "private": "#4285f4", "vpn-only": "#f29900"}


#: A drawn node: ``id``, ``x``, ``y``, ``w``, ``h``, ``kind`` and ``label``, plus every
#: attribute of its networkx node (``subnet_kind``, ``cidr``, ``chips``, ``routes``… differ by
#: kind and come from :meth:`Vpc.to_graph`), so the record is open-ended: a plain dict.
GraphNode = dict[str, Any]


class GraphGroup(TypedDict):
    """A box around nodes: the VPC or one Availability Zone."""

    id: str
    label: str
    x: float
    y: float
    w: float
    h: float
    kind: str


class GraphEdge(TypedDict):
    """A line between two drawn nodes."""

    source: str
    target: str
    relation: str
    label: str


class GraphLayout(TypedDict):
    """What the graph draws (its ``layout_data`` trait), in pixels."""

    width: float
    height: float
    nodes: list[GraphNode]
    groups: list[GraphGroup]
    edges: list[GraphEdge]
    kind_colours: dict[str, str]


def vpc_layout(vpc: v.Vpc) -> GraphLayout:
    """Positions for drawing a :class:`~deploylab.vpc.Vpc`, from its networkx graph.

    Outside worlds on top, gateways below them, then the VPC with one column per AZ holding
    its subnets (and their instances), route tables at the bottom. Used by both the widget
    and :func:`vpc_graph_figure`, so they always agree.

    >>> vpc = v.Vpc("10.0.0.0/16")
    >>> _ = vpc.add_subnet("a", "10.0.1.0/24", az="az1")
    >>> data = vpc_layout(vpc)
    >>> [n["id"] for n in data["nodes"] if n["kind"] == "subnet"], len(data["groups"])
    (['subnet:a'], 2)
    """
    graph = vpc.to_graph()
    nodes: list[GraphNode] = []
    groups: list[GraphGroup] = []
    edges: list[GraphEdge] = []
    column_width, subnet_height = 240, 74
    azs = vpc.availability_zones
    rows_in_az = {az: [s for s in vpc.subnets.values() if s.az == az] for az in azs}
    tallest = max((len(rows) for rows in rows_in_az.values()), default=1)
    tables = list(vpc.route_tables.values())
    width = max(max(len(azs), 1) * column_width + 40, len(tables) * 250 + 40)
    vpc_top = 200
    vpc_height = 50 + tallest * (subnet_height + 16)

    def add(node_id: str, x: float, y: float, w: float, h: float, **extra: object) -> None:
        data = dict(graph.nodes[node_id]) if node_id in graph else {}
        data.pop("routes", None)
        nodes.append(
            {
                "id": node_id,
                "x": x,
                "y": y,
                "w": w,
                "h": h,
                "kind": data.get("kind", extra.get("kind")),
                "label": data.get("label", node_id),
                **{k: val for k, val in data.items() if k not in ("kind", "label")},
                **extra,
            }
        )

    outside = [
        n for n, d in graph.nodes(data=True) if d["kind"] in ("internet", "corporate", "peer")
    ]
    gateways = [n for n, d in graph.nodes(data=True) if d["kind"] in ("igw", "vgw", "pcx")]
    for index, node in enumerate(outside):
        add(node, 40 + index * (width - 80) / max(len(outside), 1), 10, 140, 40)
    for index, node in enumerate(gateways):
        add(node, 40 + index * (width - 80) / max(len(gateways), 1), 100, 140, 40)
    groups.append(
        {
            "id": "vpc",
            "label": f"VPC {vpc.name} {vpc.cidr}",
            "x": 10,
            "y": vpc_top - 30,
            "w": width - 20,
            "h": vpc_height + 40,
            "kind": "vpc",
        }
    )
    for column, az in enumerate(azs):
        x = 20 + column * column_width
        groups.append(
            {
                "id": f"az:{az}",
                "label": az,
                "x": x,
                "y": vpc_top,
                "w": column_width - 20,
                "h": vpc_height,
                "kind": "az",
            }
        )
        for row, subnet in enumerate(rows_in_az[az]):
            members = [i for i in vpc.instances.values() if i.subnet == subnet.name]
            nats = [
                g.id for g in vpc.gateways.values() if g.kind == "nat" and g.subnet == subnet.name
            ]
            chips = [
                f"{i.name} {i.private_ip}" + (f" / {i.public_ip}" if i.public_ip else "")
                for i in members
            ] + [f"{n} (NAT)" for n in nats]
            add(
                f"subnet:{subnet.name}",
                x + 10,
                vpc_top + 30 + row * (subnet_height + 16),
                column_width - 40,
                subnet_height,
                chips=chips,
            )
    table_top = vpc_top + vpc_height + 40
    for index, table in enumerate(tables):
        add(
            f"rt:{table.name}",
            20 + index * (width - 40) / max(len(tables), 1),
            table_top,
            (width - 40) / max(len(tables), 1) - 20,
            30 + 16 * len(table.routes),
            routes=[str(route) for route in table.routes],
        )
    # NAT gateways and instances are drawn inside their subnet: routes to them end there.
    inside = {i.id: f"subnet:{i.subnet}" for i in vpc.instances.values()}
    inside |= {g.id: f"subnet:{g.subnet}" for g in vpc.gateways.values() if g.subnet}
    for source, target, data in graph.edges(data=True):
        if data["relation"] in ("uses", "route", "attached") and source != "vpc":
            edges.append(
                {
                    "source": source,
                    "target": inside.get(target, target),
                    "relation": data["relation"],
                    "label": data.get("destination", ""),
                }
            )
    for node in vpc.gateways.values():
        if node.kind != "nat":
            edges.append({"source": "vpc", "target": node.id, "relation": "attached", "label": ""})
    height = table_top + max((30 + 16 * len(t.routes) for t in tables), default=40) + 20
    return {
        "width": width,
        "height": height,
        "nodes": nodes,
        "groups": groups,
        "edges": edges,
        "kind_colours": KIND_COLOURS,
    }


class VpcGraph(LabelledWidget):
    """The VPC drawn as a graph: AZs grouping subnets (green public, blue private, orange
    VPN-only), route tables, gateways and the outside. Click a subnet to highlight its
    route table and the gateways that table reaches; ``highlight`` (node ids) marks a path,
    e.g. ``show_reach(vpc.reach("web-a", "internet"))``.

    >>> graph = VpcGraph(v.Vpc("10.0.0.0/16"))
    >>> graph.layout_data["groups"][0]["kind"]
    'vpc'
    """

    label_table = "vpc_graph"
    _esm = widget_esm("vpc_graph.js")

    _css = _HERE / "theme.css"
    layout_data = traitlets.Dict().tag(sync=True)
    highlight = traitlets.List(traitlets.Unicode()).tag(sync=True)
    caption = traitlets.Unicode("").tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)

    def __init__(self, vpc: v.Vpc, **kwargs: Any) -> None:
        super().__init__(layout_data=vpc_layout(vpc), **kwargs)
        self._vpc = vpc

    def show_reach(self, answer: v.Reachability) -> None:
        """Highlight the hops of a :class:`~deploylab.vpc.Reachability` answer."""
        nodes = [hop.node for hop in answer.path]
        if answer.blocked_by:
            nodes.append(answer.blocked_by)
        # Instances and NAT gateways are drawn inside their subnet's box: light that up.
        inside = {i.id: f"subnet:{i.subnet}" for i in self._vpc.instances.values()}
        inside |= {g.id: f"subnet:{g.subnet}" for g in self._vpc.gateways.values() if g.subnet}
        drawn = [inside.get(node, node) for node in nodes if node]
        self.highlight = [n for i, n in enumerate(drawn) if i == 0 or n != drawn[i - 1]]
        self.caption = answer.reason


def vpc_graph_figure(vpc: v.Vpc, highlight: Collection[str] = ()) -> Figure:
    """The VPC graph as a static matplotlib figure (same layout as the widget).

    >>> vpc = v.Vpc("10.0.0.0/16")
    >>> _ = vpc.add_subnet("a", "10.0.1.0/24", az="az1")
    >>> figure = vpc_graph_figure(vpc)
    >>> len(figure.axes)
    1
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch, Rectangle

    data = vpc_layout(vpc)
    scale = 1 / 80
    figure = Figure(figsize=(data["width"] * scale * 1.1, data["height"] * scale * 1.1))
    axes = figure.add_subplot()
    axes.set_xlim(0, data["width"])
    axes.set_ylim(data["height"], 0)
    axes.axis("off")
    centres = {}
    for group in data["groups"]:
        axes.add_patch(
            Rectangle(
                (group["x"], group["y"]),
                group["w"],
                group["h"],
                fill=False,
                linestyle="--" if group["kind"] == "az" else "-",
                edgecolor="#777777",
            )
        )
        axes.text(group["x"] + 6, group["y"] + 14, group["label"], fontsize=7, color="#555555")
    colours = {
        "igw": "#fde293",
        "vgw": "#fdd663",
        "pcx": "#e6c9a8",
        "route_table": "#f1f3f4",
        "internet": "#e8f0fe",
        "corporate": "#fce8e6",
        "peer": "#e6f4ea",
    }
    for node in data["nodes"]:
        colour = KIND_COLOURS.get(
            node.get("subnet_kind") or "", colours.get(node["kind"], "#eeeeee")
        )
        outline = "#d93025" if node["id"] in highlight else "#555555"
        axes.add_patch(
            FancyBboxPatch(
                (node["x"], node["y"]),
                node["w"],
                node["h"],
                boxstyle="round,pad=2",
                facecolor=colour,
                edgecolor=outline,
                linewidth=2.5 if node["id"] in highlight else 1,
                alpha=0.9 if node["kind"] == "subnet" else 1,
            )
        )
        centres[node["id"]] = (node["x"] + node["w"] / 2, node["y"] + node["h"] / 2)
        lines = [node["label"].replace("\n", " ")]
        if node["kind"] == "subnet":
            lines[0] += f" ({node['subnet_kind']})"
            lines += node.get("chips", [])
        if node["kind"] == "route_table":
            lines += node.get("routes", [])
        axes.text(
            node["x"] + 5,
            node["y"] + 12,
            "\n".join(lines),
            fontsize=6,
            va="top",
            color="white" if node["kind"] == "subnet" else "black",
        )
    for edge in data["edges"]:
        if edge["source"] in centres and edge["target"] in centres:
            (x1, y1), (x2, y2) = centres[edge["source"]], centres[edge["target"]]
            axes.plot(
                [x1, x2],
                [y1, y2],
                color="#9aa0a6",
                linewidth=0.8,
                zorder=0,
                linestyle=":" if edge["relation"] == "uses" else "-",
            )
    return figure
