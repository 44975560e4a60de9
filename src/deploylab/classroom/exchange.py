"""nbgrader's exchange as a classroom uses it: a hand-in that only its student and the
course's instructors can read or change.

nbgrader's own submit makes each hand-in directory in ``inbound/`` world-writable (0777, "so
the instructor can delete later") with world-readable files, hidden only by a random suffix in
its name: another student who learns the name could read the answers and the submission
secret (which names the feedback page), delete the files or plant their own. Students'
servers use :class:`PrivateSubmit` instead (``c.ExchangeFactory.submit``, written by
``classroom up``): the same submit, then the hand-in is closed to everyone but its owner and
the instructors' group, which it inherits from the setgid ``inbound/`` directory. (nbgrader's
copy, ``shutil.copytree``, copies the source folder's mode onto the new folder, which drops
the inherited setgid bit, so the files it writes next would get the student's own group: the
copy is redone into a folder that keeps it.)
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from nbgrader.exchange.default.submit import ExchangeSubmit

__all__ = ["HAND_IN_DIRECTORY_MODE", "HAND_IN_FILE_MODE", "PrivateSubmit", "close_hand_in"]

#: The student and the instructors' group (who may also clean up); nobody else.
HAND_IN_DIRECTORY_MODE = 0o770
#: The student may still change their own hand-in (its ctime then moves: see collect).
HAND_IN_FILE_MODE = 0o640


def close_hand_in(directory: Path, group: int) -> bool:
    """Make ``directory`` (a hand-in just written) private to its owner and ``group``;
    False, changing nothing, when its files do not carry ``group`` (closing them would also
    shut the instructors out)."""
    entries = []
    for folder, subfolders, files in os.walk(directory):
        entries += [(Path(folder) / name, False) for name in files]
        entries += [(Path(folder) / name, True) for name in subfolders]
    entries.append((Path(directory), True))
    if any(path.lstat().st_gid != group for path, _ in entries):
        return False
    for path, is_directory in entries:
        if stat.S_ISLNK(path.lstat().st_mode):
            continue
        path.chmod(HAND_IN_DIRECTORY_MODE if is_directory else HAND_IN_FILE_MODE)
    return True


def copy_keeping_group(directory: Path) -> None:
    """Redo ``directory`` (in a setgid folder) as a fresh folder that inherits the parent's
    group and setgid bit, so everything in it and written into it later has that group."""
    fresh = directory.with_name(f".{directory.name}.new")
    fresh.mkdir()  # inherits the group and the setgid bit from the parent
    for folder, subfolders, files in os.walk(directory):
        relative = Path(folder).relative_to(directory)
        for name in subfolders:
            (fresh / relative / name).mkdir()
        for name in files:
            shutil.copyfile(Path(folder) / name, fresh / relative / name, follow_symlinks=False)
    shutil.rmtree(directory)
    fresh.rename(directory)


class PrivateSubmit(ExchangeSubmit):
    """nbgrader's submit, then :func:`close_hand_in` on what it put in ``inbound/``."""

    def do_copy(self, src, dest, log=None):
        super().do_copy(src, dest, log)
        if Path(dest).parent == Path(self.inbound_path):
            copy_keeping_group(Path(dest))

    def copy_files(self):
        super().copy_files()
        hand_in = Path(self.inbound_path) / self.assignment_filename
        if close_hand_in(hand_in, os.stat(self.inbound_path).st_gid):
            self.log.info("Hand-in readable by you and your instructors only: %s", hand_in)
        else:
            self.log.warning(
                "%s is not in the group of %s (is inbound/ setgid?); its modes are nbgrader's",
                hand_in,
                self.inbound_path,
            )
