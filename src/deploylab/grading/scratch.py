"""Scratch directories for one submission: a bounded tmpfs as root, a plain directory
otherwise, always removed afterwards, however deep or hostile the tree left in it."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from deploylab.grading.limits import Limits

__all__ = ["is_scratch_mount", "remove_tree", "scratch_directory"]


def is_scratch_mount(path: Path) -> bool:
    """Is ``path`` itself a tmpfs mounted by :func:`scratch_directory`?"""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) > 9 and fields[4] == str(path):
            separator = fields.index("-")
            return fields[separator + 1] == "tmpfs" and fields[separator + 2] == _SCRATCH_SOURCE
    return False


_SCRATCH_SOURCE = "deploylab-scratch"


@contextlib.contextmanager
def scratch_directory(limits: Limits, prefix: str = "dl-") -> Iterator[Path]:
    """A fresh scratch directory for one submission, always removed afterwards.

    As root it is a tmpfs of ``limits.tmp_bytes`` bytes and ``limits.max_scratch_files``
    files (a student cannot fill the host's disk or its inode table), and removal is one
    unmount, however deep the tree the student left. Without root it is a plain directory,
    removed by :func:`remove_tree`; the file-size rlimit still caps each file.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    mounted = False
    if os.geteuid() == 0:
        options = (
            f"size={limits.tmp_bytes},nr_inodes={limits.max_scratch_files},mode=0700,nosuid,nodev"
        )
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, _SCRATCH_SOURCE, str(path)],
            capture_output=True,
            check=False,
        )
        mounted = done.returncode == 0
    try:
        yield path
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(path)], capture_output=True, check=False)
            with contextlib.suppress(OSError):
                path.rmdir()
        remove_tree(path)


def remove_tree(path: Path) -> None:
    """Delete ``path`` and everything under it without recursion and without following
    symlinks: nested directories are first moved up to ``path`` itself, so a tree thousands
    of levels deep is removed with two open directories at a time. Never raises.
    """
    try:
        root = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        return
    try:
        os.fchmod(root, 0o700)
        for _ in range(1_000_000):  # bounded: each pass removes or flattens something
            with os.scandir(root) as entries:
                names = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
            if not names:
                break
            for name, is_directory in names:
                if not is_directory:
                    with contextlib.suppress(OSError):
                        os.unlink(name, dir_fd=root)
                    continue
                _flatten_one(root, name)
    finally:
        os.close(root)
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _flatten_one(root: int, name: str) -> None:
    """Empty directory ``name`` of ``root`` one level: files go, subdirectories move to
    ``root``; then remove it if empty."""
    try:
        directory = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root)
    except OSError:
        with contextlib.suppress(OSError):
            os.chmod(name, 0o700, dir_fd=root, follow_symlinks=False)
        return
    try:
        with contextlib.suppress(OSError):
            os.fchmod(directory, 0o700)
        with os.scandir(directory) as entries:
            children = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
        for child, is_directory in children:
            if is_directory:
                with contextlib.suppress(OSError):
                    os.rename(
                        child, f".up-{secrets.token_hex(8)}", src_dir_fd=directory, dst_dir_fd=root
                    )
            else:
                with contextlib.suppress(OSError):
                    os.unlink(child, dir_fd=directory)
    finally:
        os.close(directory)
    with contextlib.suppress(OSError):
        os.rmdir(name, dir_fd=root)
