"""The only kind of value that crosses between a student's kernel and the trusted tests.

Grading runs the student's notebook in a sandboxed kernel and the instructor's tests in a
separate trusted process (:mod:`deploylab.grading.trusted_tests`). Between them travel only
*plain data*, encoded by :func:`encode` and rebuilt by :func:`decode`:

``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, and ``list``, ``tuple``, ``dict``,
``set`` and ``frozenset`` of these, plus the project's own frozen dataclasses of plain fields
(such as :class:`deploylab.deploy.Step`), rebuilt from their fields by the trusted side's class.

Types are strict: ``True`` stays a ``bool`` and is never ``1``; a subclass of ``str`` (or of
any other type) is not plain data, so an object whose ``__eq__`` always answers ``True``
cannot cross. Anything else raises :class:`NotPlainData`, whose message names the type. This
module uses only the standard library: the kernel imports it too (what the kernel does with
its copy only changes what the student's own code returns).

>>> decode(encode([1, True, None, ("a", b"\\x00"), {"k": 2.5}]))
[1, True, None, ('a', b'\\x00'), {'k': 2.5}]
>>> type(decode(encode(True))) is bool
True
>>> encode(type("Sneaky", (str,), {})("x"))
Traceback (most recent call last):
...
deploylab.grading.plain_data.NotPlainData: a Sneaky (only None, bool, int, float, str, bytes, list, tuple, dict, set and the project's value classes can be checked)
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import sys
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_ENCODED_BYTES",
    "NotPlainData",
    "decode",
    "describe_type",
    "encode",
    "from_tree",
    "to_tree",
]

#: Deepest nesting that may cross (deeper values are refused on both sides).
MAX_DEPTH = 64
#: Largest encoded value accepted by :func:`decode` (a reply larger than this fails the test).
#: Answers to lab questions are kilobytes; decoding can take ~30 times the encoded size
#: (a list of empty sets), so this also bounds the trusted process's memory.
MAX_ENCODED_BYTES = 1024 * 1024
#: Modules whose frozen dataclasses may cross, rebuilt by the trusted side's own class.
VALUE_CLASS_PREFIX = "deploylab."

_PLAIN_NAMES = (
    "None, bool, int, float, str, bytes, list, tuple, dict, set and the project's value classes"
)


class NotPlainData(TypeError):
    """A value that cannot cross the grading boundary; the message names its type."""


def _frozen_dataclass(kind: type) -> bool:
    """Whether ``kind`` is a frozen dataclass (its fields cannot change after ``__init__``).

    >>> @dataclasses.dataclass(frozen=True)
    ... class Point:
    ...     x: int
    >>> _frozen_dataclass(Point), _frozen_dataclass(int)
    (True, False)
    """
    # The dataclass parameters are where dataclasses keeps "frozen"; the module has no
    # public accessor for it.
    parameters = getattr(kind, "__dataclass_params__", None)
    return dataclasses.is_dataclass(kind) and getattr(parameters, "frozen", False) is True


def describe_type(value: Any) -> str:
    """A short name of ``value``'s type for messages (``'a list'``, ``'a Sneaky'``).

    >>> describe_type([]), describe_type(None), describe_type(3)
    ('a list', 'None', 'an int')
    """
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def encode(value: Any) -> bytes:
    """``value`` as bytes that :func:`decode` turns back into an equal plain value.

    Raises :class:`NotPlainData` for anything that is not plain data (see the module doc).
    """
    return json.dumps(to_tree(value), separators=(",", ":"), allow_nan=False).encode()


def to_tree(value: Any) -> Any:
    """``value`` as a JSON-ready tree (what :func:`encode` serialises); :class:`NotPlainData`
    for anything that is not plain data."""
    return _to_json(value, 0)


def from_tree(tree: Any) -> Any:
    """The plain value a :func:`to_tree` tree stands for; :class:`NotPlainData` if malformed."""
    try:
        return _from_json(tree, 0)
    except RecursionError:
        raise NotPlainData("a value nested too deeply") from None


def _to_json(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise NotPlainData(f"a value nested more than {MAX_DEPTH} levels deep")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return value if -(2**63) <= value < 2**63 else {"int": str(value)}
    if kind is float:
        return value if math.isfinite(value) else {"float": repr(value)}
    if kind is bytes:
        return {"bytes": base64.b64encode(value).decode("ascii")}
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        items = [_to_json(item, depth + 1) for item in value]
        return {kind.__name__: items}
    if kind is dict:
        return {
            "dict": [[_to_json(k, depth + 1), _to_json(v, depth + 1)] for k, v in value.items()]
        }
    module = getattr(kind, "__module__", "")
    if (
        isinstance(module, str)
        and module.startswith(VALUE_CLASS_PREFIX)
        and _frozen_dataclass(kind)
    ):
        fields = {
            field.name: _to_json(getattr(value, field.name), depth + 1)
            for field in dataclasses.fields(kind)
        }
        return {"value": f"{module}:{kind.__qualname__}", "fields": fields}
    raise NotPlainData(f"{describe_type(value)} (only {_PLAIN_NAMES} can be checked)")


def decode(data: bytes) -> Any:
    """The plain value :func:`encode` wrote; :class:`NotPlainData` for anything malformed.

    Only value classes already imported by the decoding process are rebuilt (the trusted
    tests imported them), through their own constructor and its checks.
    """
    if len(data) > MAX_ENCODED_BYTES:
        raise NotPlainData(f"a value of more than {MAX_ENCODED_BYTES >> 20} MiB")
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise NotPlainData(f"not readable as plain data ({type(error).__name__})") from None
    return from_tree(raw)


def _from_json(raw: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise NotPlainData(f"a value nested more than {MAX_DEPTH} levels deep")
    kind = type(raw)
    if raw is None or kind in (bool, int, float, str):
        return raw
    if kind is not dict or len(raw) not in (1, 2):
        raise NotPlainData("malformed plain data")
    if len(raw) == 2:
        return _value_object(raw, depth)
    ((tag, body),) = raw.items()
    try:
        if tag == "int" and type(body) is str:
            return int(body)
        if tag == "float" and body in ("nan", "inf", "-inf"):
            return float(body)
        if tag == "bytes" and type(body) is str:
            return base64.b64decode(body, validate=True)
        if tag in ("list", "tuple", "set", "frozenset") and type(body) is list:
            items = [_from_json(item, depth + 1) for item in body]
            return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
        if tag == "dict" and type(body) is list:
            pairs = []
            for pair in body:
                if type(pair) is not list or len(pair) != 2:
                    raise NotPlainData("malformed dict")
                pairs.append((_from_json(pair[0], depth + 1), _from_json(pair[1], depth + 1)))
            return dict(pairs)
    except NotPlainData:
        raise
    except (ValueError, TypeError) as error:  # unhashable keys, bad base64, huge ints
        raise NotPlainData(f"malformed {tag} ({type(error).__name__})") from None
    raise NotPlainData(f"malformed plain data (tag {tag!r})")


def _value_object(raw: dict[str, Any], depth: int) -> Any:
    name, fields = raw.get("value"), raw.get("fields")
    if type(name) is not str or type(fields) is not dict or ":" not in name:
        raise NotPlainData("malformed value object")
    module_name, _, qualname = name.partition(":")
    module = sys.modules.get(module_name) if module_name.startswith(VALUE_CLASS_PREFIX) else None
    kind = getattr(module, qualname, None) if "." not in qualname else None
    if not isinstance(kind, type) or not _frozen_dataclass(kind):
        raise NotPlainData(f"a {qualname} (not one of the project's value classes)")
    expected = {field.name for field in dataclasses.fields(kind) if field.init}
    if set(fields) != expected:
        raise NotPlainData(f"a {qualname} with fields {sorted(fields)}")
    values = {key: _from_json(value, depth + 1) for key, value in fields.items()}
    try:
        return kind(**values)
    except Exception as error:
        raise NotPlainData(f"an invalid {qualname} ({type(error).__name__})") from None
