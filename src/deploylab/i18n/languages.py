"""The languages the workbook is published in: one registry used by the CLI, builder and widgets."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["LANGUAGES", "LANGUAGE_VARIABLE", "Language", "current_language", "language"]

#: Environment variable naming the language of the running workbook (``deploylab lab --lang``
#: sets it for JupyterLab and so for every kernel it starts; widgets read it for their labels).
LANGUAGE_VARIABLE = "DEPLOYLAB_LANG"


@dataclass(frozen=True)
class Language:
    """A language the workbook is written in, and where its edition lives.

    ``lessons_dir`` and ``labs_dir`` are siblings of ``lessons/`` and ``labs/`` so that a
    lesson's relative paths (``../assets/vpc``) mean the same thing in every edition.
    """

    code: str
    name: str
    jupyterlab_locale: str
    lessons_dir: str
    labs_dir: str
    glossary_page: str | None = None  # the glossary back to the source notes, if any

    @property
    def is_source(self) -> bool:
        """True for English, the language the notebooks are written in."""
        return self.code == "en"


LANGUAGES: dict[str, Language] = {
    "en": Language("en", "English", "en", "lessons", "labs"),
    "ko": Language("ko", "한국어", "ko_KR", "lessons-ko", "labs-ko", "assets/glossary.md"),
}


def language(code: str) -> Language:
    """The :class:`Language` for ``code``; a ``ValueError`` names the code and the choices.

    >>> language("ko").lessons_dir
    'lessons-ko'
    >>> language("fr")
    Traceback (most recent call last):
    ...
    ValueError: unknown language 'fr': expected one of en, ko
    """
    try:
        return LANGUAGES[code]
    except KeyError:
        raise ValueError(
            f"unknown language {code!r}: expected one of {', '.join(LANGUAGES)}"
        ) from None


def current_language() -> Language:
    """The workbook's language in this process: ``$DEPLOYLAB_LANG``, English when unset or unknown.

    >>> import os
    >>> os.environ["DEPLOYLAB_LANG"] = "ko"
    >>> current_language().code
    'ko'
    >>> os.environ["DEPLOYLAB_LANG"] = "xx"
    >>> current_language().code
    'en'
    >>> del os.environ["DEPLOYLAB_LANG"]
    """
    return LANGUAGES.get(os.environ.get(LANGUAGE_VARIABLE, "en"), LANGUAGES["en"])
