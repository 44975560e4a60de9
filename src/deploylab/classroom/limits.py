"""Per-person memory, CPU and task limits for single-user servers, enforced by the kernel.

Each server and everything it starts (kernels, lesson servers, nginx) joins one control group
per person: cgroup v2 (``memory.max``, ``cpu.max``, ``pids.max``) where the unified hierarchy
is mounted at /sys/fs/cgroup, otherwise the v1 ``memory``, ``cpu`` and ``pids`` controllers
(this machine has v1 with a writable hierarchy). The hub (root) makes the groups; the server's
process joins them before it drops to the person's uid, so no child escapes. Where no cgroup
can be made, an address-space rlimit is the fallback (per process, weaker; reported).
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from deploylab.grading.sandbox import own_cgroup

__all__ = ["ServerLimits", "join", "make_groups", "parse_memory", "remove_groups"]

GROUP_PREFIX = "deploylab-classroom"


def parse_memory(text: str) -> int:
    """Bytes in a size such as ``1G``, ``512M`` or ``1073741824``.

    >>> parse_memory("1G"), parse_memory("512M"), parse_memory("2048")
    (1073741824, 536870912, 2048)
    >>> parse_memory("lots")
    Traceback (most recent call last):
    ...
    ValueError: memory size 'lots' not understood; expected a number with an optional K, M or G
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGkmg]?)i?[Bb]?\s*", str(text))
    if not match:
        raise ValueError(
            f"memory size {text!r} not understood; expected a number with an optional K, M or G"
        )
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


@dataclass(frozen=True)
class ServerLimits:
    """What one person's server may use: bytes of memory, cores of CPU, tasks (threads)."""

    memory_bytes: int = 1 << 30
    cpus: float = 1.0
    tasks: int = 512


def _settings(limits: ServerLimits) -> list[tuple[str | None, dict[str, str]]]:
    period = 100_000
    quota = str(max(1000, int(limits.cpus * period)))
    return [
        (None, {"memory.max": str(limits.memory_bytes), "memory.swap.max": "0",
                "cpu.max": f"{quota} {period}", "pids.max": str(limits.tasks)}),
        ("memory", {"memory.limit_in_bytes": str(limits.memory_bytes)}),
        ("cpu", {"cpu.cfs_period_us": str(period), "cpu.cfs_quota_us": quota}),
        ("pids", {"pids.max": str(limits.tasks)}),
    ]  # fmt: skip


def make_groups(username: str, limits: ServerLimits) -> list[Path]:
    """Create (or reset) ``username``'s control groups with ``limits``; [] where none can be.

    On cgroup v2 only the unified group is made; on v1, one per controller. Optional files
    (``memory.swap.max`` without swap accounting) are skipped; a required one failing drops
    that group.
    """
    made: list[Path] = []
    unified = own_cgroup(None)
    for controller, values in _settings(limits):
        if (controller is None) != (unified is not None):
            continue
        base = own_cgroup(controller)
        if base is None or not base.is_dir() or not os.access(base, os.W_OK):
            continue
        directory = base / f"{GROUP_PREFIX}-{username}"
        try:
            directory.mkdir(exist_ok=True)
            if controller is None:
                with contextlib.suppress(OSError):
                    (base / "cgroup.subtree_control").write_text("+memory +cpu +pids")
            for name, value in values.items():
                try:
                    (directory / name).write_text(value)
                except OSError:
                    if name == "memory.swap.max":
                        continue
                    raise
        except OSError:
            with contextlib.suppress(OSError):
                directory.rmdir()
            continue
        made.append(directory)
    return made


def join(groups: list[Path], limits: ServerLimits) -> None:
    """Move the calling process into ``groups`` (before it drops privileges); without any
    group, cap its address space instead so a runaway kernel still cannot take the host."""
    for directory in groups:
        (directory / "cgroup.procs").write_text(str(os.getpid()))
    if not groups:
        cap = limits.memory_bytes * 4  # address space is far above resident memory
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def remove_groups(username: str) -> None:
    """Kill what is left in ``username``'s groups and remove them (after the server stopped)."""
    candidates = [
        base / f"{GROUP_PREFIX}-{username}"
        for base in (own_cgroup(None), own_cgroup("memory"), own_cgroup("cpu"), own_cgroup("pids"))
        if base is not None
    ]
    for directory in candidates:
        for _ in range(50):
            if not directory.is_dir():
                break
            try:
                directory.rmdir()
                break
            except OSError:
                with contextlib.suppress(OSError):
                    for pid in (directory / "cgroup.procs").read_text().split():
                        with contextlib.suppress(OSError):
                            os.kill(int(pid), signal.SIGKILL)
                time.sleep(0.05)


def group_usage(username: str) -> dict[str, int]:
    """Bytes of memory ``username``'s server and its children use now (``memory``), where
    their control group tells."""
    usage: dict[str, int] = {}
    for base, name in (
        (own_cgroup(None), "memory.current"),
        (own_cgroup("memory"), "memory.usage_in_bytes"),
    ):
        if base is None:
            continue
        path = base / f"{GROUP_PREFIX}-{username}" / name
        with contextlib.suppress(OSError, ValueError):
            usage["memory"] = int(path.read_text())
            break
    return usage
