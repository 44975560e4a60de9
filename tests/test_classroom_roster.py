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
