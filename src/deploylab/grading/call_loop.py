"""The student kernel's side of the grading boundary: answer calls from the trusted tests.

While a test cell runs in the trusted process, the grader has the student's kernel execute
``serve(socket_path, globals())``: it connects to the trusted process over a Unix socket and
answers its requests until told to stop:

* ``describe NAME``: is ``NAME`` missing, a callable, a module, or plain data (then its value)?
* ``call NAME args kwargs``: call it in the student's namespace, answer with the plain-data
  result (or the nearest built-in exception class it raised), plus the new state of every
  list, dict or set argument, so in-place changes (``server["current_weight"] += …``) reach
  the tests as they would in one interpreter.

Nothing here is trusted: the student's code can change any of it, and all it can achieve is
to choose what its own functions return. The trusted side checks every reply
(:mod:`deploylab.grading.plain_data`) and never sends expected values, only arguments.
Frames are a 4-byte big-endian length and a JSON body.
"""

from __future__ import annotations

import builtins
import json
import socket
import struct
import types
from typing import Any

from deploylab.grading import plain_data

__all__ = ["read_frame", "serve", "write_frame"]

_HEADER = struct.Struct(">I")
#: Largest frame either side accepts.
MAX_FRAME_BYTES = plain_data.MAX_ENCODED_BYTES + 4096


class FrameError(ConnectionError):
    """The peer sent something that is not a frame of this protocol, or hung up."""


def write_frame(connection: socket.socket, message: dict) -> None:
    """Send ``message`` (JSON-serialisable) as one frame."""
    body = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    connection.sendall(_HEADER.pack(len(body)) + body)


def read_frame(connection: socket.socket) -> dict:
    """The next frame's message; :class:`FrameError` on EOF, oversize or malformed frames."""
    (size,) = _HEADER.unpack(_read_exactly(connection, _HEADER.size))
    if size > MAX_FRAME_BYTES:
        raise FrameError(f"a reply of {size} bytes (more than {MAX_FRAME_BYTES})")
    try:
        message = json.loads(_read_exactly(connection, size))
    except (ValueError, RecursionError):
        raise FrameError("a reply that is not JSON") from None
    if type(message) is not dict:
        raise FrameError("a reply that is not a JSON object")
    return message


def _read_exactly(connection: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = connection.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            raise FrameError("the other side hung up")
        chunks += chunk
    return bytes(chunks)


def serve(socket_path: str, namespace: dict) -> None:
    """Answer the trusted tests' requests on ``socket_path`` until they send ``end``."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(socket_path)
    try:
        while True:
            try:
                request = read_frame(connection)
            except OSError:  # FrameError included: the tests hung up
                return
            operation = request.get("op")
            if operation == "end":
                return
            if operation == "describe":
                reply = _describe(namespace, request.get("name"))
            elif operation == "call":
                reply = _call(namespace, request)
            else:
                reply = {"error": "unknown request"}
            write_frame(connection, reply)
    finally:
        connection.close()


def _describe(namespace: dict, name: Any) -> dict:
    if type(name) is not str or name not in namespace:
        return {"kind": "missing"}
    value = namespace[name]
    if isinstance(value, types.ModuleType):
        return {"kind": "module", "module": value.__name__}
    if callable(value):
        return {"kind": "callable"}
    try:
        return {"kind": "value", "value": plain_data.to_tree(value)}
    except plain_data.NotPlainData as error:
        return {"kind": "not plain", "type": str(error)}


def _call(namespace: dict, request: dict) -> dict:
    function = namespace.get(request.get("name"))
    if not callable(function):
        return {"kind": "missing"}
    try:
        args = plain_data.from_tree(request.get("args"))
        kwargs = plain_data.from_tree(request.get("kwargs"))
    except plain_data.NotPlainData as error:
        return {"error": f"arguments: {error}"}
    try:
        result = function(*args, **kwargs)
    except KeyboardInterrupt:
        raise  # the grader interrupted a cell that ran too long
    except BaseException as error:
        return {"raised": _builtin_base(type(error)), **_after(args, kwargs)}
    try:
        return {"returned": plain_data.to_tree(result), **_after(args, kwargs)}
    except plain_data.NotPlainData as error:
        return {"not plain": str(error)}


def _after(args: Any, kwargs: Any) -> dict:
    """The new state of mutable arguments (None where an argument cannot have changed)."""
    mutable = (list, dict, set)
    try:
        return {
            "args_after": [
                plain_data.to_tree(value) if type(value) in mutable else None for value in args
            ],
            "kwargs_after": {
                key: plain_data.to_tree(value)
                for key, value in kwargs.items()
                if type(value) in mutable
            },
        }
    except plain_data.NotPlainData as error:
        return {"not plain": f"an argument became {error}"}


def _builtin_base(kind: type) -> str:
    """The nearest built-in exception class of ``kind`` (a subclass of ValueError -> ValueError)."""
    # getattr with defaults: the class is the student's, its metaclass may be anything.
    for base in getattr(kind, "__mro__", ()):
        name = getattr(base, "__name__", None)
        if isinstance(name, str) and getattr(builtins, name, None) is base:
            return name
    return "Exception"
