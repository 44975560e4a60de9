"""The VPC model against the Linux kernel: designs built as network namespaces, route
lookups compared with ``ip route get``, reachability compared with real pings.

Only namespaces these tests create carry traffic (documentation and RFC 1918 addresses,
inside those namespaces only); every namespace is deleted afterwards.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import re
import secrets
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import require_root, require_tool

from deploylab.vpc import DesignError, RouteError, Vpc, load_design
from deploylab.vpc.namespaces import KernelVpc
from deploylab.vpc.netns import compare_with_kernel, expected_kernel_answer

pytestmark = pytest.mark.root
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "vpc"


@pytest.fixture(autouse=True)
def _needs_root_and_ip():
    require_root()
    require_tool("ip", "iproute2")
    require_tool("ping", "iputils-ping")
    require_tool("nft", "nftables")  # NAT gateways are emulated with nftables


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
    assert report.skipped == [], "NAT gateways are emulated now: nothing may be skipped"
    assert report.nat_pings, "both examples send private instances out through a NAT gateway"
    assert all(p["kernel"] for p in report.nat_pings if p["destination"] == "internet")
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


# -- NAT gateways ---------------------------------------------------------------------------------


def random_nat_design(rng: random.Random) -> Vpc:
    """A VPC where private subnets send traffic through one or two NAT gateways, with random
    twists: a NAT without an Elastic IP, a NAT subnet that is not public, NAT routes towards
    the VPN, the peer and other subnets, NAT subnets whose table sends replies elsewhere."""
    design = Vpc("10.0.0.0/16", name=f"nat-{rng.randrange(10**6)}")
    octets = rng.sample(range(0, 64), rng.randint(3, 4))
    for index, octet in enumerate(octets):
        design.add_subnet(f"sub{index}", f"10.0.{octet}.0/24", az=rng.choice(["az-a", "az-b"]))
    design.add_internet_gateway("igw-main")
    design.add_vpn_gateway("vgw-corp", ["192.168.0.0/16"])
    design.add_peering("pcx-peer", ["172.31.0.0/16"])
    nats = ["nat-a"]
    design.add_nat_gateway(
        "nat-a", "sub0", public_ip="203.0.113.200" if rng.random() < 0.85 else None
    )
    if rng.random() < 0.5:
        design.add_nat_gateway("nat-b", "sub1", public_ip="203.0.113.201")
        nats.append("nat-b")
    public = design.add_route_table("rt-public")
    public.add_route("0.0.0.0/0", "igw-main" if rng.random() < 0.85 else "vgw-corp")
    twists = {
        "192.168.0.0/16": ["vgw-corp", "vgw-corp", "pcx-peer"],
        "172.31.0.0/16": ["pcx-peer", "vgw-corp"],
        "198.51.100.0/24": ["igw-main", "vgw-corp", "nat-a"],
        f"10.0.{octets[-1]}.0/24": ["pcx-peer", "nat-a"],  # replies to that subnet go astray
    }
    for destination, targets in twists.items():
        if rng.random() < 0.6:
            public.add_route(destination, rng.choice(targets))
    privates = [design.add_route_table(f"rt-private{n}") for n in range(rng.randint(1, 2))]
    for table in privates:
        table.add_route("0.0.0.0/0", rng.choice(nats))
        for destination, other in [
            ("192.168.0.0/16", "vgw-corp"),
            ("172.31.0.0/16", "pcx-peer"),
            (f"10.0.{rng.choice(octets)}.0/24", "local"),
        ]:
            choice = rng.random()
            if choice < 0.4:
                table.add_route(destination, rng.choice(nats))
            elif choice < 0.6 and other != "local":
                table.add_route(destination, other)
    design.associate("sub0", "rt-public" if rng.random() < 0.85 else privates[0].name)
    for index in range(1, len(octets)):
        if index == 1 and "nat-b" in nats:
            design.associate("sub1", "rt-public")
        else:
            design.associate(f"sub{index}", rng.choice([*(t.name for t in privates), "main"]))
    for index in range(len(octets)):
        public_ip = f"203.0.113.{10 + index}" if rng.random() < 0.4 else None
        design.add_instance(f"vm{index}", f"sub{index}", public_ip=public_ip)
    return design


def test_random_nat_designs_agree_with_the_kernel():
    rng = random.Random(4242)
    prefix = _unique_prefix()
    nat_pings = answers = 0
    outcomes: set[tuple[bool, str]] = set()
    for _ in range(8):
        design = random_nat_design(rng)
        report = compare_with_kernel(
            design, destinations=25, seed=rng.randrange(1000), prefix=prefix
        )
        assert report.agrees, report.text()
        assert not report.skipped, report.text()
        assert _namespaces(prefix) == set()
        for ping in report.nat_pings:
            kind = ping["destination"].split(":")[0]
            outcomes.add((ping["kernel"], kind if kind in ("internet", "corporate") else "other"))
        nat_pings += len(report.nat_pings)
        answers += len(report.pings)
    print(f"compared {answers} pings with the kernel, {nat_pings} through a NAT gateway")
    assert nat_pings >= 30
    # NAT paths that work and that fail, towards the internet and the VPN, were all compared
    assert {(True, "internet"), (False, "internet"), (True, "corporate")} <= outcomes


def _nat_test_design() -> Vpc:
    design = load_design(ASSETS / "two-tier.toml")
    assert design.gateways["nat-a"].public_ip is not None
    return design


def _python_in(kernel: KernelVpc, namespace: str, code: str, *args: str) -> subprocess.Popen:
    command = ["ip", "netns", "exec", namespace, sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.Popen([*command, *args], stdout=subprocess.PIPE, text=True)


UDP_SERVER = """
    import socket, sys
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((sys.argv[1], int(sys.argv[2])))  # bound: replies leave from that address
    server.settimeout(float(sys.argv[3]))
    print("ready", flush=True)
    try:
        data, peer = server.recvfrom(100)
        server.sendto(peer[0].encode(), peer)
        print(peer[0], flush=True)
    except TimeoutError:
        print("nothing", flush=True)
"""

UDP_CLIENT = """
    import socket, sys
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(float(sys.argv[3]))
    client.sendto(b"who am I?", (sys.argv[1], int(sys.argv[2])))
    try:
        print(client.recv(100).decode())
    except (TimeoutError, ConnectionRefusedError):
        print("no answer")
"""


def _stop(process: subprocess.Popen) -> str:
    try:
        out, _ = process.communicate(timeout=8)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return out.strip()


def test_the_internet_sees_the_elastic_ip_and_replies_come_back():
    design = _nat_test_design()
    nat = design.gateways["nat-a"]
    db = design.instances["db-a"]
    with KernelVpc(design, prefix=_unique_prefix()) as kernel:
        internet = kernel.outside_ns["igw-main"]
        address = kernel.outside_address["igw-main"]
        server = _python_in(kernel, internet, UDP_SERVER, str(address), "5353", "6")
        try:
            assert server.stdout.readline().strip() == "ready"
            client = _python_in(
                kernel, kernel.subnet_ns[db.subnet], UDP_CLIENT, str(address), "5353", "3"
            )
            answer = _stop(client)
        finally:
            seen = _stop(server)
        assert seen == str(nat.public_ip), "the internet must see the NAT's Elastic IP"
        assert answer == str(nat.public_ip), "the reply must come back through the NAT"
        # the NAT translated db-a to its private IP, the IGW link translated that to the EIP
        natgw = kernel.nft(
            kernel.outside_ns["nat-a"], "list", "chain", "ip", "natgw", "postrouting"
        )
        igw = kernel.nft(kernel.router, "list", "chain", "ip", "igw", "postrouting")
        assert f"snat to {nat.private_ip}" in natgw and "packets 0 " not in natgw
        assert f"snat to {nat.public_ip}" in igw and "packets 0 " not in igw
        # a ping from db-a answered by the internet namespace too
        assert kernel.ping([("db-a", "internet")]) == [True]


def test_outside_hosts_cannot_open_connections_through_the_nat():
    design = _nat_test_design()
    nat = design.gateways["nat-a"]
    db = design.instances["db-a"]
    with KernelVpc(design, prefix=_unique_prefix()) as kernel:
        internet = kernel.outside_ns["igw-main"]
        assert kernel.ping([("internet", "db-a")]) == [False]
        # Sent to the Elastic IP, a datagram stops at the NAT gateway: db-a never sees it.
        server = _python_in(
            kernel, kernel.subnet_ns[db.subnet], UDP_SERVER, "0.0.0.0", "5454", "1.5"
        )
        try:
            assert server.stdout.readline().strip() == "ready"
            client = _python_in(kernel, internet, UDP_CLIENT, str(nat.public_ip), "5454", "1")
            assert _stop(client) == "no answer"
        finally:
            assert _stop(server) == "nothing", "db-a must not receive traffic from outside"
        # Even an internet that routed the private block into the VPC gets no answer: db-a's
        # replies leave through the NAT, which drops what no inside host opened.
        subprocess.run(
            [
                "ip",
                "-n",
                internet,
                "route",
                "add",
                str(design.cidr),
                "via",
                str(kernel.gateway_next_hop["igw-main"] - 1),
            ],
            check=True,
        )
        ping = [
            "ip",
            "netns",
            "exec",
            internet,
            "ping",
            "-n",
            "-q",
            "-c",
            "1",
            "-W",
            "0.5",
            str(db.private_ip),
        ]
        assert subprocess.run(ping, capture_output=True, timeout=10).returncode != 0
        forward = kernel.nft(kernel.outside_ns["nat-a"], "list", "chain", "ip", "natgw", "forward")
        dropped = re.search(r'packets (\d+) bytes \d+ comment "new from outside', forward)
        assert dropped and int(dropped.group(1)) >= 1, forward


def test_nat_without_nftables_is_refused_clearly(monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(
        "deploylab.vpc.namespaces.shutil.which",
        lambda name, *args, **kwargs: None if name == "nft" else real_which(name, *args, **kwargs),
    )
    kernel = KernelVpc(_nat_test_design(), prefix=_unique_prefix())
    with pytest.raises(RuntimeError, match="apt-get install nftables"), kernel:
        pass
    assert _namespaces(kernel.prefix) == set()
    # a design without NAT gateways does not need nftables
    plain = Vpc("10.0.0.0/16")
    plain.add_subnet("a", "10.0.1.0/24", az="z")
    plain.add_subnet("b", "10.0.2.0/24", az="z")
    plain.add_instance("one", "a")
    plain.add_instance("two", "b")
    with KernelVpc(plain, prefix=_unique_prefix()) as kernel:
        assert kernel.ping([("one", "two")]) == [True]


def test_nat_in_a_design_that_cannot_be_built_names_the_problem():
    design = _nat_test_design()
    design.add_instance("clash", "private-a", private_ip=str(design.gateways["nat-a"].private_ip))
    with pytest.raises(DesignError, match="cannot build"):
        KernelVpc(design)
