"""The class roster: one CSV row per person, validated before any account is made.

The file has a header ``username,role,first_name,last_name,email``; ``role`` is ``student``
or ``instructor``. Usernames become unix account names, so they are held to the portable
subset Debian's ``useradd`` accepts without ``--badname``.

>>> members = parse_roster("username,role,first_name,last_name,email\\n"
...                        "ada,instructor,Ada,Lovelace,ada@example.org\\n"
...                        "linus,student,Linus,T,\\n")
>>> [(member.username, member.role) for member in members]
[('ada', 'instructor'), ('linus', 'student')]
>>> parse_roster("username,role,first_name,last_name,email\\nroot,student,,,\\n")
Traceback (most recent call last):
...
deploylab.classroom.roster.RosterError: roster line 2: username 'root' is reserved for the system; pick another name
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COLUMNS", "ROLES", "Member", "RosterError", "parse_roster", "read_roster"]

#: The roster's header, in order.
COLUMNS = ("username", "role", "first_name", "last_name", "email")
#: Roles a roster row may name.
ROLES = ("student", "instructor")

#: Debian's default NAME_REGEX for useradd, capped at 32 characters (the utmp limit).
USERNAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

#: Names a roster may not take: system accounts present on every Debian machine, and names
#: JupyterHub or nbgrader give a meaning of their own.
RESERVED_USERNAMES = frozenset(
    {
        "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
        "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "systemd-network",
        "systemd-resolve", "messagebus", "sshd", "postgres", "redis", "nginx", "admin",
        "hub", "jupyterhub", "nbgrader", "student", "instructor",
    }
)  # fmt: skip


class RosterError(ValueError):
    """A roster file or row is malformed; the message names the line, the value and the rule."""


@dataclass(frozen=True)
class Member:
    """One person in the class: their account name, role and (optional) name and e-mail."""

    username: str
    role: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""

    @property
    def is_instructor(self) -> bool:
        return self.role == "instructor"


def _check_username(username: str, where: str) -> None:
    if not username:
        raise RosterError(f"{where}: username is empty; expected a unix account name")
    if username in RESERVED_USERNAMES:
        raise RosterError(
            f"{where}: username {username!r} is reserved for the system; pick another name"
        )
    if not USERNAME_PATTERN.match(username):
        raise RosterError(
            f"{where}: username {username!r} is not a safe unix account name; expected a "
            "lower-case letter then up to 31 lower-case letters, digits, '-' or '_'"
        )


def parse_roster(text: str) -> list[Member]:
    """The members of a roster given as CSV text, checked row by row.

    Raises :class:`RosterError` naming the line and the bad value for a wrong header, a row
    with the wrong number of fields, an unknown role, an unsafe or reserved username, a
    duplicate username, or a roster without an instructor.
    """
    rows = list(csv.reader(io.StringIO(text)))
    rows_with_lines = [(number, row) for number, row in enumerate(rows, start=1) if row]
    if not rows_with_lines:
        raise RosterError(f"the roster is empty; expected a header {','.join(COLUMNS)}")
    header_line, header = rows_with_lines[0]
    if tuple(cell.strip().lower() for cell in header) != COLUMNS:
        raise RosterError(
            f"roster line {header_line}: header {','.join(header)!r} is not the expected "
            f"{','.join(COLUMNS)!r}"
        )
    members: list[Member] = []
    seen: dict[str, int] = {}
    for number, row in rows_with_lines[1:]:
        where = f"roster line {number}"
        if len(row) != len(COLUMNS):
            raise RosterError(
                f"{where}: {len(row)} fields ({','.join(row)!r}); expected {len(COLUMNS)}: "
                f"{','.join(COLUMNS)}"
            )
        username, role, first_name, last_name, email = (cell.strip() for cell in row)
        _check_username(username, where)
        if role not in ROLES:
            raise RosterError(
                f"{where}: role {role!r} of {username!r} is unknown; expected one of "
                f"{', '.join(ROLES)}"
            )
        if username in seen:
            raise RosterError(
                f"{where}: username {username!r} is already on line {seen[username]}; "
                "each person needs their own username"
            )
        if email and not re.match(r"^[^@\s]+@[^@\s]+$", email):
            raise RosterError(f"{where}: email {email!r} of {username!r} is not an address")
        seen[username] = number
        members.append(Member(username, role, first_name, last_name, email))
    if not any(member.is_instructor for member in members):
        raise RosterError("the roster has no instructor; expected at least one 'instructor' row")
    return members


def read_roster(path: str | Path) -> list[Member]:
    """The members listed in the roster file at ``path`` (see :func:`parse_roster`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise RosterError(f"cannot read roster {str(path)!r}: {error.strerror}") from None
    try:
        return parse_roster(text)
    except RosterError as error:
        raise RosterError(f"{path}: {error}") from None
