"""bubblewrap sandbox for grading kernels (work in progress)."""

from __future__ import annotations

import shutil

__all__ = ["check_available"]


def check_available() -> str:
    """Path of bwrap, or raise :class:`SandboxUnavailableError` saying how to get it."""
    from deploylab.grading.execute import SandboxUnavailableError

    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailableError(
            "bubblewrap (bwrap) not found: apt-get install bubblewrap, or pass --unsafe-no-sandbox"
        )
    raise SandboxUnavailableError(
        "the bubblewrap sandbox is not implemented yet; pass --unsafe-no-sandbox"
    )
