"""``deploylab build-lite``: the parts of the workbook that need no sockets, in the browser alone.

A JupyterLite site (``jupyterlite-core`` with ``jupyterlite-pyodide-kernel``) whose Pyodide
kernel is served from the site itself, so nothing is fetched from a CDN at run time:

* the Pyodide core (interpreter, standard library, ``pyodide-lock.json``) from npm's
  ``pyodide`` package, at the version the kernel pins (``PYODIDE_VERSION``);
* the pure-Python wheels the kernel loads from that lock at start-up (``micropip``, IPython
  and its dependencies, jedi), fetched from PyPI at the lock's versions. Pyodide repacks its
  wheels, so their hashes differ from PyPI's: the lock is rewritten with the hashes of the
  wheels actually served (Pyodide checks them);
* piplite wheels for what the notebook installs: ``deploylab`` itself (built from the
  workbook) and the widget stack (``comm``, ``ipywidgets``, ``anywidget``…), at the versions
  installed here, so the Python side speaks the front ends' protocol.

Left out, and why: everything that opens a socket (servers, proxies, balancers, nginx, the
autoscaling controller), ``httptools``/``uvloop``/``psutil`` (C extensions with no Pyodide
build on a registry), and ``numpy``/``matplotlib``, which Pyodide builds but publishes only in
its full distribution (a GitHub release asset, not on npm or PyPI): so ``deploylab.autoscale``
and the lessons' figures do not run here. See ``docs/take-home.md``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

__all__ = [
    "BUILDER_REQUIREMENTS",
    "KERNEL_PACKAGES",
    "LITE_CACHE",
    "PIPLITE_PACKAGES",
    "LiteBuildError",
    "build_lite",
]

#: Downloads kept between builds (inside the virtual environment, like the widget manager).
LITE_CACHE = Path(sys.prefix) / "share" / "deploylab" / "lite"

#: What the Pyodide kernel loads from ``pyodide-lock.json`` as it starts (with their
#: dependencies, read from the lock), plus what ``anywidget`` needs from it.
KERNEL_PACKAGES = ("micropip", "packaging", "ipython", "jedi", "typing-extensions")

#: Installed in the page with ``%pip install --no-deps`` (piplite): deploylab's declared
#: dependencies include JupyterLab and C extensions that cannot be installed there.
PIPLITE_PACKAGES = ("comm", "ipywidgets", "jupyterlab_widgets", "anywidget", "psygnal")

#: The notebook the site opens, shipped with this module.
LITE_NOTEBOOK = Path(__file__).with_name("lite") / "vpc-in-the-browser.ipynb"


class LiteBuildError(RuntimeError):
    """A step of the browser-only build failed; the message names the step and the package."""


def _run(command: list[str], what: str, cwd: Path | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=cwd)
    if result.returncode != 0:
        raise LiteBuildError(f"{what} failed (exit {result.returncode}): {result.stderr[-1500:]}")
    return result.stdout


#: The site builder, installed into an environment of its own (:func:`builder_python`): the
#: kernel package also installs a JupyterLab extension that fails to load in the workbook's
#: own JupyterLab ("Shared module @jupyterlite/services doesn't exist"), so it must not be
#: installed beside it.
BUILDER_REQUIREMENTS = (
    "jupyterlite-core==0.8.6",
    "jupyterlite-pyodide-kernel==0.8.6",
    "jupyter-server>=2",  # jupyterlite-core needs it to add notebooks to the site
)


def builder_python(cache: Path) -> Path:
    """The Python of the builder's environment in ``cache`` (created once)."""
    venv = cache / "builder"
    python = venv / "bin" / "python"
    marker = venv / "requirements.txt"
    if (
        not python.exists()
        or not marker.is_file()
        or marker.read_text() != "\n".join(BUILDER_REQUIREMENTS)
    ):
        _run([sys.executable, "-m", "venv", "--clear", str(venv)], "creating the builder venv")
        _run(
            [str(python), "-m", "pip", "install", "--quiet", *BUILDER_REQUIREMENTS],
            f"pip install {' '.join(BUILDER_REQUIREMENTS)}",
        )
        marker.write_text("\n".join(BUILDER_REQUIREMENTS))
    return python


def _pyodide_versions(python: Path) -> tuple[str, str]:
    """(Pyodide's version, its Python's) as the installed kernel pins them."""
    out = _run(
        [
            str(python),
            "-c",
            "from jupyterlite_pyodide_kernel.constants import "
            "PYODIDE_VERSION as v, PYODIDE_PYTHON_VERSION as p; print(v, p)",
        ],
        "reading the kernel's Pyodide version",
    )
    pyodide_version, python_version = out.split()
    return pyodide_version, python_version


def fetch_pyodide_core(cache: Path, pyodide_version: str) -> Path:
    """npm's ``pyodide@VERSION`` unpacked into ``cache`` (once); returns its folder."""
    target = cache / f"pyodide-{pyodide_version}"
    if (target / "pyodide-lock.json").is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise LiteBuildError("npm is missing: apt-get install nodejs npm (for npm's pyodide)")
    with tempfile.TemporaryDirectory() as download:
        out = _run(
            [
                npm,
                "pack",
                "--silent",
                "--json",
                "--pack-destination",
                download,
                f"pyodide@{pyodide_version}",
            ],
            f"npm pack pyodide@{pyodide_version}",
        )
        packed = json.loads(out)[0]["filename"]
        with tarfile.open(Path(download) / packed) as archive:
            archive.extractall(download, filter="data")
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(Path(download) / "package"), target)
    return target


def _pip_download(specs: list[str], into: Path, python: str) -> None:
    """Pure-Python wheels (``py3-none-any``) of ``specs`` from PyPI into ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            python,
            "--implementation",
            "py",
            "--platform",
            "any",
            "--dest",
            str(into),
            *specs,
        ],
        f"pip download {' '.join(specs)}",
    )


def lock_closure(lock: dict, names: tuple[str, ...]) -> list[dict]:
    """The lock entries of ``names`` and everything they depend on.

    >>> lock = {"packages": {"a": {"name": "a", "depends": ["b"]}, "b": {"name": "b"},
    ...                      "c": {"name": "c"}}}
    >>> [entry["name"] for entry in lock_closure(lock, ("a",))]
    ['a', 'b']
    """
    packages = {key.lower().replace("_", "-"): entry for key, entry in lock["packages"].items()}
    wanted: dict[str, dict] = {}
    todo = [name.lower().replace("_", "-") for name in names]
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        if name not in packages:
            raise LiteBuildError(
                f"{name!r} is not in pyodide-lock.json: expected a Pyodide package"
            )
        wanted[name] = packages[name]
        todo += [d.lower().replace("_", "-") for d in packages[name].get("depends", [])]
    return sorted(wanted.values(), key=lambda entry: entry["name"])


def pyodide_distribution(cache: Path, into: Path, pyodide_version: str, python: str) -> Path:
    """The Pyodide the site serves: npm's core plus the kernel's wheels from PyPI, with the
    lock's hashes rewritten to the wheels served; returns ``into``."""
    core = fetch_pyodide_core(cache, pyodide_version)
    lock = json.loads((core / "pyodide-lock.json").read_text())
    entries = lock_closure(lock, KERNEL_PACKAGES)
    wheels = cache / "pypi"
    missing = [e for e in entries if not (wheels / e["file_name"]).is_file()]
    if missing:
        _pip_download([f"{e['name']}=={e['version']}" for e in missing], wheels, python)
    into.mkdir(parents=True, exist_ok=True)
    for name in (
        "pyodide.mjs",
        "pyodide.asm.mjs",
        "pyodide.asm.wasm",
        "python_stdlib.zip",
        "pyodide.js",
    ):
        shutil.copy2(core / name, into / name)
    for entry in entries:
        wheel = wheels / entry["file_name"]
        if not wheel.is_file():
            raise LiteBuildError(
                f"PyPI has no {entry['file_name']} (Pyodide's {entry['name']} {entry['version']})"
            )
        entry["sha256"] = hashlib.sha256(wheel.read_bytes()).hexdigest()
        shutil.copy2(wheel, into / wheel.name)
    (into / "pyodide-lock.json").write_text(json.dumps(lock))
    return into


def piplite_wheels(cache: Path, root: Path, into: Path, python: str) -> list[Path]:
    """deploylab's wheel (built from ``root``) and the widget stack's, at the installed
    versions; returns their paths."""
    into.mkdir(parents=True, exist_ok=True)
    specs = [f"{name}=={version(name)}" for name in PIPLITE_PACKAGES]
    _pip_download(specs, cache / "piplite", python)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(into),
            str(root),
        ],
        "building the deploylab wheel",
    )
    found = []
    for name in PIPLITE_PACKAGES:
        prefix = name.replace("-", "_").lower() + "-" + version(name) + "-"
        matches = [
            p for p in (cache / "piplite").glob("*.whl") if p.name.lower().startswith(prefix)
        ]
        if not matches:
            raise LiteBuildError(f"no pure-Python wheel of {name} {version(name)} on PyPI")
        found.append(Path(shutil.copy2(matches[0], into / matches[0].name)))
    return [*found, *sorted(into.glob("deploylab-*.whl"))]


def build_lite(out: Path, root: Path, cache: Path = LITE_CACHE, log=print) -> Path:
    """Write the browser-only site into ``out``; returns the notebook page's path in it."""
    with tempfile.TemporaryDirectory() as work:
        lite_dir = Path(work)
        builder = builder_python(cache)
        pyodide_version, python = _pyodide_versions(builder)
        log(f"build-lite: Pyodide {pyodide_version} from npm, the kernel's wheels from PyPI")
        pyodide_distribution(cache, lite_dir / "static" / "pyodide", pyodide_version, python)
        log("build-lite: piplite wheels (deploylab and the widget stack)")
        wheels = piplite_wheels(cache, root, lite_dir / "wheels", python)
        (lite_dir / "files").mkdir()
        shutil.copy2(LITE_NOTEBOOK, lite_dir / "files" / LITE_NOTEBOOK.name)
        command = [
            str(builder),
            "-m",
            "jupyterlite_core",
            "build",
            "--output-dir",
            str(out.resolve()),
            "--contents",
            "files",
        ]
        for wheel in wheels:
            command += ["--piplite-wheels", str(wheel)]
        for name in ("jupyterlab_widgets", "anywidget"):  # their JupyterLab front ends
            wheel = next(w for w in wheels if w.name.lower().startswith(name))
            command.append(f"--LiteBuildConfig.federated_extensions={wheel}")
        log("build-lite: jupyter lite build")
        shutil.rmtree(out, ignore_errors=True)
        _run(command, "jupyter lite build", cwd=lite_dir)
    return out / "lab" / "index.html"
