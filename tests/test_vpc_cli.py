"""``deploylab cidr``, ``subnet-plan`` and ``vpc check|route|reach``, run as real subprocesses."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "vpc"


def deploylab(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deploylab.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cidr_json_agrees_with_ipaddress():
    result = deploylab("cidr", "172.16.32.0/20", "--aws", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    network = ipaddress.ip_network("172.16.32.0/20")
    assert data["broadcast"] == str(network.broadcast_address)
    assert data["netmask"] == str(network.netmask)
    assert data["wildcard"] == str(network.hostmask)
    assert data["total"] == network.num_addresses
    assert data["usable_classic"] == len(list(network.hosts()))
    assert data["aws_usable"] == network.num_addresses - 5
    assert [r["address"] for r in data["aws_reserved"]][-1] == str(network.broadcast_address)
    assert data["kind"] == "private"


def test_cidr_text_worked_example():
    result = deploylab("cidr", "10.0.0.0/24", "--aws")
    assert result.returncode == 0
    assert "251" in result.stdout and "10.0.0.255" in result.stdout
    assert "00001010.00000000.00000000.|00000000" in result.stdout


@pytest.mark.parametrize(
    "arguments, words",
    [
        (["cidr", "10.0.0.300/24"], ["10.0.0.300", "expected"]),
        (["cidr", "10.0.0.0/33"], ["10.0.0.0/33", "0 to 32"]),
        (["cidr", "10.0.0.1/24"], ["10.0.0.1/24", "host bits", "10.0.0.0/24"]),
        (["cidr", "10.0.0.0/8", "--aws"], ["10.0.0.0/8", "/16", "/28"]),
        (["subnet-plan", "10.0.0.0/24", "web"], ["'web'", "NAME:HOSTS"]),
        (["subnet-plan", "10.0.0.0/24", "web:lots"], ["'lots'"]),
        (["subnet-plan", "10.0.0.0/24", "a:200", "b:200"], ["256 addresses missing"]),
        (["vpc", "check", "no-such-design.toml"], ["no-such-design.toml", "does not exist"]),
        (["vpc", "route", str(ASSETS / "two-tier.toml"), "nowhere", "8.8.8.8"], ["'nowhere'"]),
        (["vpc", "route", str(ASSETS / "two-tier.toml"), "public-a", "8.8.8.800"], ["8.8.8.800"]),
        (["vpc", "reach", str(ASSETS / "two-tier.toml"), "ghost", "internet"], ["'ghost'"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(arguments, words):
    result = deploylab(*arguments)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deploylab: error: "), result.stderr
    for word in words:
        assert word in lines[0]


def test_subnet_plan_json():
    result = deploylab(
        "subnet-plan", "10.0.0.0/22", "web:200@az-a", "db:100@az-b", "ops:/28", "--json"
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    networks = {s["name"]: ipaddress.ip_network(s["cidr"]) for s in plan["subnets"]}
    assert networks["web"].prefixlen == 24 and networks["db"].prefixlen == 25
    assert {s["name"]: s["az"] for s in plan["subnets"]}["db"] == "az-b"
    covered = list(networks.values()) + [ipaddress.ip_network(b) for b in plan["free"]]
    assert list(ipaddress.collapse_addresses(covered)) == [ipaddress.ip_network("10.0.0.0/22")]


def test_vpc_check_exit_status_and_messages():
    good = deploylab("vpc", "check", str(ASSETS / "two-tier.toml"))
    assert good.returncode == 0 and "0 error(s)" in good.stdout
    bad = deploylab("vpc", "check", str(ASSETS / "broken.toml"), "--json")
    assert bad.returncode == 1
    data = json.loads(bad.stdout)
    assert not data["valid"]
    assert "subnet-overlap" in {p["rule"] for p in data["problems"]}


def test_vpc_route_and_reach():
    route = deploylab("vpc", "route", str(ASSETS / "hybrid.toml"), "app", "172.31.9.9", "--json")
    assert route.returncode == 0
    data = json.loads(route.stdout)
    assert data["route"]["target"] == "pcx-partner"
    assert [r["target"] for r in data["beaten"]] == ["nat-edge"]
    ok = deploylab("vpc", "reach", str(ASSETS / "two-tier.toml"), "db-a", "internet")
    assert ok.returncode == 0 and "REACHABLE" in ok.stdout and "nat-a" in ok.stdout
    blocked = deploylab("vpc", "reach", str(ASSETS / "two-tier.toml"), "internet", "db-a")
    assert blocked.returncode == 1 and "no public IPv4 address" in blocked.stdout


def test_netns_refuses_clearly_without_root(monkeypatch, capsys):
    import argparse

    from deploylab.vpc import cli

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    status = cli._vpc_netns(
        argparse.Namespace(
            design=str(ASSETS / "two-tier.toml"), destinations=10, seed=1, json=False
        )
    )
    assert status == 2
    assert "needs root" in capsys.readouterr().err
