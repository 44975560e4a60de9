"""A classroom on a real JupyterHub, as its people use it: students log in, fetch, submit; the
instructor releases, grades and exports as their own unix user; and every isolation claim is
an attack, run as the attacking student's own unix user, that must fail.

One hub for the whole module (1 instructor, 3 students). Needs root, bubblewrap and npm;
skipped on a laptop without them, failed on CI.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import nbformat
import pytest
from classroom_support import PASSWORD, ROOT, answered, running_classroom

from deploylab.classroom.client import HubSession

pytestmark = [pytest.mark.slow, pytest.mark.root, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def hub():
    with running_classroom(students=3) as classroom:
        yield classroom


@pytest.fixture(scope="module")
def sessions(hub):
    """Everyone logged in through the hub's form (first login sets the password), servers
    started; the time from 'classroom up' to the first student's server answering is printed."""
    logged_in = {}
    for index, name in enumerate([*hub.students, hub.instructor]):
        session = HubSession(hub.url, name)
        session.login(PASSWORD)
        spawn = session.start_server()
        if index == 0:
            print(f"\nclassroom up {hub.up_seconds:.1f} s; first student's server +{spawn:.1f} s")
        logged_in[name] = session
    return logged_in


@pytest.fixture(scope="module")
def graded(hub, sessions):
    """ip-basics released; student 1 hands in a right answer, student 2 a partly wrong one
    (with a markdown cell of markup, see the formgrader test), student 3 nothing; the
    instructor grades as their own unix user."""
    hub.instructor_runs("release", "ip-basics")
    course = hub.classroom.course
    for student, wrong in ((hub.students[0], set()), (hub.students[1], {"classes"})):
        session = sessions[student]
        status, _, text = session.request(
            f"/user/{student}/assignments/fetch",
            method="POST",
            form={"course_id": course, "assignment_id": "ip-basics"},
        )
        assert status == 200 and json.loads(text)["success"], text
        path = "/contents/ip-basics/ip-basics.ipynb"
        notebook = answered(session.api(path)["content"], wrong)
        if wrong:
            notebook.cells.append(nbformat.v4.new_markdown_cell(STUDENT_MARKUP))
        session.api(path, method="PUT", body={"type": "notebook", "content": notebook})
        status, _, text = session.request(
            f"/user/{student}/assignments/submit",
            method="POST",
            form={"course_id": course, "assignment_id": "ip-basics"},
        )
        assert status == 200 and json.loads(text)["success"], text
    return hub.instructor_runs("grade", "ip-basics")


# -- bringing the class up ------------------------------------------------------------------
def test_each_person_has_a_private_home_and_their_own_lessons(hub):
    for name in [hub.instructor, *hub.students]:
        home = Path(os.path.expanduser(f"~{name}"))
        info = home.stat()
        assert info.st_mode & 0o777 == 0o700, f"{home} is {oct(info.st_mode)}"
        lesson = home / "deploylab" / "lessons" / "00-start-here.ipynb"
        assert lesson.stat().st_uid == info.st_uid


def test_the_course_is_the_instructors_alone(hub):
    course = hub.classroom.course_dir
    assert course.stat().st_mode & 0o7777 == 0o2770
    assert (course / "source" / "ip-basics" / "ip-basics.ipynb").is_file()
    listing = hub.as_user(hub.instructor, "ls", str(course / "source"))
    assert "ip-basics" in listing.stdout


def test_each_server_runs_as_its_person_inside_their_memory_limit(hub, sessions):
    import pwd
    import subprocess

    from deploylab.classroom import limits
    from deploylab.classroom.hub import status

    rows = {row["username"]: row for row in status(hub.classroom)}
    for name in hub.students:
        assert rows[name]["server"] == "ready"
        assert rows[name]["memory"] and rows[name]["memory"] < 1 << 30
    # The kernel enforces it: a process in the student's control group (where their server
    # and its kernels live) that grows past the limit is killed, whoever started it.
    server_pid = _server_pid(hub.students[0])
    groups = [line.split(":", 2)[2] for line in Path(f"/proc/{server_pid}/cgroup").read_text()
              .splitlines() if "deploylab-classroom-" in line]  # fmt: skip
    assert groups, f"{hub.students[0]}'s server is in no deploylab control group"
    account = pwd.getpwnam(hub.students[0])
    hog = subprocess.Popen(
        ["/usr/bin/python3", "-c", "import sys; sys.stdin.readline(); "
         "chunks = [b'x' * (64 << 20) for _ in range(40)]; print('survived')"],
        user=account.pw_uid, group=account.pw_gid, extra_groups=[],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    made = limits.make_groups(hub.students[0], limits.ServerLimits(memory_bytes=1 << 30))
    assert all(group.endswith(f"/deploylab-classroom-{hub.students[0]}") for group in groups)
    assert all(made[0].name == path.rsplit("/", 1)[-1] for path in groups)
    for group in made:
        (group / "cgroup.procs").write_text(str(hog.pid))
    output, _ = hog.communicate("go\n", timeout=120)
    assert "survived" not in output and hog.returncode != 0


def _server_pid(username: str) -> int:
    """The pid of ``username``'s single-user server (jupyterhub-singleuser, their uid)."""
    import pwd

    uid = pwd.getpwnam(username).pw_uid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (
                    entry.stat().st_uid == uid
                    and b"jupyterhub-singleuser" in (entry / "cmdline").read_bytes()
                ):
                    return int(entry.name)
            except OSError:
                continue
    raise AssertionError(f"no single-user server of {username} is running")


def test_status_lists_everyone_with_their_role(hub, sessions):
    import subprocess
    import sys

    shown = subprocess.run(
        [sys.executable, "-m", "deploylab.cli", "classroom", "status", "--state-dir",
         str(hub.classroom.state_dir)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert re.search(rf"{hub.instructor}\s+instructor\s+ready", shown), shown
    for name in hub.students:
        assert re.search(rf"{name}\s+student\s+ready\s+\d+ MiB", shown), shown


# -- hand-out, hand-in, grading, feedback ---------------------------------------------------
def test_grading_on_the_hub_scores_each_hand_in_and_reports_who_is_missing(hub, graded):
    table = graded.stdout
    right, partly, absent = hub.students
    assert re.search(rf"{right}\s+9\s+9\s+graded", table), table
    assert re.search(rf"{partly}\s+5\s+9\s+graded", table), table
    assert f"missing: {absent}" in table


def test_students_fetch_their_own_feedback_with_their_score(hub, sessions, graded):
    course = hub.classroom.course
    for student, score in ((hub.students[0], "9"), (hub.students[1], "5")):
        session = sessions[student]
        status, _, text = session.request(
            f"/user/{student}/assignments/fetch_feedback",
            method="POST",
            form={"course_id": course, "assignment_id": "ip-basics"},
        )
        assert status == 200 and json.loads(text)["success"], text
        pages = session.api("/contents/ip-basics/feedback")["content"]
        page = session.api(f"/contents/{quote(pages[0]['path'])}/ip-basics.html")
        text = page["content"]
        assert re.search(rf"\b{score}\b\s*(/|of|out of)\s*9", text), text[:2000]
        assert "BEGIN HIDDEN TESTS" not in text


def test_export_lists_every_roster_student_and_marks_the_missing_one(hub, graded):
    exported = hub.instructor_runs("export").stdout
    rows = {row["student_id"]: row for row in csv.DictReader(io.StringIO(exported))}
    right, partly, absent = hub.students
    assert rows[right]["ip-basics"] == "9" and rows[partly]["ip-basics"] == "5"
    assert rows[absent]["ip-basics"] == "" and "missing" in rows[absent]["status"]
    assert hub.instructor not in rows


def test_formgrader_autograde_refuses_to_run_student_code_unsandboxed(hub, sessions, graded):
    session = sessions[hub.instructor]
    status, _, text = session.request(
        f"/user/{hub.instructor}/formgrader/api/submission/ip-basics/{hub.students[0]}/autograde",
        method="POST",
    )
    assert status == 200, text[:500]
    reply = json.loads(text)
    assert reply["success"] is False
    assert "deploylab classroom grade" in reply["error"]
    # ...and deploylab's sandboxed result is still there.
    autograded = hub.classroom.course_dir / "autograded" / hub.students[0] / "ip-basics"
    assert (autograded / "ip-basics.ipynb").is_file()
    # nbgrader's own feedback (hidden tests shown) is refused too: deploylab's page stays
    page = hub.classroom.course_dir / "feedback" / hub.students[0] / "ip-basics" / "ip-basics.html"
    before = page.read_bytes()
    status, _, text = session.request(
        f"/user/{hub.instructor}/formgrader/api/assignment/ip-basics/{hub.students[0]}"
        "/generate_feedback",
        method="POST",
    )
    assert status == 200, text[:500]
    reply = json.loads(text)
    assert reply["success"] is False and "deploylab classroom grade" in reply["error"]
    assert page.read_bytes() == before


# -- isolation: each attack runs as the attacking student's unix user -------------------------
def _fails(completed) -> bool:
    return completed.returncode != 0


def test_a_student_cannot_read_another_students_home_or_work(hub, sessions, graded):
    attacker, victim = hub.students[2], hub.students[0]
    victim_home = os.path.expanduser(f"~{victim}")
    for target in (
        victim_home,
        f"{victim_home}/deploylab/ip-basics/ip-basics.ipynb",
        f"{victim_home}/.local/share/jupyter/nbgrader_cache",
        f"{victim_home}/.local/share/jupyter/runtime",  # kernel connection files (HMAC keys)
    ):
        assert _fails(hub.as_user(attacker, "ls", "-la", target)), target
        assert _fails(hub.as_user(attacker, "cat", target)), target


def test_a_student_cannot_read_hidden_tests_or_the_gradebook(hub, graded):
    attacker = hub.students[2]
    course = hub.classroom.course_dir
    for target in (
        course / "source" / "ip-basics" / "ip-basics.ipynb",
        course / "gradebook.db",
        course / "roster.csv",
        course / "collected" / "ip-basics" / hub.students[0] / "ip-basics.ipynb",
        course / "autograded",
        ROOT / "autograder" / "source" / "ip-basics" / "ip-basics.ipynb",  # the checkout
    ):
        assert _fails(hub.as_user(attacker, "cat", str(target))), target
        assert _fails(hub.as_user(attacker, "ls", str(target))), target


def test_a_student_cannot_list_or_read_others_files_in_the_exchange(hub, graded):
    attacker = hub.students[2]
    exchange = hub.classroom.exchange_course_dir
    assert _fails(hub.as_user(attacker, "ls", str(exchange / "inbound")))
    assert _fails(hub.as_user(attacker, "ls", str(exchange / "feedback")))
    # Released labs are public; everything a student hands in is behind an unguessable name.
    assert "ip-basics" in hub.as_user(attacker, "ls", str(exchange / "outbound")).stdout
    for entry in (exchange / "inbound").iterdir():
        assert re.search(r"\+[A-Za-z0-9_-]{12}$", entry.name), entry.name


def test_a_student_cannot_hand_in_as_someone_else(hub, sessions, graded):
    attacker, victim = hub.students[2], hub.students[1]
    course = hub.classroom.course
    workspace = os.path.expanduser(f"~{attacker}/deploylab")
    config = str(hub.classroom.config_dir("student"))
    fetched = hub.as_user(
        attacker, "nbgrader", "fetch_assignment", "ip-basics", "--course", course,
        env={"JUPYTER_CONFIG_PATH": config},
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    forged = hub.as_user(
        attacker, "sh", "-c",
        f"cd {workspace} && nbgrader submit ip-basics --course {course} --student {victim}",
        env={"JUPYTER_CONFIG_PATH": config, "JUPYTERHUB_USER": victim},
    )  # fmt: skip
    assert forged.returncode == 0, forged.stderr  # nbgrader itself lets it through...
    collected = hub.instructor_runs("collect", "ip-basics").stdout
    assert f"REFUSED {victim}+ip-basics" in collected and f"not by {victim}" in collected
    # ...but what is collected for the victim is still their own hand-in, byte for byte.
    kept = hub.classroom.course_dir / "collected" / "ip-basics" / victim / "ip-basics.ipynb"
    cache = Path(os.path.expanduser(f"~{victim}/.local/share/jupyter/nbgrader_cache")) / course
    own = sorted(cache.glob(f"{victim}+ip-basics+*/ip-basics.ipynb"))[-1]
    assert kept.read_bytes() == own.read_bytes()


def test_a_student_cannot_read_change_or_replace_another_students_hand_in(hub, graded):
    """nbgrader's submit leaves a hand-in directory world-writable (0777) with world-readable
    files; here the attacker has learnt the victim's hand-in name and tries everything."""
    attacker, victim = hub.students[2], hub.students[0]
    inbound = hub.classroom.exchange_course_dir / "inbound"
    entry = max(inbound.glob(f"{victim}+ip-basics+*"), key=lambda path: path.stat().st_ctime)
    notebook = entry / "ip-basics.ipynb"
    before = {path.name: path.read_bytes() for path in entry.iterdir()}
    early = inbound / f"{victim}+ip-basics+2000-01-01 00:00:00.000000 UTC+AAAAAAAAAAAA"
    attempts = {
        "read the answers": ["cat", str(notebook)],
        "read the secret that names the feedback": ["cat", str(entry / "submission_secret.txt")],
        "list it": ["ls", str(entry)],
        "change it in place": ["sh", "-c", f'echo forged >> "{notebook}"'],
        "delete it": ["rm", "-f", str(notebook)],
        "plant a file": ["sh", "-c", f'echo forged > "{entry}/planted.ipynb"'],
        "rename the hand-in": ["mv", str(entry), str(early)],
        "replace the hand-in": ["sh", "-c", f'mv "{entry}" "{entry}.x" && mkdir "{entry}"'],
    }
    for what, command in attempts.items():
        assert _fails(hub.as_user(attacker, *command)), what
    assert {path.name: path.read_bytes() for path in entry.iterdir()} == before
    assert not early.exists() and not Path(f"{entry}.x").exists()
    # Still the instructors': collecting and grading read it (see the grading tests).
    assert entry.stat().st_gid == hub.classroom.course_dir.stat().st_gid


def test_a_hand_in_time_the_student_wrote_is_not_believed(hub, sessions, graded):
    """A student hands in late, then writes an early time into timestamp.txt and sets every
    mtime back: the hand-in is flagged and graded as received (its ctime, set by the kernel)."""
    from datetime import UTC, datetime, timedelta

    from nbgrader.utils import parse_utc

    student = hub.students[2]
    course = hub.classroom.course
    config = {"JUPYTER_CONFIG_PATH": str(hub.classroom.config_dir("student"))}
    workspace = os.path.expanduser(f"~{student}/deploylab")
    fetched = hub.as_user(
        student, "sh", "-c",
        f"cd {workspace} && (test -d ip-basics || nbgrader fetch_assignment ip-basics "
        f"--course {course}) && nbgrader submit ip-basics --course {course}",
        env=config,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    handed_in = datetime.now(UTC)
    inbound = hub.classroom.exchange_course_dir / "inbound"
    entry = max(inbound.glob(f"{student}+ip-basics+*"), key=lambda path: path.stat().st_ctime)
    early = "2020-01-01 00:00:00.000000 UTC"
    forged = hub.as_user(
        student, "sh", "-c",
        f'printf "%s" "{early}" > "{entry}/timestamp.txt" && '
        f'touch -d 2020-01-01 "{entry}"/* "{entry}"',
    )  # fmt: skip
    assert forged.returncode == 0, forged.stderr
    assert (entry / "timestamp.txt").read_text() == early
    assert (entry / "ip-basics.ipynb").stat().st_mtime < handed_in.timestamp() - 3600
    collected = hub.instructor_runs("collect", "ip-basics").stdout
    assert f"FLAGGED {student}'s ip-basics: it says 2020-01-01 00:00:00 UTC" in collected
    kept = hub.classroom.course_dir / "collected" / "ip-basics" / student
    trusted = parse_utc((kept / "timestamp.txt").read_text().strip()).replace(tzinfo=UTC)
    assert trusted >= handed_in - timedelta(seconds=60), trusted
    assert (kept / "claimed_timestamp.txt").read_text().strip() == early


def test_a_hand_in_the_instructors_cannot_read_does_not_stop_collecting(hub, graded):
    """A student owns their hand-in directory and may close it to the instructors (chmod
    700): collecting stopped with PermissionError, for the whole class. It is refused now,
    and everyone else's hand-in is collected."""
    student = hub.students[2]
    inbound = hub.classroom.exchange_course_dir / "inbound"
    entry = inbound / f"{student}+ip-basics+2099-01-01 00:00:00.000000 UTC+closed"
    made = hub.as_user(student, "sh", "-c", f'mkdir "{entry}" && chmod 700 "{entry}"')
    assert made.returncode == 0, made.stderr
    try:
        collected = hub.instructor_runs("collect", "ip-basics").stdout
    finally:
        shutil.rmtree(entry)
    assert f"REFUSED {entry.name}: it cannot be read" in collected, collected
    for other in hub.students[:2]:
        kept = hub.classroom.course_dir / "collected" / "ip-basics" / other / "ip-basics.ipynb"
        assert kept.is_file(), other


def test_a_manual_grade_in_formgrader_reaches_the_students_feedback(hub, sessions, graded):
    """The instructor gives points by hand in formgrader (its own API, as its page does) and
    comments; after 'classroom grade' the student's fetched feedback shows both."""
    instructor, student = sessions[hub.instructor], hub.students[1]  # scored 5 of 9
    base = f"/user/{hub.instructor}/formgrader/api"
    notebooks = json.loads(instructor.request(f"{base}/submitted_notebooks/ip-basics/ip-basics")[2])
    submission = next(item for item in notebooks if item["student"] == student)
    grades = json.loads(instructor.request(f"{base}/grades?submission_id={submission['id']}")[2])
    classes = next(grade for grade in grades if grade["name"] == "classes-tests")
    status, _, text = instructor.request(
        f"{base}/grade/{classes['id']}", method="PUT", body={"manual_score": 4.0}
    )
    assert status == 200, text
    comments = json.loads(
        instructor.request(f"{base}/comments?submission_id={submission['id']}")[2]
    )
    answer = next(comment for comment in comments if comment["name"] == "classes")
    status, _, text = instructor.request(
        f"{base}/comment/{answer['id']}", method="PUT", body={"manual_comment": "See class D."}
    )
    assert status == 200, text
    hub.instructor_runs("grade", "ip-basics")
    session = sessions[student]
    status, _, text = session.request(
        f"/user/{student}/assignments/fetch_feedback",
        method="POST",
        form={"course_id": hub.classroom.course, "assignment_id": "ip-basics"},
    )
    assert status == 200 and json.loads(text)["success"], text
    pages = session.api("/contents/ip-basics/feedback")["content"]
    newest = sorted(page["path"] for page in pages)[-1]
    page = session.api(f"/contents/{quote(newest)}/ip-basics.html")["content"]
    assert "Score: <b>9 / 9</b>" in page, page[:2000]
    assert "changed this to <b>4 / 4</b> points" in page and "See class D." in page
    exported = hub.instructor_runs("export").stdout
    rows = {row["student_id"]: row for row in csv.DictReader(io.StringIO(exported))}
    assert rows[student]["ip-basics"] == "9"


#: A student's markdown that would run script in whatever page renders it as HTML.
STUDENT_MARKUP = "<img src=x onerror=alert(document.domain)>"


def test_a_students_markup_is_text_in_the_instructors_formgrader(hub, sessions, graded):
    """formgrader shows a submission in the instructor's own Jupyter origin and renders
    markdown unsanitised: a student's markup there would act as the instructor. Graded on
    the hub, it is on the page as text only."""
    instructor, student = sessions[hub.instructor], hub.students[1]
    base = f"/user/{hub.instructor}/formgrader"
    notebooks = json.loads(
        instructor.request(f"{base}/api/submitted_notebooks/ip-basics/ip-basics")[2]
    )
    submission = next(item for item in notebooks if item["student"] == student)
    status, _, body = instructor.request(f"{base}/submissions/{submission['id']}/")
    page = body.decode("utf-8", "replace")
    assert status == 200, page[:500]

    handlers: list[tuple[str, str]] = []

    class EventHandlers(HTMLParser):
        def handle_starttag(self, tag, attrs):
            handlers.extend(
                (tag, name)
                for name, value in attrs
                if name.startswith("on") and "document.domain" in (value or "")
            )

    EventHandlers().feed(page)
    assert handlers == [], "the student's markup is an element of the page"
    assert "onerror=alert(document.domain)" in page  # what the student wrote, as text


def test_a_student_cannot_reach_another_students_server(hub, sessions):
    attacker, victim = hub.students[2], hub.students[0]
    session = sessions[attacker]
    # Through the proxy, with the attacker's own token: the victim's server refuses it.
    status, _, _ = session.request(f"/user/{victim}/api/contents")
    assert status in (302, 403), status
    status, _, _ = session.request(f"/user/{victim}/api/kernels", method="POST", body={})
    assert status in (302, 403), status
    # Through the proxy with the attacker's browser cookies, following the OAuth dance.
    assert _follow(session, f"/user/{victim}/api/contents") == 403
    # Straight to the victim's server port, around the proxy.
    from deploylab.classroom.hub import hub_api

    server_url = hub_api(hub.classroom, f"/users/{victim}")["servers"][""]["url"]
    direct = _direct_status(hub, server_url, "api/contents", session.token)
    assert direct == 403, direct
    # The hub's API: no listing of other users, no token for the victim.
    assert session.request("/hub/api/users")[0] == 403
    assert session.request(f"/hub/api/users/{victim}/tokens", method="POST", body={})[0] == 403


def _follow(session: HubSession, path: str, hops: int = 10) -> int:
    for _ in range(hops):
        status, headers, _ = session.request(path, headers={"Authorization": ""})
        if status not in (301, 302, 303, 307):
            return status
        location = headers["Location"]
        path = location.split(session.url, 1)[-1] if location.startswith("http") else location
    return status


def _direct_status(hub, server_path: str, api: str, token: str) -> int:
    """Status of a request to a single-user server's own port, found from the proxy's table."""
    from deploylab.classroom.hub import hub_api

    routes = hub_api(hub.classroom, "/proxy")
    target = routes[server_path]["target"]
    request = urllib.request.Request(
        f"{target}{server_path}{api}", headers={"Authorization": f"token {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.timeout(900)
def test_two_students_run_the_same_lesson_at_once_without_root(hub, sessions):
    """Lessons work for ordinary accounts: the nginx lesson (nginx unprivileged, own prefix,
    servers on port 0) run by two students at the same time in their own kernels."""
    import concurrent.futures

    import nbformat

    from deploylab.classroom.client import run_cells

    lesson = nbformat.read(ROOT / "lessons" / "04-nginx-and-zero-downtime.ipynb", as_version=4)
    cells = [cell.source for cell in lesson.cells if cell.cell_type == "code"]
    pair = hub.students[:2]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        errors = dict(
            zip(pair, pool.map(lambda n: run_cells(sessions[n], cells, 600), pair), strict=True)
        )
    assert errors == {name: [] for name in pair}


def test_down_stops_the_hub_and_every_server(hub, sessions):
    """Last in this module: 'classroom down' leaves nothing of the class running."""
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-m", "deploylab.cli", "classroom", "down", "--state-dir",
         str(hub.classroom.state_dir)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    for name in hub.students:
        with pytest.raises(AssertionError):
            _server_pid(name)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{hub.url}/hub/api/", timeout=5)
