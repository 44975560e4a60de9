"""deploylab.vpc addressing checked against the standard library's ipaddress (property tests)
and against the AWS worked examples of the VPC user guide."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deploylab import vpc
from deploylab.vpc import (
    AddressError,
    BlockError,
    PlanError,
    address_class,
    aws_reserved_addresses,
    aws_usable_hosts,
    binary_view,
    cidr_facts,
    is_rfc1918,
    parse_address,
    parse_block,
    plan_subnets,
    special_block,
    summarise_blocks,
    usable_hosts,
)

addresses = st.integers(min_value=0, max_value=2**32 - 1).map(ipaddress.IPv4Address)
# Addresses at and around the edges of every special block, where mistakes hide.
edges = st.sampled_from([b.network for b in vpc.SPECIAL_BLOCKS]).flatmap(
    lambda n: st.sampled_from(
        [
            int(n.network_address) - 1,
            int(n.network_address),
            int(n.broadcast_address),
            int(n.broadcast_address) + 1,
        ]
    )
)
addresses = addresses | edges.filter(lambda i: 0 <= i < 2**32).map(ipaddress.IPv4Address)
prefixes = st.integers(min_value=0, max_value=32)


@st.composite
def blocks(draw, min_prefix=0, max_prefix=32):
    prefix = draw(st.integers(min_value=min_prefix, max_value=max_prefix))
    return ipaddress.IPv4Network((draw(addresses), prefix), strict=False)


# -- against ipaddress -------------------------------------------------------------------


@given(addresses)
def test_parse_address_agrees_with_ipaddress(address):
    assert parse_address(str(address)) == address
    assert parse_address(int(address)) == address


@given(blocks())
def test_cidr_facts_agree_with_ipaddress(network):
    facts = cidr_facts(str(network))
    assert facts.network == network
    assert facts.network_address == network.network_address
    assert facts.broadcast_address == network.broadcast_address
    assert facts.netmask == network.netmask
    assert facts.wildcard == network.hostmask
    assert int(facts.netmask) ^ int(facts.wildcard) == 2**32 - 1
    assert facts.total == network.num_addresses
    # ipaddress.hosts() is the classic list of usable addresses (it handles /31 and /32).
    hosts = list(network.hosts()) if network.prefixlen >= 20 else None
    if hosts is not None:
        assert facts.usable_classic == len(hosts)
        assert (facts.first_usable, facts.last_usable) == (hosts[0], hosts[-1])


@given(blocks(16, 28))
def test_aws_usable_is_total_minus_five_with_the_right_reserved(network):
    assert aws_usable_hosts(network) == network.num_addresses - 5
    reserved = [r.address for r in aws_reserved_addresses(network)]
    all_addresses = list(network) if network.prefixlen >= 20 else None
    assert reserved[:4] == [network.network_address + i for i in range(4)]
    assert reserved[4] == network.broadcast_address
    if all_addresses is not None:
        assert reserved == all_addresses[:4] + all_addresses[-1:]


@given(addresses, prefixes)
def test_binary_view_splits_like_the_netmask(address, prefix):
    view = binary_view(address, prefix)
    network = ipaddress.IPv4Network((address, prefix), strict=False)
    assert len(view.network_bits) == prefix and len(view.host_bits) == 32 - prefix
    assert int(view.network_bits + "0" * (32 - prefix), 2) == int(network.network_address)
    assert int(view.bits, 2) == int(address)
    assert "".join(view.octets) == view.bits


@given(addresses)
def test_special_blocks_agree_with_ipaddress_where_they_mean_the_same(address):
    block = special_block(address)
    kind = block.kind if block else "public"
    assert (kind == "loopback") == address.is_loopback
    assert (kind == "multicast") == address.is_multicast
    assert (kind == "link-local") == address.is_link_local
    assert is_rfc1918(address) == any(
        address in ipaddress.IPv4Network(n)
        for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
    )
    if kind == "public":
        assert address.is_global


def test_is_private_pitfall_is_avoided():
    # ipaddress calls these "private"; none of them is RFC 1918.
    for text, kind in [
        ("127.0.0.1", "loopback"),
        ("0.1.2.3", "this-network"),
        ("169.254.169.254", "link-local"),
        ("240.0.0.1", "reserved"),
    ]:
        assert ipaddress.IPv4Address(text).is_private
        assert special_block(text).kind == kind
        assert not is_rfc1918(text)
    # ...and 100.64/10 is not "private" to ipaddress, yet not global either.
    assert not ipaddress.IPv4Address("100.64.0.1").is_private
    assert special_block("100.64.0.1").kind == "shared"
    assert special_block("255.255.255.255").kind == "broadcast"
    for documentation in ("192.0.2.1", "198.51.100.1", "203.0.113.1"):
        assert special_block(documentation).kind == "documentation"


@given(addresses)
def test_address_class_matches_first_octet_ranges(address):
    first = int(str(address).split(".")[0])
    expected = (
        "A"
        if first <= 127
        else "B"
        if first <= 191
        else "C"
        if first <= 223
        else "D"
        if first <= 239
        else "E"
    )
    assert address_class(address) == expected
    if expected == "D":
        assert address in ipaddress.IPv4Network("224.0.0.0/4")


@given(st.lists(blocks(8, 32), min_size=1, max_size=12))
def test_summarise_covers_exactly_the_same_addresses(networks):
    summary = summarise_blocks(networks)
    assert summary == list(ipaddress.collapse_addresses(networks))
    for a in summary:
        for b in summary:
            assert a == b or not a.overlaps(b)
    assert sum(n.num_addresses for n in summary) == sum(
        n.num_addresses for n in ipaddress.collapse_addresses(networks)
    )


# -- AWS worked examples (VPC user guide) -----------------------------------------------


def test_aws_worked_examples():
    assert aws_usable_hosts("10.0.0.0/24") == 251
    assert aws_usable_hosts("10.0.0.0/28") == 11
    reserved = aws_reserved_addresses("10.0.0.0/24")
    assert [str(r.address) for r in reserved] == [
        "10.0.0.0",
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
        "10.0.0.255",
    ]
    roles = " | ".join(r.role for r in reserved)
    for word in ("network", "router", "DNS", "future", "broadcast"):
        assert word in roles
    assert cidr_facts("10.0.0.0/16").total == 65_536


def test_classic_usable_small_blocks():
    assert usable_hosts("10.0.0.0/30") == 2
    assert usable_hosts("10.0.0.0/31") == 2  # RFC 3021 point-to-point
    assert usable_hosts("10.0.0.7/32") == 1


# -- errors name the value ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, words",
    [
        ("10.0.0.300", ["10.0.0.300", "255"]),
        ("10.0.0", ["10.0.0", "four numbers"]),
        ("ten.0.0.1", ["ten.0.0.1"]),
        ("fe80::1", ["fe80::1"]),
    ],
)
def test_bad_addresses(text, words):
    with pytest.raises(AddressError) as caught:
        parse_address(text)
    assert isinstance(caught.value, ValueError)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize(
    "text, error, words",
    [
        ("10.0.0.0/33", BlockError, ["10.0.0.0/33", "0 to 32"]),
        ("10.0.0.1/24", BlockError, ["10.0.0.1/24", "host bits", "10.0.0.0/24"]),
        ("10.0.0.300/24", AddressError, ["10.0.0.300", "a.b.c.d/n"]),
        ("10.0.0.0/x", BlockError, ["'x'"]),
    ],
)
def test_bad_blocks(text, error, words):
    with pytest.raises(error) as caught:
        parse_block(text)
    for word in words:
        assert word in str(caught.value)


def test_aws_size_bounds():
    with pytest.raises(BlockError, match=r"/29.*/16.*/28"):
        aws_usable_hosts("10.0.0.0/29")
    with pytest.raises(BlockError, match="/15"):
        aws_usable_hosts("10.0.0.0/15")


# -- the planner ---------------------------------------------------------------------------

requests = st.lists(
    st.tuples(st.integers(min_value=1, max_value=3000), st.sampled_from(["az-a", "az-b", None])),
    min_size=1,
    max_size=10,
)


@settings(max_examples=150)
@given(blocks(16, 24), requests)
def test_planner_never_overlaps_never_leaves_the_vpc(network, wanted):
    named = [(f"s{i}", hosts, az) for i, (hosts, az) in enumerate(wanted)]
    try:
        plan = plan_subnets(network, named)
    except PlanError as error:
        sizes = [2 ** (32 - vpc.prefix_for_hosts(h)) for _, h, _ in named]
        assert sum(sizes) > network.num_addresses
        assert error.missing == sum(sizes) - network.num_addresses
        assert f"{error.missing:,} addresses missing" in str(error)
        return
    assert len(plan.subnets) == len(named)
    for subnet in plan.subnets:
        assert subnet.network.subnet_of(network)
        # ipaddress refuses a block with host bits set: the subnet is aligned.
        assert ipaddress.IPv4Network(str(subnet.network)) == subnet.network
        assert subnet.usable == subnet.network.num_addresses - 5 >= subnet.hosts_requested
        # the smallest block that is big enough: half of it would be too small
        half = subnet.network.num_addresses // 2
        assert subnet.network.prefixlen == 28 or half - 5 < subnet.hosts_requested
    for a in plan.subnets:
        for b in plan.subnets:
            assert a is b or not a.network.overlaps(b.network)
    used = [s.network for s in plan.subnets]
    assert summarise_blocks(used + list(plan.free)) == [network]
    # largest first: every larger block sits at a lower address than every smaller one
    by_address = sorted(plan.subnets, key=lambda s: s.network)
    prefix_order = [s.network.prefixlen for s in by_address]
    assert prefix_order == sorted(prefix_order)


def test_planner_keeps_names_azs_and_tiers():
    plan = plan_subnets(
        "10.0.0.0/16",
        [
            vpc.SubnetRequest("web-a", hosts=500, az="a", tier="public"),
            {"name": "db-a", "prefixlen": 24, "az": "a", "tier": "private"},
            ("ops", "/28", "b"),
        ],
    )
    assert plan["web-a"].network.prefixlen == 23 and plan["web-a"].tier == "public"
    assert plan["db-a"].network.prefixlen == 24 and plan["db-a"].az == "a"
    assert plan["ops"].az == "b"


def test_planner_failure_says_how_much_is_missing():
    with pytest.raises(PlanError) as caught:
        plan_subnets("10.0.0.0/24", [("a", 200), ("b", 100), ("c", 5)])
    assert caught.value.missing == 256 + 128 + 16 - 256
    message = str(caught.value)
    assert "144 addresses missing" in message and "10.0.0.0/24" in message and "'b'" in message


def test_planner_rejects_bad_requests():
    with pytest.raises(PlanError, match=r"'x'.*0"):
        plan_subnets("10.0.0.0/16", [("x", 0)])
    with pytest.raises(PlanError, match="twice"):
        plan_subnets("10.0.0.0/16", [("x", 5), ("x", 6)])
    with pytest.raises(BlockError, match="/8"):
        plan_subnets("10.0.0.0/8", [("x", 5)])
