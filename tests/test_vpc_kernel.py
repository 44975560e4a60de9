"""The VPC model against the Linux kernel: designs built as network namespaces, route
lookups compared with ``ip route get``, reachability compared with real pings.

Only namespaces these tests create carry traffic (documentation and RFC 1918 addresses,
inside those namespaces only); every namespace is deleted afterwards.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_root, require_tool

from deploylab.vpc import RouteError, Vpc, load_design
from deploylab.vpc.netns import KernelVpc, compare_with_kernel, expected_kernel_answer

pytestmark = pytest.mark.root
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "vpc"


@pytest.fixture(autouse=True)
def _needs_root_and_ip():
    require_root()
    require_tool("ip", "iproute2")
    require_tool("ping", "iputils-ping")


def _namespaces(prefix: str) -> set[str]:
    """Namespaces whose name starts with ``prefix`` (other tests may build their own)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names = {line.split()[0] for line in listed.splitlines() if line.strip()}
    return {name for name in names if name.startswith(prefix)}


def _unique_prefix() -> str:
    return f"dlt{secrets.token_hex(2)}"


def random_design(rng: random.Random) -> Vpc:
    """A VPC with random subnets, associations and route tables (valid addressing)."""
    design = Vpc("10.0.0.0/16", name=f"random-{rng.randrange(10**6)}")
    third_octets = rng.sample(range(0, 64), rng.randint(2, 4))
    for index, octet in enumerate(third_octets):
        design.add_subnet(f"sub{index}", f"10.0.{octet}.0/24", az=rng.choice(["az-a", "az-b"]))
    design.add_internet_gateway("igw-main")
    design.add_vpn_gateway("vgw-corp", ["192.168.0.0/16"])
    design.add_peering("pcx-peer", ["172.31.0.0/16"])
    design.add_nat_gateway("nat-a", "sub0", public_ip="203.0.113.200")
    for index in range(len(third_octets)):
        public_ip = f"203.0.113.{10 + index}" if rng.random() < 0.6 else None
        design.add_instance(f"vm{index}", f"sub{index}", public_ip=public_ip)
    targets = ["igw-main", "vgw-corp", "pcx-peer", "nat-a", "i-vm0", "igw-ghost"]
    pools = [
        "0.0.0.0/0",
        "10.0.0.0/16",
        "192.168.0.0/16",
        "172.31.0.0/16",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "1.0.0.0/8",
    ]
    tables = ["main"] + [design.add_route_table(f"rt{n}").name for n in range(rng.randint(1, 3))]
    for name in tables:
        table = design.route_tables[name]
        for _ in range(rng.randint(2, 10)):
            pool = ipaddress.IPv4Network(rng.choice(pools))
            prefix = rng.randint(pool.prefixlen, 32) if rng.random() < 0.7 else pool.prefixlen
            address = pool.network_address + rng.randrange(pool.num_addresses)
            destination = ipaddress.IPv4Network((address, prefix), strict=False)
            # the same destination twice raises RouteError: AWS refuses it as well
            with contextlib.suppress(RouteError):
                table.add_route(destination, rng.choice(targets), propagated=rng.random() < 0.2)
        # a static and a propagated route to the same block: the static one must win
        static = [r for r in table.routes if not r.propagated and r.target != "local"]
        if static:
            twin = rng.choice(static)
            others = [t for t in targets if t != twin.target]
            with contextlib.suppress(RouteError):
                table.add_route(twin.destination, rng.choice(others), propagated=True)
    for subnet in design.subnets:
        design.associate(subnet, rng.choice(tables))
    return design


@pytest.mark.parametrize("name", ["two-tier", "hybrid"])
def test_example_designs_agree_with_the_kernel(name):
    prefix = _unique_prefix()
    report = compare_with_kernel(
        load_design(ASSETS / f"{name}.toml"), destinations=150, prefix=prefix
    )
    assert report.agrees, report.text()
    assert report.route_checks >= 150 * 2
    outcomes = {ping["kernel"] for ping in report.pings}
    assert outcomes == {True, False}, "the pings should show both replies and silence"
    assert _namespaces(prefix) == set(), "every namespace must be deleted"


def test_random_route_tables_agree_with_ip_route_get_and_ping():
    rng = random.Random(20261125)
    checked = 0
    pings = 0
    answers_seen: set[str] = set()
    prefix = _unique_prefix()
    for _ in range(6):
        design = random_design(rng)
        with KernelVpc(design, prefix=prefix) as kernel:
            assert len(_namespaces(prefix)) == len(kernel.namespaces) >= 4
            queries = []
            for subnet in design.subnets:
                destinations = {ipaddress.IPv4Address(rng.randrange(2**32)) for _ in range(60)}
                for table in design.route_tables.values():
                    for route in table.routes:  # edges of every route, where LPM mistakes hide
                        for offset in (0, route.destination.num_addresses - 1):
                            destinations.add(route.destination.network_address + offset)
                usable = [
                    d
                    for d in destinations
                    if not (
                        d.is_multicast
                        or d.is_loopback
                        or d.is_reserved
                        or d.is_unspecified
                        or d in ipaddress.ip_network("0.0.0.0/8")
                        or d in ipaddress.ip_network("169.254.0.0/16")
                        or d in kernel.router_addresses
                        or any(
                            d in (s.cidr.network_address, s.cidr.broadcast_address)
                            for s in design.subnets.values()
                        )
                    )
                ]
                queries += [(subnet, d) for d in usable]
            kernel_answers = kernel.route_get(queries)
            for (subnet, destination), kernel_says in zip(queries, kernel_answers, strict=True):
                model_says = expected_kernel_answer(kernel, subnet, destination)
                assert kernel_says == model_says, (
                    f"{design.name}: from {subnet} to {destination} the kernel picks {kernel_says}"
                    f" but the model predicts {model_says}; table "
                    f"{[str(r) for r in design.route_table_for(subnet).routes]}"
                )
                answers_seen.add(kernel_says)
            checked += len(queries)
        assert _namespaces(prefix) == set()
        report = compare_with_kernel(
            design, destinations=20, seed=rng.randrange(1000), prefix=prefix
        )
        assert not report.ping_mismatches, report.text()
        pings += len(report.pings)
    assert checked > 1000 and pings > 50
    # the random tables exercised every kind of answer, not just one
    assert {"noroute", "blackhole", "unreachable"} <= answers_seen and len(answers_seen) >= 6
    assert _namespaces(prefix) == set()
    print(f"compared {checked} route lookups and {pings} pings with the kernel")


def test_namespaces_are_deleted_even_when_building_fails(monkeypatch):
    kernel = KernelVpc(load_design(ASSETS / "two-tier.toml"), prefix=_unique_prefix())

    def broken_build():
        kernel._add_ns(f"{kernel.prefix}-rt")
        assert _namespaces(kernel.prefix) == {f"{kernel.prefix}-rt"}
        raise RuntimeError("simulated failure half-way")

    monkeypatch.setattr(kernel, "_build", broken_build)
    with pytest.raises(RuntimeError, match="half-way"), kernel:
        pass
    assert _namespaces(kernel.prefix) == set()


def test_parallel_builds_do_not_clash():
    design = load_design(ASSETS / "two-tier.toml")
    with KernelVpc(design) as first, KernelVpc(design) as second:
        assert first.prefix != second.prefix
        assert set(first.namespaces).isdisjoint(second.namespaces)
        assert first.ping([("web-a", "web-c")]) == second.ping([("web-a", "web-c")]) == [True]


def test_netns_command_as_root():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "deploylab.cli",
            "vpc",
            "netns",
            str(ASSETS / "hybrid.toml"),
            "--destinations",
            "50",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "AGREES" in result.stdout
