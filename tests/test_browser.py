"""Real-browser tests: Debian's Chromium, driven by Playwright, against ``deploylab lab``.

Each lesson is opened in JupyterLab, all its cells are run from the Run menu, and the test
waits for the widget the lesson names in ``metadata.deploylab.browser_selector``. The browser
console must log no errors. A screenshot of each lesson lands in ``test-artifacts/``.
The Korean edition is served by ``deploylab lab --lang ko``: its menus must be Korean (the
language pack), each Korean lesson runs the same way and each Korean lab opens, with light
and dark screenshots (``browser-ko-*-light.png``, ``-dark.png``).
Run alone with ``pytest -m browser``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port, require_tool
from notebooks import KOREAN_LESSONS, LESSONS, ROOT, lesson_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Messages JupyterLab itself logs in a closed network; anything else fails the test.
BENIGN_CONSOLE_ERRORS = (
    "Failed to fetch",  # JupyterLab's announcement/news fetch with no network
    "favicon",
)


def chromium_binary() -> str:
    require_tool("chromium", "chromium")
    for candidate in ("/usr/lib/chromium/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip("chromium binary not found")


def serve_workbook(tmp_path_factory, lang: str):
    """``deploylab lab --no-browser --lang LANG`` on a free loopback port, with isolated
    Jupyter state; yields (base URL, token)."""
    chromium_binary()
    state = tmp_path_factory.mktemp(f"jupyter-state-{lang}")
    settings = state / "settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (
        settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    ).write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # No autosave: a lesson's outputs must never be written back into the workbook.
    docmanager = settings / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    # The theme follows the page's prefers-color-scheme, so a test can switch a running
    # lesson to the dark theme (page.emulate_media) without rerunning it.
    (settings / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings").write_text(
        json.dumps({"adaptive-theme": True})
    )
    # JupyterLab serves a copy of the workbook, so nothing it does can touch the checkout.
    workbook = state / "workbook"
    for folder in ("lessons", "labs", "lessons-ko", "labs-ko"):
        if (ROOT / folder).is_dir():
            shutil.copytree(ROOT / folder, workbook / folder)
    token = secrets.token_hex(16)
    port = free_port()
    env = {
        **os.environ,
        "JUPYTER_TOKEN": token,
        "JUPYTER_CONFIG_DIR": str(state / "config"),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
        "IPYTHONDIR": str(state / "ipython"),
        "MPLCONFIGDIR": str(state / "matplotlib"),
        "DEPLOYLAB_TEST": "1",
    }
    import subprocess

    log = (state / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deploylab.cli",
            "lab",
            "--no-browser",
            "--port",
            str(port),
            "--root",
            str(ROOT),
            "--lang",
            lang,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
            break
        except OSError:
            if server.poll() is not None:
                pytest.fail(
                    f"deploylab lab exited: {(state / 'jupyterlab.log').read_text()[-2000:]}"
                )
            time.sleep(0.3)
    else:
        server.kill()
        pytest.fail("JupyterLab did not answer within 60 s")
    try:
        yield base, token
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait(timeout=5)
        log.close()


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """The English workbook in JupyterLab."""
    yield from serve_workbook(tmp_path_factory, "en")


@pytest.fixture(scope="module")
def jupyterlab_ko(tmp_path_factory):
    """The Korean edition in JupyterLab with its Korean language pack (``--lang ko``)."""
    yield from serve_workbook(tmp_path_factory, "ko")


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=chromium_binary(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


#: The Run menu's name in each interface language (the Korean language pack says 실행).
RUN_MENU = re.compile(r"^(Run|실행)$")


def run_all_cells_until(page, widget, timeout_s: int, attempts: int = 3) -> None:
    """Run > Run All Cells, then wait for ``widget``. On a cold start JupyterLab can swallow the
    first command while the kernel connects, so the command is re-issued (cells are idempotent
    enough for that) before giving up."""
    for attempt in range(attempts):
        page.locator(".jp-Notebook").first.click()
        page.get_by_role("menuitem", name=RUN_MENU).click()
        page.locator("[data-command='runmenu:run-all']").click()
        try:
            widget.wait_for(state="attached", timeout=timeout_s * 1000 // attempts)
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda path: path.stem)
def test_lesson_runs_in_jupyterlab_and_its_widget_renders(
    lesson, jupyterlab, browser_context, artifacts_dir
):
    base, token = jupyterlab
    settings = lesson_settings(lesson)
    selector = settings.get("browser_selector")
    assert selector, f"{lesson.name} names no widget selector in metadata.deploylab"
    page = browser_context.new_page()
    console_errors: list[str] = []
    page.on(
        "console", lambda message: message.type == "error" and console_errors.append(message.text)
    )
    page.on("pageerror", lambda error: console_errors.append(f"page error: {error}"))
    try:
        relative = lesson.relative_to(ROOT).as_posix()
        page.goto(f"{base}/lab/tree/{relative}?token={token}&reset", wait_until="domcontentloaded")
        page.wait_for_selector(
            ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000
        )
        widget = page.locator(selector).first
        run_all_cells_until(page, widget, int(settings.get("browser_timeout_s", 90)))
        widget.evaluate("node => node.scrollIntoView({block: 'center'})")
        page.wait_for_selector(
            ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000
        )
        page.wait_for_timeout(500)
        widget.evaluate("node => node.scrollIntoView({block: 'center'})")
        page.screenshot(path=str(artifacts_dir / f"browser-{lesson.stem}.png"))
        error_outputs = page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] .ansi-red-fg, .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']"
        )
        assert error_outputs.count() == 0, f"{lesson.name}: a cell raised an error in the browser"
    except Exception:
        page.screenshot(path=str(artifacts_dir / f"browser-{lesson.stem}-FAILED.png"))
        raise
    finally:
        page.close()
    real_errors = [
        text for text in console_errors if not any(b in text for b in BENIGN_CONSOLE_ERRORS)
    ]
    assert not real_errors, f"{lesson.name}: browser console errors: {real_errors}"


# ---------------------------------------------------------------------------------------
# the Korean edition (deploylab lab --lang ko)
# ---------------------------------------------------------------------------------------
HANGUL = re.compile("[\uac00-\ud7a3]")


def collect_console_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    return errors


def screenshot_light_and_dark(page, path_stem: Path, focus=None) -> None:
    """``<stem>-light.png`` and ``<stem>-dark.png`` of the same page state: the theme follows
    the emulated colour scheme (adaptive theme), so nothing reruns in between."""
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.wait_for_selector(
            f"body[data-jp-theme-light='{'true' if scheme == 'light' else 'false'}']",
            state="attached",
            timeout=30_000,  # the dark theme's CSS loads on first use
        )
        page.wait_for_timeout(300)
        if focus is not None:
            focus.evaluate("node => node.scrollIntoView({block: 'center'})")
        page.screenshot(path=str(path_stem.with_name(f"{path_stem.name}-{scheme}.png")))


def assert_interface_is_korean(page, name: str) -> None:
    assert page.get_by_role("menuitem", name="실행", exact=True).count() == 1, (
        f"{name}: JupyterLab's menus are not in Korean (language pack or locale setting missing)"
    )
    heading = page.locator(".jp-MarkdownOutput h1").first.inner_text()
    assert HANGUL.search(heading), f"{name}: the first heading is not Korean: {heading!r}"


def run_all_cells_to_the_end(page, finish_s: int = 900, attempts: int = 3) -> None:
    """Run > Run All Cells once the kernel takes it (a cold JupyterLab can swallow the first
    command), then wait until every cell has run. Waiting for the cells rather than for the
    widget keeps a slow, shared machine from failing a lesson whose cells are still running,
    and never queues the cells twice."""
    # Started: the kernel is busy, or a cell already has an execution count ("[1]:").
    started = """() => document.querySelector(
        ".jp-Notebook-ExecutionIndicator:not([data-status='idle'])") ||
      [...document.querySelectorAll(".jp-InputPrompt")].some((p) => /\\[[0-9*]+\\]/.test(p.textContent))"""
    for attempt in range(attempts):
        page.locator(".jp-Notebook").first.click()
        page.get_by_role("menuitem", name=RUN_MENU).click()
        page.locator("[data-command='runmenu:run-all']").click()
        try:
            page.wait_for_function(started, timeout=20_000)
            break
        except Exception:
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")
    # Finished: every code cell has its execution count, or one raised (Run All stops there).
    finished = """() => document.querySelector(
        ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']") ||
      [...document.querySelectorAll(".jp-CodeCell .jp-InputPrompt")].every(
        (p) => /\\[[0-9]+\\]/.test(p.textContent))"""
    page.wait_for_function(finished, timeout=finish_s * 1000, polling=500)


@pytest.mark.parametrize("lesson", KOREAN_LESSONS, ids=lambda path: path.stem)
def test_korean_lesson_runs_in_korean_jupyterlab(
    lesson, jupyterlab_ko, browser_context, artifacts_dir
):
    base, token = jupyterlab_ko
    settings = lesson_settings(lesson)
    page = browser_context.new_page()
    console_errors = collect_console_errors(page)
    stem = artifacts_dir / f"browser-ko-{lesson.stem}"
    try:
        relative = lesson.relative_to(ROOT).as_posix()
        page.goto(f"{base}/lab/tree/{relative}?token={token}&reset", wait_until="domcontentloaded")
        page.wait_for_selector(
            ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000
        )
        assert_interface_is_korean(page, lesson.name)
        widget = page.locator(settings["browser_selector"]).first
        run_all_cells_to_the_end(page)
        widget.wait_for(state="attached", timeout=int(settings.get("browser_timeout_s", 90)) * 1000)
        if lesson.stem == "00-start-here":  # the widget's own words follow the language
            toggle = page.locator(".dl-course-map-toggle").first.inner_text()
            assert toggle in ("재생", "일시 정지"), toggle
        screenshot_light_and_dark(page, stem, focus=widget)
        error_outputs = page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] .ansi-red-fg, .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']"
        )
        assert error_outputs.count() == 0, f"{lesson.name}: a cell raised an error in the browser"
    except Exception:
        page.screenshot(path=str(stem.with_name(f"{stem.name}-FAILED.png")))
        raise
    finally:
        page.close()
    real_errors = [
        text for text in console_errors if not any(b in text for b in BENIGN_CONSOLE_ERRORS)
    ]
    assert not real_errors, f"{lesson.name}: browser console errors: {real_errors}"


KOREAN_LABS = sorted((ROOT / "labs-ko").glob("*/*.ipynb"))


@pytest.mark.parametrize("lab", KOREAN_LABS, ids=lambda path: path.parent.name)
def test_korean_lab_opens_in_korean_jupyterlab(lab, jupyterlab_ko, browser_context, artifacts_dir):
    """A learner's first view of a Korean lab: Korean prose, Korean menus, nothing broken."""
    base, token = jupyterlab_ko
    page = browser_context.new_page()
    console_errors = collect_console_errors(page)
    stem = artifacts_dir / f"browser-ko-lab-{lab.parent.name}"
    try:
        relative = lab.relative_to(ROOT).as_posix()
        page.goto(f"{base}/lab/tree/{relative}?token={token}&reset", wait_until="domcontentloaded")
        page.wait_for_selector(
            ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000
        )
        assert_interface_is_korean(page, lab.name)
        screenshot_light_and_dark(page, stem)
    except Exception:
        page.screenshot(path=str(stem.with_name(f"{stem.name}-FAILED.png")))
        raise
    finally:
        page.close()
    real_errors = [
        text for text in console_errors if not any(b in text for b in BENIGN_CONSOLE_ERRORS)
    ]
    assert not real_errors, f"{lab.name}: browser console errors: {real_errors}"
