"""One owner for every rule (issue 16): a rule written twice drifts (the balancer once forwarded
``Proxy-Authorization`` that the proxies dropped). These tests read the package's source
(``ast``, so a copy under another name counts too) and fail when a second copy of a rule
appears outside the module that owns it: the hop-by-hop list, the size limits, the
hidden-test parser and statuses, the backend-spec parser, the algorithm names and the
run-until-a-signal loop."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import deploylab
from deploylab.balancer import ALGORITHMS

PACKAGE = Path(deploylab.__file__).resolve().parent

#: Header names only a hop-by-hop list would hold several of.
HOP_BY_HOP_NAMES = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
}

#: A module-level or class-level name that holds a size limit of a message's head or body.
LIMIT_NAME = re.compile(
    r"(?i)^_?(max|limit)_?\w*(header|head|body)\w*$|^_?\w*(header|head|body)\w*_(max|limit)$"
)

#: Limits outside deploylab.http that are known, each with the reason it is not there yet.
KNOWN_LIMITS = {
    # A limit on a backend's response head, which only the balancer's upstream side reads
    # (the proxies' client reads responses through deploylab.http's own parser): one owner.
    ("balancer/l7_upstream.py", "MAX_RESPONSE_HEAD"),
}


def _modules() -> list[tuple[str, ast.Module]]:
    return [
        (path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(encoding="utf-8")))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def _text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        value = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
        return value.lower()
    return None


def hop_by_hop_lists(tree: ast.Module) -> list[int]:
    """Lines of collection literals holding three or more hop-by-hop header names.

    >>> hop_by_hop_lists(ast.parse("DROP = {b'connection', b'te', b'upgrade', b'host'}"))
    [1]
    >>> hop_by_hop_lists(ast.parse("SAFE = ('get', 'head', 'te')"))
    []
    """
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Set | ast.List | ast.Tuple | ast.Dict):
            items = node.keys if isinstance(node, ast.Dict) else node.elts
            names = {_text(item) for item in items if item is not None}
            if len(names & HOP_BY_HOP_NAMES) >= 3:
                lines.append(node.lineno)
    return lines


def size_limits(tree: ast.Module) -> list[tuple[str, int]]:
    """``(name, line)`` of module or class constants that bound a head or a body in bytes.

    >>> size_limits(ast.parse("MAX_BODY = 16 * 1024 * 1024\\nclass L:\\n    max_header_bytes: int = 1"))
    [('MAX_BODY', 1), ('max_header_bytes', 3)]
    """
    found = []
    scopes = [tree, *(node for node in tree.body if isinstance(node, ast.ClassDef))]
    for scope in scopes:
        for node in scope.body:
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign) and node.value is not None
                else []
            )
            for target in targets:
                if isinstance(target, ast.Name) and LIMIT_NAME.match(target.id):
                    found.append((target.id, node.lineno))
    return sorted(found, key=lambda item: item[1])


def test_one_hop_by_hop_list():
    copies = [
        f"{name}:{line}"
        for name, tree in _modules()
        if name != "http/headers.py"
        for line in hop_by_hop_lists(tree)
    ]
    assert copies == [], (
        f"a second hop-by-hop header list at {copies}: use deploylab.http.headers.HOP_BY_HOP"
    )


def test_the_owner_still_has_the_list():
    owner = dict(_modules())["http/headers.py"]
    assert hop_by_hop_lists(owner), "deploylab.http.headers lost HOP_BY_HOP: update this test"


def test_one_table_of_size_limits():
    copies = [
        f"{name}:{line} {limit}"
        for name, tree in _modules()
        if name != "http/messages.py"
        for limit, line in size_limits(tree)
        if (name, limit) not in KNOWN_LIMITS
    ]
    assert copies == [], (
        f"a second head or body size limit at {copies}: use deploylab.http.messages.Limits"
    )


def test_the_owner_still_has_the_limits():
    owner = dict(_modules())["http/messages.py"]
    assert {"max_header_bytes", "max_body"} <= {name for name, _ in size_limits(owner)}


def test_one_hidden_test_parser_and_one_status_vocabulary():
    """The ``### BEGIN HIDDEN TESTS`` marker and the grading statuses are written once."""
    owners = {
        "### BEGIN HIDDEN TESTS": "grading/cells.py",
        "needs review": "grading/status.py",
        "partly passed": "grading/status.py",
        "kernel died": "grading/status.py",
    }
    for text, owner in owners.items():
        where = [
            name
            for name, tree in _modules()
            if name.startswith("grading/")
            if any(isinstance(node, ast.Constant) and node.value == text for node in ast.walk(tree))
        ]
        assert where == [owner], f"{text!r} is written in {where}; only {owner} should own it"


_SOURCES = sorted(PACKAGE.rglob("*.py"))


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
    for path in _SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                found.append(str(path.relative_to(PACKAGE)))
    return found


def test_one_backend_spec_parser():
    assert _defined("parse_backend") == ["balancer/config.py"]


def test_the_algorithm_names_are_written_once():
    owners = []
    for path in _SOURCES:
        for _, values in _string_sets(ast.parse(path.read_text(encoding="utf-8"))):
            # most of the names together is a copy (a default choice of three is not)
            if len(values & set(ALGORITHMS)) >= len(ALGORITHMS) - 1:
                owners.append(str(path.relative_to(PACKAGE)))
    assert owners == ["balancer/core.py"]


def test_one_helper_runs_a_server_until_a_signal():
    handlers = []
    for path in _SOURCES:
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
