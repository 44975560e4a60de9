"""``deploylab cidr``, ``deploylab subnet-plan`` and ``deploylab vpc check|route|reach|netns``.

Handlers parse, call :mod:`deploylab.vpc` and print; bad input raises ``ValueError`` so that
``deploylab.cli.main`` prints one line naming the value and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deploylab.cli import Commands
    from deploylab.vpc import SubnetRequest


def register(commands: Commands) -> None:
    p = commands.add("cidr", "facts about a CIDR block (classic and AWS)", _cidr)
    p.add_argument("block", help="an IPv4 block such as 10.0.0.0/24")
    p.add_argument(
        "--aws",
        action="store_true",
        help="also show AWS's usable count and its five reserved addresses",
    )
    p.add_argument("--json", action="store_true", help="print JSON")

    p = commands.add(
        "subnet-plan", "plan aligned subnets in a VPC block, largest first (VLSM)", _subnet_plan
    )
    p.add_argument("vpc_cidr", help="the VPC block, e.g. 10.0.0.0/16")
    p.add_argument(
        "requests",
        nargs="+",
        metavar="NAME:HOSTS[@AZ]",
        help="a subnet: name, hosts needed (or /prefix) and optionally an AZ, "
        "e.g. web:200@ap-northeast-2a or ops:/28",
    )
    p.add_argument(
        "--classic", action="store_true", help="reserve 2 addresses per subnet instead of AWS's 5"
    )
    p.add_argument("--json", action="store_true", help="print JSON")

    add = commands.add_group("vpc", "check, route and reach VPC designs (TOML files)")
    p = add("check", "validate a design: one line per broken rule", _vpc_check)
    p.add_argument("design", help="a TOML design, e.g. assets/vpc/two-tier.toml")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("route", "which route a subnet's table picks for a destination, and why", _vpc_route)
    p.add_argument("design")
    p.add_argument("subnet", help="a subnet name of the design")
    p.add_argument("destination", help="an IPv4 address")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("reach", "can SOURCE reach DESTINATION? the path, or what blocks it", _vpc_reach)
    p.add_argument("design")
    p.add_argument("source", help="instance name, 'internet[:ADDR]', 'corporate[:ADDR]'…")
    p.add_argument("destination")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add(
        "netns",
        "build the design as Linux network namespaces (root) and compare the "
        "kernel's routes and pings with the model",
        _vpc_netns,
    )
    p.add_argument("design")
    p.add_argument(
        "--destinations",
        type=int,
        default=200,
        metavar="N",
        help="random destinations to compare per subnet (default 200)",
    )
    p.add_argument("--seed", type=int, default=1, help="random seed for the destinations")
    p.add_argument("--json", action="store_true", help="print JSON")


def _print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2)
    print()


def _cidr(args: argparse.Namespace) -> int:
    from deploylab.vpc import address_facts, check_aws_size, cidr_facts

    facts = cidr_facts(args.block)
    if args.aws:
        check_aws_size(facts.network, "block")
    first = address_facts(facts.network_address, facts.prefixlen)
    if args.json:
        data: dict[str, object] = {
            **facts.as_dict(),
            "binary": first.binary.marked(),
            "kind": first.as_dict()["kind"],
            "description": first.description,
        }
        if not args.aws:
            data.pop("aws_usable")
            data.pop("aws_reserved")
        _print_json(data)
        return 0
    rows = [
        ("block", str(facts.network)),
        (
            "binary",
            first.binary.marked() + f"   ({facts.prefixlen} network bits | "
            f"{32 - facts.prefixlen} host bits)",
        ),
        ("network", str(facts.network_address)),
        ("broadcast", str(facts.broadcast_address)),
        ("netmask", str(facts.netmask)),
        ("wildcard", str(facts.wildcard)),
        ("total", f"{facts.total:,}"),
        ("usable", f"{facts.usable_classic:,} ({facts.first_usable} - {facts.last_usable})"),
        ("class", f"{first.address_class} (by its first octet; CIDR ignores classes)"),
        ("kind", first.description),
    ]
    if args.aws and facts.aws_reserved is not None:  # check_aws_size passed: both are set
        rows.append(("aws usable", f"{facts.aws_usable:,} (total - 5)"))
        rows += [("aws reserved", f"{r.address!s:<15} {r.role}") for r in facts.aws_reserved]
    for label, value in rows:
        print(f"{label:<12} {value}")
    return 0


def _parse_request(text: str) -> SubnetRequest:
    from deploylab.vpc import SubnetRequest

    name, colon, rest = text.partition(":")
    size, _, az = rest.partition("@")
    if not colon or not name or not size:
        raise ValueError(
            f"subnet request {text!r}: expected NAME:HOSTS[@AZ], e.g. web:200@az-a or ops:/28@az-b"
        )
    if size.startswith("/") and size[1:].isdigit():
        return SubnetRequest(name, prefixlen=int(size[1:]), az=az or None)
    if size.isdigit():
        return SubnetRequest(name, hosts=int(size), az=az or None)
    raise ValueError(
        f"subnet request {text!r}: hosts {size!r} is not a whole number or /prefix; "
        "expected NAME:HOSTS[@AZ], e.g. web:200@az-a"
    )


def _subnet_plan(args: argparse.Namespace) -> int:
    from deploylab.vpc import plan_subnets

    requests = [_parse_request(text) for text in args.requests]
    plan = plan_subnets(args.vpc_cidr, requests, aws=not args.classic)
    if args.json:
        _print_json(plan.as_dict())
        return 0
    print(
        f"{plan.vpc}: {plan.used:,} of {plan.vpc.num_addresses:,} addresses planned "
        f"({'AWS: 5' if plan.aws else 'classic: 2'} reserved per subnet)"
    )
    print(f"{'name':<14} {'cidr':<18} {'az':<16} {'asked':>7} {'usable':>7}")
    for subnet in plan.subnets:
        asked = "" if subnet.hosts_requested is None else subnet.hosts_requested
        print(
            f"{subnet.name:<14} {subnet.network!s:<18} {subnet.az or '-':<16} "
            f"{asked!s:>7} {subnet.usable:>7}"
        )
    for block in plan.free:
        print(f"{'(free)':<14} {block!s:<18}")
    return 0


def _vpc_check(args: argparse.Namespace) -> int:
    from deploylab.vpc import load_design

    design = load_design(args.design)
    problems = design.validate()
    errors = [p for p in problems if p.severity == "error"]
    if args.json:
        _print_json(
            {
                **design.as_dict(),
                "problems": [p.as_dict() for p in problems],
                "valid": not errors,
            }
        )
        return 1 if errors else 0
    print(f"VPC {design.name} {design.cidr}")
    for subnet in design.subnets.values():
        print(
            f"  subnet {subnet.name:<14} {subnet.cidr!s:<18} {subnet.az:<16} "
            f"{design.classify(subnet.name):<9} uses {design.route_table_for(subnet.name).name}"
        )
    for table in design.route_tables.values():
        routes = "; ".join(str(route) for route in table.routes)
        print(f"  table  {table.name}{' (main)' if table.main else ''}: {routes}")
    for problem in problems:
        print(problem)
    print(f"{len(errors)} error(s), {len(problems) - len(errors)} warning(s)")
    return 1 if errors else 0


def _vpc_route(args: argparse.Namespace) -> int:
    from deploylab.vpc import load_design

    design = load_design(args.design)
    table = design.route_table_for(args.subnet)
    answer = table.lookup(args.destination)
    if args.json:
        _print_json({**answer.as_dict(), "route_table": table.name, "subnet": args.subnet})
        return 0 if answer.route else 1
    print(f"subnet {args.subnet} uses route table {table.name}")
    for route in table.routes:
        mark = (
            "WINNER "
            if route == answer.route
            else "beaten "
            if route in answer.beaten
            else "no match"
        )
        print(f"  {mark:<8} {route}")
    print(answer.explain())
    return 0 if answer.route else 1


def _vpc_reach(args: argparse.Namespace) -> int:
    from deploylab.vpc import load_design

    answer = load_design(args.design).reach(args.source, args.destination)
    if args.json:
        _print_json(answer.as_dict())
    else:
        print(answer.explain())
    return 0 if answer.reachable else 1


def _vpc_netns(args: argparse.Namespace) -> int:
    import os

    from deploylab.vpc import load_design
    from deploylab.vpc.netns import compare_with_kernel

    design = load_design(args.design)
    if os.geteuid() != 0:
        print(
            "deploylab: vpc netns needs root: it creates network namespaces "
            "(run it as root, e.g. with sudo)",
            file=sys.stderr,
        )
        return 2
    if args.destinations < 0:
        raise ValueError(f"--destinations {args.destinations}: expected 0 or more")
    report = compare_with_kernel(design, destinations=args.destinations, seed=args.seed)
    if args.json:
        _print_json(report.as_dict())
    else:
        print(report.text())
    return 0 if report.agrees else 1
