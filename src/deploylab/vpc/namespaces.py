"""A VPC design built as Linux network namespaces, and the kernel asked about it
(``ip route get``, ping), so the model can be checked against the kernel.

Layout (all names carry a random prefix so parallel runs never clash)::

    <p>-s0, <p>-s1 …   one namespace per subnet; its instances' private IPs (and public IPs,
                       as /32) sit on eth0; default route via the subnet's base + 1
    <p>-rt             the VPC router: one veth per subnet (holding base + 1, as in AWS), one
                       per gateway; every route table is a kernel table, chosen by policy
                       routing ``ip rule from <subnet> lookup <table>``
    <p>-igw, <p>-vgw…  the far side of the internet gateway, VPN gateway and peerings, each a
                       namespace holding the outside endpoint's address
    <p>-nat1 …         one per NAT gateway: its private IP on eth0, a veth to the router
                       (``natN``), nftables doing the source NAT

How the AWS concepts map to the kernel:

* the ``local`` route is a ``throw`` route: lookups for the VPC block fall through to the
  router's main table, which holds the subnets' connected routes;
* the IGW's one-to-one NAT is plain routing: a public IP lives on the instance as a /32, the
  router's main table routes it to the instance, and ``ip rule from <public ip>`` makes the
  replies use the subnet's route table; the internet namespace only knows public IPs;
* a route to a target that does not exist is a ``blackhole``; "no matching route" is a last
  default route (highest metric) out of the ``noroute`` device that leads nowhere;
* a NAT gateway is a namespace of its own holding its private IP. A route to ``nat-…`` is a
  route via that IP on the ``natN`` link; the router answers ARP for the IP on the NAT's
  subnet (proxy ARP), so neighbours in that subnet reach it as in AWS. What the NAT sends
  goes by its subnet's route table (``ip rule iif natN``), as AWS does for the NAT's network
  interface: towards the internet gateway, the VPN or a peer alike. nftables in the NAT
  namespace forwards only connections opened from the VPC and rewrites their source to the
  NAT's private IP; anything else new is dropped, so nobody outside can open a connection
  through it. The internet gateway's one-to-one translation of that private IP to the
  Elastic IP is an nftables ``snat``/``dnat`` pair on the router's internet-gateway link,
  so the internet namespace sees only the Elastic IP. An instance with a public IP whose
  packets the router hands to a NAT sends from its private IP (only the IGW uses the
  public one).

Only the namespaces created here carry traffic; nothing is connected to the host's network.
Everything is torn down on exit, also after errors (nftables tables live inside the
namespaces and go with them). The comparison with the model is :mod:`.netns`.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import shutil
import subprocess
import time
from typing import TYPE_CHECKING

from deploylab.vpc.errors import DesignError
from deploylab.vpc.reachability import DEFAULT_INTERNET_ADDRESS, Endpoint, resolve_endpoint

if TYPE_CHECKING:
    from deploylab.vpc.model import Gateway, Instance, Vpc
    from deploylab.vpc.routing import Route

__all__ = ["STRUCTURAL_RULES", "KernelVpc"]

#: Validation rules that make a design impossible to build as namespaces.
STRUCTURAL_RULES = {
    "subnet-overlap",
    "subnet-outside-vpc",
    "ip-outside-subnet",
    "ip-duplicate",
    "public-ip-duplicate",
    "ip-reserved",
    "public-ip-not-public",
}

STATIC_METRIC, PROPAGATED_METRIC, NO_ROUTE_METRIC = 10, 20, 4_000_000_000
LINK_BASE = ipaddress.IPv4Address("169.254.100.0")  # /30 links router <-> outside namespaces


def _run(
    *command: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result


def _nft() -> str:
    path = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if path is None:
        raise RuntimeError("the nft command is missing (NAT gateways): apt-get install nftables")
    return path


def _ip() -> str:
    path = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")
    if path is None:
        raise RuntimeError("the ip command is missing: apt-get install iproute2")
    return path


class KernelVpc:
    """Context manager: build ``vpc`` as namespaces on enter, delete them on exit.

    >>> KernelVpc.__doc__.startswith("Context manager")
    True
    """

    def __init__(self, vpc: Vpc, prefix: str | None = None) -> None:
        problems = [p for p in vpc.validate() if p.rule in STRUCTURAL_RULES]
        if problems:
            raise DesignError(f"cannot build {vpc.name} as namespaces: {problems[0]}")
        self.vpc = vpc
        self.prefix = prefix or f"dl{secrets.token_hex(3)}"
        self.ip = _ip()
        self.router = f"{self.prefix}-rt"
        self.namespaces: list[str] = []
        self.subnet_ns: dict[str, str] = {}
        self.subnet_dev: dict[str, str] = {}
        self.table_id: dict[str, int] = {}
        self.target_dev: dict[str, str] = {}
        self.outside_ns: dict[str, str] = {}  # gateway id -> namespace (igw, vgw, pcx, nat)
        self.outside_address: dict[str, ipaddress.IPv4Address] = {}
        self.gateway_next_hop: dict[str, ipaddress.IPv4Address] = {}  # far end of its link
        self.router_addresses: set[ipaddress.IPv4Address] = set()
        self.build_seconds = 0.0

    # -- building ------------------------------------------------------------------------

    def __enter__(self) -> KernelVpc:
        started = time.monotonic()
        try:
            self._build()
        except BaseException:
            self.teardown()
            raise
        self.build_seconds = time.monotonic() - started
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def _add_ns(self, name: str) -> str:
        _run(self.ip, "netns", "add", name)
        self.namespaces.append(name)
        _run(self.ip, "-n", name, "link", "set", "lo", "up")
        self._sysctl(name, {"net/ipv4/conf/all/rp_filter": 0, "net/ipv4/conf/default/rp_filter": 0})
        return name

    def _sysctl(self, namespace: str, settings: dict[str, int]) -> None:
        # /proc/sys/net belongs to the namespace of the process that reads it; a shell
        # started by `ip netns exec` needs no sysctl binary (procps) to set it.
        script = "; ".join(f"echo {value} > /proc/sys/{key}" for key, value in settings.items())
        _run(self.ip, "netns", "exec", namespace, "sh", "-c", script)

    def nft(self, namespace: str, *args: str, stdin: str | None = None) -> str:
        """Run ``nft ARGS`` inside ``namespace`` (one of ours) and return its output."""
        if namespace not in self.namespaces:
            raise ValueError(f"namespace {namespace!r} was not built here")
        command = [self.ip, "netns", "exec", namespace, _nft(), *args]
        return _run(*command, stdin=stdin).stdout

    def _batch(self, namespace: str, lines: list[str]) -> None:
        if lines:
            _run(self.ip, "-n", namespace, "-batch", "-", stdin="\n".join(lines) + "\n")

    def _veth(self, ns_a: str, dev_a: str, ns_b: str, dev_b: str) -> None:
        _run(
            self.ip,
            "link",
            "add",
            dev_a,
            "netns",
            ns_a,
            "type",
            "veth",
            "peer",
            "name",
            dev_b,
            "netns",
            ns_b,
        )

    def _build(self) -> None:
        vpc = self.vpc
        router = self._add_ns(self.router)
        self._sysctl(router, {"net/ipv4/ip_forward": 1})
        router_lines: list[str] = []
        # A dead end: "no route" leaves through it and vanishes.
        self._veth(router, "noroute", router, "noroute-end")
        router_lines += ["link set noroute up", "link set noroute-end up"]
        # Subnets.
        for index, subnet in enumerate(vpc.subnets.values()):
            ns = self._add_ns(f"{self.prefix}-s{index}")
            dev = f"s{index}"
            self.subnet_ns[subnet.name], self.subnet_dev[subnet.name] = ns, dev
            self._veth(router, dev, ns, "eth0")
            router_ip = subnet.cidr.network_address + 1
            self.router_addresses.add(router_ip)
            router_lines += [
                f"addr add {router_ip}/{subnet.cidr.prefixlen} dev {dev}",
                f"link set {dev} up",
            ]
            lines = ["link set eth0 up"]
            members = [i for i in vpc.instances.values() if i.subnet == subnet.name]
            for instance in members:
                lines.append(f"addr add {instance.private_ip}/{subnet.cidr.prefixlen} dev eth0")
                if instance.public_ip is not None:
                    lines.append(f"addr add {instance.public_ip}/32 dev eth0")
                    router_lines.append(
                        f"route add {instance.public_ip}/32 via {instance.private_ip} dev {dev}"
                    )
            if members:
                lines.append(f"route add default via {router_ip} dev eth0")
            self._batch(ns, lines)
        # Outside worlds: internet behind the IGW, corporate behind the VGW, peers.
        links = 0
        nat_gateways = [g for g in vpc.gateways.values() if g.kind == "nat"]
        for gateway in vpc.gateways.values():
            if gateway.kind == "nat":
                continue
            near = LINK_BASE + 4 * links + 1
            far = near + 1
            links += 1
            dev = f"gw{links}"
            ns = self._add_ns(f"{self.prefix}-{gateway.kind}{links}")
            self.outside_ns[gateway.id] = ns
            self.target_dev[gateway.id] = dev
            self.router_addresses.add(near)
            self._veth(router, dev, ns, "eth0")
            router_lines += [f"addr add {near}/30 dev {dev}", f"link set {dev} up"]
            address: ipaddress.IPv4Address | None
            back: list[ipaddress.IPv4Address | ipaddress.IPv4Network]
            if gateway.kind == "igw":
                address = DEFAULT_INTERNET_ADDRESS
                back = [i.public_ip for i in vpc.instances.values() if i.public_ip is not None]
                back += [nat.public_ip for nat in nat_gateways if nat.public_ip is not None]
            else:
                address = (
                    gateway.remote_cidrs[0].network_address + 10 if gateway.remote_cidrs else None
                )
                back = [vpc.cidr]
            lines = ["link set eth0 up", f"addr add {far}/30 dev eth0"]
            if address is not None:
                self.outside_address[gateway.id] = address
                lines.append(f"addr add {address}/32 dev lo")
            lines += [f"route add {network} via {near} dev eth0" for network in back]
            self._batch(ns, lines)
            self.gateway_next_hop[gateway.id] = far
        # NAT gateways: a namespace each, source NAT with nftables.
        for gateway in nat_gateways:
            links += 1
            router_lines += self._build_nat(gateway, links)
        self._map_elastic_ips(nat_gateways)
        # Route tables: one kernel table each, chosen by the source address.
        for number, table in enumerate(vpc.route_tables.values(), start=100):
            self.table_id[table.name] = number
            for route in table.routes:
                metric = PROPAGATED_METRIC if route.propagated else STATIC_METRIC
                router_lines.append(
                    f"route add {self._kernel_route(route)} table {number} metric {metric}"
                )
            router_lines.append(
                f"route add default dev noroute table {number} metric {NO_ROUTE_METRIC}"
            )
        for gateway in nat_gateways:
            # What the NAT sends (its own packets and the replies it forwards to instances)
            # follows its subnet's route table, whatever the source address.
            number = self.table_id[vpc.route_table_for(gateway.placed()[0]).name]
            dev = self.target_dev[gateway.id]
            router_lines.append(f"rule add iif {dev} table {number} pref 800")
        for index, subnet in enumerate(vpc.subnets.values()):
            number = self.table_id[vpc.route_table_for(subnet.name).name]
            router_lines.append(f"rule add from {subnet.cidr} table {number} pref {1000 + index}")
            for instance in vpc.instances.values():
                if instance.subnet == subnet.name and instance.public_ip is not None:
                    router_lines.append(
                        f"rule add from {instance.public_ip}/32 table {number} pref 900"
                    )
        self._batch(router, router_lines)

    def _build_nat(self, gateway: Gateway, link: int) -> list[str]:
        """Build NAT gateway ``gateway`` as a namespace; return the router's lines for it."""
        subnet, private = gateway.placed()
        near = LINK_BASE + 4 * (link - 1) + 1
        dev = f"nat{link}"
        ns = self._add_ns(f"{self.prefix}-nat{link}")
        self.outside_ns[gateway.id] = ns
        self.target_dev[gateway.id] = dev
        self.router_addresses.add(near)
        self._sysctl(
            ns,
            {
                "net/ipv4/ip_forward": 1,
                "net/ipv4/conf/all/send_redirects": 0,
                "net/ipv4/conf/default/send_redirects": 0,
            },
        )
        self._veth(self.router, dev, ns, "eth0")
        # answer ARP for the NAT's address at once (proxy answers wait up to 0.8 s otherwise)
        self._sysctl(self.router, {f"net/ipv4/neigh/{self.subnet_dev[subnet]}/proxy_delay": 0})
        self._batch(
            ns,
            [
                "link set eth0 up",
                f"addr add {private}/32 dev eth0",
                f"route add {near}/32 dev eth0",
                f"route add default via {near} dev eth0 src {private}",
            ],
        )
        # Only connections opened from inside the VPC are forwarded (and translated).
        inside = str(self.vpc.cidr)
        self.nft(
            ns,
            "-f",
            "-",
            stdin=f"""
table ip natgw {{
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related counter accept
        ct state new ip saddr {inside} counter accept
        counter comment "new from outside: dropped"
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "eth0" ip saddr {inside} ip saddr != {private} counter snat to {private}
    }}
}}
""",
        )
        return [
            f"addr add {near}/30 dev {dev}",
            f"link set {dev} up",
            f"route add {private}/32 dev {dev}",
            # the NAT's ENI is on its subnet: neighbours there find it by ARP (the router
            # answers for it and forwards)
            f"neigh add proxy {private} dev {self.subnet_dev[subnet]}",
        ]

    def _map_elastic_ips(self, nat_gateways: list[Gateway]) -> None:
        """The internet gateway's one-to-one NAT for NAT gateways: private IP <-> Elastic IP
        on the router's link to the internet namespace."""
        pairs = [(g.private_ip, g.public_ip) for g in nat_gateways if g.public_ip is not None]
        igw_devs = [self.target_dev[g.id] for g in self.vpc.gateways.values() if g.kind == "igw"]
        if not pairs or not igw_devs:
            return
        pre, post = [], []
        for dev in igw_devs:
            for private, public in pairs:
                pre.append(f'iifname "{dev}" ip daddr {public} counter dnat to {private}')
                post.append(f'oifname "{dev}" ip saddr {private} counter snat to {public}')
        newline = "\n        "
        self.nft(
            self.router,
            "-f",
            "-",
            stdin=f"""
table ip igw {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        {newline.join(pre)}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        {newline.join(post)}
    }}
}}
""",
        )

    def _kernel_route(self, route: Route) -> str:
        if route.kind == "local":
            return f"throw {route.destination}"
        if not self.vpc.target_exists(route.target):
            return f"blackhole {route.destination}"
        if route.kind in ("instance", "eni"):
            instance = self.vpc.instance(route.target)
            return (
                f"{route.destination} via {instance.private_ip} "
                f"dev {self.subnet_dev[instance.subnet]}"
            )
        dev = self.target_dev[route.target]
        if route.target not in self.gateway_next_hop:  # a NAT gateway
            nat = self.vpc.gateways[route.target]
            return f"{route.destination} via {nat.private_ip} dev {dev} onlink"
        return f"{route.destination} via {self.gateway_next_hop[route.target]} dev {dev}"

    def teardown(self) -> None:
        """Delete every namespace this object created (their veths go with them)."""
        while self.namespaces:
            _run(self.ip, "netns", "del", self.namespaces.pop(), check=False)

    # -- asking the kernel ------------------------------------------------------------------

    def route_get(self, queries: list[tuple[str, ipaddress.IPv4Address]]) -> list[str]:
        """The kernel's choice for each ``(subnet, destination)``, as the outgoing device name
        (``s0``, ``gw1``, ``noroute``…) or ``unreachable`` / ``blackhole`` / ``local``."""
        lines, sources = [], []
        for subnet_name, destination in queries:
            subnet = self.vpc.subnets[subnet_name]
            source = (
                subnet.cidr.network_address + 4
                if subnet.cidr.prefixlen < 31
                else subnet.cidr.network_address
            )
            lines.append(
                f"route get {destination} from {source} iif {self.subnet_dev[subnet_name]}"
            )
            sources.append(source)
        result = _run(
            self.ip,
            "-j",
            "-force",
            "-n",
            self.router,
            "-batch",
            "-",
            stdin="\n".join(lines) + "\n",
            check=False,
        )
        failed: dict[int, str] = {}
        last_error = ""
        for line in result.stderr.splitlines():
            match = re.match(r"Command failed -:(\d+)", line)
            if match:
                failed[int(match.group(1)) - 1] = last_error
            else:
                last_error = line
        answers = iter(json.loads(line)[0] for line in result.stdout.splitlines() if line.strip())
        out = []
        for index in range(len(lines)):
            if index in failed:
                error = failed[index]
                out.append(
                    "unreachable"
                    if "unreachable" in error
                    else "blackhole"
                    if "Invalid argument" in error
                    else f"error: {error}"
                )
                continue
            answer = next(answers)
            kind = answer.get("type")
            out.append(kind if kind in ("local", "broadcast", "multicast") else answer["dev"])
        return out

    def ping(self, pairs: list[tuple[str, str]], wait: float = 0.3) -> list[bool]:
        """Ping each ``(source, destination)`` endpoint pair once, all in parallel, only
        inside the namespaces built here."""
        commands = [self._ping_command(source, destination, wait) for source, destination in pairs]
        processes = [
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for command in commands
        ]
        results = []
        for process in processes:
            try:
                results.append(process.wait(timeout=wait + 5) == 0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                results.append(False)
        return results

    def _ping_command(self, source: str, destination: str, wait: float) -> list[str]:
        src = resolve_endpoint(self.vpc, source)
        dst = resolve_endpoint(self.vpc, destination)
        if src.kind == "instance":
            namespace = self.subnet_ns[src.host.subnet]
            from_address = src.host.private_ip
            if (
                dst.kind == "internet"
                and src.host.public_ip is not None
                and not self._into_nat(src.host, dst.address)
            ):
                from_address = src.host.public_ip  # what the IGW's translation produces
        else:
            gateway = self._outside_gateway(src)
            namespace, from_address = self.outside_ns[gateway], self.outside_address[gateway]
        if dst.kind == "instance":
            to_address = dst.host.private_ip
            if src.kind == "internet" and dst.host.public_ip is not None:
                to_address = dst.host.public_ip
        else:
            to_address = self.outside_address[self._outside_gateway(dst)]
        return [
            self.ip,
            "netns",
            "exec",
            namespace,
            "ping",
            "-n",
            "-q",
            "-c",
            "1",
            "-W",
            str(wait),
            "-I",
            str(from_address),
            str(to_address),
        ]

    def _into_nat(self, instance: Instance, destination: ipaddress.IPv4Address) -> bool:
        """Whether the router hands ``instance``'s packets for ``destination`` to a NAT
        gateway (asked of the kernel): then they leave with the private IP, as in AWS, where
        only the internet gateway translates to the public IP."""
        answer = _run(
            self.ip,
            "-j",
            "-n",
            self.router,
            "route",
            "get",
            str(destination),
            "from",
            str(instance.public_ip),
            "iif",
            self.subnet_dev[instance.subnet],
            check=False,
        )
        if answer.returncode != 0:
            return False
        return json.loads(answer.stdout)[0].get("dev", "").startswith("nat")

    def _outside_gateway(self, endpoint: Endpoint) -> str:
        kind = {"internet": "igw", "corporate": "vgw", "peer": "pcx"}[endpoint.kind]
        for gateway in self.vpc.gateways.values():
            if gateway.kind == kind and (endpoint.gateway in (None, gateway.id)):
                return gateway.id
        raise DesignError(f"no {kind} gateway to stand for {endpoint.label}")
