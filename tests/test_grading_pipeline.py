"""The grading pipeline end to end: release, autograde, export, feedback, for every lab.

Every lab found in ``autograder/source/`` is checked (new labs join automatically): its
instructor notebook scores full marks through ``deploylab grade autograde``, its released
notebook scores 0 without stopping the batch, ``labs/`` holds no solution or hidden-test
text and equals what ``deploylab grade release`` produces. The tests work on temporary
copies of the course, never on the real ``autograder/`` state, and use the bubblewrap
sandbox wherever it works.
"""

from __future__ import annotations

import copy
import csv
import functools
import io
import json
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest

from deploylab.grading.autograde import autograde, sandbox_problem
from deploylab.grading.cli import main  # only the grading commands: other topics may be mid-edit
from deploylab.grading.course import Course

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "autograder" / "source"
LABS = sorted(
    path.parent.name for path in SOURCE.glob("*/*.ipynb") if path.stem == path.parent.name
)
SANDBOX = sandbox_problem() is None
SANDBOX_ARGS = [] if SANDBOX else ["--unsafe-no-sandbox"]


@functools.cache
def _empty_gradebook() -> bytes:
    """The bytes of a new, empty nbgrader gradebook (its tables and alembic version).

    nbgrader makes a new gradebook by running the ``alembic`` script in a fresh Python that
    imports all of nbgrader (6.6 s of CPU, 40 s of wall time on a busy 2-core machine), once
    per course; the tests make many courses, so they make it once per run and copy it.
    """
    from nbgrader.api import Gradebook

    from deploylab.grading.course import _put_interpreter_tools_on_path

    _put_interpreter_tools_on_path()
    with tempfile.TemporaryDirectory(prefix="empty-gradebook-") as directory:
        path = Path(directory) / "gradebook.db"
        with Gradebook(f"sqlite:///{path}", "deploylab"):
            pass
        return path.read_bytes()


def seed_gradebook(root: Path) -> None:
    """Give the course at ``root`` a new, empty gradebook, as nbgrader would make it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "gradebook.db").write_bytes(_empty_gradebook())


def make_course(directory: Path) -> Course:
    """A private copy of the course (sources and config only, and a new empty gradebook)
    with its own labs/ dir."""
    root = directory / "autograder"
    shutil.copytree(SOURCE, root / "source")
    shutil.copy(ROOT / "autograder" / "nbgrader_config.py", root / "nbgrader_config.py")
    seed_gradebook(root)
    return Course.locate(root, directory / "labs")


def course_args(course: Course) -> list[str]:
    return ["--course", str(course.root), "--labs-dir", str(course.labs_dir)]


def source_notebook(lab: str):
    return nbformat.read(SOURCE / lab / f"{lab}.ipynb", as_version=4)


def released_notebook(lab: str):
    return nbformat.read(ROOT / "labs" / lab / f"{lab}.ipynb", as_version=4)


def max_points(notebook) -> float:
    return sum(
        float(cell.metadata["nbgrader"].get("points", 0))
        for cell in notebook.cells
        if cell.metadata.get("nbgrader", {}).get("grade")
    )


def marked_lines(notebook, begin: str, end: str) -> list[str]:
    """Stripped lines between ``### BEGIN <what>`` / ``### END <what>`` markers."""
    lines: set[str] = set()
    for cell in notebook.cells:
        inside = False
        for line in cell.source.splitlines():
            if line.strip() == begin:
                inside = True
            elif line.strip() == end:
                inside = False
            elif inside and len(line.strip()) >= 8:
                lines.add(line.strip())
    return sorted(lines)


def public_text(notebook) -> str:
    """The source notebook's text outside solution and hidden-test blocks."""
    kept = []
    for cell in notebook.cells:
        inside = False
        for line in cell.source.splitlines():
            if line.strip() in ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS"):
                inside = True
            elif line.strip() in ("### END SOLUTION", "### END HIDDEN TESTS"):
                inside = False
            elif not inside:
                kept.append(line)
    return "\n".join(kept)


def write_submission(directory: Path, student: str, notebook, name: str | None = None) -> None:
    folder = directory / student
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, folder / (name or "submission.ipynb"))


def with_answer(notebook, grade_id: str, source: str):
    notebook = copy.deepcopy(notebook)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            cell.source = source
            return notebook
    raise KeyError(grade_id)


def parse_table(text: str) -> dict[str, tuple[str, str, str]]:
    """``deploylab grade autograde`` table → {student: (score, max, status)}."""
    rows = {}
    for line in text.strip().splitlines()[2:]:
        student, score, maximum, status = line.split(None, 3)
        rows[student] = (score, maximum, status)
    return rows


# ---------------------------------------------------------------------------------------
# release
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def released_course(tmp_path_factory) -> Course:
    course = make_course(tmp_path_factory.mktemp("release"))
    assert main(["grade", "release", *course_args(course)]) == 0
    return course


@pytest.mark.parametrize("lab", LABS)
def test_labs_dir_equals_what_release_produces(lab, released_course, capsys):
    committed = {
        p.relative_to(ROOT / "labs" / lab): p.read_bytes()
        for p in (ROOT / "labs" / lab).rglob("*")
        if p.is_file()
    }
    generated = {
        p.relative_to(released_course.labs_dir / lab): p.read_bytes()
        for p in (released_course.labs_dir / lab).rglob("*")
        if p.is_file()
    }
    assert committed, f"labs/{lab}/ is missing: run deploylab grade release {lab}"
    assert sorted(committed) == sorted(generated)
    for name, content in generated.items():
        assert committed[name] == content, f"labs/{lab}/{name} differs from what release produces"
    # A second release of the same lab is byte-identical (what CI's git diff relies on).
    assert main(["grade", "release", lab, *course_args(released_course)]) == 0
    again = {
        p.relative_to(released_course.labs_dir / lab): p.read_bytes()
        for p in (released_course.labs_dir / lab).rglob("*")
        if p.is_file()
    }
    assert again == generated


@pytest.mark.parametrize("lab", LABS)
def test_released_notebook_has_no_solution_or_hidden_tests(lab):
    source = source_notebook(lab)
    released_text = (ROOT / "labs" / lab / f"{lab}.ipynb").read_text(encoding="utf-8")
    released = nbformat.reads(released_text, as_version=4)
    joined = "\n".join(cell.source for cell in released.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in released_text
    public = public_text(source)  # what the release may show; a line found there is no leak
    for line in marked_lines(source, "### BEGIN SOLUTION", "### END SOLUTION"):
        if line not in public:
            assert line not in joined, f"solution line leaked into labs/{lab}: {line!r}"
    for line in marked_lines(source, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"):
        if line not in public:
            assert line not in joined, f"hidden test line leaked into labs/{lab}: {line!r}"
    for cell in released.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    # The student version keeps every graded cell and its points.
    assert max_points(released) == max_points(source)


# ---------------------------------------------------------------------------------------
# autograde: every lab, instructor version full marks, released version zero
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def every_lab_graded(tmp_path_factory):
    """One autograde batch per lab: instructor, released, and a corrupt file."""
    course = make_course(tmp_path_factory.mktemp("every-lab"))
    tables = {}
    for lab in LABS:
        submissions = course.root.parent / f"submissions-{lab}"
        write_submission(submissions, "instructor", source_notebook(lab), f"{lab}.ipynb")
        write_submission(submissions, "unmodified", released_notebook(lab))
        (submissions / "corrupt").mkdir()
        (submissions / "corrupt" / f"{lab}.ipynb").write_text('{"cells": [', encoding="utf-8")
        if lab == "deployment":  # the answer key itself, imported as the answer
            key = "from deploylab.deploy import serving_after_each_step as serving_after\n"
            write_submission(
                submissions,
                "uses-reference",
                with_answer(source_notebook(lab), "serving-after", key),
            )
        tables[lab] = (submissions, course)
    return tables


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_instructor_full_marks_and_release_zero(lab, every_lab_graded, capsys):
    submissions, course = every_lab_graded[lab]
    capsys.readouterr()
    status = main(
        [
            "grade",
            "autograde",
            lab,
            "--submissions",
            str(submissions),
            "--quiet",
            *SANDBOX_ARGS,
            *course_args(course),
        ]
    )
    table = parse_table(capsys.readouterr().out)
    assert status == 0
    expected_max = f"{max_points(source_notebook(lab)):g}"
    assert table["instructor"] == (expected_max, expected_max, "graded"), table["instructor"]
    assert table["unmodified"] == ("0", expected_max, "graded"), table["unmodified"]
    assert table["corrupt"][0] == "-" and table["corrupt"][2].startswith("not a notebook")
    if lab == "deployment":
        assert table["uses-reference"][0] == "-"
        assert table["uses-reference"][2].startswith("needs review (imports the course's reference")


# ---------------------------------------------------------------------------------------
# ip-basics in detail
# ---------------------------------------------------------------------------------------
def ip_basics_solutions() -> dict[str, str]:
    return {
        cell.metadata.nbgrader.grade_id: cell.source
        for cell in source_notebook("ip-basics").cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }


NO_D_OR_E = """
def address_class(address):
    first = int(address.split(".")[0])
    return "A" if first < 128 else "B" if first < 192 else "C"

def is_host_usable(address):
    return int(address.split(".")[0]) not in (0, 127) and address_class(address) in "ABC"
"""
FORGETS_ZERO_NETWORK = """
def address_class(address):
    first = int(address.split(".")[0])
    for limit, name in ((128, "A"), (192, "B"), (224, "C"), (240, "D")):
        if first < limit:
            return name
    return "E"

def is_host_usable(address):
    return not address.startswith("127.") and address_class(address) in "ABC"
"""


@pytest.fixture(scope="module")
def ip_basics_batch(tmp_path_factory):
    """A mixed class of ip-basics submissions, graded once through the CLI."""
    base = tmp_path_factory.mktemp("ip-basics")
    course = make_course(base)
    answers = ip_basics_solutions()
    released = released_notebook("ip-basics")
    complete = released
    for grade_id in ("to-binary", "prefix-size"):
        complete = with_answer(complete, grade_id, answers[grade_id])
    submissions = base / "submissions"
    # 3 (binary) + 2 (prefix) + 2 of 4 (classes: D/E group and the not-usable group fail)
    write_submission(submissions, "partial-7", with_answer(complete, "classes", NO_D_OR_E))
    # 3 + 2 + 3 of 4 (only the not-usable group fails: 0.x.x.x is said to be usable)
    write_submission(
        submissions, "partial-8", with_answer(complete, "classes", FORGETS_ZERO_NETWORK)
    )
    # nbgrader's submission time file travels with the notebook into the gradebook.
    (submissions / "partial-8" / "timestamp.txt").write_text("2026-11-20 10:00:00.000000 UTC\n")
    # A correct answer that also writes to stderr is not zeroed (nbgrader would give 0).
    noisy = with_answer(
        source_notebook("ip-basics"),
        "to-binary",
        "import sys\nprint('debugging', file=sys.stderr)\n" + answers["to-binary"],
    )
    write_submission(submissions, "stderr-debug", noisy)
    # Test cells deleted and edited: they are restored from the instructor version.
    tampered = with_answer(released, "prefix-size", answers["prefix-size"])
    tampered = with_answer(tampered, "to-binary", "def to_binary(address):\n    return ''")
    tampered = with_answer(tampered, "to-binary-tests", "pass")
    tampered.cells = [
        cell
        for cell in tampered.cells
        if cell.metadata.get("nbgrader", {}).get("grade_id") != "prefix-size-tests"
    ]
    write_submission(submissions, "deleted-tests", tampered)
    # Prints the source of the test cell calling it (hidden asserts included) on every call:
    # whatever its grade, none of that may reach the feedback page.
    snoop = (
        "import inspect, linecache\n"
        "def _show_caller():\n"
        "    frame = inspect.currentframe().f_back.f_back\n"
        "    print(''.join(linecache.getlines(frame.f_code.co_filename)))\n"
        "    print(inspect.getframeinfo(frame, context=5).code_context)\n"
        + answers["to-binary"].replace('    """Dotted', '    _show_caller()\n    """Dotted', 1)
    )
    write_submission(submissions, "snooper", with_answer(complete, "to-binary", snoop))
    other = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    other.cells[0].metadata["nbgrader"] = {
        "grade": False,
        "grade_id": "some-other-lab-answer",
        "locked": False,
        "solution": True,
        "schema_version": 3,
    }
    write_submission(submissions, "wrong-lab", other)
    (submissions / "empty").mkdir()
    (submissions / "empty" / "ip-basics.ipynb").write_bytes(b"")
    return course, submissions


@pytest.fixture(scope="module")
def ip_basics_table(ip_basics_batch):
    course, submissions = ip_basics_batch
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        status = main(
            [
                "grade",
                "autograde",
                "ip-basics",
                "--submissions",
                str(submissions),
                "--quiet",
                "--jobs",
                "2",
                *SANDBOX_ARGS,
                *course_args(course),
            ]
        )
    assert status == 0
    return parse_table(out.getvalue())


@pytest.mark.slow
def test_partial_credit_is_exact(ip_basics_table):
    assert ip_basics_table["partial-7"] == ("7", "9", "graded")
    assert ip_basics_table["partial-8"] == ("8", "9", "graded")


@pytest.mark.slow
def test_stderr_does_not_zero_a_correct_answer(ip_basics_table):
    assert ip_basics_table["stderr-debug"] == ("9", "9", "graded")


@pytest.mark.slow
def test_deleted_and_edited_test_cells_are_restored(ip_basics_table):
    # The emptied to-binary-tests cell is restored and catches the wrong to_binary (0 of 3);
    # the deleted prefix-size-tests cell is put back and graded (2 of 2); classes is unanswered.
    assert ip_basics_table["deleted-tests"] == ("2", "9", "graded")


@pytest.mark.slow
def test_unusable_files_get_a_status_not_a_zero(ip_basics_table):
    assert ip_basics_table["wrong-lab"][0] == "-"
    assert ip_basics_table["wrong-lab"][2].startswith("wrong lab")
    assert ip_basics_table["empty"][0] == "-"
    assert ip_basics_table["empty"][2].startswith("not a notebook")


@pytest.mark.slow
def test_export_matches_the_table(ip_basics_batch, ip_basics_table, capsys):
    course, _ = ip_basics_batch
    capsys.readouterr()
    assert main(["grade", "export", *course_args(course)]) == 0
    wide = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {row["student_id"] for row in wide} == set(ip_basics_table)
    for row in wide:
        score, maximum, status = ip_basics_table[row["student_id"]]
        assert row["ip-basics"] == ("" if score == "-" else score)
        assert row["max_total"] == maximum
        assert (row["status"] == "graded") == (status == "graded")
        if status != "graded":
            assert row["status"].startswith("ip-basics: " + status.split(" (")[0])

    target = course.root.parent / "grades.csv"
    assert (
        main(
            ["grade", "export", "--format", "nbgrader", "--csv", str(target), *course_args(course)]
        )
        == 0
    )
    with target.open(encoding="utf-8") as exported:
        rows = list(csv.DictReader(exported))
    nbgrader_columns = [
        "assignment",
        "duedate",
        "timestamp",
        "student_id",
        "last_name",
        "first_name",
        "email",
        "raw_score",
        "late_submission_penalty",
        "score",
        "max_score",
    ]
    assert list(rows[0]) == [*nbgrader_columns, "status"]
    for row in rows:
        score, maximum, status = ip_basics_table[row["student_id"]]
        assert row["assignment"] == "ip-basics"
        if row["student_id"] == "partial-8":
            assert row["timestamp"].startswith("2026-11-20 10:00:00")
        assert row["score"] == ("" if score == "-" else score)
        assert row["max_score"] == maximum


@pytest.mark.slow
def test_gradebook_holds_the_same_scores(ip_basics_batch, ip_basics_table):
    from nbgrader.api import Gradebook

    course, _ = ip_basics_batch
    with Gradebook(course.db_url) as gradebook:
        for student, (score, _maximum, status) in ip_basics_table.items():
            submission = gradebook.find_submission("ip-basics", student)
            if status == "graded":
                assert f"{submission.score:g}" == score
                assert not submission.needs_manual_grade
            else:
                assert submission.needs_manual_grade  # flagged for a person, not a silent 0


@pytest.mark.slow
def test_feedback_never_shows_hidden_tests(ip_basics_batch, ip_basics_table):
    import html

    course, _ = ip_basics_batch
    assert main(["grade", "feedback", "ip-basics", *course_args(course)]) == 0
    source = source_notebook("ip-basics")
    hidden = [
        line
        for line in marked_lines(source, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
        if line not in public_text(source)
    ]
    assert hidden
    pages = {}
    for student in ip_basics_table:
        path = course.feedback_dir(student, "ip-basics") / "ip-basics.html"
        pages[student] = html.unescape(path.read_text(encoding="utf-8"))
        for line in hidden:
            assert line not in pages[student], f"{student}'s feedback shows {line!r}"
        assert "BEGIN HIDDEN TESTS" not in pages[student]
    # The instructor's messages do reach the student, as written in the master.
    assert "192.168.1.10 should give 11000000.10101000.00000001.00001010" in pages["deleted-tests"]
    assert "Partly passed" in pages["partial-7"] and "Partly passed" in pages["partial-8"]
    # What the snooper's code printed (its callers' source) is nowhere on its page.
    assert "linecache" not in pages["snooper"].split("Your answer")[0]
    assert "Score: <b>5 / 9</b>" in pages["snooper"]  # to_binary and prefix size only


@pytest.mark.slow
def test_parallel_equals_serial_and_rerun_is_resumable(ip_basics_batch, tmp_path):
    _, submissions = ip_basics_batch
    course = make_course(tmp_path)
    sandbox = SANDBOX
    serial = autograde(course, "ip-basics", submissions, jobs=1, sandbox=sandbox, progress=False)
    parallel = autograde(
        course, "ip-basics", submissions, jobs=2, force=True, sandbox=sandbox, progress=False
    )
    assert [(r.student, r.status, r.score) for r in serial] == [
        (r.student, r.status, r.score) for r in parallel
    ]
    assert not any(result.reused for result in parallel)
    state_before = json.loads((course.state_dir / "status.json").read_text())
    again = autograde(course, "ip-basics", submissions, jobs=2, sandbox=sandbox, progress=False)
    assert all(result.reused for result in again)
    assert [(r.student, r.score) for r in again] == [(r.student, r.score) for r in parallel]
    # A changed submission is regraded, the others are not.
    changed = submissions.parent / "changed"
    shutil.copytree(submissions, changed)
    notebook = nbformat.read(changed / "partial-7" / "submission.ipynb", as_version=4)
    notebook = with_answer(notebook, "classes", ip_basics_solutions()["classes"])
    nbformat.write(notebook, changed / "partial-7" / "submission.ipynb")
    third = {
        r.student: r
        for r in autograde(course, "ip-basics", changed, jobs=2, sandbox=sandbox, progress=False)
    }
    assert not third["partial-7"].reused and third["partial-7"].score == 9
    assert all(result.reused for student, result in third.items() if student != "partial-7")
    assert (
        state_before["ip-basics"]["partial-8"]
        == json.loads((course.state_dir / "status.json").read_text())["ip-basics"]["partial-8"]
    )
    # A lost gradebook is refilled from the stored results without regrading anything.
    (course.root / "gradebook.db").unlink()
    fourth = autograde(course, "ip-basics", changed, jobs=2, sandbox=sandbox, progress=False)
    assert all(result.reused for result in fourth)
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gradebook:
        for result in fourth:
            submission = gradebook.find_submission("ip-basics", result.student)
            if result.status == "graded":
                assert submission.score == result.score
            else:
                assert submission.needs_manual_grade


def test_bad_arguments_name_the_value(tmp_path, capsys):
    course = make_course(tmp_path)
    assert main(["grade", "release", "no-such-lab", *course_args(course)]) == 2
    assert "no-such-lab" in capsys.readouterr().err
    status = main(
        [
            "grade",
            "autograde",
            "ip-basics",
            "--submissions",
            str(tmp_path / "nowhere"),
            *SANDBOX_ARGS,
            *course_args(course),
        ]
    )
    assert status == 2
    assert "nowhere" in capsys.readouterr().err


@pytest.mark.slow
def test_manual_grades_and_comments_reach_feedback_and_export(
    ip_basics_batch, ip_basics_table, tmp_path
):
    """What an instructor enters in formgrader (a manual score on a test cell, a comment on
    an answer) shows on the student's regenerated feedback page and in the export."""
    import html

    from nbgrader.api import Gradebook

    batch_course, _ = ip_basics_batch
    shutil.copytree(batch_course.root, tmp_path / "autograder")
    course = Course.locate(tmp_path / "autograder", batch_course.labs_dir)
    assert ip_basics_table["partial-7"] == ("7", "9", "graded")
    # As formgrader's handlers do: find the row by id, set the field, commit.
    with Gradebook(course.db_url) as gradebook:
        grade = gradebook.find_grade("classes-tests", "ip-basics", "ip-basics", "partial-7")
        gradebook.find_grade_by_id(grade.id).manual_score = 4.0
        comment = gradebook.find_comment("classes", "ip-basics", "ip-basics", "partial-7")
        gradebook.find_comment_by_id(comment.id).manual_comment = "Class D & E: <see p. 12>"
        gradebook.db.commit()
    assert main(["grade", "feedback", "ip-basics", *course_args(course)]) == 0
    page = (course.feedback_dir("partial-7", "ip-basics") / "ip-basics.html").read_text()
    assert "Score: <b>9 / 9</b>" in page, page[:1500]
    assert "changed this to <b>4 / 4</b> points" in page
    assert html.escape("Class D & E: <see p. 12>") in page  # shown, and escaped
    untouched = (course.feedback_dir("partial-8", "ip-basics") / "ip-basics.html").read_text()
    assert "Score: <b>8 / 9</b>" in untouched and "Your instructor" not in untouched
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        assert main(["grade", "export", *course_args(course)]) == 0
    rows = {row["student_id"]: row for row in csv.DictReader(io.StringIO(out.getvalue()))}
    assert rows["partial-7"]["ip-basics"] == "9"
