"""What formgrader may not do on a classroom hub.

Formgrader's "Autograde" button runs nbgrader's own autograde inside the instructor's server:
the student's code would run as the instructor, with the instructor's files, network and
environment, outside deploylab's sandbox. On the hub the instructor's nbgrader configuration
replaces nbgrader's autograde steps with :class:`RefuseUnsandboxedAutograde`, which stops
before any student code runs and says which command grades safely.
"""

from __future__ import annotations

from nbconvert.preprocessors import Preprocessor

__all__ = ["REFUSAL", "RefuseUnsandboxedAutograde"]

REFUSAL = (
    "formgrader's autograde would run student code unsandboxed, as you; on this hub grade with "
    "'deploylab classroom grade LAB' in a terminal (bubblewrap sandbox, feedback released)"
)


class RefuseUnsandboxedAutograde(Preprocessor):
    """An nbgrader autograde step that refuses to run (see the module docstring)."""

    def preprocess(self, nb, resources):
        raise RuntimeError(REFUSAL)
