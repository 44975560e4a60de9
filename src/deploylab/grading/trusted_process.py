"""The grader's handle on :mod:`deploylab.grading.trusted_tests`: one process per notebook
that runs the instructor's test cells, spoken to in JSON lines over its stdin and stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path

from deploylab.grading.kernel import QUIET_KERNEL_ENV


class TrustedProcess:
    """The grader's handle on :mod:`deploylab.grading.trusted_tests` for one notebook."""

    def __init__(self, control_dir: Path, working_dir: Path) -> None:
        self.control_dir = control_dir
        self.working_dir = working_dir
        self.process: asyncio.subprocess.Process | None = None
        self.sockets = 0
        #: setup cells sent so far, replayed if the process has to be restarted
        self.setup_sources: list[str] = []
        #: test cells sent so far: after a restart, the names they defined are declared the
        #: instructor's again (else the student's kernel would be asked for them)
        self.test_sources: list[str] = []

    async def start(self) -> None:
        limit = [f"--as={TRUSTED_MEMORY_BYTES}", "--"]
        prlimit = shutil.which("prlimit")
        self.process = await asyncio.create_subprocess_exec(
            *([prlimit, *limit] if prlimit else []),
            sys.executable,
            "-I",
            "-m",
            "deploylab.grading.trusted_tests",
            cwd=str(self.working_dir),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={**trusted_environment()},
            start_new_session=True,
        )
        await self.reply(60)
        for source in self.setup_sources:
            await self.request({"op": "setup", "source": source}, 30, remember=False)
        for source in self.test_sources:
            await self.request({"op": "declare", "source": source}, 30, remember=False)

    async def request(self, message: dict, timeout: float, *, remember: bool = True) -> dict:
        assert self.process is not None and self.process.stdin is not None
        if remember and message.get("op") == "setup":
            self.setup_sources.append(message["source"])
        elif remember and message.get("op") == "test":
            self.test_sources.append(message["source"])
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        await self.process.stdin.drain()
        return await self.reply(timeout)

    async def reply(self, timeout: float) -> dict:
        assert self.process is not None and self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError("the trusted test process stopped")
        return json.loads(line)

    def next_socket(self) -> str:
        self.sockets += 1
        return str(self.control_dir / f"calls-{self.sockets}.sock")

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(OSError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.process.wait(), 5)


#: Address space of the trusted test process (it decodes what the student's code returns).
TRUSTED_MEMORY_BYTES = 2 * 1024 * 1024 * 1024


def trusted_environment() -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "LANG", "LC_ALL", "HOME", "TZ", "SYSTEMROOT")
    }
    environment.update(QUIET_KERNEL_ENV)
    return environment


def hang_up(socket_path: str) -> None:
    """Connect to the trusted tests' socket and close at once: a kernel that never connected
    then reads as one that stopped answering."""
    import socket

    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(0.5)
        connection.connect(socket_path)
