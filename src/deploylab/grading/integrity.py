"""Integrity of a graded run: tamper detection, hidden-test redaction, pass/fail of a test cell.

Tamper detection has two halves. Before the run, :func:`instrument` reads the student's cells
(:func:`scan_source`: code that reaches for IPython's input transformers, event hooks,
``builtins``, ``sys.modules``, ``os._exit``…) and adds *integrity cells* to the notebook that is
executed: a prelude that runs before any student code and takes a snapshot of everything a
student could patch to change how later cells run (IPython's transformers, hooks and execution
machinery, builtins, the modules the tests import, trace hooks, timers, the instructor's helper
names), a check before every test cell and at the end that compares the kernel with that
snapshot, and a "protect" step after every instructor cell that records the instructor's
names the tests read (helpers, data sets). Each check prints a report signed with an HMAC key
that only the prelude knows (the prelude runs without history and is dropped from linecache,
so ``In``/``_ih`` and tracebacks never show it) over a fresh nonce; a report that is missing,
forged or stale is itself a finding. The grader adds what it sees itself: errors the kernel
reported but did not display, ``SystemExit`` in a student cell. Student code runs in the same
interpreter, so this raises the bar rather than proving anything (a student who studies this
module can still reach the checker's closure): the static scan, the sandbox and a human review
of ``needs review`` submissions do the rest.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from nbformat import NotebookNode
from nbformat.v4 import new_code_cell

__all__ = [
    "BEGIN_HIDDEN",
    "END_HIDDEN",
    "ExecutionPlan",
    "cell_passed",
    "hidden_lines",
    "instrument",
    "redact_hidden_tests",
    "redact_text",
    "scan_source",
]

BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
REPORT_PREFIX = "DEPLOYLAB-INTEGRITY "
#: What replaces hidden test source in feedback.
HIDDEN_PLACEHOLDER = "# (hidden tests: not shown)"
#: At most this many findings are reported (a hostile notebook can produce many).
MAX_FINDINGS = 12

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


# ---------------------------------------------------------------------------------------
# Cells: who wrote what
# ---------------------------------------------------------------------------------------
def _nbgrader(cell: NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def is_test_cell(cell: NotebookNode) -> bool:
    """An autograder test cell: graded, not an answer."""
    meta = _nbgrader(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def is_instructor_cell(cell: NotebookNode) -> bool:
    """A locked cell that is not an answer: the instructor's code (restored by the pipeline)."""
    meta = _nbgrader(cell)
    return (bool(meta.get("locked")) and not meta.get("solution")) or is_test_cell(cell)


def _source(cell: NotebookNode) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _python_of(source: str) -> ast.Module | None:
    """``source`` parsed as Python, with IPython magics and shell escapes blanked; or None."""
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        return None
    cleaned = []
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            cleaned.append(line[: len(line) - len(stripped)] + "pass")
        else:
            cleaned.append(line)
    try:
        return ast.parse("\n".join(cleaned))
    except (SyntaxError, ValueError):
        return None


# ---------------------------------------------------------------------------------------
# Static scan of student code
# ---------------------------------------------------------------------------------------
#: Attribute names whose use in a student cell means "changes how later cells run".
_SUSPICIOUS_ATTRIBUTES = {
    "input_transformers_cleanup": "adds IPython input transformers",
    "input_transformers_post": "adds IPython input transformers",
    "input_transformer_manager": "changes IPython's input transformer manager",
    "ast_transformers": "adds IPython AST transformers",
    "set_custom_exc": "installs a custom exception handler",
    "CustomTB": "replaces IPython's exception display",
    "InteractiveTB": "replaces IPython's exception display",
    "showtraceback": "replaces IPython's exception display",
    "_showtraceback": "replaces IPython's exception display",
    "run_cell": "patches IPython's cell execution",
    "run_cell_async": "patches IPython's cell execution",
    "run_ast_nodes": "patches IPython's cell execution",
    "transform_cell": "patches IPython's cell execution",
    "do_execute": "patches the kernel's execution",
    "settrace": "installs a trace function",
    "setprofile": "installs a profile function",
    "_exit": "calls os._exit (ends the kernel early)",
    "fork": "calls os.fork",
    "forkpty": "calls os.fork",
    "get_objects": "walks the interpreter's objects (gc.get_objects)",
    "__closure__": "reads function closures",
    "setitimer": "arms a timer signal",
    "addaudithook": "installs an audit hook",
}
_SUSPICIOUS_MODULES = {
    "builtins": "imports builtins",
    "ctypes": "imports ctypes",
    "gc": "imports gc",
}


def scan_source(source: str, protected_modules: frozenset[str] = frozenset()) -> list[str]:
    """Reasons why a student cell's code looks like an attempt to change how grading works.

    ``protected_modules`` are modules the tests import: assigning to their attributes is
    suspicious too. Returns an empty list for ordinary code.

    >>> scan_source("def f(x):\\n    return x + 1")
    []
    >>> scan_source("get_ipython().input_transformers_post.append(lambda lines: lines)")
    ['adds IPython input transformers']
    >>> scan_source("import sys\\nsys.exit(0)")
    ['calls sys.exit (ends the notebook early)']
    """
    tree = _python_of(source)
    findings: list[str] = []

    def add(reason: str) -> None:
        if reason not in findings:
            findings.append(reason)

    if tree is None:
        # Not Python (a cell magic, or a syntax error the run will show): fall back to text.
        for name, reason in _SUSPICIOUS_ATTRIBUTES.items():
            if re.search(rf"\.\s*{re.escape(name)}\b", source):
                add(reason)
        return findings
    module_aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                module_aliases[alias.asname or alias.name.split(".")[0]] = alias.name
                top = alias.name.split(".")[0]
                if top in _SUSPICIOUS_MODULES:
                    add(_SUSPICIOUS_MODULES[top])
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if top in _SUSPICIOUS_MODULES:
                add(_SUSPICIOUS_MODULES[top])
            if node.module == "os" and any(alias.name == "_exit" for alias in node.names):
                add(_SUSPICIOUS_ATTRIBUTES["_exit"])
            if node.module == "sys" and any(
                alias.name in ("exit", "modules") for alias in node.names
            ):
                add("uses sys.exit or sys.modules")
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if node.attr in _SUSPICIOUS_ATTRIBUTES:
                add(_SUSPICIOUS_ATTRIBUTES[node.attr])
            if (
                node.attr == "register"
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "events"
            ):
                add("registers IPython event hooks")
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name):
                base = module_aliases.get(root.id, root.id)
                if base == "sys" and node.attr == "exit":
                    add("calls sys.exit (ends the notebook early)")
                if base == "sys" and node.attr == "modules" and _mutates(node, parents):
                    add("changes sys.modules")
                if isinstance(node.ctx, ast.Store | ast.Del) and (
                    base in protected_modules or base.split(".")[0] in protected_modules
                ):
                    add(f"changes the module {base} that the tests use")
        elif isinstance(node, ast.Name):
            if node.id == "__builtins__":
                add("touches __builtins__")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("exit", "quit")
        ):
            add("calls exit() (ends the notebook early)")
    return findings


_MUTATING_METHODS = {
    "pop",
    "popitem",
    "update",
    "clear",
    "setdefault",
    "__setitem__",
    "__delitem__",
}


def _mutates(node: ast.Attribute, parents: dict) -> bool:
    """Is ``node`` (say ``sys.modules``) assigned, deleted, item-assigned or mutated by a
    method? Reading it (``"numpy" in sys.modules``) is not."""
    if isinstance(node.ctx, ast.Store | ast.Del):
        return True
    parent = parents.get(node)
    if isinstance(parent, ast.Subscript) and isinstance(parent.ctx, ast.Store | ast.Del):
        return True
    return isinstance(parent, ast.Attribute) and parent.attr in _MUTATING_METHODS


# ---------------------------------------------------------------------------------------
# Names instructor cells define (protected from redefinition by student cells)
# ---------------------------------------------------------------------------------------
def _bound_names(source: str, *, definitions_only: bool) -> list[str]:
    """Top-level names a cell binds: functions, classes and imports; plus plain assignments
    unless ``definitions_only``."""
    tree = _python_of(source)
    if tree is None:
        return []
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    names.append(alias.asname or alias.name.split(".")[0])
        elif not definitions_only and isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        names.append(leaf.id)
    return [name for name in dict.fromkeys(names) if not name.startswith("__")]


def _loaded_names(source: str) -> set[str]:
    """Every plain name a cell reads."""
    tree = _python_of(source)
    if tree is None:
        return set()
    return {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }


def _imported_modules(source: str) -> list[str]:
    tree = _python_of(source)
    if tree is None:
        return []
    modules: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.append(node.module)
    return list(dict.fromkeys(modules))


# ---------------------------------------------------------------------------------------
# The kernel side: runs inside the student's kernel, before any student code
# ---------------------------------------------------------------------------------------
_PRELUDE = r"""
def __deploylab_integrity_setup(key_hex, modules, checker_name):
    import builtins as _builtins, hashlib as _hashlib, hmac as _hmac, importlib as _importlib
    import json as _json, signal as _signal, sys as _sys, threading as _threading, types as _types
    _shell = get_ipython()
    _kernel = getattr(_shell, "kernel", None)
    _id, _type, _isinstance, _sorted, _list, _tuple = id, type, isinstance, sorted, list, tuple
    _getattr, _print, _str, _repr, _len = getattr, print, str, repr, len
    _stdout, _dumps, _new_mac, _sha256 = _sys.stdout, _json.dumps, _hmac.new, _hashlib.sha256
    _key = bytes.fromhex(key_hex)
    _Function, _Module, _immutable = _types.FunctionType, _types.ModuleType, (int, float, str, bytes, bool, type(None), tuple, frozenset)
    for _name in modules:
        try:
            _importlib.import_module(_name)
        except BaseException:
            pass
    _SHELL_NAMES = ("run_cell", "run_cell_async", "run_code", "run_ast_nodes", "transform_cell",
        "transform_ast", "should_run_async", "showtraceback", "_showtraceback", "showsyntaxerror",
        "showindentationerror", "get_exception_only", "InteractiveTB", "SyntaxTB", "CustomTB",
        "custom_exceptions", "set_custom_exc", "displayhook", "display_pub", "display_trap",
        "builtin_trap", "events", "compile", "input_transformer_manager", "input_transformers_cleanup",
        "input_transformers_post", "ast_transformers", "user_ns", "user_global_ns", "user_module",
        "excepthook", "_run_cell", "run_line_magic", "run_cell_magic", "ex", "ev")
    _KERNEL_NAMES = ("do_execute", "execute_request", "dispatch_shell", "process_one", "shell",
        "session", "iopub_socket", "iopub_thread", "send_response", "_publish_execute_input",
        "_publish_status", "finish_metadata", "init_metadata", "shell_handlers")
    _SIGNALS = [getattr(_signal, n) for n in ("SIGALRM", "SIGVTALRM", "SIGPROF", "SIGUSR1", "SIGUSR2") if hasattr(_signal, n)]

    def _static(obj, name):
        try:
            own = object.__getattribute__(obj, "__dict__")
        except Exception:
            own = {}
        if name in own:
            return _id(own[name])
        for klass in _type(obj).__mro__:
            if name in klass.__dict__:
                return _id(klass.__dict__[name])
        return None

    _LIBRARIES = ("matplotlib", "matplotlib_inline", "ipykernel", "IPython", "ipywidgets",
        "bqplot", "anywidget", "tqdm", "plotly", "deploylab")

    def _library_hook(func):
        # A hook a plotting/widget library registers (matplotlib's figure flush): its code
        # must live in that library's own directory.
        target = _getattr(func, "__func__", func)
        module_name = _str(_getattr(target, "__module__", "") or "").split(".")[0]
        if module_name not in _LIBRARIES:
            return False
        module = _sys.modules.get(module_name)
        module_file = _getattr(module, "__file__", None)
        code = _getattr(target, "__code__", None)
        if module_file is None or code is None:
            return False
        root = module_file.rsplit("/", 1)[0] + "/"
        return _str(code.co_filename).startswith(root)

    def _ids(items):
        try:
            return [_id(item) for item in items]
        except Exception:
            return None

    def _module_state(module):
        state = {}
        for attr, value in _list(_getattr(module, "__dict__", {}).items()):
            if attr.startswith("__") and attr.endswith("__"):
                continue
            if _isinstance(value, _Module):
                continue
            state[attr] = _id(value)
            if _isinstance(value, _Function):
                state[attr + ".__code__"] = _id(value.__code__)
                state[attr + ".__defaults__"] = _id(value.__defaults__)
            elif _isinstance(value, _type) and _getattr(value, "__module__", None) == module.__name__:
                for member, member_value in _list(value.__dict__.items()):
                    if member not in ("__dict__", "__weakref__", "__doc__"):
                        state[attr + "." + member] = _id(member_value)
        return state

    def _snapshot():
        state = {}
        state["builtins"] = {k: _id(v) for k, v in _list(_builtins.__dict__.items()) if k not in ("input", "raw_input")}
        manager = _getattr(_shell, "input_transformer_manager", None)
        state["transformers"] = {
            "input_transformers_cleanup": _ids(_shell.input_transformers_cleanup),
            "input_transformers_post": _ids(_shell.input_transformers_post),
            "ast_transformers": _ids(_shell.ast_transformers),
            "cleanup_transforms": _ids(_getattr(manager, "cleanup_transforms", ())),
            "line_transforms": _ids(_getattr(manager, "line_transforms", ())),
            "token_transformers": _ids(_getattr(manager, "token_transformers", ())),
        }
        callbacks = _getattr(_shell.events, "callbacks", {})
        state["events"] = {event: [_id(f) for f in funcs if not _library_hook(f)] for event, funcs in _list(callbacks.items())}
        state["shell"] = {name: _static(_shell, name) for name in _SHELL_NAMES}
        state["shell_class"] = _id(_type(_shell))
        state["custom_exceptions"] = _ids(_shell.custom_exceptions)
        state["compile_flags"] = _getattr(_shell.compile, "flags", None)
        if _kernel is not None:
            state["kernel"] = {name: _static(_kernel, name) for name in _KERNEL_NAMES}
            session = _getattr(_kernel, "session", None)
            state["session"] = {name: _static(session, name) for name in ("send", "serialize", "sign", "msg")}
        # (ipykernel re-binds builtins.input and sys.excepthook on every execution.)
        state["streams"] = {"stdout": _id(_sys.stdout), "stderr": _id(_sys.stderr),
            "write": _id(_type(_sys.stdout).__dict__.get("write")), "modules": _id(_sys.modules)}
        state["namespace_builtins"] = _id(_shell.user_ns.get("__builtins__"))
        state["modules"] = {}
        for name in modules:
            module = _sys.modules.get(name)
            if module is None:
                state["modules"][name] = None
            else:
                # sys and os change their own attributes (sys.last_value…); identity is enough.
                volatile = name in ("sys", "os", "builtins", "__future__")
                state["modules"][name] = [_id(module), {} if volatile else _module_state(module)]
        return state

    _baseline = _snapshot()
    _protected = {}

    def _differences(before, after, prefix=""):
        found = []
        if _isinstance(before, dict) and _isinstance(after, dict):
            for key in _sorted(set(before) | set(after), key=_str):
                if key not in before:
                    continue
                found += _differences(before[key], after.get(key), prefix + "." + _str(key) if prefix else _str(key))
            return found
        if before != after:
            found.append(prefix)
        return found

    def _check():
        findings = []
        now = _snapshot()
        changed = _differences(_baseline["builtins"], now["builtins"])
        added = [k for k in now["builtins"] if k not in _baseline["builtins"]]
        if changed or added:
            findings.append("builtins changed: " + ", ".join(_sorted(changed + added)[:8]))
        for part, label in (("transformers", "IPython input/AST transformers changed"),
                            ("events", "IPython event hooks changed"),
                            ("shell", "IPython execution machinery patched"),
                            ("kernel", "kernel execution machinery patched"),
                            ("session", "kernel messaging patched"),
                            ("streams", "output streams or sys hooks replaced")):
            if part in _baseline:
                before = _baseline[part]
                after = now.get(part) or {}
                if part == "events":
                    diff = [k for k in _sorted(set(before) | set(after)) if before.get(k) or after.get(k)]
                    diff = [k for k in diff if (before.get(k) or []) != (after.get(k) or [])]
                else:
                    diff = _differences(before, after)
                if diff:
                    findings.append(label + ": " + ", ".join(diff[:6]))
        if now["shell_class"] != _baseline["shell_class"]:
            findings.append("IPython shell class replaced")
        if now["custom_exceptions"] != _baseline["custom_exceptions"]:
            findings.append("custom exception handler installed (set_custom_exc)")
        if now["compile_flags"] != _baseline["compile_flags"]:
            findings.append("compiler flags changed")
        if now["namespace_builtins"] != _baseline["namespace_builtins"]:
            findings.append("__builtins__ replaced in the notebook namespace")
        for name, before in _baseline["modules"].items():
            after = now["modules"].get(name)
            if before is None:
                continue
            if after is None or after[0] != before[0]:
                findings.append("module " + name + " replaced or removed in sys.modules")
                continue
            diff = [k for k in before[1] if after[1].get(k) != before[1][k]]
            if diff:
                findings.append("module " + name + " patched: " + ", ".join(_sorted(diff)[:6]))
        if _sys.gettrace() is not None or _sys.getprofile() is not None:
            findings.append("a trace or profile function is installed")
        if _getattr(_threading, "_trace_hook", None) is not None or _getattr(_threading, "_profile_hook", None) is not None:
            findings.append("a thread trace or profile function is installed")
        for signum in _SIGNALS:
            handler = _signal.getsignal(signum)
            if handler not in (_signal.SIG_DFL, _signal.SIG_IGN, None):
                findings.append("a handler for signal " + _str(signum) + " is installed")
        for timer in ("ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF"):
            if hasattr(_signal, timer) and _signal.getitimer(_getattr(_signal, timer))[0] > 0:
                findings.append("an interval timer is armed")
        namespace = _shell.user_ns
        for name, (identity, value) in _list(_protected.items()):
            current = namespace.get(name, _protected)
            if current is _protected:
                findings.append("instructor name " + name + " was deleted")
            elif _id(current) != identity and not (value is not _protected and _type(current) is _type(value) and current == value):
                findings.append("instructor name " + name + " was redefined")
        return findings

    def _protect(names, refresh):
        # names: defined by instructor code and used by tests; refresh: rebound by
        # instructor code (a test cell's assignment), re-recorded only if already protected.
        namespace = _shell.user_ns
        for name in _list(names) + [n for n in refresh if n in _protected]:
            if name in namespace:
                value = namespace[name]
                _protected[name] = (_id(value), value if _isinstance(value, _immutable) else _protected)

    def integrity(action, nonce="", label="", names=(), refresh=()):
        if action == "protect":
            _protect(names, refresh)
            return None
        try:
            findings = _check()
        except BaseException as error:
            findings = ["integrity check failed: " + _type(error).__name__]
        payload = _dumps({"nonce": nonce, "label": label, "findings": findings}, sort_keys=True)
        mac = _new_mac(_key, payload.encode(), _sha256).hexdigest()
        _print("\n" + "DEPLOYLAB-INTEGRITY " + payload + " " + mac, file=_stdout, flush=True)
        return None

    _shell.user_ns[checker_name] = integrity
    _shell.user_ns_hidden[checker_name] = integrity
    # IPython keeps every executed cell's source in linecache (for tracebacks): forget this
    # one, which holds the key.
    import linecache as _linecache
    for _cache in (getattr(_linecache, "cache", {}), getattr(_linecache, "_ipython_cache", {})):
        for _file, _entry in _list(_cache.items()):
            try:
                if any(key_hex in _line for _line in _entry[2]):
                    del _cache[_file]
            except Exception:
                pass


"""


@dataclass
class _Injected:
    kind: str  # "prelude", "check", "protect"
    nonce: str = ""
    label: str = ""


@dataclass
class ExecutionPlan:
    """The notebook as executed (with integrity cells) and how to read and undo that.

    ``notebook`` is what to execute; ``injected`` maps its indices to integrity cells;
    :meth:`findings` reads the executed copy; :meth:`restore` removes the integrity cells.
    """

    notebook: NotebookNode
    key: bytes
    injected: dict[int, _Injected] = field(default_factory=dict)
    static_findings: list[str] = field(default_factory=list)
    student_cells: list[int] = field(default_factory=list)

    def is_injected(self, index: int) -> bool:
        return index in self.injected

    def original_indices(self, indices: list[int]) -> list[int]:
        """Positions in the original notebook of executed-notebook cells ``indices``."""
        injected = sorted(self.injected)
        result = []
        for index in indices:
            if index in self.injected:
                continue
            result.append(index - sum(1 for i in injected if i < index))
        return result

    def restore(self, executed: NotebookNode) -> NotebookNode:
        """``executed`` without the integrity cells (cell order and metadata as submitted)."""
        executed.cells = [c for i, c in enumerate(executed.cells) if i not in self.injected]
        return executed

    def findings(self, executed: NotebookNode, *, partial: bool = False) -> list[str]:
        """Every tamper finding: static scan, signed kernel reports, hidden errors, exits.

        With ``partial`` (the run stopped early) reports of checks that never ran are not
        counted as missing.
        """
        findings = list(self.static_findings)
        seen_in_reports: set[str] = set()
        for index, injected in sorted(self.injected.items()):
            if injected.kind != "check":
                continue
            cell = executed.cells[index]
            ran = bool(cell.get("outputs")) or cell.get("execution_count") is not None
            report = _read_report(cell, self.key, injected.nonce, injected.label)
            if report is None:
                if partial and not ran:
                    continue
                findings.append(
                    f"integrity check before {injected.label} did not report "
                    "(the kernel's execution or output was changed)"
                )
                continue
            for item in report:
                # The same change shows in every later check: report it once, where first seen.
                if item not in seen_in_reports:
                    seen_in_reports.add(item)
                    findings.append(f"before {injected.label}: {item}")
        student = set(self.student_cells)
        for index, cell in enumerate(executed.cells):
            if index in self.injected:
                continue
            original = self.original_indices([index])[0]
            for output in cell.get("outputs", []):
                if (
                    output.get("output_type") == "error"
                    and output.get("ename") == "SystemExit"
                    and index in student
                ):
                    findings.append(f"cell {original} called sys.exit()")
            meta = cell.get("metadata", {}).get("deploylab", {})
            if meta.get("hidden_error"):
                findings.append(f"cell {original} raised an error that was not displayed")
        unique = list(dict.fromkeys(findings))
        if len(unique) > MAX_FINDINGS:
            unique = [*unique[:MAX_FINDINGS], f"… and {len(unique) - MAX_FINDINGS} more"]
        return unique


def _read_report(cell: NotebookNode, key: bytes, nonce: str, label: str) -> list[str] | None:
    """The findings of a signed report in ``cell``'s output, or None if absent or forged."""
    text = "".join(
        str(output.get("text", ""))
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stdout"
    )
    for line in text.splitlines():
        if not line.startswith(REPORT_PREFIX):
            continue
        body = line[len(REPORT_PREFIX) :]
        payload, _, mac = body.rpartition(" ")
        expected = hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, mac):
            continue
        try:
            data = json.loads(payload)
        except ValueError:
            continue
        if data.get("nonce") != nonce or data.get("label") != label:
            continue
        findings = data.get("findings")
        if isinstance(findings, list):
            return [str(item) for item in findings]
    return None


def instrument(notebook: NotebookNode, nonce: str | None = None) -> ExecutionPlan:
    """The notebook to execute for a graded run: ``notebook`` plus integrity cells.

    ``notebook`` (already merged with the instructor's locked cells) is not modified.
    """
    key = secrets.token_bytes(32)
    run_nonce = nonce or secrets.token_hex(16)
    checker = "_deploylab_integrity_" + secrets.token_hex(6)
    cells = notebook.cells
    test_modules: list[str] = []
    for cell in cells:
        if is_instructor_cell(cell) and cell.get("cell_type") == "code":
            test_modules.extend(_imported_modules(_source(cell)))
    test_modules = list(dict.fromkeys(test_modules))
    protected_roots = frozenset(name.split(".")[0] for name in test_modules)
    # Only names the tests read are worth protecting: a student may reuse an example
    # variable from the instructions, but not a helper or data set the tests rely on.
    test_names: set[str] = set()
    for cell in cells:
        if is_test_cell(cell):
            test_names.update(_loaded_names(_source(cell)))

    executed = copy.deepcopy(notebook)
    new_cells: list[NotebookNode] = []
    plan = ExecutionPlan(notebook=executed, key=key)

    def inject(source: str, marker: _Injected) -> None:
        cell = new_code_cell(source)
        cell["id"] = f"deploylab-integrity-{len(new_cells)}"
        plan.injected[len(new_cells)] = marker
        new_cells.append(cell)

    prelude = (
        _PRELUDE
        + f"__deploylab_integrity_setup({key.hex()!r}, {test_modules!r}, {checker!r})\n"
        + "del __deploylab_integrity_setup\n"
    )
    inject(prelude, _Injected("prelude"))

    def check(label: str) -> None:
        check_nonce = f"{run_nonce}-{secrets.token_hex(8)}"
        source = f"{checker}('check', {check_nonce!r}, {label!r})"
        inject(source, _Injected("check", check_nonce, label))

    for original_index, cell in enumerate(cells):
        code = cell.get("cell_type") == "code"
        if code and is_test_cell(cell):
            grade_id = _nbgrader(cell).get("grade_id") or f"cell {original_index}"
            check(f"test {grade_id}")
        plan_index = len(new_cells)
        new_cells.append(executed.cells[original_index])
        if not code:
            continue
        if is_instructor_cell(cell):
            source = _source(cell)
            bound = _bound_names(source, definitions_only=False)
            defined = _bound_names(source, definitions_only=is_test_cell(cell))
            names = [name for name in defined if name in test_names]
            refresh = [name for name in bound if name not in names and name in test_names]
            if names or refresh:
                inject(
                    f"{checker}('protect', names={names!r}, refresh={refresh!r})",
                    _Injected("protect"),
                )
        else:
            plan.student_cells.append(plan_index)
            for reason in scan_source(_source(cell), protected_roots):
                plan.static_findings.append(f"cell {original_index} {reason}")
    check("the end of the notebook")
    executed.cells = new_cells
    return plan


# ---------------------------------------------------------------------------------------
# Pass / fail of a test cell
# ---------------------------------------------------------------------------------------
def cell_passed(cell: NotebookNode) -> bool:
    """Did this executed test cell pass? An error output fails it; stderr alone does not.

    nbgrader zeroes a cell that wrote anything to stderr (a warning, a debug print); here
    only an error (an exception, including a failed assert) counts.

    >>> from nbformat.v4 import new_code_cell, new_output
    >>> cell = new_code_cell("assert f(2) == 4")
    >>> cell.outputs = [new_output("stream", name="stderr", text="DeprecationWarning: ...")]
    >>> cell_passed(cell)
    True
    >>> cell.outputs.append(new_output("error", ename="AssertionError", evalue="f(2)", traceback=[]))
    >>> cell_passed(cell)
    False
    """
    if cell.get("metadata", {}).get("deploylab", {}).get("hidden_error"):
        return False
    return not any(output.get("output_type") == "error" for output in cell.get("outputs", []))


# ---------------------------------------------------------------------------------------
# Hidden tests: never in feedback
# ---------------------------------------------------------------------------------------
def _hidden_blocks(source: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN_HIDDEN:
            current = []
        elif stripped == END_HIDDEN:
            if current is not None:
                blocks.append(current)
            current = None
        elif current is not None:
            current.append(line)
    if current is not None:  # unterminated block: hidden to the end
        blocks.append(current)
    return blocks


def hidden_lines(sources: list[str]) -> list[str]:
    """The distinct stripped lines of every hidden-test block in ``sources``, longest first.

    Lines that are only punctuation or a keyword (``)``, ``else:``) carry no test content and
    are left out so redaction does not shred unrelated text.

    >>> hidden_lines(["x = 1\\n### BEGIN HIDDEN TESTS\\nassert f(9) == 3, 'f(9)'\\n)\\n### END HIDDEN TESTS"])
    ["assert f(9) == 3, 'f(9)'"]
    """
    lines: set[str] = set()
    for source in sources:
        for block in _hidden_blocks(source):
            for line in block:
                stripped = line.strip()
                if len(re.sub(r"[\W_]", "", stripped)) >= 4 and stripped not in _TRIVIAL_LINES:
                    lines.add(stripped)
    return sorted(lines, key=len, reverse=True)


_TRIVIAL_LINES = {"else:", "try:", "finally:", "pass", "return", "break", "continue"}


def _without_hidden_source(source: str) -> str:
    kept: list[str] = []
    inside = False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN_HIDDEN:
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            kept.append(indent + HIDDEN_PLACEHOLDER)
        elif stripped == END_HIDDEN:
            inside = False
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


#: A traceback source line: IPython's "---> 12 code" / "     13 code" or Python's "    code".
_TRACEBACK_CODE = re.compile(r"^(?P<prefix>\s*(?:-*>\s*)?\d*\s)(?P<code>.*)$")


def redact_text(text: str, lines: list[str]) -> str:
    """``text`` with every line that shows hidden-test source removed (ANSI colours ignored).

    A removed line takes the caret marker lines (``^^^^``) under it along. Other lines, such
    as the exception line ``AssertionError: <message>``, stay.

    >>> redact_text("---> 3 assert secret(4) == 2, 'secret(4) is 2'\\nAssertionError: secret(4) is 2",
    ...             ["assert secret(4) == 2, 'secret(4) is 2'"])
    'AssertionError: secret(4) is 2'
    """
    if not lines or not text:
        return text
    kept: list[str] = []
    dropped_previous = False
    for raw in text.split("\n"):
        plain = _ANSI.sub("", raw)
        stripped = plain.strip()
        if dropped_previous and stripped and set(stripped) <= set("^~ "):
            continue
        dropped_previous = False
        if stripped and _shows_hidden(plain, lines):
            dropped_previous = True
            continue
        kept.append(raw)
    return "\n".join(kept)


def _shows_hidden(plain: str, lines: list[str]) -> bool:
    stripped = plain.strip()
    match = _TRACEBACK_CODE.match(plain)
    code = match.group("code").strip() if match else stripped
    # The last case: a traceback that shows part of a long hidden line.
    # Short hidden lines (``points``) only count as a whole source line, never as a word
    # inside a message.
    return any(
        code == line or (len(line) >= 16 and line in plain) or (len(code) >= 12 and code in line)
        for line in lines
    )


def redact_hidden_tests(notebook: Any, instructor_notebook: Any) -> Any:
    """``notebook`` with no hidden-test source left: not in cell sources, outputs or tracebacks.

    ``instructor_notebook`` is the source version (it knows what is hidden). Hidden blocks in
    test cells become a placeholder comment; output and traceback lines that show hidden
    source are removed; error names and messages (``AssertionError: <message>``) are kept.
    Returns a new notebook.

    Also accepts ``(text, sources)``: a string and the sources of the cells with hidden
    tests; returns the text with hidden source lines removed (used by the feedback page).
    """
    if isinstance(notebook, str):
        sources = (
            [instructor_notebook]
            if isinstance(instructor_notebook, str)
            else list(instructor_notebook)
        )
        return redact_text(notebook, hidden_lines([str(s) for s in sources]))
    instructor_sources = [
        _source(cell) for cell in instructor_notebook.cells if BEGIN_HIDDEN in _source(cell)
    ]
    # The graded notebook holds the restored instructor tests too: include its own blocks.
    instructor_sources += [_source(c) for c in notebook.cells if BEGIN_HIDDEN in _source(c)]
    lines = hidden_lines(instructor_sources)
    redacted = copy.deepcopy(notebook)
    for cell in redacted.cells:
        source = _source(cell)
        if BEGIN_HIDDEN in source:
            cell["source"] = _without_hidden_source(source)
        elif lines:
            cell["source"] = redact_text(source, lines)
        for output in cell.get("outputs", []):
            output_type = output.get("output_type")
            if output_type == "stream":
                output["text"] = redact_text(str(output.get("text", "")), lines)
            elif output_type == "error":
                traceback = [
                    redact_text(str(entry), lines) for entry in output.get("traceback", [])
                ]
                output["traceback"] = [entry for entry in traceback if entry.strip()]
                output["evalue"] = redact_text(str(output.get("evalue", "")), lines)
            elif output_type in ("execute_result", "display_data"):
                data = output.get("data", {})
                for mime, value in list(data.items()):
                    if isinstance(value, str) and (
                        mime.startswith("text/") or mime.endswith("json")
                    ):
                        data[mime] = redact_text(value, lines)
                    elif isinstance(value, list):
                        data[mime] = redact_text("".join(map(str, value)), lines)
    return redacted
