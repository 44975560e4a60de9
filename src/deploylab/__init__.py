"""deploylab — a workbook and grader for how traffic reaches a service.

Topics live in subpackages (``proxy``, ``balancer``, ``autoscale``, ``vpc``, ``deploy``);
views in ``deploylab.widgets``; the grading pipeline in ``deploylab.grading``.
"""

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__``, looked up when first asked for: reading the installed package's
    metadata costs a few tenths of a second, which every grading kernel, trusted-test
    process and nginx lab sandbox would otherwise pay on ``import deploylab``."""
    if name != "__version__":
        raise AttributeError(f"module 'deploylab' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("deploylab")
    except PackageNotFoundError:  # running from a source tree that is not installed
        found = "0.0.0"
    globals()["__version__"] = found
    return found
