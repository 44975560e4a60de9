"""The JupyterHub spawner of a deploylab classroom (imported by the hub process only).

JupyterHub's local-process spawner, plus: the person's server joins their own control groups
(memory, CPU, tasks) before it drops to their uid; their workspace (a copy of the lessons) is
made or brought up to date before each start, never overwriting their changes; the Jupyter
configuration of their role (student: Assignments panel only; instructor: formgrader on the
course) is put on their path.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Unicode

from deploylab.classroom import accounts, limits


class ClassroomSpawner(LocalProcessSpawner):
    """A local single-user server per person, as their unix user, inside kernel limits."""

    classroom_state = Unicode(help="the classroom's state directory (classroom.json)").tag(
        config=True
    )

    def _classroom(self) -> dict:
        return json.loads((Path(self.classroom_state) / "classroom.json").read_text())

    def _role(self) -> str:
        for member in self._classroom()["members"]:
            if member["username"] == self.user.name:
                return member["role"]
        return "student"

    def _limits(self) -> limits.ServerLimits:
        return limits.ServerLimits(
            memory_bytes=int(self.mem_limit or (1 << 30)),
            cpus=float(self.cpu_limit or 1.0),
        )

    def make_preexec_fn(self, name):
        drop_privileges = super().make_preexec_fn(name)
        groups = list(getattr(self, "_groups", []))
        server_limits = self._limits()

        def join_groups_then_drop_privileges():
            limits.join(groups, server_limits)
            drop_privileges()

        return join_groups_then_drop_privileges

    def get_env(self):
        env = super().get_env()
        env["JUPYTER_CONFIG_PATH"] = str(Path(self.classroom_state) / "config" / self._role())
        env["DEPLOYLAB_CLASSROOM"] = self.classroom_state
        return env

    async def start(self):
        material = Path(self.classroom_state) / "material"
        await asyncio.to_thread(accounts.prepare_workspace, self.user.name, material)
        self._groups = await asyncio.to_thread(limits.make_groups, self.user.name, self._limits())
        if not self._groups:
            self.log.warning("no control group for %s: only an address-space rlimit applies",
                             self.user.name)  # fmt: skip
        return await super().start()

    async def stop(self, now=False):
        await super().stop(now=now)
        await asyncio.to_thread(limits.remove_groups, self.user.name)
