"""One owner for each rule (issue 16): the hop-by-hop list, the size limits, the backend-spec
parser and the algorithm names are defined once; a second copy anywhere in the package makes
this fail. Found by reading the source (``ast``), so a copy under another name counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import deploylab
from deploylab.balancer import ALGORITHMS
from deploylab.http.headers import HOP_BY_HOP

PACKAGE = Path(deploylab.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _string_sets(tree: ast.AST):
    """Every literal collection of strings or bytes in ``tree`` (set, list, tuple, frozenset
    call), as lowered str values."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Set, ast.List, ast.Tuple)):
            values = [
                elt.value.decode("latin-1") if isinstance(elt.value, bytes) else elt.value
                for elt in node.elts
                if isinstance(elt, ast.Constant) and isinstance(elt.value, (str, bytes))
            ]
            if len(values) == len(node.elts) and values:
                yield node, {value.lower() for value in values}


def _defined(name: str) -> list[str]:
    found = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                found.append(str(path.relative_to(PACKAGE)))
    return found


def test_the_hop_by_hop_list_is_written_once():
    owners = []
    for path in SOURCES:
        for _, values in _string_sets(ast.parse(path.read_text(encoding="utf-8"))):
            if len(values & HOP_BY_HOP) >= 4:  # four of its names together: a copy of it
                owners.append(str(path.relative_to(PACKAGE)))
    assert owners == ["http/headers.py"]


def test_one_backend_spec_parser():
    assert _defined("parse_backend") == ["balancer/config.py"]


def test_the_algorithm_names_are_written_once():
    owners = []
    for path in SOURCES:
        for _, values in _string_sets(ast.parse(path.read_text(encoding="utf-8"))):
            # most of the names together is a copy (a default choice of three is not)
            if len(values & set(ALGORITHMS)) >= len(ALGORITHMS) - 1:
                owners.append(str(path.relative_to(PACKAGE)))
    assert owners == ["balancer/core.py"]


def test_size_limits_come_from_the_shared_limits():
    """No server module spells the request size limits itself: they are fields of
    ``deploylab.http.Limits`` (32 KiB headers / 16 MiB bodies once lived in the balancer)."""
    offenders = []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        if path.name != "messages.py" and ("max_header_bytes =" in text or "max_body =" in text):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_one_helper_runs_a_server_until_a_signal():
    handlers = []
    for path in SOURCES:
        if "add_signal_handler" in path.read_text(encoding="utf-8"):
            handlers.append(str(path.relative_to(PACKAGE)))
    assert handlers == ["loopback.py"]


def test_the_cli_takes_its_algorithm_choices_from_the_registry():
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "deploylab.cli", "nginx-conf", "balancer", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    url = "http://127.0.0.1:8081"
    refused = run("--algorithm", "fastest", "--backend", url)
    accepted = run("--algorithm", "least-conn", "--backend", url)
    assert refused.returncode == 2 and "'fastest'" in refused.stderr
    assert ", ".join(ALGORITHMS) in refused.stderr
    assert accepted.returncode == 0 and "least_conn;" in accepted.stdout
