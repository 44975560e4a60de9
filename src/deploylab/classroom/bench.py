"""``deploylab bench classroom --students N``: how many students this machine's hub serves.

Brings up a throw-away classroom (accounts ``dlbenchNN``), logs the N students in through the
hub's login form at once, starts their servers, then has each run every code cell of a lesson
(live loopback servers included) in their own kernel, all at the same time. Prints spawn time
p50/p95, memory per student (from their control groups), the lesson's time run alone and
p50/p95 when all run it together, and failures. Everything it made is removed at the end.
"""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import time
from pathlib import Path

__all__ = ["percentile", "run_benchmark"]

PASSWORD = "bench password 1"


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([1.0, 2.0, 3.0, 4.0], 0.95)
    (2.0, 4.0)
    """
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def _lesson_cells(lesson: str) -> list[str]:
    import nbformat

    from deploylab.classroom.install import project_root

    path = project_root() / "lessons" / f"{lesson}.ipynb"
    if not path.is_file():
        raise ValueError(f"no lesson {lesson!r}: expected lessons/{lesson}.ipynb")
    notebook = nbformat.read(path, as_version=4)
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def run_benchmark(students: int, *, lesson: str = "02-load-balancing", timeout: float = 900):
    """Run the benchmark with ``students`` students; returns 0 when nothing failed."""
    from deploylab.classroom import client, hub, limits
    from deploylab.classroom.roster import Member
    from deploylab.loopback import free_port

    if students < 1 or students > 99:
        raise ValueError(f"--students {students}: expected 1 to 99")
    if os.geteuid() != 0:
        raise ValueError("'deploylab bench classroom' needs root: it creates accounts and a hub")
    cells = _lesson_cells(lesson)
    names = [f"dlbench{number:02d}" for number in range(1, students + 1)]
    members = [Member("dlbenchi", "instructor")] + [Member(name, "student") for name in names]
    state_dir = Path("/srv/deploylab-bench")
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    classroom = hub.bring_up(
        members, state_dir=state_dir, port=free_port(), course="bench", log=lambda _m: None
    )
    failures: list[str] = []
    try:
        up_seconds = time.monotonic() - started
        print(f"bench classroom: hub up in {up_seconds:.1f} s; {students} students log in")
        sessions = {name: client.HubSession(classroom.url, name) for name in names}

        def log_in_and_spawn(name: str) -> float:
            sessions[name].login(PASSWORD)
            return sessions[name].start_server(timeout=max(10, deadline - time.monotonic()))

        spawn: dict[str, float] = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(students, 16)) as pool:
            futures = {pool.submit(log_in_and_spawn, name): name for name in names}
            for future in concurrent.futures.as_completed(futures):
                name = futures[future]
                try:
                    spawn[name] = future.result()
                except Exception as error:
                    failures.append(f"{name}: spawn: {error}")
        ready = [name for name in names if name in spawn]
        idle_memory = [limits.group_usage(name).get("memory", 0) for name in ready]
        print(f"bench classroom: {len(ready)} servers up; running {lesson} alone")
        alone_started = time.monotonic()
        alone_errors = client.run_cells(sessions[ready[0]], cells, timeout=300) if ready else []
        alone = time.monotonic() - alone_started
        if alone_errors:
            failures.append(f"{ready[0]}: lesson alone: {alone_errors[0]}")

        def run_lesson(name: str) -> float:
            begun = time.monotonic()
            errors = client.run_cells(
                sessions[name], cells, timeout=max(10, deadline - time.monotonic())
            )
            if errors:
                raise RuntimeError(errors[0])
            return time.monotonic() - begun

        print(f"bench classroom: {len(ready)} students run {lesson} at the same time")
        together: list[float] = []
        peak_memory: list[int] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(ready))) as pool:
            futures = {pool.submit(run_lesson, name): name for name in ready}
            for future in concurrent.futures.as_completed(futures):
                name = futures[future]
                try:
                    together.append(future.result())
                except Exception as error:
                    failures.append(f"{name}: lesson: {error}")
                peak_memory.append(limits.group_usage(name).get("memory", 0))
    finally:
        hub.bring_down(classroom, remove_users=True, log=lambda _m: None)
        import shutil

        shutil.rmtree(state_dir, ignore_errors=True)
    mib = 1 / 2**20
    spawn_times = list(spawn.values())
    print(f"\nclassroom benchmark: {students} students, lesson {lesson} ({len(cells)} code cells)")
    if spawn_times:
        print(
            f"  spawn (login + server ready)  p50 {percentile(spawn_times, 0.5):6.1f} s   "
            f"p95 {percentile(spawn_times, 0.95):6.1f} s"
        )
    if idle_memory:
        print(
            f"  memory per student, idle      median {statistics.median(idle_memory) * mib:5.0f} MiB"
            f"   max {max(idle_memory) * mib:5.0f} MiB"
        )
    if peak_memory:
        print(
            f"  memory per student, after     median {statistics.median(peak_memory) * mib:5.0f} MiB"
            f"   max {max(peak_memory) * mib:5.0f} MiB"
        )
    print(f"  lesson alone                  {alone:6.1f} s")
    if together:
        print(
            f"  lesson, all at once           p50 {percentile(together, 0.5):6.1f} s   "
            f"p95 {percentile(together, 0.95):6.1f} s   "
            f"(x{percentile(together, 0.5) / alone:.1f} alone)"
        )
    print(f"  failures                      {len(failures)}")
    for failure in failures[:10]:
        print(f"    {failure}")
    return 0 if not failures else 1
