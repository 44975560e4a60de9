"""deploylab — a workbook and grader for how traffic reaches a service.

Topics live in subpackages (``proxy``, ``balancer``, ``autoscale``, ``vpc``, ``deploy``);
views in ``deploylab.widgets``; the grading pipeline in ``deploylab.grading``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deploylab")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
