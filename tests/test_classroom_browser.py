"""The whole classroom loop in a real browser (Debian's Chromium, driven by Playwright).

A hub from a 1-instructor / 3-student roster. A student logs in (choosing their password),
lands on the start-here lesson, opens the Assignments panel, fetches the ip-basics lab,
answers it in the notebook, validates and submits. A second student submits with one answer
left undone. The instructor runs ``deploylab classroom grade`` as their own unix user. Both
students fetch their feedback in the Assignments panel and see their own score. Every step
leaves a screenshot in ``test-artifacts/classroom-*.png``.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import nbformat
import pytest
from classroom_support import PASSWORD, ROOT, running_classroom
from test_browser import CHROMIUM_ARGS, chromium_binary

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.root, pytest.mark.timeout(1500)]

LAB = "ip-basics"
#: The instructor's answers, by the function each answer cell defines.
SOLUTIONS = {
    cell.source.split("def ", 1)[1].split("(", 1)[0]: cell.source
    for cell in nbformat.read(ROOT / "autograder" / "source" / LAB / f"{LAB}.ipynb", 4).cells
    if cell.metadata.get("nbgrader", {}).get("solution")
}


@pytest.fixture(scope="module")
def hub():
    chromium_binary()
    with running_classroom(students=3) as classroom:
        classroom.instructor_runs("release", LAB)
        yield classroom


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_binary(), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


class Student:
    """One student's browser session on the hub, with a screenshot per step."""

    def __init__(self, browser, hub, name: str, artifacts_dir) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(60_000)
        self.hub, self.name, self.artifacts = hub, name, artifacts_dir
        self.base = f"{hub.url}/user/{name}"

    def shot(self, step: str) -> None:
        self.page.screenshot(path=str(self.artifacts / f"classroom-{self.name[-2:]}-{step}.png"))

    def log_in(self) -> None:
        page = self.page
        page.goto(f"{self.hub.url}/hub/login")
        page.fill("#username_input", self.name)
        page.fill("#password_input", PASSWORD)
        self.shot("01-login")
        page.click("#login_submit")
        page.wait_for_url(
            re.compile(r".*/lab/tree/lessons/00-start-here\.ipynb.*"), timeout=180_000
        )
        page.wait_for_selector(
            ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=180_000
        )
        self.shot("02-start-here")

    def open_assignments(self) -> None:
        page = self.page
        tab = page.locator(".lm-TabBar-tab", has_text="Assignments")
        if tab.count():
            tab.first.click()
            page.locator("#refresh_assignments_list").click()
        else:
            page.get_by_role("menuitem", name="Nbgrader", exact=True).click()
            page.get_by_text("Assignment List", exact=True).click()
        page.wait_for_selector("#assignments")

    def fetch_lab(self) -> None:
        page = self.page
        self.open_assignments()
        released = page.locator("#released_assignments_list .list_item", has_text=LAB)
        released.get_by_role("button", name="Fetch").click()
        page.locator("#fetched_assignments_list .list_item", has_text=LAB).first.wait_for()
        self.shot("03-fetched")

    def answer(self, leave_undone: set[str] = frozenset()) -> None:
        page = self.page
        page.goto(f"{self.base}/lab/tree/{LAB}/{LAB}.ipynb")
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")
        for function, solution in SOLUTIONS.items():
            if function in leave_undone:
                continue
            cell = page.locator(".jp-CodeCell", has_text=f"def {function}(").first
            cell.scroll_into_view_if_needed()
            cell.locator(".cm-content").click()
            page.keyboard.press("Control+A")
            page.keyboard.insert_text(solution)
        page.keyboard.press("Escape")
        page.keyboard.press("Control+S")
        page.wait_for_timeout(1000)
        self.shot("04-answered")

    def validate(self) -> str:
        page = self.page
        # the open notebook's own button: the hidden start-here panel has a toolbar too, and
        # its folded items may carry the same text
        page.locator(
            ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar-item:visible",
            has_text=re.compile(r"^\s*Validate\s*$"),
        ).first.click()
        dialog = page.locator(".jp-Dialog")
        dialog.wait_for(timeout=180_000)
        page.wait_for_timeout(500)
        self.shot("05-validated")
        text = dialog.inner_text()
        dialog.get_by_role("button").last.click()
        return text

    def submit(self) -> None:
        page = self.page
        self.open_assignments()
        fetched = page.locator("#fetched_assignments_list .list_item", has_text=LAB).first
        fetched.get_by_role("button", name="Submit").click()
        page.locator("#submitted_assignments_list .list_item", has_text=LAB).first.wait_for()
        self.shot("06-submitted")

    def fetch_feedback(self) -> str:
        page = self.page
        self.open_assignments()
        submitted = page.locator("#submitted_assignments_list .list_item", has_text=LAB).first
        submitted.get_by_role("button", name="Fetch Feedback").click()
        submitted.get_by_text("view feedback").wait_for()
        self.shot("07-feedback-fetched")
        listing = page.request.get(f"{self.base}/api/contents/{LAB}/feedback").json()
        folder = sorted(item["path"] for item in listing["content"])[-1]
        page.goto(f"{self.base}/files/{quote(folder)}/{LAB}.html")
        self.shot("08-feedback")
        return page.inner_text("body")


def test_students_hand_in_through_the_browser_and_see_their_own_feedback(
    hub, browser, artifacts_dir
):
    right_name, partly_name = hub.students[:2]
    right = Student(browser, hub, right_name, artifacts_dir)
    partly = Student(browser, hub, partly_name, artifacts_dir)
    for student, undone in ((right, set()), (partly, {"address_class"})):
        student.log_in()
        student.fetch_lab()
        student.answer(leave_undone=undone)
        verdict = student.validate()
        if undone:
            assert "address_class" in verdict or "NotImplementedError" in verdict, verdict
        else:
            assert "visible tests pass" in verdict and "Hidden tests" in verdict, verdict
        student.submit()

    graded = hub.instructor_runs("grade", LAB).stdout
    assert re.search(rf"{right_name}\s+9\s+9\s+graded", graded), graded
    assert re.search(rf"{partly_name}\s+5\s+9\s+graded", graded), graded

    assert "Score: 9 / 9" in right.fetch_feedback()
    feedback = partly.fetch_feedback()
    assert "Score: 5 / 9" in feedback
    assert "BEGIN HIDDEN TESTS" not in feedback
    # Each sees only their own: the feedback folder of one is not reachable by the other.
    other = right.page.request.get(f"{partly.base}/api/contents/{LAB}/feedback")
    assert other.status in (302, 401, 403) or "login" in other.url, other.status
    json.dumps({"graded": graded})  # keep the grading table in the log on failure
