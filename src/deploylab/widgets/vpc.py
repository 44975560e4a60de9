"""Views of :mod:`deploylab.vpc`: a CIDR explorer, a subnet-plan bar, the VPC as a graph and
a route-lookup step-through.

Every fact shown is computed in Python by ``deploylab.vpc`` and sent to the browser as
traitlets; the JavaScript (``vpc_*.js`` next to this file) only draws and animates. Each view
has a static matplotlib fallback (``*_figure``) for exports and graders without a browser.

Why one file of ~700 lines: four views, each a widget class beside its fallback figure and
the facts both draw (the pairing is the point; splitting would separate them).
"""

from __future__ import annotations

import ipaddress
import pathlib

import traitlets

from deploylab import vpc as v
from deploylab.widgets.labels import LabelledWidget

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

_HERE = pathlib.Path(__file__).parent

#: Colours by subnet kind, shared by the widgets and the static figures.
KIND_COLOURS = {"public": "#34a853", "private": "#4285f4", "vpn-only": "#f29900"}
#: Colours for Availability Zones, in order of their names.
AZ_COLOURS = ["#8e24aa", "#00897b", "#e53935", "#3949ab", "#6d4c41", "#c0ca33"]
NETWORK_COLOUR, HOST_COLOUR = "#1a73e8", "#e8eaed"


# -- CIDR explorer ----------------------------------------------------------------------------


def _cidr_state(text: str) -> dict:
    """Everything the explorer shows for ``text`` (``a.b.c.d/n``), or an error message."""
    text = text.strip()
    address_text, _, prefix_text = text.partition("/")
    try:
        address = v.parse_address(address_text)
        if prefix_text and not (prefix_text.isdigit() and int(prefix_text) <= 32):
            v.parse_block(text)  # raises the library's message for the bad prefix
        prefix = int(prefix_text) if prefix_text else 32
    except ValueError as error:
        return {"error": str(error)}
    network = ipaddress.IPv4Network((address, prefix), strict=False)
    facts = v.cidr_facts(network)
    about = v.address_facts(address, prefix)
    note = ""
    if network.network_address != address:
        note = (
            f"{address} has host bits set; the block it belongs to is {network} "
            f"(AWS and ipaddress would refuse {address}/{prefix})"
        )
    return {
        "error": "",
        "note": note,
        "address": str(address),
        "prefixlen": prefix,
        "bits": about.binary.bits,
        "block": str(network),
        "network": str(facts.network_address),
        "broadcast": str(facts.broadcast_address),
        "netmask": str(facts.netmask),
        "wildcard": str(facts.wildcard),
        "total": facts.total,
        "usable_classic": facts.usable_classic,
        "aws_usable": facts.aws_usable,
        "aws_reserved": []
        if facts.aws_reserved is None
        else [{"address": str(r.address), "role": r.role} for r in facts.aws_reserved],
        "address_class": about.address_class,
        "classful_prefix": about.classful_prefix,
        "kind": about.description,
    }


class CidrExplorer(LabelledWidget):
    """Type a block or move the prefix slider: the 32 bits light up as network (blue) and
    host (grey), with the counts (classic and AWS) and the address's class.

    >>> explorer = CidrExplorer("10.0.0.0/24")
    >>> explorer.facts["aws_usable"], explorer.facts["address_class"]
    (251, 'A')
    >>> explorer.prefixlen = 28
    >>> explorer.facts["block"], explorer.facts["aws_usable"]
    ('10.0.0.0/28', 11)
    >>> explorer.text = "10.0.0.300/24"
    >>> "10.0.0.300" in explorer.facts["error"]
    True
    """

    label_table = "vpc_cidr"
    _esm = _HERE / "vpc_cidr.js"

    _css = _HERE / "theme.css"
    text = traitlets.Unicode("10.0.0.0/16").tag(sync=True)
    prefixlen = traitlets.Int(16).tag(sync=True)
    facts = traitlets.Dict().tag(sync=True)

    def __init__(self, block: str = "10.0.0.0/16", **kwargs) -> None:
        super().__init__(**kwargs)
        self.text = block
        self._update_from_text()

    @traitlets.observe("text")
    def _update_from_text(self, _change=None) -> None:
        self.facts = _cidr_state(self.text)
        if not self.facts["error"] and self.prefixlen != self.facts["prefixlen"]:
            self.prefixlen = self.facts["prefixlen"]

    @traitlets.observe("prefixlen")
    def _update_from_prefix(self, change) -> None:
        if not 0 <= change["new"] <= 32:
            self.prefixlen = change["old"]
            return
        address = self.facts.get("address") or self.text.partition("/")[0]
        wanted = f"{address}/{change['new']}"
        if self.text != wanted:
            self.text = wanted


def cidr_figure(block: str):
    """The explorer as a static figure: 32 bit cells coloured network/host, with the facts.

    >>> figure = cidr_figure("192.168.1.0/26")
    >>> len(figure.axes[0].patches)
    32
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    state = _cidr_state(block)
    figure = Figure(figsize=(10, 2.2))
    axes = figure.add_subplot()
    axes.set_xlim(-0.5, 35.5)
    axes.set_ylim(-2.6, 1.4)
    axes.axis("off")
    if state["error"]:
        axes.text(0, 0, state["error"], fontsize=9, color="#c5221f")
        return figure
    for index, bit in enumerate(state["bits"]):
        x = index + index // 8
        network = index < state["prefixlen"]
        axes.add_patch(
            Rectangle(
                (x, 0),
                0.9,
                0.9,
                facecolor=NETWORK_COLOUR if network else HOST_COLOUR,
                edgecolor="white",
            )
        )
        axes.text(
            x + 0.45,
            0.45,
            bit,
            ha="center",
            va="center",
            fontsize=8,
            color="white" if network else "#333333",
        )
    aws = state["aws_usable"]
    axes.text(
        0,
        1.1,
        f"{state['block']}  ({state['prefixlen']} network bits, "
        f"{32 - state['prefixlen']} host bits)  class {state['address_class']}"
        f" · {state['kind']}",
        fontsize=9,
    )
    axes.text(
        0,
        -0.9,
        f"netmask {state['netmask']}   wildcard {state['wildcard']}   "
        f"network {state['network']}   broadcast {state['broadcast']}",
        fontsize=8,
    )
    axes.text(
        0,
        -1.7,
        f"total {state['total']:,}   usable (classic) {state['usable_classic']:,}"
        f"   usable (AWS) {'n/a: not /16-/28' if aws is None else f'{aws:,}'}",
        fontsize=8,
    )
    return figure


# -- subnet plan ----------------------------------------------------------------------------------


def plan_segments(plan_or_vpc) -> dict:
    """The address space of a :class:`~deploylab.vpc.SubnetPlan` or a
    :class:`~deploylab.vpc.Vpc` as ordered segments (subnets and free gaps).

    >>> plan = v.plan_subnets("10.0.0.0/24", [("a", 100, "az1"), ("b", 20, "az2")])
    >>> [(s["name"], s["start"], s["size"]) for s in plan_segments(plan)["segments"]]
    [('a', 0, 128), ('b', 128, 32), ('', 160, 32), ('', 192, 64)]
    """
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
    segments = [
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
    _esm = _HERE / "vpc_plan.js"

    _css = _HERE / "theme.css"
    layout_data = traitlets.Dict().tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)

    def __init__(self, plan_or_vpc, **kwargs) -> None:
        super().__init__(layout_data=plan_segments(plan_or_vpc), **kwargs)

    def show(self, plan_or_vpc) -> None:
        """Replace what the bar shows (the browser animates the change)."""
        self.layout_data = plan_segments(plan_or_vpc)


def plan_figure(plan_or_vpc):
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


# -- the VPC as a graph ------------------------------------------------------------------------------


def vpc_layout(vpc) -> dict:
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
    nodes, groups, edges = [], [], []
    column_width, subnet_height = 240, 74
    azs = vpc.availability_zones
    rows_in_az = {az: [s for s in vpc.subnets.values() if s.az == az] for az in azs}
    tallest = max((len(rows) for rows in rows_in_az.values()), default=1)
    tables = list(vpc.route_tables.values())
    width = max(max(len(azs), 1) * column_width + 40, len(tables) * 250 + 40)
    vpc_top = 200
    vpc_height = 50 + tallest * (subnet_height + 16)

    def add(node_id, x, y, w, h, **extra):
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
    _esm = _HERE / "vpc_graph.js"

    _css = _HERE / "theme.css"
    layout_data = traitlets.Dict().tag(sync=True)
    highlight = traitlets.List(traitlets.Unicode()).tag(sync=True)
    caption = traitlets.Unicode("").tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)

    def __init__(self, vpc, **kwargs) -> None:
        super().__init__(layout_data=vpc_layout(vpc), **kwargs)
        self._vpc = vpc

    def show_reach(self, answer) -> None:
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


def vpc_graph_figure(vpc, highlight=()):
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
        colour = KIND_COLOURS.get(node.get("subnet_kind"), colours.get(node["kind"], "#eeeeee"))
        edge = "#d93025" if node["id"] in highlight else "#555555"
        axes.add_patch(
            FancyBboxPatch(
                (node["x"], node["y"]),
                node["w"],
                node["h"],
                boxstyle="round,pad=2",
                facecolor=colour,
                edgecolor=edge,
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


# -- route lookup step-through --------------------------------------------------------------------


def route_lookup_steps(table, destination) -> dict:
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
    steps = []
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
    _esm = _HERE / "vpc_route.js"

    _css = _HERE / "theme.css"
    destination = traitlets.Unicode("").tag(sync=True)
    data = traitlets.Dict().tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)

    def __init__(self, table, destination: str, **kwargs) -> None:
        self._table = table
        super().__init__(**kwargs)
        self.destination = destination
        self._recompute()

    @traitlets.observe("destination")
    def _recompute(self, _change=None) -> None:
        try:
            self.data = route_lookup_steps(self._table, self.destination)
            self.error = ""
        except ValueError as error:
            self.error = str(error)


def route_lookup_figure(table, destination):
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
