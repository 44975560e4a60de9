"""The public surface is explicit: every topic package has a curated ``__all__`` whose names
exist and explain themselves (in the spirit of httpx's tests/test_exported_members.py)."""

from __future__ import annotations

import importlib
import inspect

import pytest

TOPIC_PACKAGES = ["deploylab.vpc", "deploylab.proxy", "deploylab.balancer", "deploylab.autoscale"]


def available_topics():
    found = []
    for name in TOPIC_PACKAGES:
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError:
            continue
    return found


@pytest.mark.parametrize("package", available_topics(), ids=lambda module: module.__name__)
def test_topic_exports_only_documented_names_that_exist(package):
    exported = getattr(package, "__all__", None)
    assert exported, f"{package.__name__} has no __all__"
    assert len(exported) == len(set(exported)), "__all__ lists a name twice"
    for name in exported:
        member = getattr(package, name)  # AttributeError = a name that does not exist
        if inspect.isclass(member) or inspect.isfunction(member):
            assert inspect.getdoc(member), f"{package.__name__}.{name} has no docstring"
        assert not name.startswith("_") or name == "__version__"


def test_package_docstring_and_version():
    import deploylab

    assert deploylab.__doc__
    assert deploylab.__version__.count(".") == 2
