"""The learner's workspace: a copy of the course that ``deploylab lab`` serves, kept in step
without ever overwriting the learner's work; the checkout (with ``autograder/``) is never
served, and regenerating ``labs/`` cannot touch what a learner saved.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploylab.workbook import (
    WorkspaceError,
    check_workspace,
    find_workbook_root,
    prepare_learner_workspace,
)
from deploylab.workspace import LEARNER_PARTS, MANIFEST, NOTEBOOK_KERNELSPEC, sync_workspace

ROOT = Path(__file__).resolve().parents[1]


def notebooks_in(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in str(path))


@pytest.fixture
def course(tmp_path) -> Path:
    """A small course tree in the checkout's layout."""
    root = tmp_path / "course"
    (root / "lessons").mkdir(parents=True)
    (root / "labs" / "ip-basics").mkdir(parents=True)
    (root / "assets" / "vpc").mkdir(parents=True)
    (root / "lessons" / "00-start-here.ipynb").write_text("start v1")
    (root / "lessons" / "01-proxies.ipynb").write_text("proxies v1")
    (root / "labs" / "ip-basics" / "ip-basics.ipynb").write_text("lab v1")
    (root / "assets" / "vpc" / "two-tier.toml").write_text("design v1")
    (root / "lessons" / ".ipynb_checkpoints").mkdir()
    (root / "lessons" / ".ipynb_checkpoints" / "x.ipynb").write_text("not course material")
    return root


def test_first_run_copies_the_course_and_a_second_changes_nothing(course, tmp_path):
    workspace = tmp_path / "mine"
    report = sync_workspace(course, workspace)
    assert sorted(report.copied) == [
        "assets/vpc/two-tier.toml",
        "labs/ip-basics/ip-basics.ipynb",
        "lessons/00-start-here.ipynb",
        "lessons/01-proxies.ipynb",
    ]
    assert (workspace / "labs" / "ip-basics" / "ip-basics.ipynb").read_text() == "lab v1"
    assert not (workspace / "lessons" / ".ipynb_checkpoints").exists()
    again = sync_workspace(course, workspace)
    assert again.copied == again.updated == again.kept == again.skipped == []
    assert again.lines() == []


def test_the_learners_changes_are_kept_and_the_course_update_is_put_beside(course, tmp_path):
    workspace = tmp_path / "mine"
    sync_workspace(course, workspace)
    mine = workspace / "labs" / "ip-basics" / "ip-basics.ipynb"
    mine.write_text("my answers")
    # The course ships a new lab, a new lesson, and a new version of an untouched lesson.
    (course / "labs" / "ip-basics" / "ip-basics.ipynb").write_text("lab v2")
    (course / "lessons" / "01-proxies.ipynb").write_text("proxies v2")
    (course / "lessons" / "02-load-balancing.ipynb").write_text("lb v1")
    report = sync_workspace(course, workspace)
    assert mine.read_text() == "my answers"
    beside = workspace / "labs" / "ip-basics" / "ip-basics.course-update.ipynb"
    assert beside.read_text() == "lab v2"
    assert report.kept == [
        ("labs/ip-basics/ip-basics.ipynb", "labs/ip-basics/ip-basics.course-update.ipynb")
    ]
    assert report.updated == ["lessons/01-proxies.ipynb"]
    assert (workspace / "lessons" / "01-proxies.ipynb").read_text() == "proxies v2"
    assert report.copied == ["lessons/02-load-balancing.ipynb"]
    said = "\n".join(report.lines())
    assert "kept your labs/ip-basics/ip-basics.ipynb" in said and "course-update" in said
    # Said once: the next run has nothing new to report, and still keeps the learner's file.
    assert sync_workspace(course, workspace).lines() == []
    assert mine.read_text() == "my answers"


def test_a_learners_edit_of_the_update_beside_is_not_overwritten_either(course, tmp_path):
    workspace = tmp_path / "mine"
    sync_workspace(course, workspace)
    (workspace / "lessons" / "01-proxies.ipynb").write_text("my notes")
    (course / "lessons" / "01-proxies.ipynb").write_text("proxies v2")
    sync_workspace(course, workspace)
    beside = workspace / "lessons" / "01-proxies.course-update.ipynb"
    beside.write_text("my notes on v2")
    (course / "lessons" / "01-proxies.ipynb").write_text("proxies v3")
    report = sync_workspace(course, workspace)
    assert beside.read_text() == "my notes on v2"
    assert (workspace / "lessons" / "01-proxies.ipynb").read_text() == "my notes"
    assert report.skipped and "not saved" in report.skipped[0][1]


def test_a_symlink_in_the_workspace_is_never_written_through(course, tmp_path):
    workspace = tmp_path / "mine"
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("precious")
    (workspace / "lessons").mkdir(parents=True)
    (workspace / "lessons" / "01-proxies.ipynb").symlink_to(outside)
    report = sync_workspace(course, workspace)
    assert outside.read_text() == "precious"
    assert ("lessons/01-proxies.ipynb", "not a regular file") in report.skipped


def test_files_there_before_the_first_sync_are_the_learners(course, tmp_path):
    """A workspace made before the manifest existed (or by hand): differing files are kept."""
    workspace = tmp_path / "mine"
    (workspace / "lessons").mkdir(parents=True)
    (workspace / "lessons" / "00-start-here.ipynb").write_text("my old copy")
    report = sync_workspace(course, workspace)
    assert (workspace / "lessons" / "00-start-here.ipynb").read_text() == "my old copy"
    assert report.kept == [
        ("lessons/00-start-here.ipynb", "lessons/00-start-here.course-update.ipynb")
    ]


def test_the_hub_runs_the_same_routine_as_a_standard_library_script(course, tmp_path):
    """The classroom runs this module's source with ``python3 -I -c`` as the student."""
    import deploylab.workspace as routine

    workspace = tmp_path / "hub-home" / "deploylab"
    completed = subprocess.run(
        [sys.executable, "-I", "-S", "-c", Path(routine.__file__).read_text(), str(course),
         str(workspace), "lessons", "assets"],
        capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]},
    )  # fmt: skip
    report = json.loads(completed.stdout)
    assert sorted(report["copied"]) == [
        "assets/vpc/two-tier.toml",
        "lessons/00-start-here.ipynb",
        "lessons/01-proxies.ipynb",
    ]
    assert not (workspace / "labs").exists()
    assert (workspace / MANIFEST).is_file()


# -- deploylab lab ---------------------------------------------------------------------------
def test_the_workspace_may_not_overlap_the_checkout(tmp_path):
    for inside in (ROOT, ROOT / "lessons", ROOT / "workspace", ROOT.parent):
        with pytest.raises(WorkspaceError, match=str(inside.resolve())):
            check_workspace(inside, ROOT)
    assert check_workspace(tmp_path / "ws", ROOT) == (tmp_path / "ws").resolve()


def test_a_workspace_is_never_taken_for_the_workbook(tmp_path):
    workspace = prepare_learner_workspace(ROOT, tmp_path / "ws", log=lambda _line: None)
    assert (workspace / "lessons" / "00-start-here.ipynb").is_file()
    assert not (workspace / "autograder").exists()
    assert find_workbook_root(workspace / "lessons") == ROOT  # the editable install's checkout


def test_the_workspace_holds_every_edition_and_the_assets_lessons_link_to(tmp_path):
    workspace = prepare_learner_workspace(ROOT, tmp_path / "ws", log=lambda _line: None)
    for part in LEARNER_PARTS:
        if (ROOT / part).is_dir():
            assert notebooks_in(workspace / part) == [
                workspace / path.relative_to(ROOT) for path in notebooks_in(ROOT / part)
            ]
    # Lesson 05 reads ../assets/vpc relative to itself.
    assert (workspace / "assets" / "vpc" / "two-tier.toml").is_file()


def test_release_regenerates_the_checkouts_labs_never_the_learners(tmp_path):
    """`deploylab grade release` writes labs/ in the checkout; the learner's saved lab (in
    the workspace) is untouched, and the next `deploylab lab` keeps it too."""
    checkout = tmp_path / "checkout"
    for part in ("lessons", "labs", "assets", "autograder"):
        shutil.copytree(ROOT / part, checkout / part, ignore=shutil.ignore_patterns("*.db"))
    workspace = prepare_learner_workspace(checkout, tmp_path / "ws", log=lambda _line: None)
    saved = workspace / "labs" / "ip-basics" / "ip-basics.ipynb"
    saved.write_text(saved.read_text().replace("raise NotImplementedError()", "return 42"))
    mine = saved.read_bytes()
    # The course changes the lab, and the instructor regenerates labs/.
    source = checkout / "autograder" / "source" / "ip-basics" / "ip-basics.ipynb"
    source.write_text(source.read_text().replace("IPv4", "IPv4 (updated)", 1))
    completed = subprocess.run(
        [sys.executable, "-m", "deploylab.cli", "grade", "release", "ip-basics",
         "--course", str(checkout / "autograder"), "--labs-dir", str(checkout / "labs")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "IPv4 (updated)" in (checkout / "labs" / "ip-basics" / "ip-basics.ipynb").read_text()
    assert saved.read_bytes() == mine
    lines = []
    prepare_learner_workspace(checkout, workspace, log=lines.append)
    assert saved.read_bytes() == mine
    assert any("kept your labs/ip-basics/ip-basics.ipynb" in line for line in lines), lines
    beside = workspace / "labs" / "ip-basics" / "ip-basics.course-update.ipynb"
    assert "IPv4 (updated)" in beside.read_text()


def test_every_committed_notebook_names_the_kernel_as_jupyterlab_does():
    """JupyterLab writes the running kernel's spec into a notebook it opens; a notebook that
    says otherwise is changed (and marked unsaved) the moment it is opened."""
    from jupyter_client.kernelspec import KernelSpecManager

    running = KernelSpecManager().get_kernel_spec("python3")
    assert NOTEBOOK_KERNELSPEC["display_name"] == running.display_name
    assert NOTEBOOK_KERNELSPEC["language"] == running.language
    folders = ["lessons", "labs", "lessons-ko", "labs-ko", "autograder/source"]
    checked = 0
    for folder in folders:
        for path in notebooks_in(ROOT / folder):
            kernelspec = json.loads(path.read_text(encoding="utf-8"))["metadata"]["kernelspec"]
            assert kernelspec == NOTEBOOK_KERNELSPEC, path
            checked += 1
    assert checked >= 20


def test_a_copied_notebook_carries_what_the_real_kernel_reports():
    """JupyterLab writes the kernel's ``language_info`` when it connects; the workspace copy
    already has it (from a real ipykernel here), so opening it changes nothing."""
    from jupyter_client.manager import start_new_kernel

    from deploylab.workspace import as_jupyterlab_saves

    manager, client = start_new_kernel(kernel_name="python3")
    try:
        reply = client.kernel_info(reply=True, timeout=120)["content"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    lesson = (ROOT / "lessons" / "00-start-here.ipynb").read_bytes()
    copied = json.loads(as_jupyterlab_saves(lesson))
    assert copied["metadata"]["language_info"] == reply["language_info"]
    assert copied["cells"] == json.loads(lesson)["cells"]
