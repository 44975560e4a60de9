"""The trusted side of grading: run the instructor's test cells in a process of their own.

Started by the grader as ``python -I -m deploylab.grading.trusted_tests`` for each
notebook, outside the sandbox and away from the student's kernel: its builtins, modules and
namespace are its own, and student code can neither import nor reach them. It reads requests
as JSON lines on stdin and answers on stdout:

* ``{"op": "setup", "source": …}`` runs an instructor setup cell (imports, helpers, data);
  the student's kernel runs the same cell, so both sides know the same helpers.
* ``{"op": "declare", "source": …}`` runs nothing: the names the cell binds at its top level
  are the instructor's from now on, never looked up in the student's kernel (the grader
  sends the test cells that ran before, when it had to restart this process).
* ``{"op": "test", "source": …, "points": P, "timeout": T, "socket": PATH}`` listens on
  ``PATH``, answers ``{"listening": true}``, then runs one test cell. Every name
  the cell uses but neither the tests nor Python define is looked up in the student's kernel
  (through :mod:`deploylab.grading.call_loop`): a function becomes a :class:`StudentFunction`
  proxy whose calls run in the kernel and return plain data
  (:mod:`deploylab.grading.plain_data`); plain data is copied; anything else fails the test.
  The answer is the outcome, the points (partial credit is the value of the cell's last
  expression, computed here, never read from the student's output) and a message made only of
  text that appears literally in the test cell.

What a test may do across the boundary: pass plain data as arguments (a lambda, an open file
or an instructor object cannot cross: the test fails with a message for the instructor);
rely on in-place changes to list/dict/set arguments (they are copied back after each call);
catch the built-in exception a student function raised (``except ValueError`` works, with a
grader-written message; ``StopIteration`` arrives as ``RuntimeError``). A student value that is not plain data, a kernel that stops
answering, or a reply that is too large ends the cell as failed, whatever the test catches.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import json
import math
import os
import socket
import sys
import time
import traceback
from typing import Any, TypeVar

from deploylab.grading import plain_data
from deploylab.grading.call_loop import FrameError, read_frame, write_frame
from deploylab.grading.status import FAILED, PASSED, TEST_TIMED_OUT, test_outcome

__all__ = ["StudentFunction", "free_names", "literal_message", "main", "top_level_names"]

#: Outcomes of one test cell, as reported to the grader.
_TEST_FILE = "<test cell>"
_PLAIN_LIST = "None, bool, int, float, str, bytes, list, tuple, dict or set"


class BoundaryBroken(BaseException):
    """The student's side cannot give an answer that can be checked: the cell fails.

    It derives from ``BaseException`` so that a test's ``except Exception`` cannot turn an
    uncheckable answer (or a kernel that stopped answering) into a pass.
    """


class CellTimeout(BoundaryBroken):
    """The test cell ran out of time while waiting for the student's code."""


class KernelChannel:
    """The connection to the student's kernel for one test cell (accepted when first needed)."""

    def __init__(self, listener: socket.socket, deadline: float) -> None:
        self.listener = listener
        self.deadline = deadline
        self.connection: socket.socket | None = None

    def _remaining(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise _grader_message(CellTimeout(), "the test cell ran out of time")
        return remaining

    def request(self, message: dict) -> dict:
        if self.connection is None:
            self.listener.settimeout(self._remaining())
            try:
                self.connection, _ = self.listener.accept()
            except TimeoutError:
                raise _grader_message(
                    CellTimeout(), "the submitted code's kernel did not answer in time"
                ) from None
        try:
            self.connection.settimeout(self._remaining())
            write_frame(self.connection, message)
            self.connection.settimeout(self._remaining())
            return read_frame(self.connection)
        except TimeoutError:
            raise _grader_message(
                CellTimeout(), "the submitted code did not answer in time"
            ) from None
        except (FrameError, OSError):
            raise _grader_message(
                BoundaryBroken(), "the submitted code's kernel stopped answering"
            ) from None

    def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(OSError):
                self.connection.settimeout(1)
                write_frame(self.connection, {"op": "end"})
            with contextlib.suppress(OSError):
                self.connection.close()
            self.connection = None


_Raised = TypeVar("_Raised", bound=BaseException)


def _grader_message(exception: _Raised, text: str) -> _Raised:
    exception.deploylab_message = text  # type: ignore[attr-defined]
    return exception


class StudentFunction:
    """A student's function, seen from the trusted tests: calls run in the student's kernel.

    Arguments and results cross as plain data; list, dict and set arguments are updated in
    place after the call; a built-in exception the function raised is raised here (same
    class, a message written by the grader).
    """

    def __init__(self, name: str, channel: KernelChannel) -> None:
        self.__name__ = self.__qualname__ = name
        self._channel = channel

    def __repr__(self) -> str:
        return f"<submitted function {self.__name__}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = self.__name__
        try:
            request = {
                "op": "call",
                "name": name,
                "args": plain_data.to_tree(list(args)),
                "kwargs": plain_data.to_tree(dict(kwargs)),
            }
        except plain_data.NotPlainData as error:
            raise TypeError(
                f"the test passes {error} to {name}(); tests may only pass plain data"
            ) from None
        reply = self._channel.request(request)
        if "returned" in reply:
            try:
                value = plain_data.from_tree(reply["returned"])
            except plain_data.NotPlainData:
                raise _not_plain(name, reply) from None
            self._copy_back(args, kwargs, reply)
            return value
        if "raised" in reply:
            self._copy_back(args, kwargs, reply)
            kind = getattr(builtins, str(reply["raised"]), None)
            if not (isinstance(kind, type) and issubclass(kind, Exception)):
                kind = Exception
            if issubclass(kind, StopIteration | StopAsyncIteration):
                # It would end the map(), zip() or next() that called the function as if
                # exhausted, skipping the checks after it (PEP 479 does this for generators).
                kind = RuntimeError
            raise _grader_message(kind(f"raised by {name}()"), f"{name}() raised {kind.__name__}")
        if reply.get("kind") == "missing":
            raise _grader_message(NameError(name), f"{name} is not defined in the submission")
        raise _not_plain(name, reply)

    def _copy_back(self, args: tuple, kwargs: dict, reply: dict) -> None:
        after, after_kwargs = reply.get("args_after"), reply.get("kwargs_after")
        if type(after) is not list or len(after) != len(args) or type(after_kwargs) is not dict:
            raise _not_plain(self.__name__, {})
        try:
            for original, new in zip(args, after, strict=True):
                if new is not None:
                    _update_in_place(original, plain_data.from_tree(new))
            for key, new in after_kwargs.items():
                if key in kwargs:
                    _update_in_place(kwargs[key], plain_data.from_tree(new))
        except plain_data.NotPlainData:
            raise _not_plain(self.__name__, {}) from None


def _not_plain(name: str, reply: dict) -> BoundaryBroken:
    return _grader_message(
        BoundaryBroken(name),
        f"{name}() returned a value that cannot be checked: expected {_PLAIN_LIST}",
    )


def _update_in_place(original: Any, new: Any) -> None:
    """Make container ``original`` equal to ``new``, keeping the identity of nested
    containers that still have the same type (tests hold references to them)."""
    if type(original) is not type(new):
        return
    if type(original) is list:
        for index, new_item in enumerate(new[: len(original)]):
            old_item = original[index]
            if type(old_item) is type(new_item) and type(old_item) in (list, dict, set):
                _update_in_place(old_item, new_item)
            else:
                original[index] = new_item
        del original[len(new) :]
        original.extend(new[len(original) :])
    elif type(original) is dict:
        for key in [key for key in original if key not in new]:
            del original[key]
        for key, new_item in new.items():
            old_item = original.get(key)
            if type(old_item) is type(new_item) and type(old_item) in (list, dict, set):
                _update_in_place(old_item, new_item)
            else:
                original[key] = new_item
    elif type(original) is set:
        original.clear()
        original.update(new)


def free_names(tree: ast.AST) -> set[str]:
    """Names ``tree`` reads but never binds (anywhere in it): what it expects from outside.

    >>> sorted(free_names(ast.parse("x = f(1)\\nfor i in range(3):\\n    assert g(i) == x")))
    ['f', 'g', 'range']
    """
    loaded: set[str] = set()
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return loaded - bound


def top_level_names(tree: ast.Module) -> set[str]:
    """Names ``tree`` binds in its own (module) scope: what stays in the namespace after it
    ran. Names local to its functions, classes, lambdas and comprehensions are not.

    >>> sorted(top_level_names(ast.parse(
    ...     "import random as _r\\ncases = [c for c in range(3)]\\nfor i in cases:\\n    x = i\\n"
    ...     "def check(f):\\n    y = f(1)\\n    return y")))
    ['_r', 'cases', 'check', 'i', 'x']
    """
    names: set[str] = set()
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
    comprehensions = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
    pending: list[ast.AST] = list(ast.iter_child_nodes(tree))
    while pending:
        node = pending.pop()
        if isinstance(node, scopes):
            if not isinstance(node, ast.Lambda):
                names.add(node.name)
            continue
        if isinstance(node, comprehensions):
            continue
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        pending.extend(ast.iter_child_nodes(node))
    return names


def literal_message(tree: ast.AST, line: int) -> str | None:
    """The message of the ``assert`` or ``raise`` at ``line`` of ``tree``, from its source text
    only: a string literal as written, an f-string with each value shown as ``…``.

    >>> tree = ast.parse('assert f(2) == 4, "f(2) should be 4"\\nassert f(x) == y, f"f({x}) should be {y}"')
    >>> literal_message(tree, 1), literal_message(tree, 2)
    ('f(2) should be 4', 'f(…) should be …')
    """
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert | ast.Raise):
            continue
        if not node.lineno <= line <= (node.end_lineno or node.lineno):
            continue
        if isinstance(node, ast.Assert):
            message = node.msg
        else:
            call = node.exc
            message = call.args[0] if isinstance(call, ast.Call) and call.args else None
        return _text_of(message)
    return None


def _text_of(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            part.value if isinstance(part, ast.Constant) and isinstance(part.value, str) else "…"
            for part in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text_of(node.left), _text_of(node.right)
        if left is not None and right is not None:
            return left + right
    return None


class TrustedTests:
    """One notebook's trusted namespace."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        #: what each student name was bound to (looked up again in every cell, so a name
        #: the student redefines later is seen as it is now)
        self.from_student: dict[str, Any] = {}
        #: names the instructor's cells bind: never the student's, even once they are gone
        #: (this process restarted after an earlier test cell defined them)
        self.instructor_names: set[str] = set()

    def declare(self, source: str) -> dict:
        """Record the names an instructor cell binds at its top level, without running it."""
        try:
            self.instructor_names |= top_level_names(ast.parse(source, _TEST_FILE))
        except (SyntaxError, ValueError):
            return {"ok": False, "error": "SyntaxError"}
        return {"ok": True}

    def setup(self, source: str) -> dict:
        self.declare(source)
        try:
            exec(compile(source, "<setup cell>", "exec"), self.namespace)
        except BaseException as error:
            return {"ok": False, "error": type(error).__name__}
        return {"ok": True}

    def test(self, source: str, points: float, timeout: float, listener: socket.socket) -> dict:
        """Run one test cell; the student's kernel connects to ``listener`` when asked."""
        deadline = time.monotonic() + timeout
        channel = KernelChannel(listener, deadline)
        try:
            tree = ast.parse(source, _TEST_FILE)
        except SyntaxError as error:
            return _result(FAILED, 0.0, f"the test cell does not parse (line {error.lineno})")
        self.instructor_names |= top_level_names(tree)
        try:
            self._bind_student_names(tree, channel)
            value = self._run(tree)
        except CellTimeout as error:
            return _result(TEST_TIMED_OUT, 0.0, _failure_message(error, tree))
        except BaseException as error:
            return _result(FAILED, 0.0, _failure_message(error, tree))
        finally:
            channel.close()
        return _points(value, points)

    def _bind_student_names(self, tree: ast.AST, channel: KernelChannel) -> None:
        for name in sorted(free_names(tree)):
            ours = name in self.namespace and self.namespace[name] is not self.from_student.get(
                name, self
            )
            if ours or hasattr(builtins, name) or name in self.instructor_names:
                continue
            self.namespace.pop(name, None)
            reply = channel.request({"op": "describe", "name": name})
            kind = reply.get("kind")
            if kind == "callable":
                self.namespace[name] = StudentFunction(name, channel)
                self.from_student[name] = self.namespace[name]
            elif kind == "value":
                try:
                    self.namespace[name] = plain_data.from_tree(reply.get("value"))
                except plain_data.NotPlainData:
                    raise _not_value(name) from None
                self.from_student[name] = self.namespace[name]
            elif kind == "module":
                module = reply.get("module")
                # Only the module the test itself names (``ipaddress``): the kernel's reply
                # must not choose what this process imports (``antigravity`` opens a browser).
                if module != name or module not in sys.stdlib_module_names:
                    raise _not_value(name)
                self.namespace[name] = __import__(module)
                self.from_student[name] = self.namespace[name]
            elif kind != "missing":
                raise _not_value(name)

    def _run(self, tree: ast.Module) -> Any:
        body, last = tree.body, None
        tail = body[-1] if body else None
        if isinstance(tail, ast.Expr):
            body, last = body[:-1], tail
        exec(compile(ast.Module(body, type_ignores=[]), _TEST_FILE, "exec"), self.namespace)
        if last is None:
            return None
        return eval(compile(ast.Expression(last.value), _TEST_FILE, "eval"), self.namespace)


def _not_value(name: str) -> BoundaryBroken:
    return _grader_message(
        BoundaryBroken(name), f"{name} is not a value that can be checked: expected {_PLAIN_LIST}"
    )


def _failure_message(error: BaseException, tree: ast.AST) -> str:
    """Instructor text for a failed cell: the literal message of the failing assert/raise."""
    given = getattr(error, "deploylab_message", None)
    if isinstance(given, str):
        return given
    if isinstance(error, NameError) and error.name in free_names(tree):
        return f"{error.name} is not defined: run the cell that defines it, then try again"
    line = None
    for frame, line_number in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_filename == _TEST_FILE:
            line = line_number
    message = literal_message(tree, line) if line is not None else None
    if message:
        return message
    if isinstance(error, AssertionError):
        return "a test failed (the test has no message)"
    return f"the test stopped with {type(error).__name__}"


def _result(outcome: str, points: float | None, message: str = "", raw: Any = None) -> dict:
    return {"outcome": outcome, "points": points, "message": message, "raw_points": raw}


def _points(value: Any, max_points: float) -> dict:
    """A passed cell's points: the last expression's number if it has one (partial credit)."""
    if type(value) not in (int, float):
        return _result(PASSED, max_points)
    if not math.isfinite(value):
        return _result(FAILED, 0.0, "the test reported a score that is not a number", str(value))
    earned = min(max(float(value), 0.0), max_points)
    return _result(test_outcome(earned, max_points), earned, "", float(value))


def main() -> int:
    """Serve the grader's requests (JSON lines on stdin, answers on stdout) until EOF."""
    protocol_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
    protocol_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    # What test code prints must not mix with the protocol (and nobody reads it).
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115
    sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    tests = TrustedTests()

    def answer(message: dict) -> None:
        protocol_out.write(json.dumps(message, allow_nan=False) + "\n")
        protocol_out.flush()

    answer({"ready": True})
    for line in protocol_in:
        try:
            request = json.loads(line)
        except ValueError:
            break
        if request.get("op") == "setup":
            answer(tests.setup(str(request.get("source", ""))))
        elif request.get("op") == "declare":
            answer(tests.declare(str(request.get("source", ""))))
        elif request.get("op") == "test":
            # A fresh socket per cell: a connection left over from an earlier cell (or made by
            # the student's code) cannot answer for this one.
            path = str(request["socket"])
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
                listener.bind(path)
                os.chmod(path, 0o666)  # the sandboxed kernel runs as another user
                listener.listen(1)
                answer({"listening": True})
                result = tests.test(
                    str(request.get("source", "")),
                    float(request.get("points", 0)),
                    float(request.get("timeout", 30)),
                    listener,
                )
            with contextlib.suppress(OSError):
                os.unlink(path)
            answer(result)
        else:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
