"""The roster: every malformed row is refused with a message naming the line and the value."""

from __future__ import annotations

import pytest

from deploylab.classroom.cli import register  # noqa: F401  (the CLI module imports cleanly)
from deploylab.classroom.layout import ClassroomError, check_course_name
from deploylab.classroom.limits import parse_memory
from deploylab.classroom.roster import RosterError, parse_roster, read_roster

HEADER = "username,role,first_name,last_name,email\n"


def test_a_valid_roster_gives_members_in_order():
    members = parse_roster(
        HEADER + "ada,instructor,Ada,Lovelace,ada@example.org\nlin,student,Lin,Ng,\n"
    )
    assert [(m.username, m.role, m.is_instructor) for m in members] == [
        ("ada", "instructor", True),
        ("lin", "student", False),
    ]
    assert members[0].email == "ada@example.org"


@pytest.mark.parametrize(
    ("rows", "named"),
    [
        ("ada,instructor,,,\nbob,teacher,,,\n", ["line 3", "'teacher'", "student, instructor"]),
        ("ada,instructor,,,\nbob,student,,,\nbob,student,,,\n", ["line 4", "'bob'", "line 3"]),
        ("ada,instructor,,,\nBob Smith,student,,,\n", ["line 3", "'Bob Smith'", "unix"]),
        ("ada,instructor,,,\n../etc,student,,,\n", ["'../etc'"]),
        ("ada,instructor,,,\nroot,student,,,\n", ["'root'", "reserved"]),
        ("ada,instructor,,,\nbob,student\n", ["line 3", "2 fields", "expected 5"]),
        ("ada,instructor,,,\n,student,,,\n", ["line 3", "empty"]),
        ("bob,student,,,\n", ["no instructor"]),
        ("ada,instructor,,,\nbob,student,,,not-an-address\n", ["'not-an-address'"]),
    ],
    ids=[
        "unknown-role",
        "duplicate",
        "space",
        "path",
        "reserved",
        "short-row",
        "empty-name",
        "no-instructor",
        "email",
    ],
)
def test_a_bad_roster_is_refused_naming_the_value(rows, named):
    with pytest.raises(RosterError) as caught:
        parse_roster(HEADER + rows)
    for text in named:
        assert text in str(caught.value)


def test_a_wrong_header_names_the_expected_one():
    with pytest.raises(RosterError, match="username,role,first_name,last_name,email"):
        parse_roster("user,role\nada,instructor\n")


def test_a_missing_roster_file_is_named(tmp_path):
    with pytest.raises(RosterError, match=r"nowhere\.csv"):
        read_roster(tmp_path / "nowhere.csv")


def test_course_names_and_memory_sizes_are_checked():
    assert check_course_name("net-101") == "net-101"
    with pytest.raises(ClassroomError, match=r"'\.\./x'"):
        check_course_name("../x")
    assert parse_memory("1.5G") == 1.5 * 2**30
    with pytest.raises(ValueError, match="'12X'"):
        parse_memory("12X")


def test_down_kills_what_a_hub_that_would_not_stop_left_running(tmp_path):
    """A hub that outlives its grace period is killed; the proxy and culler it started in
    sessions of their own (as JupyterHub starts them) must not outlive it. Here the hub is a
    real process that ignores SIGTERM and starts a child in a new session."""
    import os
    import subprocess
    import sys
    import time

    from deploylab.classroom.hub import _start_time, bring_down
    from deploylab.classroom.layout import Classroom

    classroom = Classroom(state_dir=tmp_path, members=[])
    classroom.hub_dir.mkdir(parents=True)
    child_file = tmp_path / "child.pid"
    stand_in = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen(['sleep', '120'], start_new_session=True)\n"
        "open(sys.argv[2], 'w').write(str(child.pid))\n"
        "time.sleep(120)\n"
    )
    hub = subprocess.Popen([sys.executable, "-c", stand_in, "jupyterhub", str(child_file)])
    try:
        deadline = time.monotonic() + 30
        while not child_file.exists() or not child_file.read_text():
            assert time.monotonic() < deadline, "the stand-in hub never started its child"
            time.sleep(0.05)
        child = int(child_file.read_text())
        (classroom.hub_dir / "jupyterhub.pid").write_text(str(hub.pid))
        bring_down(classroom, log=lambda _message: None, grace=1)
        hub.wait(timeout=10)
        for _ in range(100):
            if _start_time(child) is None or _zombie_state(child):
                break
            time.sleep(0.05)
        assert _start_time(child) is None or _zombie_state(child), "the hub's child outlived it"
    finally:
        for pid in (hub.pid, locals().get("child")):
            if pid and _start_time(pid) is not None:
                os.kill(pid, 9)
        hub.wait(timeout=10)


def _zombie_state(pid: int) -> bool:
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z")
    except OSError:
        return True
