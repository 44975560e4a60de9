"""Which parts of deploylab a lab's cells import: what the setup cells need (the only modules
a grading kernel may import), and the reference implementation the hidden tests compare with
(imported by a student's own cells, it is the answer key used as an answer)."""

from __future__ import annotations

import ast

from deploylab.grading.cells import hidden_blocks, nbgrader_meta

__all__ = ["reference_imports", "reference_names", "setup_imports"]


def setup_imports(instructor) -> dict[str, set[str]]:
    """What the lab's locked setup cells import from deploylab: {module: names} (an empty set
    for ``import module``). Grading kernels can import these modules and nothing else of the
    package.

    >>> import nbformat.v4 as v4
    >>> setup = v4.new_code_cell("from deploylab.deploy import Step\\nimport math")
    >>> setup.metadata["nbgrader"] = {"locked": True, "grade": False, "solution": False}
    >>> setup_imports(v4.new_notebook(cells=[setup]))
    {'deploylab.deploy': {'Step'}}
    """
    return imports_of(instructor, lambda meta: meta.get("locked") and not meta.get("grade"))


def reference_names(instructor) -> dict[str, set[str]]:
    """What the lab's hidden tests import from deploylab and nothing visible does: the
    reference implementation the answers are compared with. {module: names}, as
    :func:`setup_imports`."""
    hidden: dict[str, set[str]] = {}
    public: dict[str, set[str]] = {}
    for cell in instructor.cells:
        meta = nbgrader_meta(cell)
        if cell.get("cell_type") != "code" or meta.get("solution"):
            continue
        shown, secret = hidden_blocks(str(cell.source))
        for text, into in (("\n".join(secret), hidden), ("\n".join(shown), public)):
            for module, names in deploylab_imports(text):
                into.setdefault(module, set()).update(names)
    return {
        module: names - public.get(module, set())
        for module, names in hidden.items()
        if module not in public or names - public[module]
    }


def imports_of(notebook, wanted) -> dict[str, set[str]]:
    imports: dict[str, set[str]] = {}
    for cell in notebook.cells:
        if cell.get("cell_type") != "code" or not wanted(nbgrader_meta(cell)):
            continue
        for module, names in deploylab_imports(str(cell.source)):
            imports.setdefault(module, set()).update(names)
    return imports


def deploylab_imports(source: str) -> list[tuple[str, set[str]]]:
    """``(module, names)`` for each import of deploylab in ``source`` (strings given to
    ``__import__``/``import_module`` count as imports of that module)."""

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    found: list[tuple[str, set[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, set()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, {alias.name for alias in node.names}))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            name = getattr(function, "id", None) or getattr(function, "attr", None)
            if name in ("__import__", "import_module") and isinstance(node.args[0].value, str):
                found.append((node.args[0].value, set()))
    return [
        (module, names)
        for module, names in found
        if module == "deploylab" or module.startswith("deploylab.")
    ]


def reference_imports(
    notebook, references: dict[str, set[str]], allowed: dict[str, set[str]]
) -> list[str]:
    """The parts of the reference implementation (``references``, see
    :func:`reference_names`) that the student's own cells use, beyond what the setup cells
    import (``allowed``): the answer key used as an answer. Other deploylab imports (helpers
    a lab suggests for checking work) are not reported.

    A reference is found under any module of its package tree (a function the hidden tests
    take from ``deploylab.proxy`` is the same one in ``deploylab.proxy.cache``), and also
    without an import, by its name as an attribute or a string (``sys.modules[…].name``,
    ``helper.__globals__["name"]``): when a setup helper shares a module with the key, the
    sandbox can reach the key. What is found is for a person to look at, not a verdict.

    >>> import nbformat.v4 as v4
    >>> answer = v4.new_code_cell("from deploylab.autoscale import step_adjustment, Alarm")
    >>> reference_imports(v4.new_notebook(cells=[answer]),
    ...                   {"deploylab.autoscale": {"step_adjustment"}}, {})
    ['deploylab.autoscale.step_adjustment']
    >>> reached = v4.new_code_cell("key = sys.modules['deploylab.proxy.cache'].is_storable")
    >>> reference_imports(v4.new_notebook(cells=[reached]), {"deploylab.proxy": {"is_storable"}},
    ...                   {"deploylab.proxy.cache": {"http_date"}})
    ['deploylab.proxy.is_storable']
    """
    allowed_names = {name for names in allowed.values() for name in names}
    secret_names = {
        name: module
        for module, names in sorted(references.items())
        for name in sorted(names - allowed_names)
    }
    found: list[str] = []
    for cell in notebook.cells:
        meta = nbgrader_meta(cell)
        if cell.get("cell_type") != "code" or (meta.get("locked") and not meta.get("solution")):
            continue
        source = str(cell.get("source", ""))
        for module, names in deploylab_imports(source):
            for reference, reference_names_ in references.items():
                if not _same_package_tree(module, reference):
                    continue
                secret = reference_names_ - allowed.get(module, set()) - allowed_names
                if not names and (module not in allowed or secret):
                    found.append(reference)
                found += [f"{reference}.{name}" for name in sorted(names & secret)]
        found += [
            f"{secret_names[name]}.{name}" for name in _names_used(source) & set(secret_names)
        ]
    return sorted(set(found))


def _same_package_tree(module: str, other: str) -> bool:
    """Whether one of two dotted module names is the other or inside it.

    >>> _same_package_tree("deploylab.proxy.cache", "deploylab.proxy"), _same_package_tree(
    ...     "deploylab.proxy", "deploylab.vpc")
    (True, False)
    """
    return module == other or module.startswith(other + ".") or other.startswith(module + ".")


def _names_used(source: str) -> set[str]:
    """Names ``source`` reaches without importing them: attributes it reads, and strings used
    as a key or given to ``getattr``/``.get`` (``vars(m)["name"]``, ``getattr(m, "name")``).

    >>> sorted(_names_used("f = m.plan\\ng = d['key']\\nh = getattr(m, 'x')\\nprint('Peer')"))
    ['key', 'plan', 'x']
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, ast.Subscript):
            used.update(_strings([node.slice]))
        elif isinstance(node, ast.Call):
            function = node.func
            name = getattr(function, "id", None) or getattr(function, "attr", None)
            if name in ("getattr", "get", "__getattribute__", "__getitem__"):
                used.update(_strings(node.args))
    return used


def _strings(nodes: list[ast.expr]) -> set[str]:
    return {
        node.value
        for node in nodes
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
