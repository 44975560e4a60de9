"""``deploylab lab`` as one learner (and one instructor) sees it, in Debian's Chromium driven
by Playwright: the server's root is the learner's workspace, so ``autograder/`` cannot be
reached; opening a lesson does not mark it changed and running and saving it changes only the
workspace copy (``git status`` of the checkout is unchanged); the Assignments panel shows no
error; Validate says that only the visible tests ran; with ``--instructor``, formgrader shows
the course and its Autograde button refuses to run student code unsandboxed. Screenshots go
to ``test-artifacts/workbook-*.png``.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request

import nbformat
import pytest
from classroom_support import answered
from notebooks import ROOT
from test_browser import CHROMIUM_ARGS, chromium_binary, serve_workbook

from deploylab.classroom.formgrader import FEEDBACK_REFUSAL, REFUSAL
from deploylab.nbgrader_roles import VALIDATE_SUCCESS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = ROOT / "test-artifacts"
LESSON = "lessons/00-start-here.ipynb"
LAB = "ip-basics"


def checkout_state() -> str:
    """``git status`` of the checkout's course material (lessons, labs, both editions)."""
    return subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=all", "--",
         "lessons", "labs", "lessons-ko", "labs-ko", "assets"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


@pytest.fixture(scope="module")
def learner(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("learner") / "workspace"
    before = checkout_state()
    for base, token in serve_workbook(tmp_path_factory, "en", workspace=workspace):
        yield base, token, workspace, before


@pytest.fixture(scope="module")
def instructor(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("instructor") / "workspace"
    for base, token in serve_workbook(tmp_path_factory, "en", "--instructor", workspace=workspace):
        yield base, token, workspace


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-workbook")),
            executable_path=chromium_binary(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1024, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser_context):
    """A fresh tab per test (no dialog or half-loaded page left by the one before)."""
    tab = browser_context.new_page()
    try:
        yield tab
    finally:
        tab.close(run_before_unload=False)


def api(base: str, token: str, path: str, method: str = "GET", body=None):
    request = urllib.request.Request(
        f"{base}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        text = response.read()
    return json.loads(text) if text else None


#: The status bar once the kernel has connected and is idle ("Python 3 (ipykernel) | Idle").
KERNEL_IDLE = (
    "() => /\\|\\s*Idle/.test(document.querySelector('#jp-main-statusbar')?.innerText || '')"
)
#: True once no cell is queued or running (its prompt shows ``[*]``).
NOTHING_RUNNING = (
    "() => ![...document.querySelectorAll('.jp-InputPrompt')]"
    ".some(prompt => prompt.textContent.includes('*'))"
)


def wait_until_idle(page, timeout_ms: int = 300_000) -> None:
    """The kernel has connected and is idle (on this shared machine that can take minutes)."""
    page.wait_for_function(KERNEL_IDLE, timeout=timeout_ms)


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"workbook-{name}.png"))


def test_the_file_browser_cannot_reach_the_course_masters(learner):
    base, token, _, _ = learner
    top = {item["name"] for item in api(base, token, "/api/contents/")["content"]}
    assert {"lessons", "labs", "assets"} <= top
    assert "autograder" not in top and "course" not in top
    for path in ("/api/contents/autograder", "/api/contents/..%2Fautograder"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            api(base, token, path)
        assert refused.value.code in (403, 404), path


def test_opening_and_running_a_lesson_changes_only_the_learners_copy(learner, page):
    base, token, workspace, before = learner
    page.goto(f"{base}/lab/tree/{LESSON}?token={token}")
    wait_until_idle(page)
    page.wait_for_timeout(3000)  # JupyterLab writes the kernel's metadata when it connects
    tab = page.locator(".lm-TabBar-tab.jp-mod-current")
    shot(page, "01-lesson-opened")
    assert "jp-mod-dirty" not in (tab.get_attribute("class") or ""), "opening changed it"
    page.locator(".jp-Notebook").first.click()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.locator("[data-command='runmenu:run-all']").click()
    page.wait_for_selector(".jp-OutputArea-output", state="attached", timeout=180_000)
    page.wait_for_function(NOTHING_RUNNING, timeout=300_000)
    page.keyboard.press("Control+S")
    page.wait_for_timeout(1500)
    shot(page, "02-lesson-run-and-saved")
    saved = nbformat.read(workspace / LESSON, as_version=4)
    assert any(cell.get("outputs") for cell in saved.cells if cell.cell_type == "code")
    assert checkout_state() == before


def test_the_assignments_panel_shows_no_error(learner, page):
    base, token, _, _ = learner
    page.goto(f"{base}/lab?token={token}")
    page.wait_for_selector("#jp-main-statusbar", timeout=300_000)  # JupyterLab has started
    page.wait_for_timeout(2000)
    page.keyboard.press("Escape")
    page.get_by_role("menuitem", name="Nbgrader", exact=True).click(timeout=120_000)
    shot(page, "03-nbgrader-menu")
    items = page.locator(".lm-Menu-itemLabel").all_inner_texts()
    assert "Formgrader" not in items and "Course List" not in items  # instructors only
    page.get_by_text("Assignment List", exact=True).click()
    page.wait_for_selector("#assignments")
    page.wait_for_timeout(3000)
    shot(page, "04-assignments")
    text = page.locator("#assignments").inner_text()
    assert "Error" not in text and "does not exist" not in text, text


def test_validate_says_only_the_visible_tests_ran(learner, page):
    base, token, _, _ = learner
    path = f"/api/contents/labs/{LAB}/{LAB}.ipynb"
    notebook = answered(api(base, token, path)["content"])
    api(base, token, path, "PUT", {"type": "notebook", "content": notebook})
    page.goto(f"{base}/lab/tree/labs/{LAB}/{LAB}.ipynb?token={token}")
    wait_until_idle(page)
    page.locator(".jp-Toolbar-item", has_text="Validate").first.click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=180_000)
    page.wait_for_timeout(500)
    shot(page, "05-validated")
    text = dialog.inner_text()
    assert VALIDATE_SUCCESS in text and "passes all the tests" not in text, text


def test_formgrader_shows_the_course_and_will_not_autograde_unsandboxed(instructor, page):
    base, token, workspace = instructor
    assert (workspace / "course").resolve() == (ROOT / "autograder").resolve()
    page.goto(f"{base}/formgrader?token={token}")
    page.get_by_text(LAB, exact=True).first.wait_for(timeout=60_000)
    shot(page, "06-formgrader")
    assert "not a subdirectory" not in page.inner_text("body")
    assignments = api(base, token, "/formgrader/api/assignments")
    assert LAB in {assignment["name"] for assignment in assignments}
    reply = api(base, token, f"/formgrader/api/submission/{LAB}/nobody/autograde", "POST", {})
    assert reply == {"success": False, "error": REFUSAL, "log": REFUSAL}
    # nbgrader's own feedback shows the hidden tests: refused for one student and for all
    refused = {"success": False, "error": FEEDBACK_REFUSAL, "log": FEEDBACK_REFUSAL}
    for target in (f"{LAB}/nobody/generate_feedback", f"{LAB}/generate_feedback"):
        assert api(base, token, f"/formgrader/api/assignment/{target}", "POST", {}) == refused
