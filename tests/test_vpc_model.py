"""The VPC model: route tables, validation, classification, reachability, TOML designs."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deploylab import vpc
from deploylab.vpc import DesignError, RouteError, RouteTable, Vpc, load_design

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "vpc"


# -- route tables ---------------------------------------------------------------------------


def test_reference_lpm_example():
    # vpc.md: 10.10.2.15/32 beats 10.10.2.0/24 beats 0.0.0.0/0
    table = RouteTable("rt")
    table.add_route("0.0.0.0/0", "igw-1")
    table.add_route("10.10.2.0/24", "pcx-1")
    table.add_route("10.10.2.15/32", "eni-1")
    answer = table.lookup("10.10.2.15")
    assert answer.target == "eni-1"
    assert [r.target for r in answer.beaten] == ["pcx-1", "igw-1"]
    assert table.lookup("10.10.2.16").target == "pcx-1"
    assert table.lookup("8.8.8.8").target == "igw-1"
    assert "wins over" in answer.explain()


def test_static_beats_propagated_on_a_tie():
    table = RouteTable("rt", local_cidrs=["10.0.0.0/16"])
    table.add_route("192.168.0.0/16", "vgw-1", propagated=True)
    table.add_route("192.168.0.0/16", "pcx-1")
    answer = table.lookup("192.168.3.3")
    assert answer.target == "pcx-1" and answer.beaten[0].propagated


def test_no_route_and_local_rules():
    table = RouteTable("rt", local_cidrs=["10.0.0.0/16"])
    assert table.lookup("8.8.8.8").route is None
    assert "dropped" in table.lookup("8.8.8.8").explain()
    with pytest.raises(RouteError, match="cannot be removed"):
        table.remove_route("10.0.0.0/16")
    with pytest.raises(RouteError, match="local"):
        table.add_route("10.1.0.0/16", "local")
    with pytest.raises(RouteError, match=r"already has a route to 0\.0\.0\.0/0"):
        table.add_route("0.0.0.0/0", "igw-1")
        table.add_route("0.0.0.0/0", "nat-1")
    with pytest.raises(RouteError, match="'gw1'"):
        table.add_route("1.0.0.0/8", "gw1")
    removed = table.remove_route("0.0.0.0/0")
    assert removed.target == "igw-1"


route_sets = st.lists(
    st.tuples(
        st.integers(0, 2**32 - 1),
        st.integers(0, 32),
        st.sampled_from(["igw-a", "nat-b", "vgw-c", "pcx-d", "i-e"]),
    ),
    min_size=0,
    max_size=25,
)


@given(route_sets, st.integers(0, 2**32 - 1))
def test_lookup_is_the_longest_matching_prefix(raw_routes, raw_destination):
    table = RouteTable("rt")
    added = {}
    for address, prefix, target in raw_routes:
        network = ipaddress.IPv4Network((address, prefix), strict=False)
        if network not in added:
            table.add_route(network, target)
            added[network] = target
    destination = ipaddress.IPv4Address(raw_destination)
    matching = [n for n in added if destination in n]
    answer = table.lookup(destination)
    if not matching:
        assert answer.route is None
        return
    best = max(matching, key=lambda n: n.prefixlen)
    assert answer.route.destination == best and answer.target == added[best]
    assert {r.destination for r in answer.candidates} == set(matching)
    assert all(r.destination.prefixlen < best.prefixlen for r in answer.beaten)


# -- validation and classification -------------------------------------------------------------


def test_example_designs_load_and_classify():
    two_tier = load_design(ASSETS / "two-tier.toml")
    assert two_tier.validate() == []
    assert {n: two_tier.classify(n) for n in two_tier.subnets} == {
        "public-a": "public",
        "public-c": "public",
        "private-a": "private",
        "private-c": "private",
    }
    hybrid = load_design(ASSETS / "hybrid.toml")
    assert hybrid.classify("vpn-only") == "vpn-only"
    assert hybrid.classify("spare") == "private"  # no association: the main table
    assert [p.severity for p in hybrid.validate()] == ["warning"]


def test_broken_design_has_one_message_per_broken_rule():
    problems = load_design(ASSETS / "broken.toml").validate()
    rules = sorted(p.rule for p in problems if p.severity == "error")
    assert rules == sorted(
        [
            "subnet-overlap",
            "subnet-outside-vpc",
            "subnet-size",
            "route-target-missing",
            "nat-no-eip",
            "nat-in-private-subnet",
            "ip-reserved",
            "ip-outside-subnet",
            "public-ip-not-public",
        ]
    )
    by_rule = {p.rule: p for p in problems}
    assert "10.1.0.128/25" in by_rule["subnet-overlap"].message
    assert "10.1.9.1" in by_rule["ip-reserved"].message
    assert "igw-missing" in by_rule["route-target-missing"].message


def test_vpc_size_rule_and_az_rule():
    assert [p.rule for p in Vpc("10.0.0.0/8").validate()] == ["vpc-size"]
    with pytest.raises(DesignError, match="exactly one Availability Zone"):
        Vpc().add_subnet("x", "10.0.0.0/24", az=["a", "b"])
    with pytest.raises(DesignError, match="'nope'"):
        Vpc().associate("nope", "main")


def test_mininet_style_build():
    class TwoSubnets(Vpc):
        def build(self, zones=("a", "b")):
            igw = self.add_internet_gateway()
            public = self.add_route_table("public")
            public.add_route("0.0.0.0/0", igw.id)
            for index, zone in enumerate(zones):
                self.add_subnet(f"pub-{zone}", f"10.0.{index}.0/24", az=zone, route_table="public")

    design = TwoSubnets("10.0.0.0/16", zones=("x", "y", "z"))
    assert design.availability_zones == ["x", "y", "z"]
    assert all(design.classify(n) == "public" for n in design.subnets)
    assert design.validate() == []


def test_main_table_is_used_until_associated():
    design = Vpc("10.0.0.0/16")
    design.add_subnet("a", "10.0.0.0/24", az="z")
    assert design.route_table_for("a").name == "main"
    design.add_route_table("other", subnets=["a"])
    assert design.route_table_for("a").name == "other"
    design.set_main_route_table("other")
    design.add_subnet("b", "10.0.1.0/24", az="z")
    assert design.route_table_for("b").name == "other"


# -- reachability --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, destination, reachable, blocked_by, words",
    [
        ("web-a", "internet", True, None, []),
        ("internet", "web-a", True, None, []),
        ("bastion", "internet", False, "i-bastion", ["no public IPv4 address"]),
        ("internet", "bastion", False, "i-bastion", ["no public IPv4 address"]),
        ("db-a", "internet", True, None, []),
        ("internet", "db-a", False, "i-db-a", ["no public IPv4"]),
        ("db-a", "web-c", True, None, []),
        ("web-c", "db-c", True, None, []),
    ],
)
def test_two_tier_reachability(source, destination, reachable, blocked_by, words):
    answer = load_design(ASSETS / "two-tier.toml").reach(source, destination)
    assert answer.reachable is reachable, answer.explain()
    assert answer.blocked_by == blocked_by
    for word in words:
        assert word in answer.reason


def test_hybrid_reachability_reasons():
    design = load_design(ASSETS / "hybrid.toml")
    assert design.reach("ledger", "corporate")
    assert design.reach("corporate", "ledger")
    blocked = design.reach("ledger", "internet")
    assert blocked.blocked_by == "vgw-corp" and "not to internet" in blocked.reason
    assert design.reach("app1", "peer:pcx-partner")
    assert design.reach("app1", "internet")
    idle = design.reach("internet", "idle")
    assert not idle and idle.blocked_by == "rt:main" and "private subnet" in idle.reason
    proxy = design.reach("corporate", "proxy")
    assert not proxy and "not back through vgw-corp" in proxy.reason


def test_nat_in_private_subnet_blocks_with_its_route_table():
    design = Vpc("10.0.0.0/16")
    design.add_subnet("a", "10.0.0.0/24", az="z")
    design.add_subnet("b", "10.0.1.0/24", az="z", route_table=None)
    design.add_nat_gateway("nat-1", "a", public_ip="203.0.113.9")
    design.add_route_table("rt-b", subnets=["b"]).add_route("0.0.0.0/0", "nat-1")
    design.add_instance("worker", "b")
    answer = design.reach("worker", "internet")
    assert not answer and answer.blocked_by == "rt:main"
    assert "must be in a public subnet" in answer.reason


def test_unknown_endpoints_name_the_value():
    design = load_design(ASSETS / "two-tier.toml")
    with pytest.raises(DesignError, match="'nobody'"):
        design.reach("nobody", "internet")
    with pytest.raises(DesignError, match="at least one instance"):
        design.reach("internet", "internet")


# -- designs and graphs --------------------------------------------------------------------------


def test_design_errors_name_the_place(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[vpc]\ncidr = "10.0.0.0/16"\n[[subnets]]\nname = "a"\ncidr = "10.0.0.1/24"\naz = "z"\n'
    )
    with pytest.raises(DesignError) as caught:
        load_design(path)
    assert "bad.toml: subnets[0] ('a')" in str(caught.value)
    assert "10.0.0.1/24" in str(caught.value)
    path.write_text('[vpc]\ncidr = "10.0.0.0/16"\ncolour = "red"\n')
    with pytest.raises(DesignError, match="'colour'"):
        load_design(path)
    with pytest.raises(DesignError, match="does not exist"):
        load_design(tmp_path / "missing.toml")


def test_graph_has_azs_tables_gateways():
    graph = load_design(ASSETS / "hybrid.toml").to_graph()
    kinds = {data["kind"] for _, data in graph.nodes(data=True)}
    assert {
        "vpc",
        "az",
        "subnet",
        "route_table",
        "igw",
        "nat",
        "vgw",
        "pcx",
        "instance",
        "internet",
        "corporate",
    } <= kinds
    assert graph.nodes["subnet:vpn-only"]["subnet_kind"] == "vpn-only"
    assert graph.has_edge("az:us-east-1b", "subnet:vpn-only")
    assert graph.has_edge("rt:rt-vpn", "vgw-corp")
    assert graph.has_edge("subnet:spare", "rt:main")


def test_exported_members():
    # the public surface is explicit: everything in __all__ exists and nothing private leaks
    assert sorted(vpc.__all__) == sorted(set(vpc.__all__))
    for name in vpc.__all__:
        assert hasattr(vpc, name), name
        assert not name.startswith("_")
    for required in ("Vpc", "RouteTable", "plan_subnets", "load_design"):
        assert required in vpc.__all__


def test_random_auto_addresses_skip_reserved():
    design = Vpc("10.0.0.0/16")
    design.add_subnet("tiny", "10.0.0.0/28", az="z")
    names = [f"i{n}" for n in range(11)]
    for name in names:
        design.add_instance(name, "tiny")
    taken = {design.instances[n].private_ip for n in names}
    reserved = {r.address for r in vpc.aws_reserved_addresses("10.0.0.0/28")}
    assert len(taken) == 11 and not taken & reserved
    with pytest.raises(DesignError, match="no free address"):
        design.add_instance("one-too-many", "tiny")


def _nat_design(public_routes):
    design = Vpc("10.0.0.0/16")
    design.add_subnet("pub", "10.0.1.0/24", az="z", route_table=None)
    design.add_subnet("priv", "10.0.2.0/24", az="z", route_table=None)
    design.add_internet_gateway("igw-main")
    design.add_vpn_gateway("vgw-corp", ["192.168.0.0/16"])
    design.add_nat_gateway("nat-1", "pub", public_ip="203.0.113.9")
    public = design.add_route_table("rt-pub", subnets=["pub"])
    for destination, target in [("0.0.0.0/0", "igw-main"), *public_routes]:
        public.add_route(destination, target)
    private = design.add_route_table("rt-priv", subnets=["priv"])
    private.add_route("0.0.0.0/0", "nat-1")
    design.add_instance("worker", "priv")
    return design


def test_a_public_nat_gateway_also_forwards_to_the_vpn_by_its_subnets_table():
    # AWS: a public NAT gateway can also send traffic on to a virtual private gateway, with
    # its private IP as the source; where it goes is its own subnet's route table's choice.
    design = _nat_design([("192.168.0.0/16", "vgw-corp")])
    answer = design.reach("worker", "corporate")
    assert answer, answer.explain()
    assert [hop.node for hop in answer.path][-3:] == ["rt:rt-pub", "vgw-corp", "corporate"]
    assert "replies to 10.0.1.4" in answer.path[-1].detail  # the NAT's private IP, no EIP
    blocked = _nat_design([]).reach("worker", "corporate")
    assert not blocked and blocked.blocked_by == "igw-main"
    assert "not to corporate network" in blocked.reason


def test_nat_replies_follow_the_nat_subnets_table_back():
    # The NAT forwards replies to the instance by its subnet's table: a more specific route
    # there for the private subnet sends them away, so the connection never completes.
    design = _nat_design([("10.0.2.0/24", "vgw-corp")])
    answer = design.reach("worker", "internet")
    assert not answer and answer.blocked_by == "rt:rt-pub"
    assert "10.0.2.0/24 -> vgw-corp" in answer.reason


def test_a_route_target_that_is_not_an_id_gets_the_route_error():
    # add_route takes an id or an object with one (a Gateway); a TOML number is neither, and
    # must still get RouteError's sentence (which the design loader turns into DesignError).
    table = RouteTable("rt")
    with pytest.raises(RouteError, match="route target '5': expected 'local' or an id"):
        table.add_route("0.0.0.0/0", 5)
    design = Vpc("10.0.0.0/16")
    gateway = design.add_internet_gateway("igw-main")
    assert table.add_route("0.0.0.0/0", gateway).target == "igw-main"
    text = (
        '[vpc]\ncidr = "10.0.0.0/16"\n'
        '[[route_tables]]\nname = "rt"\nroutes = [{ destination = "0.0.0.0/0", target = 5 }]\n'
    )
    with pytest.raises(
        DesignError, match=r"route_tables\[0\] \('rt'\): routes\[0\]: route target '5'"
    ):
        vpc.loads_design(text)


def test_only_a_gateway_placed_in_a_subnet_has_a_placement():
    design = Vpc("10.0.0.0/16")
    design.add_subnet("public-a", "10.0.1.0/24", az="z")
    nat = design.add_nat_gateway("nat-a", "public-a", public_ip="203.0.113.5")
    assert nat.placed() == ("public-a", ipaddress.IPv4Address("10.0.1.4"))
    igw = design.add_internet_gateway("igw-main")
    with pytest.raises(DesignError, match="gateway igw-main has no subnet or no private IP"):
        igw.placed()
