"""The JavaScript an exported lesson inlines to run without a kernel or a network.

nbconvert's HTML export embeds the widget state, then loads require.js, the
``@jupyter-widgets/html-manager`` bundle and MathJax from public CDNs; offline, the widgets
stay blank and the formulas raw.
These bundles are too large to vendor (the manager alone is 3.6 MB), so they are fetched
once from npm, at pinned versions, into the virtual environment (``tools/test.sh`` does it at
set-up; ``deploylab export-html`` does it on first use), and then inlined into every export.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Where the fetched packages live: inside the virtual environment, so removing it removes them.
ASSETS_DIR = Path(sys.prefix) / "share" / "deploylab" / "widget-manager"


@dataclass(frozen=True)
class NpmFile:
    """One file an export inlines, from a pinned npm package, and why it is needed."""

    package: str
    version: str
    licence: str
    path: str
    why: str

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    def location(self, assets_dir: Path = ASSETS_DIR) -> Path:
        return assets_dir / "node_modules" / self.package / self.path


#: In the order the page loads them. The widget libraries themselves (anywidget, bqplot) are
#: not here: their own Python packages install their front end as an AMD module
#: (:func:`widget_module_script`), at the version their Python side speaks.
NPM_FILES = (
    NpmFile("requirejs", "2.3.7", "MIT", "require.js", "the AMD loader the manager expects"),
    NpmFile(
        "@jupyter-widgets/html-manager",
        "1.0.15",
        "BSD-3-Clause",
        "dist/embed-amd.js",
        "ipywidgets' base and controls models and the manager that renders embedded state",
    ),
    NpmFile(
        "mathjax",
        "3.2.2",
        "Apache-2.0",
        "es5/tex-svg-full.js",
        "typesets the lessons' TeX as SVG, with every extension and no font file to fetch",
    ),
)


class WidgetManagerMissingError(FileNotFoundError):
    """The widget manager bundles are not fetched and cannot be (no npm, no registry)."""


def missing_files(assets_dir: Path = ASSETS_DIR) -> list[NpmFile]:
    """The pinned files not yet in ``assets_dir``."""
    return [npm_file for npm_file in NPM_FILES if not npm_file.location(assets_dir).is_file()]


def fetch(assets_dir: Path = ASSETS_DIR, log=print) -> Path:
    """Unpack the pinned npm packages into ``assets_dir`` (once); returns ``assets_dir``.

    ``npm pack`` downloads each package's own tarball (checked against the registry's
    integrity hash), without the 130 MB of dependencies the bundles already contain. Raises
    :class:`WidgetManagerMissingError` naming what is missing and how to get it.
    """
    if not missing_files(assets_dir):
        return assets_dir
    npm = shutil.which("npm")
    specs = sorted({npm_file.spec for npm_file in NPM_FILES})
    if npm is None:
        raise WidgetManagerMissingError(
            f"the widget manager ({', '.join(specs)}) is not in {assets_dir} and npm is missing:"
            " apt-get install nodejs npm, then run deploylab export-html --fetch-only"
        )
    log(f"export: fetching {', '.join(specs)} from npm into {assets_dir} (once)")
    with tempfile.TemporaryDirectory() as download:
        result = subprocess.run(
            [npm, "pack", "--silent", "--json", "--pack-destination", download, *specs],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise WidgetManagerMissingError(
                f"npm pack {' '.join(specs)} failed (exit {result.returncode}):"
                f" {result.stderr[-800:]}"
            )
        for packed in json.loads(result.stdout):
            target = assets_dir / "node_modules" / packed["name"]
            with tarfile.open(Path(download) / packed["filename"]) as archive:
                archive.extractall(target.parent / "_unpacking", filter="data")
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            (target.parent / "_unpacking" / "package").rename(target)
            shutil.rmtree(target.parent / "_unpacking")
    still_missing = missing_files(assets_dir)
    if still_missing:
        raise WidgetManagerMissingError(
            f"npm pack gave no {[str(f.location(assets_dir)) for f in still_missing]}"
        )
    return assets_dir


#: Widget modules the manager bundle already defines.
BUILT_IN_MODULES = frozenset(
    {"@jupyter-widgets/base", "@jupyter-widgets/controls", "@jupyter-widgets/output"}
)

#: A classic-notebook extension is one anonymous AMD module; inlined, it must carry its name.
_ANONYMOUS_DEFINE = re.compile(r"\bdefine\(\[")


def widget_modules(widget_state: dict) -> list[str]:
    """The widget modules an embedded widget state asks for, beyond the manager's own.

    >>> widget_modules({"state": {"a": {"model_module": "anywidget", "state": {}},
    ...                           "b": {"model_module": "@jupyter-widgets/controls"}}})
    ['anywidget']
    """
    names = set()
    for model in widget_state.get("state", {}).values():
        names.add(model.get("model_module"))
        names.add(model.get("state", {}).get("_view_module"))
    return sorted(name for name in names - BUILT_IN_MODULES if name)


def widget_module_script(module: str) -> str:
    """The front end of widget ``module`` as a named AMD module, from its Python package.

    Widget packages install ``share/jupyter/nbextensions/<module>/index.js`` (the classic
    notebook's format, AMD) next to their Python code; a ``ValueError`` names a module that
    has none there.
    """
    from jupyter_core.paths import jupyter_path

    for directory in jupyter_path("nbextensions"):
        script = Path(directory) / module / "index.js"
        if script.is_file():
            text = script.read_text(encoding="utf-8")
            if len(_ANONYMOUS_DEFINE.findall(text)) != 1:
                raise ValueError(
                    f"{script} is not one anonymous AMD module (define([...], ...)): cannot"
                    f" inline widget module {module!r}"
                )
            return _ANONYMOUS_DEFINE.sub(f"define({json.dumps(module)}, [", text, count=1)
    raise ValueError(
        f"widget module {module!r} has no nbextensions/{module}/index.js in"
        f" {jupyter_path('nbextensions')}: its widgets cannot be exported"
    )


#: How the manager bundle names a font file it ships beside itself (Font Awesome, for icons).
_FONT_REFERENCE = re.compile(r'\b\w+\.p\+"(\w+\.woff2)"')


def _fonts_inlined(bundle: str, dist: Path) -> str:
    """``bundle`` with each WOFF2 font it loads from its own directory made a ``data:`` URL.

    Chromium takes the WOFF2 source first, so the other formats are never fetched.
    """

    def data_url(match: re.Match) -> str:
        font = (dist / match.group(1)).read_bytes()
        return json.dumps(f"data:font/woff2;base64,{base64.b64encode(font).decode()}")

    return _FONT_REFERENCE.sub(data_url, bundle)


def scripts(assets_dir: Path = ASSETS_DIR) -> dict[str, str]:
    """The text of each pinned file, keyed by package name, fetching them first if needed."""
    fetch(assets_dir)
    texts = {
        npm_file.package: npm_file.location(assets_dir).read_text(encoding="utf-8")
        for npm_file in NPM_FILES
    }
    manager = NPM_FILES[1]
    texts[manager.package] = _fonts_inlined(
        texts[manager.package], manager.location(assets_dir).parent
    )
    return texts
