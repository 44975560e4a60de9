"""Translated editions of the workbook, single-sourced from the English notebooks.

Code cells exist once, in the English notebooks. The prose of each translated notebook comes
from a catalog (``i18n/<lang>/…/<notebook>.toml``) keyed by cell id, whose entries record a
hash of the English cell they were translated from; :mod:`deploylab.i18n.build` writes the
translated notebooks from the two and :mod:`deploylab.i18n.catalog` finds stale entries.
"""

from __future__ import annotations

from deploylab.i18n.languages import LANGUAGES, Language, current_language, language

__all__ = ["LANGUAGES", "Language", "current_language", "language"]
