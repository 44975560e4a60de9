"""The VPC views show what deploylab.vpc computes (checked against ipaddress where possible),
their JavaScript loads nothing from the network, and the static fallbacks draw."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from deploylab import vpc as v
from deploylab.widgets import vpc as w

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "vpc"
WIDGETS = Path(w.__file__).parent


@pytest.mark.parametrize(
    "block", ["10.0.0.0/16", "172.16.5.0/24", "192.168.1.64/26", "8.8.8.8/32", "100.64.0.0/10"]
)
def test_cidr_explorer_agrees_with_ipaddress(block):
    network = ipaddress.ip_network(block)
    explorer = w.CidrExplorer(block)
    facts = explorer.facts
    assert facts["error"] == ""
    assert facts["netmask"] == str(network.netmask)
    assert facts["wildcard"] == str(network.hostmask)
    assert facts["broadcast"] == str(network.broadcast_address)
    assert facts["total"] == network.num_addresses
    assert facts["bits"] == format(int(network.network_address), "032b")
    assert explorer.prefixlen == network.prefixlen


def test_cidr_explorer_slider_moves_the_split_and_keeps_the_address():
    explorer = w.CidrExplorer("192.168.1.77/24")
    assert "host bits" in explorer.facts["note"]
    explorer.prefixlen = 30
    assert explorer.text == "192.168.1.77/30"
    assert explorer.facts["block"] == str(ipaddress.ip_network("192.168.1.77/30", strict=False))
    assert explorer.facts["usable_classic"] == 2 and explorer.facts["aws_usable"] is None
    explorer.text = "10.0.0.0/33"
    assert "10.0.0.0/33" in explorer.facts["error"]


def test_plan_bar_covers_the_space_exactly():
    plan = v.plan_subnets("10.0.0.0/22", [("web", 200, "a"), ("db", 60, "b"), ("ops", "/28", "a")])
    data = w.SubnetPlanBar(plan).layout_data
    position = 0
    for segment in data["segments"]:
        assert segment["start"] == position
        network = ipaddress.ip_network(segment["cidr"])
        assert network.num_addresses == segment["size"]
        position += segment["size"]
    assert position == 1024
    assert set(data["az_colours"]) == {"a", "b"}


def test_graph_layout_has_every_subnet_inside_its_az_box():
    design = v.load_design(ASSETS / "hybrid.toml")
    data = w.vpc_layout(design)
    boxes = {g["id"]: g for g in data["groups"]}
    for subnet in design.subnets.values():
        node = next(n for n in data["nodes"] if n["id"] == f"subnet:{subnet.name}")
        box = boxes[f"az:{subnet.az}"]
        assert box["x"] <= node["x"] and node["x"] + node["w"] <= box["x"] + box["w"]
        assert box["y"] <= node["y"] and node["y"] + node["h"] <= box["y"] + box["h"]
        assert node["subnet_kind"] == design.classify(subnet.name)
    kinds = {n["kind"] for n in data["nodes"]}
    assert {"igw", "vgw", "pcx", "route_table", "internet", "corporate"} <= kinds
    graph = w.VpcGraph(design)
    graph.show_reach(design.reach("ledger", "internet"))
    assert "vgw-corp" in graph.highlight and "corporate network" in graph.caption


def test_route_stepper_winner_is_the_lookup_winner():
    design = v.load_design(ASSETS / "hybrid.toml")
    table = design.route_table_for("app")
    for destination in ["192.168.4.4", "172.31.0.1", "10.20.9.9", "8.8.8.8"]:
        steps = w.route_lookup_steps(table, destination)["steps"]
        winners = [s["route"] for s in steps if s["winner"]]
        assert winners == [str(table.lookup(destination).route)]
        for step in steps:  # a route matches exactly when all its prefix bits agree
            assert step["matches"] == (step["agreeing_bits"] == step["prefixlen"])
    stepper = w.RouteLookupStepper(table, "8.8.8.8")
    stepper.destination = "8.8.8.300"
    assert "8.8.8.300" in stepper.error


def test_javascript_is_local_and_renders_the_selectors():
    for path in WIDGETS.glob("vpc_*.js"):
        source = path.read_text()
        assert not re.search(r"import[^;]*https?://", source), path
        assert "export default" in source and "requestAnimationFrame" in source
    assert 'className = "dl-vpc-graph"' in (WIDGETS / "vpc_graph.js").read_text()
    assert 'className = "dl-vpc-cidr"' in (WIDGETS / "vpc_cidr.js").read_text()


def test_static_fallbacks_draw():
    design = v.load_design(ASSETS / "two-tier.toml")
    for figure in (
        w.cidr_figure("10.0.0.0/24"),
        w.plan_figure(design),
        w.vpc_graph_figure(design, highlight=["igw-main"]),
        w.route_lookup_figure(design.route_table_for("private-a"), "10.0.1.5"),
    ):
        assert figure.axes and figure.axes[0].patches
    assert "10.0.0.300" in w.cidr_figure("10.0.0.300/24").axes[0].texts[0].get_text()
