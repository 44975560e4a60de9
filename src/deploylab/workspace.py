"""A learner's workspace: their own copy of the course material, kept in step without ever
overwriting their work.

``deploylab lab`` (one learner) and the classroom hub (one copy per student, made as that
student) both fill a workspace with :func:`sync_workspace`. The first run copies everything;
later runs add files the course gained, replace files the learner never changed, and when the
course ships a new version of a file the learner *did* change, keep theirs and put the new one
beside it (``01-proxies.course-update.ipynb``). What was written is remembered in a hidden
manifest (digests only), which is how "the learner changed it" is told apart from "the course
changed it". Notebooks are written with the kernel metadata JupyterLab would write on opening
them (:func:`as_jupyterlab_saves`), so opening one does not mark it changed.

Standard library only: the hub runs this file with Debian's ``/usr/bin/python3 -I`` as the
student (``python3 -I -c "$(cat workspace.py)" MATERIAL WORKSPACE PART...``), so a symlink a
student plants in their home can never make root write elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "HUB_PARTS",
    "LEARNER_PARTS",
    "MANIFEST",
    "NOTEBOOK_KERNELSPEC",
    "WorkspaceReport",
    "as_jupyterlab_saves",
    "beside_name",
    "sync_workspace",
]

#: What a learner's copy holds, as found in a checkout (the Korean edition is optional).
LEARNER_PARTS = ("lessons", "labs", "lessons-ko", "labs-ko", "assets")
#: What a student's copy on a classroom hub holds (labs come through the Assignments panel).
HUB_PARTS = ("lessons", "lessons-ko", "assets")
#: The kernel as JupyterLab writes it into a notebook it opens (ipykernel's ``python3``): every
#: committed notebook says the same, so opening one does not mark it changed.
NOTEBOOK_KERNELSPEC = {
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
    "name": "python3",
}
#: The hidden file (JupyterLab does not list dotfiles) recording what was copied, by digest.
MANIFEST = ".deploylab-workspace.json"
#: Files and folders that are never copied (editor and Python caches).
SKIPPED_NAMES = frozenset({".ipynb_checkpoints", "__pycache__", ".DS_Store"})


def beside_name(relative: str) -> str:
    """Where the course's newer version of a file the learner changed is put.

    >>> beside_name("lessons/01-proxies.ipynb")
    'lessons/01-proxies.course-update.ipynb'
    >>> beside_name("assets/vpc/README")
    'assets/vpc/README.course-update'
    """
    path = Path(relative)
    return path.with_name(f"{path.stem}.course-update{path.suffix}").as_posix()


@dataclass
class WorkspaceReport:
    """What one :func:`sync_workspace` run did, as paths relative to the workspace."""

    workspace: str
    copied: list[str] = field(default_factory=list)  # new to the learner
    updated: list[str] = field(default_factory=list)  # unchanged by the learner: replaced
    kept: list[tuple[str, str]] = field(default_factory=list)  # (learner's file, new beside)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why not touched)

    def lines(self) -> list[str]:
        """What a terminal should say (nothing when the workspace was already up to date)."""
        out = []
        if self.copied:
            out.append(f"copied {len(self.copied)} new files into {self.workspace}")
        if self.updated:
            out.append(f"updated {len(self.updated)} files you had not changed")
        for mine, new in self.kept:
            out.append(f"kept your {mine}; the course's new version is beside it: {new}")
        for path, why in self.skipped:
            out.append(f"left {path} alone: {why}")
        return out


def ipykernel_language_info(python_version: str | None = None) -> dict:
    """The ``language_info`` ipykernel reports (and JupyterLab writes into a notebook when the
    kernel connects) for a Python of ``python_version`` (default: this one)."""
    import platform

    return {
        "codemirror_mode": {"name": "ipython", "version": 3},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3",
        "version": python_version or platform.python_version(),
    }


def as_jupyterlab_saves(data: bytes, python_version: str | None = None) -> bytes:
    """A committed notebook's bytes as JupyterLab saves it once a Python kernel has connected:
    the kernel's ``kernelspec`` and full ``language_info`` (the committed files hold only the
    language name, the version being the learner's), in nbformat's layout. Anything that is
    not a notebook is returned as it is.

    >>> raw = b'{"cells": [], "metadata": {"language_info": {"name": "python"}}}'
    >>> saved = json.loads(as_jupyterlab_saves(raw, "3.11.2"))
    >>> saved["metadata"]["language_info"]["version"], saved["metadata"]["kernelspec"]["name"]
    ('3.11.2', 'python3')
    >>> as_jupyterlab_saves(b"not json")
    b'not json'
    """
    try:
        notebook = json.loads(data)
        metadata = notebook["metadata"]
    except (ValueError, KeyError, TypeError):
        return data
    if metadata.get("kernelspec", NOTEBOOK_KERNELSPEC).get("name") != "python3":
        return data
    metadata["kernelspec"] = dict(NOTEBOOK_KERNELSPEC)
    metadata["language_info"] = ipykernel_language_info(python_version)
    text = json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    return text.encode("utf-8")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _course_files(material: Path, parts) -> list[str]:
    files = []
    for part in parts:
        top = material / part
        if not top.is_dir():
            continue
        for directory, subdirectories, names in os.walk(top):
            subdirectories[:] = sorted(name for name in subdirectories if name not in SKIPPED_NAMES)
            for name in sorted(names):
                path = Path(directory) / name
                if name not in SKIPPED_NAMES and path.is_file() and not path.is_symlink():
                    files.append(path.relative_to(material).as_posix())
    return files


def _write_new(path: Path, data: bytes) -> None:
    """Write ``path`` through a fresh temporary file (never through a planted symlink)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _read_manifest(workspace: Path) -> dict[str, str]:
    try:
        data = json.loads((workspace / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def sync_workspace(material: Path, workspace: Path, parts=LEARNER_PARTS) -> WorkspaceReport:
    """Bring ``workspace`` up to date with the course ``material`` (its ``parts`` folders);
    the learner's changed files are never overwritten.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as course, tempfile.TemporaryDirectory() as mine:
    ...     course, mine = Path(course), Path(mine)
    ...     _ = (course / "lessons").mkdir(), (course / "lessons" / "a.ipynb").write_text("v1")
    ...     sync_workspace(course, mine).copied
    ...     _ = (mine / "lessons" / "a.ipynb").write_text("my answer")
    ...     _ = (course / "lessons" / "a.ipynb").write_text("v2")
    ...     sync_workspace(course, mine).kept
    ...     (mine / "lessons" / "a.ipynb").read_text()
    ['lessons/a.ipynb']
    [('lessons/a.ipynb', 'lessons/a.course-update.ipynb')]
    'my answer'
    """
    material, workspace = Path(material), Path(workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(workspace)
    report = WorkspaceReport(str(workspace))
    for relative in _course_files(material, parts):
        data = (material / relative).read_bytes()
        if relative.endswith(".ipynb"):
            data = as_jupyterlab_saves(data)
        shipped = hashlib.sha256(data).hexdigest()
        target = workspace / relative
        if target.is_symlink() or (target.exists() and not target.is_file()):
            report.skipped.append((relative, "not a regular file"))
            continue
        if not target.exists():
            _write_new(target, data)
            report.copied.append(relative)
            manifest[relative] = shipped
            continue
        current = _digest(target)
        known = manifest.get(relative)
        if current == shipped:
            manifest[relative] = shipped
        elif current == known:  # the learner never changed it: take the course's new version
            _write_new(target, data)
            report.updated.append(relative)
            manifest[relative] = shipped
        elif known != shipped:  # the learner changed it and the course has a version they lack
            beside = beside_name(relative)
            beside_path = workspace / beside
            if beside_path.is_symlink() or (
                beside_path.exists() and _digest(beside_path) not in (shipped, manifest.get(beside))
            ):
                report.skipped.append((beside, "you changed it; the course's update is not saved"))
            else:
                if not beside_path.exists() or _digest(beside_path) != shipped:
                    _write_new(beside_path, data)
                report.kept.append((relative, beside))
                manifest[beside] = shipped
            manifest[relative] = shipped
    _write_new(
        workspace / MANIFEST, (json.dumps(manifest, indent=0, sort_keys=True) + "\n").encode()
    )
    return report


def _main(arguments: list[str]) -> int:
    """``MATERIAL WORKSPACE [PART...]``: sync, then print the report as JSON (for the hub)."""
    material, workspace, *parts = arguments
    report = sync_workspace(Path(material), Path(workspace), parts or LEARNER_PARTS)
    print(json.dumps(report.__dict__))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
