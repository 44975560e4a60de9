"""The facts the lessons and labs state are true: each claim is checked against Python, the
reference implementation or the real nginx, and each lab's tests accept every correct answer
the text allows and reject the wrong ones it warns about (issue 13, §1)."""

from __future__ import annotations

import http.server
import ipaddress
import math
import re
import socket
import threading

import nbformat
import pytest
from conftest import require_tool
from notebooks import ROOT

LABS = ROOT / "autograder" / "source"
LESSONS = ROOT / "lessons"


def cell_source(path, cell_id: str) -> str:
    """The source of the cell with ``cell_id`` (cell ids are stable: translations key on them)."""
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.get("id") == cell_id:
            return cell.source
    raise KeyError(f"{path.name} has no cell {cell_id}")


def markdown_text(path) -> str:
    return "\n".join(
        cell.source
        for cell in nbformat.read(path, as_version=4).cells
        if cell.cell_type == "markdown"
    )


def run_cell(source: str, namespace: dict) -> dict:
    exec(compile(source, "<test cell>", "exec"), namespace)
    return namespace


# --- autoscaling lab: the floating-point warnings are true, and the tests catch the mistake


AUTOSCALING = LABS / "autoscaling" / "autoscaling.ipynb"


@pytest.mark.parametrize("path", sorted(LABS.glob("*/*.ipynb")), ids=lambda p: p.parent.name)
def test_every_arithmetic_claim_in_a_lab_is_what_python_computes(path):
    """Text such as "`25 * (116 / 100)` is `28.999999999999996`" must match Python 3.11."""
    claims = re.findall(
        r"`([0-9][0-9 ().*/+-]*)`\s+is\s+`(-?[0-9][0-9.e+-]*)`", markdown_text(path)
    )
    if path == AUTOSCALING:
        assert len(claims) >= 1
    for expression, value in claims:
        assert repr(eval(expression)) == value, f"{path.name}: {expression} is not {value}"


def test_the_autoscaling_lab_quotes_real_rounding_errors():
    text = markdown_text(AUTOSCALING)
    assert "`25 * (116 / 100)` is\n`28.999999999999996`" in text or (
        "`25 * (116 / 100)` is `28.999999999999996`" in text
    )
    assert repr(25 * (116 / 100)) == "28.999999999999996"
    assert "`25 * 74.4 / 60` as\n`31.000000000000004`" in text
    assert repr(25 * 74.4 / 60) == "31.000000000000004"
    assert "1.4000000000000001" not in text  # 14 * -10 / 100 is exactly -1.4 in Python


def _naive_step(current, adjustment_type, value, min_adjustment_magnitude=None):
    """Divides before multiplying: the mistake the lab warns about."""
    if adjustment_type == "ExactCapacity":
        return value
    if adjustment_type == "ChangeInCapacity":
        return current + value
    change = current * (value / 100)
    change = math.floor(change) if change > 1 else math.ceil(change) if change < -1 else change
    if 0 < change < 1:
        change = 1
    elif -1 < change < 0:
        change = -1
    change = int(change)
    if min_adjustment_magnitude and 0 < abs(change) < min_adjustment_magnitude:
        change = min_adjustment_magnitude * (1 if change > 0 else -1)
    return current + change


def _naive_target(current, metric, target):
    """Rounds the raw float up: the mistake the lab warns about."""
    desired = math.ceil(current * metric / target)
    return current if desired < current and metric > target * 0.9 else desired


def _lab_namespace(solution_cells: list[str]) -> dict:
    namespace: dict = {}
    run_cell(cell_source(AUTOSCALING, "db45eb23"), namespace)
    for cell_id in solution_cells:
        run_cell(cell_source(AUTOSCALING, cell_id), namespace)
    return namespace


@pytest.mark.parametrize(
    "test_cell, function_name, naive",
    [
        ("450bbd2e", "step_adjustment", _naive_step),
        ("eff0aa67", "target_tracking_desired", _naive_target),
    ],
)
def test_the_visible_autoscaling_tests_fail_the_naive_float_solution(
    test_cell, function_name, naive
):
    visible = cell_source(AUTOSCALING, test_cell).split("### BEGIN HIDDEN TESTS")[0]
    solutions = _lab_namespace(["7995d1ff", "5ddfb5ba"])
    run_cell(visible, dict(solutions))  # the master solution passes
    with pytest.raises(AssertionError, match="Python"):
        run_cell(visible, {**solutions, function_name: naive})


# --- ip-basics: classful network and broadcast addresses are not usable, text and tests agree

IP_BASICS = LABS / "ip-basics" / "ip-basics.ipynb"


def _ip_basics(solution_override: str | None = None) -> dict:
    namespace: dict = {}
    for cell in nbformat.read(IP_BASICS, as_version=4).cells:
        if cell.cell_type == "code" and cell.get("id") in ("classes",):
            run_cell(solution_override or cell.source, namespace)
    return namespace


def test_ip_basics_text_says_classful_network_and_broadcast_are_not_usable():
    text = cell_source(IP_BASICS, "classes-explained")
    assert "broadcast" in text and "all 0s" in text and "all 1s" in text


def test_ip_basics_tests_give_full_marks_to_the_solution_and_not_to_first_octet_only():
    test_cell = cell_source(IP_BASICS, "classes-tests")
    full = run_cell(test_cell, _ip_basics())
    assert full["points"] == 4
    first_octet_only = _ip_basics().copy()
    run_cell(
        "def is_host_usable(address):\n"
        "    first = int(address.split('.')[0])\n"
        "    return first not in (0, 127) and address_class(address) in ('A', 'B', 'C')\n",
        first_octet_only,
    )
    first_octet_only = run_cell(test_cell, first_octet_only)
    assert first_octet_only["points"] == 3  # the "not usable" group fails: broadcast addresses


# --- vpc lab: any correct placement scores, not only largest-first from the bottom

VPC_LAB = LABS / "vpc" / "vpc.ipynb"


def _top_down_plan(vpc_cidr, needs):
    """A different correct placement: largest first, from the *end* of the VPC downwards."""
    vpc = ipaddress.IPv4Network(vpc_cidr)
    prefixes = {}
    for name, hosts in needs:
        prefix = 28
        while 2 ** (32 - prefix) - 5 < hosts:
            prefix -= 1
        prefixes[name] = prefix
    cursor = int(vpc.broadcast_address) + 1
    result = {}
    for name in sorted(prefixes, key=lambda n: prefixes[n]):
        cursor -= 2 ** (32 - prefixes[name])
        if cursor < int(vpc.network_address):
            raise ValueError(f"{name} does not fit in {vpc}")
        result[name] = str(ipaddress.IPv4Network((cursor, prefixes[name])))
    return result


def test_the_vpc_plan_tests_accept_any_correct_placement():
    namespace = {"ipaddress": ipaddress, "plan": _top_down_plan}
    run_cell(cell_source(VPC_LAB, "09ebe6a6"), namespace)  # visible and hidden tests


def test_the_vpc_plan_tests_reject_an_overlapping_placement():
    def overlapping(vpc_cidr, needs):
        return {name: str(ipaddress.IPv4Network(vpc_cidr)) for name, _ in needs}

    with pytest.raises(AssertionError):
        run_cell(cell_source(VPC_LAB, "09ebe6a6"), {"ipaddress": ipaddress, "plan": overlapping})


# --- lesson 02: nginx's own answer to the notes' snippet; least_conn at low concurrency

LB_LESSON = LESSONS / "02-load-balancing.ipynb"


def _nginx_blocks(markdown: str) -> list[str]:
    return re.findall(r"```nginx\n(.*?)```", markdown, re.S)


def test_nginx_rejects_the_notes_snippet_with_the_error_the_lesson_quotes():
    require_tool("nginx", "nginx")
    from deploylab.nginx import NginxConfigError, NginxProcess

    invalid = _nginx_blocks(cell_source(LB_LESSON, "264c4898"))[0]
    valid = _nginx_blocks(cell_source(LB_LESSON, "d9f4b6a2"))[0]
    quoted = '"location" directive is not allowed here'
    assert quoted in cell_source(LB_LESSON, "d9f4b6a2")
    assert invalid.strip() in cell_source(LB_LESSON, "c5e1a7b3")
    nginx = NginxProcess()
    try:
        with pytest.raises(NginxConfigError, match=re.escape(quoted)):
            nginx.check(invalid)
        nginx.check(valid.replace("listen 80;", "listen 127.0.0.1:{port};"))
    finally:
        nginx.close()


def test_least_conn_share_in_the_lesson_is_what_the_widget_shows():
    from deploylab.widgets.balancer import balancer_scenario

    text = cell_source(LB_LESSON, "b7c2e9a1")
    claimed = int(re.search(r"about (\d+) of the 40", text).group(1))
    columns = {
        c["algorithm"]: c["steps"][-1]["counts"]
        for c in balancer_scenario(weights=(5, 1, 1), requests=40)["columns"]
    }
    a, b, c = columns["least_conn"]
    assert a == claimed and a < b and a < c
    assert columns["round_robin"][0] == 28 and "28 of 40" in text


def test_the_cpu_count_comes_from_the_machine():
    assert "two CPU cores" not in markdown_text(LB_LESSON)
    assert "os.cpu_count()" in cell_source(LB_LESSON, "e72fa3f3")


# --- lesson 01: what nginx sends as Host, with $http_host, $host and nothing


class _EchoHost(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = repr(self.headers.get_all("Host")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _raw_get(port: int, request: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk
    return answer.partition(b"\r\n\r\n")[2].decode()


def test_nginx_host_headers_behave_as_lesson_01_says():
    require_tool("nginx", "nginx")
    from deploylab.nginx import NginxProcess

    text = cell_source(LESSONS / "01-proxies.ipynb", "a7cde4fe")
    assert "backend gets no `Host` at all" in text and "`server_name`" in text
    backend = http.server.HTTPServer(("127.0.0.1", 0), _EchoHost)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    upstream = f"127.0.0.1:{backend.server_address[1]}"
    config = (
        "http {\n"
        f"    upstream backend {{ server {upstream}; }}\n"
        "    server {\n"
        "        listen 127.0.0.1:{port};\n"
        "        server_name shop.example;\n"
        "        location /http_host { proxy_pass http://backend; proxy_set_header Host $http_host; }\n"
        "        location /host { proxy_pass http://backend; proxy_set_header Host $host; }\n"
        "        location /default { proxy_pass http://backend; }\n"
        "    }\n"
        "}\n"
    )
    try:
        with NginxProcess(config) as nginx:
            no_host = {
                where: _raw_get(nginx.port, f"GET /{where} HTTP/1.0\r\n\r\n".encode())
                for where in ("http_host", "host", "default")
            }
            with_host = _raw_get(
                nginx.port,
                b"GET /http_host HTTP/1.1\r\nHost: Shop.Example:8000\r\nConnection: close\r\n\r\n",
            )
            lowered = _raw_get(
                nginx.port,
                b"GET /host HTTP/1.1\r\nHost: Shop.Example:8000\r\nConnection: close\r\n\r\n",
            )
    finally:
        backend.shutdown()
    assert no_host == {
        "http_host": "None",
        "host": "['shop.example']",
        "default": "['backend']",
    }
    assert with_host == "['Shop.Example:8000']"
    assert lowered == "['shop.example']"


# --- lesson 03: what AWS documents, and what is only reported or modelled

AUTOSCALING_LESSON = LESSONS / "03-autoscaling.ipynb"


def test_lesson_03_attributes_replacement_batches_and_alarm_counts_correctly():
    text = markdown_text(AUTOSCALING_LESSON)
    assert "at most 10% of\nthe desired capacity is replaced" not in text
    assert "instance maintenance policy" in text and "minimum healthy percentage" in text
    assert "1 October 2024" in text  # launch configurations: no longer for new accounts
    assert "users report" in text and "3 of 3" in text and "15 of 15" in text
    assert "only when **every** datapoint" in text


def test_lesson_03_missing_data_example_matches_the_reference_alarm():
    from deploylab.autoscale import Alarm

    assert Alarm(80, ">", evaluation_periods=5, datapoints_to_alarm=5).evaluate([None] * 5) == (
        "INSUFFICIENT_DATA"
    )
    assert (
        Alarm(80, ">", evaluation_periods=5, datapoints_to_alarm=2).evaluate(
            [None, 90, None, 95, None]
        )
        == "ALARM"
    )
    assert "[None, 90, None, 95, None]" in cell_source(AUTOSCALING_LESSON, "d0d8082b")
