"""Real-browser tests: Debian's Chromium, driven by Playwright, against ``deploylab lab``.

Each lesson is presented as ``deploylab present`` serves it: the slides start by themselves,
the keyboard walks every slide while its cells run, each slide (its text, the slide-mode bar,
the counter, the speaker notes) must be readable in JupyterLab's dark theme at 1024 px, and
the demo buttons act on the real servers. Then Esc leaves the slides and the lesson's widget
(``metadata.deploylab.browser_selector``) gets a learner's checks: JupyterLab follows the
browser's colour scheme (its "adaptive theme"), so it is read in the light theme, then in the
dark theme, then 1024 px wide: every widget text must contrast with its background, every
control must have an accessible name, everything clickable must be reachable with Tab, and
nothing may overflow. No cell may raise and the browser console must log no errors.
Screenshots of each state land in ``test-artifacts/``. The Korean edition is served by
``deploylab lab --lang ko``: its menus must be Korean (the language pack), each Korean lesson
runs the same way and each Korean lab opens, with light and dark screenshots
(``browser-ko-*-light.png``, ``-dark.png``). Run alone with ``pytest -m browser``.
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
from conftest import free_port, require_tool, seconds_left
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


def serve_workbook(
    tmp_path_factory,
    lang: str,
    *extra_args: str,
    command: tuple[str, ...] = ("lab",),
    workspace: Path | None = None,
):
    """``deploylab lab --no-browser --lang LANG [EXTRA_ARGS]`` (or another ``command``, such
    as ``present 00``) on a free loopback port, with isolated Jupyter state and the learner's
    workspace in ``workspace`` (default: a fresh temporary one); yields (base URL, token)."""
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
    # The theme follows the browser's prefers-color-scheme, which the test switches.
    (settings / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings").write_text(
        json.dumps(
            {
                "adaptive-theme": True,
                "preferred-light-theme": "JupyterLab Light",
                "preferred-dark-theme": "JupyterLab Dark",
            }
        )
    )
    # JupyterLab serves the learner's workspace (a copy), so nothing it does touches the checkout.
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
        "DEPLOYLAB_WORKSPACE": str(workspace or state / "workspace"),
    }
    import subprocess

    log = (state / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deploylab.cli",
            *command,
            "--no-browser",
            "--port",
            str(port),
            "--root",
            str(ROOT),
            "--lang",
            lang,
            *extra_args,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # a loaded CI machine starts JupyterLab slowly
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
        os.killpg(server.pid, 9)  # the server and the JupyterLab it started
        server.wait(timeout=5)
        pytest.fail("JupyterLab did not answer within 180 s")
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
def jupyterlab_present(tmp_path_factory):
    """The English workbook served by ``deploylab present`` (slide mode starts at once and
    runs each slide's cells on entry)."""
    yield from serve_workbook(tmp_path_factory, "en", command=("present", "00"))


@pytest.fixture(scope="module")
def jupyterlab_present_ko(tmp_path_factory):
    """The Korean edition served by ``deploylab present --lang ko``."""
    yield from serve_workbook(tmp_path_factory, "ko", "--lang", "ko", command=("present", "05"))


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
            color_scheme="light",
        )
        try:
            yield context
        finally:
            context.close()


# Minimum contrast between a widget's text and what is painted behind it. WCAG asks 4.5:1 for
# body text and 3:1 for large text; below 3:1 text is unreadable for many people.
MINIMUM_CONTRAST = 3.0

# Runs in the page: every visible text of every widget output, its colour (CSS `color` for
# HTML, `fill` for SVG) and its effective background: for SVG text the last filled shape
# drawn before it that covers its centre, else the first opaque background of its ancestors.
WIDGET_TEXT_CONTRAST_JS = r"""
(roots) => {
  const parse = (text) => {
    const m = /rgba?\(([^)]+)\)/.exec(text || "");
    if (!m) return null;
    const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const luminance = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const ratio = (a, b) => {
    const [x, y] = [luminance(a), luminance(b)];
    return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
  };
  const visible = (node) => {
    const r = node.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) return false;
    for (let n = node; n && n.nodeType === 1; n = n.parentElement) {
      const s = getComputedStyle(n);
      if (s.display === "none" || s.visibility === "hidden" || Number(s.opacity) < 0.1) return false;
    }
    return true;
  };
  const htmlBackground = (node) => {
    for (let n = node; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c && c.a >= 0.5) return c;
    }
    return { r: 255, g: 255, b: 255, a: 1 };
  };
  const SHAPES = "rect, circle, ellipse, path, polygon";
  const svgBackground = (text) => {
    const svg = text.ownerSVGElement;
    const box = text.getBoundingClientRect();
    const x = box.left + box.width / 2, y = box.top + box.height / 2;
    let found = null;
    for (const shape of svg.querySelectorAll(SHAPES)) {
      if (shape.compareDocumentPosition(text) & Node.DOCUMENT_POSITION_PRECEDING) break;
      const s = getComputedStyle(shape);
      const fill = parse(s.fill);
      if (!fill || fill.a < 0.5 || Number(s.fillOpacity) < 0.5 || !visible(shape)) continue;
      const r = shape.getBoundingClientRect();
      if (x >= r.left && x <= r.right && y >= r.top && y <= r.bottom) found = fill;
    }
    return found || htmlBackground(svg);
  };
  const results = [];
  for (const root of roots) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    const seen = new Set();
    while (walker.nextNode()) {
      const node = walker.currentNode.parentElement;
      if (!node || seen.has(node) || !walker.currentNode.textContent.trim()) continue;
      seen.add(node);
      if (!visible(node) || node.closest("option, style, script")) continue;
      const isSvg = node instanceof SVGElement;
      const colour = parse(isSvg ? getComputedStyle(node).fill : getComputedStyle(node).color);
      if (!colour) continue;
      const background = isSvg ? svgBackground(node) : htmlBackground(node);
      results.push({
        text: walker.currentNode.textContent.trim().slice(0, 40),
        ratio: ratio(colour, background),
        colour: getComputedStyle(node)[isSvg ? "fill" : "color"],
        background: `rgb(${background.r}, ${background.g}, ${background.b})`,
        where: (node.closest("[class*='dl-']") || root).className.baseVal ?? (node.closest("[class*='dl-']") || root).className,
      });
    }
  }
  return results;
}
"""

# Runs in the page: things that look clickable (pointer cursor) but cannot be reached with Tab,
# and widgets wider than the space they were given.
KEYBOARD_AND_OVERFLOW_JS = r"""
(roots) => {
  const unreachable = [], overflowing = [];
  for (const root of roots) {
    for (const node of root.querySelectorAll("*")) {
      const r = node.getBoundingClientRect();
      if (r.width < 1 || r.height < 1) continue;
      if (getComputedStyle(node).cursor !== "pointer") continue;
      if (node.closest("button, a[href], input, select, textarea, [tabindex]")) continue;
      if (node.parentElement && getComputedStyle(node.parentElement).cursor === "pointer") continue;
      unreachable.push(`${node.tagName.toLowerCase()}.${node.className.baseVal ?? node.className}: ${node.textContent.trim().slice(0, 30)}`);
    }
    // What the learner sees: any visible part reaching past the notebook's right edge. (A
    // widget's scrollWidth also counts hidden parts, such as a plot's unused tooltip.)
    const edge = root.closest(".jp-WindowedPanel-outer, .jp-Notebook").getBoundingClientRect().right;
    for (const node of [root, ...root.querySelectorAll("*")]) {
      const r = node.getBoundingClientRect();
      const s = getComputedStyle(node);
      if (r.width < 1 || r.height < 1 || s.visibility === "hidden" || Number(s.opacity) === 0) continue;
      if (r.right > edge + 8) {
        overflowing.push(`${node.tagName.toLowerCase()}.${node.className.baseVal ?? node.className}: right edge at ${Math.round(r.right)}px, notebook ends at ${Math.round(edge)}px (${node.textContent.trim().slice(0, 60)} | ${node.innerHTML.slice(0, 200)})`);
        break;
      }
    }
  }
  // Squeezed: a flex item holding a sentence or a set of controls, crushed narrower than
  // 100 px by its neighbours (the event log and the autoscaling controls once were).
  const squeezed = [];
  for (const root of roots) {
    for (const node of root.querySelectorAll("*")) {
      const parent = node.parentElement;
      if (!parent || !getComputedStyle(parent).display.includes("flex")) continue;
      if (getComputedStyle(parent).flexDirection.startsWith("column")) continue;
      const r = node.getBoundingClientRect();
      if (r.height < 1 || node.textContent.trim().length < 25) continue;
      if (r.width < 100) squeezed.push(`${node.tagName.toLowerCase()}.${node.className.baseVal ?? node.className}: ${Math.round(r.width)}px wide`);
    }
  }
  return { unreachable, overflowing, squeezed };
}
"""

CONTROL_ROLES = (
    "button",
    "slider",
    "combobox",
    "checkbox",
    "textbox",
    "spinbutton",
    "link",
    "listbox",
    "radio",
    "switch",
    "tab",
    "option",
    "menuitem",
)


def widget_roots(page):
    """Every widget output of the notebook (ipywidgets and anywidgets alike)."""
    return page.locator(".jp-OutputArea-output > .lm-Widget")


def unreadable_texts(page, roots=None) -> list[str]:
    """Texts inside ``roots`` (a locator; default: every widget output) that contrast less
    than :data:`MINIMUM_CONTRAST` with what is behind them."""
    handles = (roots if roots is not None else widget_roots(page)).element_handles()
    found = page.evaluate(WIDGET_TEXT_CONTRAST_JS, handles)
    assert len(found) >= 3, f"the contrast check found only {len(found)} widget texts to measure"
    return [
        f"{item['text']!r} ({item['colour']} on {item['background']}, {item['ratio']:.2f}:1) in {item['where']}"
        for item in found
        if item["ratio"] < MINIMUM_CONTRAST
    ]


def controls_without_names(page) -> list[str]:
    """Controls in the widgets' accessibility tree (Playwright's aria snapshot) with no name."""
    nameless = []
    for index in range(widget_roots(page).count()):
        snapshot = widget_roots(page).nth(index).aria_snapshot()
        for line in snapshot.splitlines():
            entry = line.strip().removeprefix("- ")
            role = entry.split(" ")[0].rstrip(":")
            if role in CONTROL_ROLES and '"' not in entry.split(":")[0]:
                nameless.append(entry)
    return nameless


def set_colour_scheme(page, scheme: str) -> None:
    page.emulate_media(color_scheme=scheme)
    light = "true" if scheme == "light" else "false"
    page.wait_for_selector(f"body[data-jp-theme-light='{light}']", state="attached", timeout=30_000)
    page.wait_for_timeout(800)  # let widgets repaint with the new variables


#: The Run menu's name in each interface language (the Korean language pack says 실행).
RUN_MENU = re.compile(r"^(Run|실행)$")


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
        set_colour_scheme(page, scheme)
        if focus is not None:
            focus.evaluate("node => node.scrollIntoView({block: 'center'})")
        page.screenshot(path=str(path_stem.with_name(f"{path_stem.name}-{scheme}.png")))


def assert_interface_is_korean(page, name: str) -> None:
    assert page.get_by_role("menuitem", name="실행", exact=True).count() == 1, (
        f"{name}: JupyterLab's menus are not in Korean (language pack or locale setting missing)"
    )
    heading = page.locator(".jp-MarkdownOutput h1").first.inner_text()
    assert HANGUL.search(heading), f"{name}: the first heading is not Korean: {heading!r}"


#: Runs in the page: each code cell of the open notebook, its prompt (``[3]:`` ran, ``[*]:``
#: running or queued, ``[ ]:`` not run), its first line of code, its outputs' text and
#: whether one of them is an error.
NOTEBOOK_CELLS_JS = """() => [...document.querySelectorAll(".jp-Notebook .jp-CodeCell")].map(
  (cell) => ({
    prompt: (cell.querySelector(".jp-InputPrompt")?.textContent || "").trim(),
    code: (cell.querySelector(".cm-line")?.textContent || "").trim(),
    outputs: [...cell.querySelectorAll(".jp-OutputArea-output")].map((o) => o.textContent).join("\\n"),
    error: !!cell.querySelector(
      ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error'], " +
      ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] .ansi-red-fg"),
  }))"""


def notebook_cells(page) -> list[dict]:
    """The open notebook's code cells as :data:`NOTEBOOK_CELLS_JS` reads them, each with its
    ``number`` (1 = the first code cell) and its ``state``: ran, running, queued (JupyterLab
    marks a queued cell ``[*]`` too: the first one is the cell running), not run."""
    cells = page.evaluate(NOTEBOOK_CELLS_JS)
    running = False
    for number, cell in enumerate(cells, start=1):
        cell["number"] = number
        prompt = cell["prompt"]
        if "*" in prompt:
            cell["state"] = "queued" if running else "running"
            running = True
        else:
            cell["state"] = "ran" if re.search(r"\d", prompt) else "not run"
    return cells


def where_run_all_stands(page) -> str:
    """What Run All has done so far, in a few lines: the cell still running (its first line
    of code and the end of its output), how many ran and did not run, the cells that raised,
    the kernel's state and any dialog JupyterLab shows (a kernel that died and restarts
    leaves the queued cells unrun with no error output: Run All waits for ever)."""
    cells = notebook_cells(page)
    kernel = page.locator(".jp-Notebook-ExecutionIndicator").first.get_attribute("data-status")
    counts = {state: sum(c["state"] == state for c in cells) for state in ("queued", "not run")}
    lines = [
        f"{sum(c['state'] == 'ran' for c in cells)} of {len(cells)} code cells ran, "
        f"{counts['queued']} queued, {counts['not run']} not run; kernel {kernel}"
    ]
    for cell in cells:
        if cell["state"] == "running" or cell["error"]:
            what = "raised" if cell["error"] else "still running"
            lines.append(f"code cell {cell['number']} {what}: {cell['code']!r}")
            if cell["outputs"].strip():
                lines.append(f"  its output ends: {cell['outputs'].strip()[-600:]!r}")
    for dialog in page.locator(".jp-Dialog").all_inner_texts():
        lines.append(f"JupyterLab shows a dialog: {' '.join(dialog.split())[:300]!r}")
    return "\n".join(lines)


def save_notebook_cells(page, path: Path) -> None:
    """Every code cell's prompt, first line and outputs as text (next to a failure's
    screenshot: the outputs are in the page only, the notebook on disk has none)."""
    with path.open("w") as report:
        for cell in notebook_cells(page):
            report.write(f"--- code cell {cell['number']} {cell['prompt']} {cell['code']}\n")
            report.write(cell["outputs"][-4000:] + "\n")


def run_all_cells_to_the_end(page, finish_s: float, attempts: int = 3) -> None:
    """Run > Run All Cells once the kernel takes it (a cold JupyterLab can swallow the first
    command), then wait until every cell has run, at most ``finish_s`` seconds in all (pass
    :func:`conftest.seconds_left`: a wait that outlasts pytest-timeout ends with no account
    of what hung). Waiting for the cells rather than for the widget keeps a slow, shared
    machine from failing a lesson whose cells are still running, and never queues the cells
    twice. Out of time, the cell still running is scrolled into view (for the caller's
    screenshot) and an ``AssertionError`` says where Run All stands; so does one raised at
    once when JupyterLab shows a dialog (a kernel that died) instead of the cells running."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    deadline = time.monotonic() + finish_s

    def left_ms(at_most: float = finish_s) -> float:
        return max(1.0, min(at_most, deadline - time.monotonic())) * 1000

    # Started: a cell is queued or has run ("[*]:" or "[1]:"). A busy kernel alone is no
    # sign: a kernel still starting is busy too, and a Run All given before it connected
    # ran no cell (the cells kept "[ ]:", and the wait below lasted until pytest's limit).
    started = """() => [...document.querySelectorAll(".jp-InputPrompt")].some(
        (p) => /\\[[0-9*]+\\]/.test(p.textContent))"""
    for attempt in range(attempts):
        page.locator(".jp-Notebook").first.click()
        page.get_by_role("menuitem", name=RUN_MENU).click()
        page.locator("[data-command='runmenu:run-all']").click()
        try:
            page.wait_for_function(started, timeout=left_ms(20))
            break
        except Exception:
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")
    # Finished: every code cell has its execution count, or one raised (Run All stops there),
    # or JupyterLab shows a dialog (the kernel died: the cells left will never run).
    finished = """() => document.querySelector(
        ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error'], .jp-Dialog") ||
      [...document.querySelectorAll(".jp-CodeCell .jp-InputPrompt")].every(
        (p) => /\\[[0-9]+\\]/.test(p.textContent))"""
    try:
        page.wait_for_function(finished, timeout=left_ms(), polling=500)
    except PlaywrightTimeout:
        page.evaluate(
            """() => [...document.querySelectorAll(".jp-Notebook .jp-CodeCell")].find(
              (cell) => /\\*/.test(cell.querySelector(".jp-InputPrompt")?.textContent || "")
            )?.scrollIntoView({block: "center"})"""
        )
        raise AssertionError(
            f"Run All did not finish within {finish_s:.0f} s:\n{where_run_all_stands(page)}"
        ) from None
    if page.locator(".jp-Dialog").count():
        raise AssertionError(
            f"Run All stopped at a JupyterLab dialog:\n{where_run_all_stands(page)}"
        )


#: Notebooks that break Run All on purpose: their second cell, the seconds Run All is given,
#: and what its account must say (the first cell prints "before", the third never runs).
BROKEN_RUN_ALLS = {
    "hangs": (
        'import time\n\nprint("stuck on purpose")\ntime.sleep(45)',
        15,
        [
            "Run All did not finish within 15 s:\n",
            "1 of 3 code cells ran, 1 queued, 0 not run; kernel busy",
            "code cell 2 still running: 'import time'",
            "stuck on purpose",
        ],
    ),
    "kernel dies": (
        # The pause lets the kernel send cell 1's reply first: os._exit drops messages still
        # queued in the kernel's ZeroMQ sockets, and CI once saw cell 1 lose its "[1]:".
        "import os\nimport time\n\ntime.sleep(2)\nos._exit(1)",
        60,
        [
            "Run All stopped at a JupyterLab dialog:\n",
            "1 of 3 code cells ran, 0 queued, 2 not run",
            "appears to have died",
        ],
    ),
}


@pytest.mark.parametrize("breakage", BROKEN_RUN_ALLS)
def test_a_broken_run_all_fails_in_time_and_says_where_it_stopped(
    breakage, jupyterlab_ko, browser_context, artifacts_dir
):
    """A notebook whose second cell does not end in time, or kills its kernel (JupyterLab
    then restarts it and the cells left stay unrun, with no error: Run All alone would wait
    for ever): :func:`run_all_cells_to_the_end` gives up within its own bound, not
    pytest-timeout's, and its error says where Run All stopped; the cells' outputs can be
    saved beside the screenshot."""
    import nbformat

    code, finish_s, account = BROKEN_RUN_ALLS[breakage]
    base, token = jupyterlab_ko
    name = f"broken-run-all-{breakage.replace(' ', '-')}"
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell('print("before")'),
            nbformat.v4.new_code_cell(code),
            nbformat.v4.new_code_cell('print("never reached")'),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    # into the served workspace, through JupyterLab's own contents API
    contents = f"{base}/api/contents/{name}.ipynb?token={token}"
    saved = json.dumps({"type": "notebook", "content": json.loads(nbformat.writes(notebook))})
    urllib.request.urlopen(
        urllib.request.Request(contents, data=saved.encode(), method="PUT"), timeout=30
    )
    page = browser_context.new_page()
    try:
        page.goto(
            f"{base}/lab/tree/{name}.ipynb?token={token}&reset", wait_until="domcontentloaded"
        )
        page.wait_for_selector(
            ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000
        )
        started = time.monotonic()
        with pytest.raises(AssertionError) as failure:
            run_all_cells_to_the_end(page, finish_s=finish_s)
        took = time.monotonic() - started
        message = str(failure.value)
        assert message.startswith(account[0]), message
        assert all(part in message for part in account[1:]), message
        assert "code cell 3" not in message
        if breakage == "hangs":
            assert took < finish_s + 20  # its own bound, and time to write the account
            cells = artifacts_dir / f"browser-{name}-cells.txt"
            save_notebook_cells(page, cells)
            assert "--- code cell 2 [*]: import time\nstuck on purpose" in cells.read_text()
        else:
            assert took < finish_s - 15, f"waited {took:.0f} s for a dead kernel"
    except Exception:
        page.screenshot(path=str(artifacts_dir / f"browser-{name}-FAILED.png"))
        raise
    finally:
        page.close()
        urllib.request.urlopen(urllib.request.Request(contents, method="DELETE"), timeout=30)


#: Every English lesson, and one of the Korean edition in Korean JupyterLab
#: (``deploylab present --lang ko``: the slide bar, the notes and the demo in Korean).
SLIDE_WALKS = [(path, "en") for path in LESSONS] + [
    (path, "ko") for path in KOREAN_LESSONS if path.stem == "05-vpc-and-cidr"
]


@pytest.mark.parametrize(
    "lesson",
    [path for path in KOREAN_LESSONS if (path, "ko") not in SLIDE_WALKS],
    ids=lambda path: path.stem,
)
def test_korean_lesson_runs_in_korean_jupyterlab(
    lesson, request, jupyterlab_ko, browser_context, artifacts_dir
):
    """A Korean lesson in Korean JupyterLab, run with Run All: Korean menus, its widget drawn,
    readable in both themes, no cell error, no console error. The Korean lesson that the
    slide walk covers (``SLIDE_WALKS``) runs there instead. On failure, a screenshot and the
    cells' outputs (``browser-ko-LESSON-FAILED.png``, ``-FAILED-cells.txt``)."""
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
        run_all_cells_to_the_end(page, seconds_left(request))
        widget.wait_for(
            state="attached",
            timeout=min(settings.get("browser_timeout_s", 90), seconds_left(request)) * 1000,
        )
        if lesson.stem == "00-start-here":  # the widget's own words follow the language
            toggle = page.locator(".dl-course-map-toggle").first.text_content()
            assert toggle in ("재생", "일시 정지"), toggle
        screenshot_light_and_dark(page, stem, focus=widget)
        error_outputs = page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] .ansi-red-fg, .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']"
        )
        assert error_outputs.count() == 0, (
            f"{lesson.name}: a cell raised an error in the browser:\n{where_run_all_stands(page)}"
        )
    except Exception:
        page.screenshot(path=str(stem.with_name(f"{stem.name}-FAILED.png")))
        save_notebook_cells(page, stem.with_name(f"{stem.name}-FAILED-cells.txt"))
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


# ---------------------------------------------------------------------------------------
# slides (deploylab present): the whole lesson with the keyboard, and the demo buttons
# ---------------------------------------------------------------------------------------
#: What each lesson's demo buttons must report after acting on the real servers.
DEMO_OUTCOMES = {
    "01-proxies": "so the proxy asked the origin again",
    "02-load-balancing": "the balancer now says 'failed'",
    "03-autoscaling": "peak instances",
    "04-nginx-and-zero-downtime": "nginx refused it",
    "05-vpc-and-cidr": "has no route to 0.0.0.0/0 now",
}

# Every code cell of the visible slide has run (an execution count, not "[*]" or "[ ]").
SLIDE_CELLS_DONE = """() => [...document.querySelectorAll(
    ".jp-Notebook.dl-presenting .jp-CodeCell:not(.dl-off-slide):not(.dl-slide-control-cell) .jp-InputPrompt")]
  .every((p) => /\\[[0-9]+\\]/.test(p.textContent))"""


def press_demo_buttons(page, lesson_stem: str, artifacts_dir: Path) -> list[str]:
    """Press (Enter on the focused button) the first demo button on the visible slide; returns
    what the demo said."""
    button = page.locator(".jp-Cell:not(.dl-off-slide) .dl-demo-button").first
    button.focus()
    page.keyboard.press("Enter")
    outcome = page.locator(".jp-Cell:not(.dl-off-slide) .dl-demo-outcome [role='status']").first
    outcome.wait_for(state="visible", timeout=60_000)
    page.screenshot(path=str(artifacts_dir / f"slides-{lesson_stem}-demo.png"))
    return [outcome.inner_text()]


# What a slide shows: the floating slide-mode bar (buttons, counter, speaker notes) and the
# cells of the current slide.
SLIDE_BAR = ".dl-slide-bar.dl-floating"
ON_SLIDE = ".jp-Notebook.dl-presenting .jp-Cell:not(.dl-off-slide)"

# Runs in the page: the floating bar must stay inside the window.
BAR_OUTSIDE_WINDOW_JS = """(bar) => { const r = bar.getBoundingClientRect();
  return r.left < 0 || r.top < 0 || r.right > innerWidth || r.bottom > innerHeight
    ? `bar at ${Math.round(r.left)},${Math.round(r.top)}-${Math.round(r.right)},${Math.round(r.bottom)} in ${innerWidth}x${innerHeight}` : null; }"""


def slide_problems(page, scheme: str, label: str) -> list[str]:
    """Unreadable texts on the visible slide and its bar, widgets on it wider than the notebook
    or squeezed, and a bar outside the window."""
    slide = page.locator(f"{SLIDE_BAR}, {ON_SLIDE}")
    problems = [f"{label} ({scheme}): {text}" for text in unreadable_texts(page, slide)]
    widgets = page.locator(f"{ON_SLIDE} .jp-OutputArea-output > .lm-Widget").element_handles()
    if widgets:
        layout = page.evaluate(KEYBOARD_AND_OVERFLOW_JS, widgets)
        problems += [f"{label}: wider than the slide: {item}" for item in layout["overflowing"]]
        problems += [f"{label}: squeezed: {item}" for item in layout["squeezed"]]
    outside = page.locator(SLIDE_BAR).first.evaluate(BAR_OUTSIDE_WINDOW_JS)
    if outside:
        problems.append(f"{label}: {outside}")
    return problems


def check_the_lesson_widget(
    page, lesson: Path, widget, artifacts_dir: Path, shot: str | None = None
) -> None:
    """The lesson's widget once every cell has run (out of slide mode, as a learner sees it):
    readable in the light and the dark theme (1400 px), every control named, everything
    clickable reachable with Tab, and nothing squeezed or overflowing at 1024 px; screenshots
    ``browser-LESSON.png``, ``-dark.png`` and ``-dark-1024.png`` (LESSON: ``shot``, default the
    lesson's file stem)."""
    shot = shot or lesson.stem
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.evaluate("window.dispatchEvent(new Event('resize'))")
    set_colour_scheme(page, "light")
    page.wait_for_selector(
        ".jp-Notebook-ExecutionIndicator[data-status='idle']", state="attached", timeout=120_000
    )
    widget.evaluate("node => node.scrollIntoView({block: 'center'})")
    page.screenshot(path=str(artifacts_dir / f"browser-{shot}.png"))
    problems = {"light": unreadable_texts(page)}
    set_colour_scheme(page, "dark")
    widget.evaluate("node => node.scrollIntoView({block: 'center'})")
    page.screenshot(path=str(artifacts_dir / f"browser-{shot}-dark.png"))
    problems["dark"] = unreadable_texts(page)
    page.set_viewport_size({"width": 1024, "height": 900})
    # plots (bqplot) re-measure on the window's resize event, which a real resize sends, and
    # lay out again in their own time: on a busy machine a plot still had its 1400 px width
    # 2 s later. So the layout is read until nothing overflows, for at most 20 s.
    page.evaluate("window.dispatchEvent(new Event('resize'))")
    settled_by = time.monotonic() + 20
    while True:
        keyboard = page.evaluate(KEYBOARD_AND_OVERFLOW_JS, widget_roots(page).element_handles())
        if not keyboard["overflowing"] or time.monotonic() > settled_by:
            break
        page.wait_for_timeout(500)
    widget.evaluate("node => node.scrollIntoView({block: 'center'})")
    page.screenshot(path=str(artifacts_dir / f"browser-{shot}-dark-1024.png"))
    nameless = controls_without_names(page)
    assert not problems["light"] and not problems["dark"], (
        f"{lesson.name}: unreadable widget text: {problems}"
    )
    assert not nameless, f"{lesson.name}: controls without an accessible name: {nameless}"
    assert not keyboard["unreachable"], (
        f"{lesson.name}: clickable but not reachable with Tab: {keyboard['unreachable']}"
    )
    assert not keyboard["squeezed"], (
        f"{lesson.name}: widget parts squeezed at 1024 px: {keyboard['squeezed']}"
    )
    overflowing = keyboard["overflowing"]
    assert not overflowing, f"{lesson.name}: widgets wider than the page at 1024 px: {overflowing}"


@pytest.mark.parametrize(
    ("lesson", "lang"),
    SLIDE_WALKS,
    ids=[path.stem if lang == "en" else f"{path.stem}-{lang}" for path, lang in SLIDE_WALKS],
)
def test_lesson_runs_as_slides_with_the_keyboard(
    lesson, lang, request, browser_context, artifacts_dir
):
    """A presenter's whole lesson: the slides start by themselves when the notebook opens
    (``deploylab present``), → walks every slide while its code runs, the first slide is read
    in the light and the dark theme with its speaker notes shown (``n``), every slide in the
    dark theme at 1024 px, each demo button is pressed; then Esc leaves the slides and the
    lesson's widget gets the learner's checks (:func:`check_the_lesson_widget`). No cell may
    raise and the console must log no errors. In Korean, the interface, the slide counter and
    the demo buttons speak Korean."""
    from deploylab.widgets.labels import widget_labels
    from deploylab.widgets.slide_mode import slide_groups

    base, token = request.getfixturevalue(
        "jupyterlab_present" if lang == "en" else f"jupyterlab_present_{lang}"
    )
    shot = lesson.stem if lang == "en" else f"{lesson.stem}-{lang}"  # screenshot names
    counter_text = widget_labels("slide_mode", lang).get("counter", "slide {n} of {total}")
    settings = lesson_settings(lesson)
    selector = settings.get("browser_selector")
    assert selector, f"{lesson.name} names no widget selector in metadata.deploylab"
    import nbformat

    slides, notes = slide_groups(nbformat.read(lesson, as_version=4))
    page = browser_context.new_page()
    page.set_viewport_size({"width": 1024, "height": 768})
    console_errors = collect_console_errors(page)
    demo_said: list[str] = []
    slide_issues: list[str] = []
    try:
        relative = lesson.relative_to(ROOT).as_posix()
        page.goto(f"{base}/lab/tree/{relative}?token={token}&reset", wait_until="domcontentloaded")
        # No key at all: deploylab present runs the slide-mode cell once the kernel is ready.
        page.wait_for_selector(".jp-Notebook.dl-presenting", state="attached", timeout=120_000)
        if lang == "ko":
            assert_interface_is_korean(page, lesson.name)
        counter = page.locator(".dl-slide-counter").first
        timeout_ms = int(settings.get("browser_timeout_s", 90)) * 1000 * 3
        for number in range(1, len(slides) + 1):
            if number > 1:
                page.keyboard.press("ArrowRight")
            expected = counter_text.format(n=number, total=len(slides))
            page.wait_for_function(
                "([node, text]) => node.textContent === text",
                arg=[counter.element_handle(), expected],
                timeout=10_000,
            )
            visible = page.locator(".jp-Notebook-cell:not(.dl-off-slide)").count()
            assert visible >= 1, f"{lesson.name}: {expected} shows no cell"
            # the slide's code runs on entry: a presenter waits for it, and so does the test
            page.wait_for_function(
                SLIDE_CELLS_DONE,
                timeout=min(timeout_ms, seconds_left(request) * 1000),
                polling=300,
            )
            if number == 1:
                # the title slide with the speaker notes shown, in both themes
                page.keyboard.press("n")
                notes_box = page.locator(f"{SLIDE_BAR} .dl-slide-notes")
                notes_box.wait_for(state="visible", timeout=5_000)
                if 0 in notes:
                    assert notes_box.inner_text().strip(), f"{lesson.name}: empty speaker notes"
                slide_issues += slide_problems(page, "light", expected)
                page.screenshot(path=str(artifacts_dir / f"slides-{shot}-first.png"))
                set_colour_scheme(page, "dark")
                slide_issues += slide_problems(page, "dark", expected)
                page.screenshot(path=str(artifacts_dir / f"slides-{shot}-dark.png"))
                page.keyboard.press("n")
                notes_box.wait_for(state="hidden", timeout=5_000)
            else:
                slide_issues += slide_problems(page, "dark", expected)
            if page.locator(".jp-Cell:not(.dl-off-slide) .dl-demo-button").count():
                demo_said += press_demo_buttons(page, shot, artifacts_dir)
        # Every slide was entered, so every code cell runs: wait for the last, then the widget.
        page.wait_for_function(
            """() => document.querySelector(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']") ||
              [...document.querySelectorAll(".jp-CodeCell:not(.dl-slide-control-cell) .jp-InputPrompt")]
                .every((p) => /\\[[0-9]+\\]/.test(p.textContent))""",
            timeout=min(timeout_ms, seconds_left(request) * 1000),
            polling=500,
        )
        widget = page.locator(selector).first
        widget.wait_for(state="attached", timeout=30_000)
        page.screenshot(path=str(artifacts_dir / f"slides-{shot}-last-dark.png"))
        assert not slide_issues, (
            f"{lesson.name}: slides unreadable or cut at 1024 px: {slide_issues}"
        )
        page.keyboard.press("Escape")
        page.wait_for_selector(".jp-Notebook:not(.dl-presenting)", timeout=10_000)
        check_the_lesson_widget(page, lesson, widget, artifacts_dir, shot)
        error_outputs = page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] .ansi-red-fg, .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']"
        )
        assert error_outputs.count() == 0, f"{lesson.name}: a cell raised an error in the browser"
    except Exception:
        page.screenshot(path=str(artifacts_dir / f"slides-{shot}-FAILED.png"))
        save_notebook_cells(page, artifacts_dir / f"slides-{shot}-FAILED-cells.txt")
        raise
    finally:
        page.emulate_media(color_scheme="light")
        page.close()
    expected_demo = DEMO_OUTCOMES.get(lesson.stem)
    if expected_demo:
        assert demo_said and expected_demo in demo_said[0], f"{lesson.name}: demo said {demo_said}"
    real_errors = [
        text for text in console_errors if not any(b in text for b in BENIGN_CONSOLE_ERRORS)
    ]
    assert not real_errors, f"{lesson.name}: browser console errors: {real_errors}"
