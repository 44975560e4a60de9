"""Unix accounts for the people on a roster, and each learner's own workspace.

Every roster row gets a unix user (created with ``useradd`` if missing) with a private home
(0700). Accounts this module creates carry a marker in their GECOS field, so ``classroom down
--remove-users`` deletes only those. Existing system accounts (uid below 1000) are refused.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from pathlib import Path

from deploylab.classroom.layout import WORKSPACE, ClassroomError
from deploylab.classroom.roster import Member

__all__ = ["ensure_account", "ensure_group", "prepare_workspace", "remove_account"]

#: Written into the GECOS field of accounts made here (so only those are ever removed).
MARKER = "deploylab-classroom"
FIRST_ORDINARY_UID = 1000


def _run(*command: str) -> None:
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise ClassroomError(
            f"{' '.join(command)} failed (exit {completed.returncode}): "
            f"{completed.stderr.strip() or completed.stdout.strip()}"
        )


def ensure_group(name: str) -> int:
    """The gid of group ``name``, created if missing."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        _run("groupadd", name)
        return grp.getgrnam(name).gr_gid


def ensure_account(member: Member, course: str) -> pwd.struct_passwd:
    """The unix account of ``member``: created (home 0700, own group) when missing; an
    existing ordinary account is reused; a system account is refused."""
    try:
        account = pwd.getpwnam(member.username)
    except KeyError:
        full_name = f"{member.first_name} {member.last_name}".strip().replace(":", " ")
        _run(
            "useradd", "--create-home", "--shell", "/bin/bash", "--user-group",
            "--comment", f"{full_name},{MARKER} {course}",
            member.username,
        )  # fmt: skip
        account = pwd.getpwnam(member.username)
    else:
        if account.pw_uid < FIRST_ORDINARY_UID:
            raise ClassroomError(
                f"roster username {member.username!r} is an existing system account "
                f"(uid {account.pw_uid}); expected a new or ordinary (uid >= 1000) account"
            )
    home = Path(account.pw_dir)
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, account.pw_uid, account.pw_gid)
    home.chmod(0o700)  # nobody else reads a person's work
    return account


def created_here(username: str) -> bool:
    """True when ``username`` is an account this module created (its GECOS has the marker)."""
    try:
        return MARKER in pwd.getpwnam(username).pw_gecos
    except KeyError:
        return False


def remove_account(username: str) -> bool:
    """Delete ``username`` and their home if this module created the account; True if it did."""
    if not created_here(username):
        return False
    subprocess.run(["pkill", "-KILL", "-u", username], capture_output=True)
    _run("userdel", "--remove", username)
    return True


def prepare_workspace(username: str, material: Path) -> Path:
    """``~username/deploylab/``: the person's own copy of the lessons (English and Korean)
    and assets, made and kept in step by :func:`deploylab.workspace.sync_workspace`.

    Files the learner changed are never overwritten; what the course added or updated since
    is copied in. The copy runs as the learner (Debian's Python, the standard library only),
    not as root, so a symlink they plant in their home cannot make root write elsewhere.
    Returns the workspace.
    """
    from deploylab import workspace as workspace_module

    account = pwd.getpwnam(username)
    workspace = Path(account.pw_dir) / WORKSPACE
    routine = Path(workspace_module.__file__).read_text(encoding="utf-8")
    completed = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", routine, str(material), str(workspace),
         *workspace_module.HUB_PARTS],
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[],
        cwd=account.pw_dir,
        env={"HOME": account.pw_dir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
    )  # fmt: skip
    if completed.returncode != 0:
        raise ClassroomError(
            f"could not copy the lessons into {workspace} as {username}: "
            f"{completed.stderr.strip()[-500:]}"
        )
    return workspace


def link_course(username: str, course_dir: Path) -> Path:
    """``~username/deploylab/course``: a link to the course for an instructor's formgrader
    (which only works on a course inside the server's root). Made as the instructor."""
    account = pwd.getpwnam(username)
    link = Path(account.pw_dir) / WORKSPACE / "course"
    code = (
        "import os, sys\n"
        "link, target = sys.argv[1], sys.argv[2]\n"
        "if not os.path.lexists(link):\n"
        "    os.symlink(target, link)\n"
    )
    completed = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", code, str(link), str(course_dir)],
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[],
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        raise ClassroomError(f"could not link {link} to {course_dir}: {completed.stderr[-300:]}")
    return link
