"""The grading boundary on its own: plain data, the kernel-side call loop and the trusted
tests, talking over a real Unix socket (the loop in a thread stands in for the kernel)."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import socket
import struct
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deploylab.deploy import Step
from deploylab.grading import call_loop, plain_data
from deploylab.grading.trusted_tests import TrustedTests

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary()
hashable = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.binary(),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=8,
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(hashable, inner, max_size=4)
        | st.sets(hashable, max_size=4)
    ),
    max_leaves=20,
)


def _same(a, b) -> bool:
    """Equal, with the same types all the way down (NaN equal to NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


@settings(max_examples=300, deadline=None)
@given(values)
def test_plain_data_round_trips_with_exact_types(value):
    assert _same(plain_data.decode(plain_data.encode(value)), value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_decoding_anything_either_works_or_says_not_plain(data):
    with contextlib.suppress(plain_data.NotPlainData):
        plain_data.decode(data)


@pytest.mark.parametrize(
    "value",
    [
        type("Sneaky", (str,), {})("x"),
        type("AlwaysEqual", (), {"__eq__": lambda self, other: True})(),
        (x for x in range(3)),
        len,
        type("Big", (int,), {})(3),
        [[[[[]]]]] * 1 + [None],  # fine: shallow
    ][:-1],
)
def test_what_is_not_plain_data_is_refused_by_name(value):
    with pytest.raises(plain_data.NotPlainData, match=type(value).__name__):
        plain_data.encode(value)


def test_nesting_and_size_are_bounded():
    deep: list = []
    for _ in range(plain_data.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(plain_data.NotPlainData, match="nested"):
        plain_data.encode(deep)
    with pytest.raises(plain_data.NotPlainData):
        plain_data.decode(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(plain_data.NotPlainData, match="MiB"):
        plain_data.decode(b" " * (plain_data.MAX_ENCODED_BYTES + 1))


def test_value_classes_are_rebuilt_by_the_trusted_side_only_if_known():
    step = Step("start", ("v2",), replaces=("v1",))
    assert plain_data.decode(plain_data.encode(step)) == step
    forged = {"value": "os:system", "fields": {}}
    with pytest.raises(plain_data.NotPlainData):
        plain_data.from_tree(forged)
    bad = plain_data.to_tree(step)
    bad["fields"]["action"] = "explode"
    with pytest.raises(plain_data.NotPlainData, match="invalid Step"):
        plain_data.from_tree(bad)


_SOCKETS = itertools.count()


def _run_test(tmp_path: Path, namespace: dict, source: str, *, points: float = 3, timeout=5.0):
    """One test cell through a real socket, the call loop serving ``namespace`` in a thread."""
    tests = TrustedTests()
    path = str(tmp_path / f"calls-{next(_SOCKETS)}.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(1)
        loop = threading.Thread(target=call_loop.serve, args=(path, namespace), daemon=True)
        loop.start()
        result = tests.test(source, points, timeout, listener)
        loop.join(timeout=5)
    return result


def test_a_test_cell_calls_student_functions_and_sees_in_place_changes(tmp_path):
    def pick(servers):
        servers[0]["current_weight"] += 1
        return servers[0]["name"]

    source = (
        "servers = [{'name': 'a', 'current_weight': 0}]\n"
        "first = servers[0]\n"
        "assert pick(servers) == 'a'\n"
        "assert first['current_weight'] == 1, 'the change reached the test'\n"
        "assert pick.__name__ == 'pick'\n"
    )
    assert _run_test(tmp_path, {"pick": pick}, source)["outcome"] == "passed"


def test_student_exceptions_arrive_as_builtin_classes_with_the_graders_message(tmp_path):
    class PlanError(ValueError):
        pass

    def plan(text):
        raise PlanError("<script>student text</script>")

    caught = "try:\n    plan('x')\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError('should raise')\n"
    assert _run_test(tmp_path, {"plan": plan}, caught)["outcome"] == "passed"
    uncaught = _run_test(tmp_path, {"plan": plan}, "assert plan('x') == 1, 'plan works'")
    assert uncaught["message"] == "plan() raised ValueError"


def test_a_test_cannot_swallow_an_uncheckable_answer(tmp_path):
    class Anything:
        def __eq__(self, other):
            return True

    source = (
        "try:\n    f(1)\nexcept Exception:\n    pass\nelse:\n"
        "    raise AssertionError('f(1) should raise')\n"
    )
    result = _run_test(tmp_path, {"f": lambda x: Anything()}, source)
    assert result["outcome"] == "failed"
    assert "cannot be checked" in result["message"]


def test_partial_credit_is_the_trusted_last_expression(tmp_path):
    source = "points = 0\nif f(2) == 4:\n    points += 1\nif f(3) == 6:\n    points += 1\npoints\n"
    result = _run_test(tmp_path, {"f": lambda x: 4 if x == 2 else 0}, source)
    assert (result["outcome"], result["points"]) == ("partly passed", 1.0)
    nan = _run_test(tmp_path, {"f": lambda x: 0}, "float('nan')")
    assert nan["outcome"] == "failed" and json.dumps(nan, allow_nan=False)


def test_a_kernel_that_answers_garbage_or_nothing_fails_the_cell_in_time(tmp_path):
    tests = TrustedTests()
    path = str(tmp_path / "calls.sock")

    def liar():
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as connection:
            connection.connect(path)
            connection.recv(1 << 16)
            connection.sendall(struct.pack(">I", 2**31) + b"{")  # a 2 GiB frame, announced

    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(1)
        threading.Thread(target=liar, daemon=True).start()
        result = tests.test("assert f(1) == 2", 1, 5, listener)
    assert result["outcome"] == "failed"
    assert result["message"] == "the submitted code's kernel stopped answering"
    with socket.socket(socket.AF_UNIX) as listener:
        path2 = str(tmp_path / "silent.sock")
        listener.bind(path2)
        listener.listen(1)
        result = tests.test("assert f(1) == 2", 1, 0.5, listener)
    assert result["outcome"] == "timed out"


def test_messages_are_literal_text_of_the_master(tmp_path):
    source = 'x = f(2)\nassert x == 5, f"f(2) should be 5, got {x}"\n'
    result = _run_test(tmp_path, {"f": lambda value: "SECRET-FROM-STUDENT"}, source)
    assert result["message"] == "f(2) should be 5, got …"
