"""What an instructor does on the hub, as their own unix user: release a lab, collect the
submissions, grade them (deploylab's sandboxed, parallel autograde) and hand feedback back
through the exchange, export the grades.

The grading steps go through ``deploylab grade ...`` (:func:`deploylab.grading.cli.main`), the
same entry point as on a single machine. Collecting and handing back are done here rather than
by nbgrader's exchange classes because nbgrader only *warns* when a submission's owner is not
the student it names (a student could hand in as someone else) and follows what it copies.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pwd
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from deploylab.classroom.layout import Classroom, ClassroomError

__all__ = ["CollectedSubmission", "collect", "export", "grade", "release", "return_feedback"]

#: nbgrader's inbound entry name: ``student+lab+timestamp+random`` (or without ``+random``).
INBOUND_NAME = re.compile(r"^(?P<student>[^+]+)\+(?P<lab>[^+]+)\+(?P<timestamp>[^+]+)(\+.*)?$")
#: Files of a submission that are copied (nbgrader writes the last two itself).
SUBMISSION_FILES = ("timestamp.txt", "submission_secret.txt")
MAX_SUBMISSION_BYTES = 20 * 1024 * 1024


def _grade_cli(*arguments: str) -> int:
    from deploylab.grading.cli import main

    return main(list(arguments))


def _course_options(classroom: Classroom) -> list[str]:
    return ["--course", str(classroom.course_dir), "--labs-dir", str(classroom.course_dir / "labs")]


def _check_can_write_course(classroom: Classroom) -> None:
    os.umask(0o007)  # what one instructor writes in the course, the others can change
    if not os.access(classroom.course_dir, os.W_OK | os.X_OK):
        raise ClassroomError(
            f"{classroom.course_dir} is not writable by {pwd.getpwuid(os.geteuid()).pw_name}; "
            f"instructor commands run as an instructor of {classroom.course!r} "
            f"(group {classroom.instructors_group})"
        )


def release(classroom: Classroom, lab: str, *, log=print) -> Path:
    """Generate the student version of ``lab`` and put it in the exchange's outbound folder,
    where the Assignments panel lists it; returns the outbound directory."""
    from deploylab.classroom.hub import match_running_kernel

    _check_can_write_course(classroom)
    status = _grade_cli("grade", "release", lab, *_course_options(classroom))
    if status != 0:
        raise ClassroomError(f"'deploylab grade release {lab}' failed (status {status})")
    student_version = classroom.course_dir / "labs" / lab
    outbound = classroom.exchange_course_dir / "outbound"
    staging = outbound / f".{lab}.new"
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(student_version, staging)
    for path in [staging, *staging.rglob("*")]:
        if path.suffix == ".ipynb":
            match_running_kernel(path)
        path.chmod(0o755 if path.is_dir() else 0o644)
    target = outbound / lab
    if target.exists():
        old = outbound / f".{lab}.old"
        if old.exists():
            shutil.rmtree(old)
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old)
    else:
        staging.rename(target)
    log(f"classroom: released {lab} to {target}")
    return target


@dataclass(frozen=True)
class CollectedSubmission:
    """The latest acceptable hand-in of one student (or why one was refused)."""

    student: str
    timestamp: str
    directory: Path | None
    refused: str = ""


def _owner(path: Path) -> str:
    uid = path.lstat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _copy_submission(source: Path, student: str, lab: str, target: Path) -> str:
    """Copy a hand-in; returns '' or why it is refused. Only regular files the student owns
    are taken (no symlinks, no one else's files), and only the lab's notebook."""
    wanted = [f"{lab}.ipynb", *SUBMISSION_FILES]
    target.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        path = source / name
        try:
            info = path.lstat()
        except FileNotFoundError:
            if name == f"{lab}.ipynb":
                return f"no {name} in the hand-in"
            continue
        if not stat.S_ISREG(info.st_mode):
            return f"{name} is not a regular file"
        if _owner(path) != student:
            return f"{name} belongs to {_owner(path)}, not {student}"
        if info.st_size > MAX_SUBMISSION_BYTES:
            return f"{name} is {info.st_size} bytes (over {MAX_SUBMISSION_BYTES})"
        with open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as handle:
            (target / name).write_bytes(handle.read())
    return ""


def collect(classroom: Classroom, lab: str, *, log=print) -> dict[str, CollectedSubmission]:
    """Copy each roster student's latest hand-in of ``lab`` from the exchange into
    ``course/collected/<lab>/<student>/``; a hand-in is taken only if the student it names owns
    it. Returns the students' collected submissions; students with none are left out."""
    _check_can_write_course(classroom)
    inbound = classroom.exchange_course_dir / "inbound"
    students = set(classroom.students)
    latest: dict[str, tuple[str, Path]] = {}
    refused: dict[str, CollectedSubmission] = {}
    for entry in sorted(inbound.iterdir()):
        match = INBOUND_NAME.match(entry.name)
        if not match or match["lab"] != lab:
            continue
        student, timestamp = match["student"], match["timestamp"]
        owner = _owner(entry)
        if student not in students:
            log(f"classroom: ignored {entry.name}: {student!r} is not a student on the roster")
            continue
        if owner != student or entry.is_symlink() or not entry.is_dir():
            log(f"classroom: REFUSED {entry.name}: handed in by {owner}, not by {student}")
            refused[student] = CollectedSubmission(student, timestamp, None, f"owned by {owner}")
            continue
        if student not in latest or timestamp > latest[student][0]:
            latest[student] = (timestamp, entry)
    collected_root = classroom.course_dir / "collected" / lab
    collected: dict[str, CollectedSubmission] = {}
    for student, (timestamp, entry) in sorted(latest.items()):
        target = collected_root / student
        staging = collected_root / f".{student}.new"
        if staging.exists():
            shutil.rmtree(staging)
        problem = _copy_submission(entry, student, lab, staging)
        if problem:
            shutil.rmtree(staging)
            log(f"classroom: REFUSED {entry.name}: {problem}")
            refused[student] = CollectedSubmission(student, timestamp, None, problem)
            continue
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        collected[student] = CollectedSubmission(student, timestamp, target)
    missing = sorted(students - set(collected))
    log(
        f"classroom: collected {len(collected)} of {len(students)} students' {lab}"
        + (f"; missing: {', '.join(missing)}" if missing else "")
    )
    return collected


def feedback_name(submission_secret: str, notebook_id: str) -> str:
    """The file name nbgrader's fetch_feedback looks for: md5(secret + notebook id) + .html.

    >>> feedback_name("s3cret", "ip-basics")
    'ebaa890de8ef70a08a6c553d495c8566.html'
    """
    digest = hashlib.md5(submission_secret.encode() + notebook_id.encode(), usedforsecurity=False)
    return digest.hexdigest() + ".html"


def return_feedback(classroom: Classroom, lab: str, *, log=print) -> list[str]:
    """Put each collected student's feedback page where their Assignments panel fetches it;
    returns the students whose feedback was released."""
    released = []
    outbound = classroom.exchange_course_dir / "feedback"
    for collected in sorted((classroom.course_dir / "collected" / lab).glob("[!.]*")):
        student = collected.name
        page = classroom.course_dir / "feedback" / student / lab / f"{lab}.html"
        secret_file = collected / "submission_secret.txt"
        if not page.is_file() or not secret_file.is_file():
            continue
        name = feedback_name(secret_file.read_text().strip(), lab)
        temporary = outbound / f".{name}.tmp"
        shutil.copyfile(page, temporary)
        temporary.chmod(0o644)
        temporary.replace(outbound / name)
        released.append(student)
    log(f"classroom: feedback on {lab} released to {len(released)} students")
    return released


def grade(classroom: Classroom, lab: str, *, jobs: int | None = None, log=print) -> int:
    """Collect, autograde in the sandbox (only new or changed hand-ins), write feedback and
    release it; returns the autograde exit status (0: every hand-in graded)."""
    collect(classroom, lab, log=log)
    collected = classroom.course_dir / "collected" / lab
    collected.mkdir(parents=True, exist_ok=True)
    arguments = ["grade", "autograde", lab, "--submissions", str(collected), "--quiet"]
    if jobs:
        arguments += ["--jobs", str(jobs)]
    status = _grade_cli(*arguments, *_course_options(classroom))
    if _grade_cli("grade", "feedback", lab, *_course_options(classroom)) != 0:
        raise ClassroomError(f"'deploylab grade feedback {lab}' failed")
    return_feedback(classroom, lab, log=log)
    return status


def _add_roster_to_gradebook(classroom: Classroom) -> None:
    """Every roster student in the gradebook (with names), so a lab they never handed in is
    exported as missing instead of being left out."""
    from nbgrader.api import Gradebook

    from deploylab.classroom.roster import read_roster

    roster = classroom.course_dir / "roster.csv"
    members = read_roster(roster) if roster.is_file() else []
    database = classroom.course_dir / "gradebook.db"
    with (
        contextlib.redirect_stderr(io.StringIO()),
        Gradebook(f"sqlite:///{database}", classroom.course) as gradebook,
    ):
        for member in members:
            if not member.is_instructor:
                gradebook.update_or_create_student(
                    member.username,
                    first_name=member.first_name,
                    last_name=member.last_name,
                    email=member.email,
                )


def export(classroom: Classroom, csv_path: str | None, shape: str = "wide") -> int:
    """``deploylab grade export`` on the hub's course, with every roster student listed."""
    _check_can_write_course(classroom)
    _add_roster_to_gradebook(classroom)
    arguments = ["grade", "export", "--format", shape, *_course_options(classroom)]
    if csv_path:
        arguments += ["--csv", csv_path]
    return _grade_cli(*arguments)
