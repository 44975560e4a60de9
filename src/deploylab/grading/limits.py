"""The resource limits of one graded notebook's kernel (and of everything it starts)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    """Resource limits for one notebook's kernel (and everything it starts).

    ``memory_bytes`` is the address-space limit of each process and, where the host lets the
    grader make control groups, the memory of the whole sandbox; ``cpu_seconds`` the CPU time
    of each process (SIGXCPU, then SIGKILL a second later); ``max_processes`` the processes and
    threads of the sandbox user; ``max_output_bytes`` the output kept per cell (errors are
    always kept) and ``max_notebook_output_bytes`` in all the notebook's cells (many cells of
    a full cell's output each cannot fill the grader's memory and the autograded notebook); ``max_file_bytes`` the largest file the notebook may write; ``tmp_bytes`` the
    size of its private ``/tmp`` and of its scratch directory, which holds at most
    ``max_scratch_files`` files where the grader may mount a tmpfs (as root). Only
    ``max_output_bytes`` applies without the sandbox.
    """

    memory_bytes: int = 1536 * 1024 * 1024
    cpu_seconds: int = 120
    max_processes: int = 64
    max_output_bytes: int = 256 * 1024
    max_notebook_output_bytes: int = 4 * 1024 * 1024
    max_file_bytes: int = 64 * 1024 * 1024
    max_open_files: int = 256
    tmp_bytes: int = 64 * 1024 * 1024
    max_scratch_files: int = 4096

    def __post_init__(self) -> None:
        for name in (
            "memory_bytes",
            "cpu_seconds",
            "max_processes",
            "max_output_bytes",
            "max_notebook_output_bytes",
            "max_file_bytes",
            "max_open_files",
            "tmp_bytes",
            "max_scratch_files",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive integer, not {value!r}")
