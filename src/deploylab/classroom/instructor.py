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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from deploylab.classroom.layout import Classroom, ClassroomError
from deploylab.grading.results import printable
from deploylab.workspace import as_jupyterlab_saves

__all__ = [
    "CollectedSubmission",
    "claim_problem",
    "collect",
    "export",
    "grade",
    "received_at",
    "release",
    "return_feedback",
]

#: nbgrader's inbound entry name: ``student+lab+timestamp+random`` (or without ``+random``).
INBOUND_NAME = re.compile(r"^(?P<student>[^+]+)\+(?P<lab>[^+]+)\+(?P<timestamp>[^+]+)(\+.*)?$")
#: What the student's own process wrote into a hand-in: the time it claims, and the secret
#: that names its feedback page.
CLAIMED_TIME_FILE = "timestamp.txt"
SECRET_FILE = "submission_secret.txt"
#: In a collected submission: the student's claimed time (the trusted one is timestamp.txt).
CLAIMED_COPY = "claimed_timestamp.txt"
#: How far a hand-in's own timestamp may be from when it reached the exchange (nbgrader
#: writes it before copying; a large notebook on a busy disk takes a while) before it is
#: flagged as not believable.
CLAIM_TOLERANCE = timedelta(minutes=2)
#: nbgrader's timestamp format (``Exchange.timestamp_format``), which its gradebook parses.
NBGRADER_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"


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
    for notebook in staging.rglob("*.ipynb"):  # as JupyterLab saves it: opening changes nothing
        notebook.write_bytes(as_jupyterlab_saves(notebook.read_bytes()))
    for path in [staging, *staging.rglob("*")]:
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
    """The latest acceptable hand-in of one student (or why one was refused).

    ``received`` is when it last changed in the exchange, from the inode change times (ctime)
    of its directory and files: the kernel sets them and an unprivileged user cannot set them
    back, unlike ``timestamp.txt`` and mtimes, which the student's own process writes.
    """

    student: str
    timestamp: str  # as claimed (the inbound name's)
    directory: Path | None
    refused: str = ""
    received: datetime | None = None
    flagged: str = ""


def _owner(path: Path, uid: int | None = None) -> str:
    uid = path.lstat().st_uid if uid is None else uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def received_at(entry: Path) -> datetime:
    """When a hand-in last changed: the latest ctime of its directory and what is in it."""
    latest = entry.lstat().st_ctime
    for child in entry.iterdir():
        latest = max(latest, child.lstat().st_ctime)
    return datetime.fromtimestamp(latest, tz=UTC)


def claim_problem(claimed: str, received: datetime) -> str:
    """'' when the time a hand-in claims agrees with when it reached the exchange, else why.

    >>> at = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    >>> claim_problem("2026-12-02 09:00:05.000000 UTC", at)
    ''
    >>> claim_problem("2026-11-30 23:59:00.000000 UTC", at)
    'it says 2026-11-30 23:59:00 UTC but reached the exchange at 2026-12-02 09:00:00 UTC'
    """
    from nbgrader.utils import parse_utc

    try:
        stated = parse_utc(claimed).replace(tzinfo=UTC)  # nbgrader returns naive UTC
    except (ValueError, OverflowError):
        return f"its timestamp {claimed[:64]!r} is not a time"
    if abs(stated - received) <= CLAIM_TOLERANCE:
        return ""
    return (
        f"it says {stated:%Y-%m-%d %H:%M:%S} UTC but reached the exchange at "
        f"{received:%Y-%m-%d %H:%M:%S} UTC"
    )


def _read_owned(path: Path, student: str) -> tuple[bytes | None, str, float]:
    """A hand-in file's bytes, '' or why it is refused, and its ctime as read (fstat of the
    very file read: no swap between the check and the read)."""
    from deploylab.grading.submissions import UnreadableSubmission, read_regular_file

    try:
        data, info = read_regular_file(path)
    except FileNotFoundError:
        return None, "", 0.0
    except UnreadableSubmission as error:
        return None, str(error), 0.0
    owner = _owner(path, info.st_uid)
    if owner != student:
        return None, f"{path.name} belongs to {owner}, not {student}", 0.0
    return data, "", info.st_ctime


def _copy_submission(source: Path, student: str, lab: str, target: Path) -> tuple[str, dict]:
    """Copy a hand-in; returns ('' or why it is refused, the times found). Only regular files
    the student owns are taken (no symlinks, no one else's files), and only the lab's
    notebook and the secret; the claimed time is kept as ``claimed_timestamp.txt`` and
    ``timestamp.txt`` says when the hand-in really reached the exchange."""
    target.mkdir(parents=True, exist_ok=True)
    latest = source.lstat().st_ctime
    claimed = ""
    for name in (f"{lab}.ipynb", SECRET_FILE, CLAIMED_TIME_FILE):
        data, problem, changed = _read_owned(source / name, student)
        if problem:
            return problem, {}
        if data is None:
            if name == f"{lab}.ipynb":
                return f"no {name} in the hand-in", {}
            continue
        latest = max(latest, changed)
        if name == CLAIMED_TIME_FILE:
            claimed = data.decode("utf-8", "replace").strip()[:64]
            (target / CLAIMED_COPY).write_text(claimed + "\n", encoding="utf-8")
        else:
            (target / name).write_bytes(data)
    received = datetime.fromtimestamp(latest, tz=UTC)
    trusted = received.strftime(NBGRADER_TIME_FORMAT)
    (target / CLAIMED_TIME_FILE).write_text(trusted + "\n", encoding="utf-8")
    return "", {"received": received, "claimed": claimed}


def collect(classroom: Classroom, lab: str, *, log=print) -> dict[str, CollectedSubmission]:
    """Copy each roster student's latest hand-in of ``lab`` from the exchange into
    ``course/collected/<lab>/<student>/``; a hand-in is taken only if the student it names owns
    it. "Latest" and the time graded for lateness are when it last changed in the exchange
    (:func:`received_at`), never the time the student's process wrote; a hand-in whose own
    timestamp disagrees is flagged. Returns the students' collected submissions; students with
    none are left out."""
    _check_can_write_course(classroom)
    inbound = classroom.exchange_course_dir / "inbound"
    students = set(classroom.students)
    latest: dict[str, tuple[datetime, str, Path]] = {}
    refused: dict[str, CollectedSubmission] = {}
    for entry in sorted(inbound.iterdir()):
        match = INBOUND_NAME.match(entry.name)
        if not match or match["lab"] != lab:
            continue
        student, timestamp = match["student"], match["timestamp"]
        shown = printable(entry.name)  # named by the student: may hold escape sequences
        owner = _owner(entry)
        if student not in students:
            log(f"classroom: ignored {shown}: {student!r} is not a student on the roster")
            continue
        if owner != student or entry.is_symlink() or not entry.is_dir():
            log(f"classroom: REFUSED {shown}: handed in by {owner}, not by {student}")
            refused[student] = CollectedSubmission(student, timestamp, None, f"owned by {owner}")
            continue
        try:
            received = received_at(entry)
        except OSError as error:  # the student closed their hand-in to the instructors
            log(f"classroom: REFUSED {shown}: it cannot be read ({error.strerror})")
            refused[student] = CollectedSubmission(student, timestamp, None, "cannot be read")
            continue
        if student not in latest or received > latest[student][0]:
            latest[student] = (received, timestamp, entry)
    collected_root = classroom.course_dir / "collected" / lab
    collected: dict[str, CollectedSubmission] = {}
    for student, (_, timestamp, entry) in sorted(latest.items()):
        target = collected_root / student
        staging = collected_root / f".{student}.new"
        if staging.exists():
            shutil.rmtree(staging)
        problem, times = _copy_submission(entry, student, lab, staging)
        if problem:
            shutil.rmtree(staging)
            log(f"classroom: REFUSED {printable(entry.name)}: {problem}")
            refused[student] = CollectedSubmission(student, timestamp, None, problem)
            continue
        flagged = claim_problem(times["claimed"] or timestamp, times["received"])
        if flagged:
            log(f"classroom: FLAGGED {student}'s {lab}: {flagged}; graded as received")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        collected[student] = CollectedSubmission(
            student, timestamp, target, received=times["received"], flagged=flagged
        )
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
        try:  # the student wrote it: it may be anything
            secret = secret_file.read_bytes().decode("utf-8").strip()
        except UnicodeDecodeError:
            log(f"classroom: no feedback for {student}: the hand-in's secret is not text")
            continue
        name = feedback_name(secret, lab)
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
