"""Control groups for sandboxes: this process's own cgroup, and a memory and pids group per
sandbox where the host lets root make them (they bound what per-process rlimits cannot: the
memory of all the sandbox's processes together). Also read by the classroom's limits."""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import time
from pathlib import Path

from deploylab.grading.limits import Limits

__all__ = ["JOIN_CGROUPS", "make_cgroups", "own_cgroup", "remove_cgroup"]


JOIN_CGROUPS = (
    'IFS=:; for group in $DEPLOYLAB_CGROUPS; do echo $$ > "$group/cgroup.procs" || exit 125; '
    'done; unset DEPLOYLAB_CGROUPS; exec "$@"'
)


_CGROUP_ROOT = Path("/sys/fs/cgroup")


def own_cgroup(controller: str | None) -> Path | None:
    """This process's cgroup directory for ``controller`` (None: the cgroup v2 hierarchy)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if (
            controller is None
            and controllers == ""
            and (_CGROUP_ROOT / "cgroup.controllers").exists()
        ):
            return _CGROUP_ROOT / path.lstrip("/")
        if controller is not None and controller in controllers.split(","):
            return _CGROUP_ROOT / controller / path.lstrip("/")
    return None


def make_cgroups(limits: Limits) -> list[Path]:
    """Per-sandbox memory and pids control groups, where the host allows it (root, cgroupfs
    writable); an empty list otherwise (the per-process prlimit limits still apply).

    They bound what rlimits cannot: the memory of all the sandbox's processes together.
    """
    _remove_stale_cgroups()
    name = f"deploylab-sandbox-{secrets.token_hex(6)}"
    memory = str(limits.memory_bytes)
    tasks = str(limits.max_processes + 16)  # bwrap's own processes and the kernel's threads
    wanted = [
        (own_cgroup("memory"), {"memory.limit_in_bytes": memory}),
        (own_cgroup("pids"), {"pids.max": tasks}),
        (own_cgroup(None), {"memory.max": memory, "pids.max": tasks}),
    ]
    made: list[Path] = []
    for base, settings in wanted:
        if base is None or not base.is_dir() or not os.access(base, os.W_OK):
            continue
        directory = base / name
        try:
            directory.mkdir()
        except OSError:
            continue
        try:
            for file_name, value in settings.items():
                if not (directory / file_name).exists():
                    raise OSError(f"{file_name} not available")
                (directory / file_name).write_text(value)
        except OSError:
            remove_cgroup(directory)
            continue
        made.append(directory)
    return made


#: Control groups whose processes took too long to die; removed on the next run or at exit.
_STALE_CGROUPS: set[Path] = set()


@atexit.register
def _remove_stale_cgroups() -> None:
    for directory in list(_STALE_CGROUPS):
        remove_cgroup(directory, attempts=1)


def remove_cgroup(directory: Path, attempts: int = 50) -> None:
    """rmdir a control group once its processes are gone (they are being killed)."""
    for _ in range(attempts):
        try:
            directory.rmdir()
            _STALE_CGROUPS.discard(directory)
            return
        except FileNotFoundError:
            _STALE_CGROUPS.discard(directory)
            return
        except OSError:
            try:
                for pid in (directory / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        os.kill(int(pid), 9)
            except OSError:
                pass
            time.sleep(0.05)
    _STALE_CGROUPS.add(directory)
