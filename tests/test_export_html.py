"""Take-home copies (``deploylab export-html``): every lesson, executed and exported, opened
from disk in Debian's Chromium with every non-file request refused. The widgets must render
from their embedded state, each animation must move when its play or step control is
pressed, the console must log no errors, and no request may even be attempted. A stock
nbconvert export is opened the same way first, to show the check catches a CDN. Screenshots
land in ``test-artifacts/export-*.png``. Run alone with ``pytest -m browser``.
"""

from __future__ import annotations

import os
import re

import nbformat
import pytest
from conftest import require_tool
from notebooks import LESSONS, ROOT, executed_lesson

from deploylab.export import widget_manager
from deploylab.export.html import export_lessons
from deploylab.export.pdf import CHROMIUM_ARGS, WIDGETS_RENDERED, block_network, chromium_path

# Executing all six lessons takes 2–3 minutes on a quiet machine, more on a shared one.
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1800)]

ARTIFACTS = ROOT / "test-artifacts"

#: The controls that drive an animation, as the widgets label them in English.
PLAY = re.compile(r"^(play|pause|replay)\b", re.IGNORECASE)
STEP = re.compile(r"^step\b", re.IGNORECASE)

#: What a widget area draws, without its controls (whose own labels change when pressed).
DRAWING = """area => {
  const copy = area.cloneNode(true);
  copy.querySelectorAll('button, select, input').forEach(control => control.remove());
  return copy.innerHTML;
}"""


@pytest.fixture(scope="module")
def widget_manager_assets():
    require_tool("npm", "nodejs")
    try:
        return widget_manager.fetch()
    except widget_manager.WidgetManagerMissingError as error:
        if os.environ.get("CI"):
            pytest.fail(str(error))
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, widget_manager_assets):
    """Every English lesson exported once (HTML and PDF), keyed by its file stem."""
    require_tool("chromium", "chromium")
    out = tmp_path_factory.mktemp("take-home")
    copies = export_lessons(out=out, root=ROOT, log=lambda _message: None, executor=executed_lesson)
    return {copy.notebook.stem: copy for copy in copies}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield chromium
        finally:
            chromium.close()


def open_offline(browser, html_path):
    """A page on ``html_path`` with the network refused; returns (page, refused, errors)."""
    page = browser.new_page(viewport={"width": 1024, "height": 900})
    errors: list[str] = []
    page.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    refused = block_network(page)
    page.goto(html_path.resolve().as_uri(), wait_until="load")
    return page, refused, errors


def test_stock_nbconvert_export_reaches_for_a_cdn(browser, exported, tmp_path):
    """The attack the export defends against: nbconvert's own template loads require.js and
    the widget manager from CDNs, which the offline check must catch."""
    from nbconvert import HTMLExporter

    lesson = LESSONS[0]
    notebook = nbformat.read(lesson, as_version=4)
    notebook.metadata["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {
            "version_major": 2,
            "version_minor": 0,
            "state": {},
        }
    }
    stock = tmp_path / "stock.html"
    stock.write_text(HTMLExporter(template_name="lab").from_notebook_node(notebook)[0])
    page, refused, _errors = open_offline(browser, stock)
    page.close()
    assert any("cdn" in url for url in refused), refused


#: Widgets whose play control, exported, has nothing to play, and why. Lesson 02's live
#: balancer view (``BalancerWidget(requests=1).follow(balancer)``) goes back to its scripted
#: scenario when the lesson stops the balancer: one request, so one step, nothing to play.
STILL_WHEN_PRESSED = {
    "02-load-balancing": [("dl-demo-panel", "pause")]
}  # the balancer in its demo panel

#: Which widget an area holds: its first deploylab class, and "live" for a live view.
WIDGET_KIND = """area => {
  const names = [...area.querySelectorAll('[class*="dl-"]')]
    .flatMap(element => [...element.classList])
    .filter(name => name.startsWith('dl-') && name !== 'dl-widget');
  const kind = names[0] || 'widget';
  return /(^|\\s)live:/.test(area.innerText) ? `${kind} live` : kind;
}"""


def press_and_watch(page, area, control) -> bool:
    """Press ``control``; True if the drawing in ``area`` changed within 10 s."""
    before = area.evaluate(DRAWING)
    control.click()
    try:
        page.wait_for_function(
            f"([area, before]) => ({DRAWING})(area) !== before",
            arg=[area.element_handle(), before],
            timeout=10_000,
        )
    except Exception:
        return False
    return True


@pytest.mark.parametrize("lesson", LESSONS, ids=[path.stem for path in LESSONS])
def test_exported_lesson_animates_offline(browser, exported, lesson):
    copy = exported[lesson.stem]
    html = copy.html.read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']https?:", html)
    page, refused, errors = open_offline(browser, copy.html)
    moved, still = [], []
    try:
        page.wait_for_function(WIDGETS_RENDERED, timeout=60_000)
        areas = page.locator(".widget-subarea")
        assert areas.count() >= 1
        for index in range(areas.count()):
            area = areas.nth(index)
            kind = area.evaluate(WIDGET_KIND)
            step = area.get_by_role("button", name=STEP).first
            if step.count():
                (moved if press_and_watch(page, area, step) else still).append((kind, "step"))
            play = area.get_by_role("button", name=PLAY).first
            if play.count():
                label = play.inner_text().split()[0].lower()
                if label == "pause":
                    play.click()  # stop the autoplay, so that the change below is ours
                restart = area.get_by_role("button", name=re.compile("^restart$")).first
                if restart.count():
                    restart.click()  # from the first step: a finished animation has no next
                page.wait_for_timeout(300)
                (moved if press_and_watch(page, area, play) else still).append((kind, label))
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"export-{lesson.stem}.png"), full_page=True)
    finally:
        page.close()
    assert refused == [], f"{lesson.stem} asked for the network: {refused[:5]}"
    assert errors == []
    assert still == STILL_WHEN_PRESSED.get(lesson.stem, []), (lesson.stem, still)
    if lesson.stem in LESSONS_WITHOUT_PLAYBACK:
        assert moved == []
    else:
        assert moved, f"nothing in {lesson.stem} moved when play or step was pressed"


#: Lessons whose widgets are driven by the kernel only (sliders that re-run the simulator):
#: exported, they show the last state drawn, and have no play or step control to press.
LESSONS_WITHOUT_PLAYBACK = {"03-autoscaling"}


#: Every widget in a page that draws (an SVG or a canvas: the animations and the plots),
#: except the slide mode's bar, a one-line control.
SLIDE_FREE_DRAWINGS = ".widget-subarea:not(:has(.dl-slide-bar)):has(svg, canvas)"


def test_pdf_copies_are_printed_with_their_widgets(browser, exported):
    """Each lesson is a multi-page PDF, and in print media its widgets still take up room."""
    for stem, copy in exported.items():
        data = copy.pdf.read_bytes()
        assert data.startswith(b"%PDF-"), stem
        pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", data))
        assert pages >= 2, f"{stem}.pdf has {pages} page(s)"
        page, refused, _errors = open_offline(browser, copy.html)
        try:
            page.emulate_media(media="print")
            page.wait_for_function(WIDGETS_RENDERED, timeout=60_000)
            heights = [
                box["height"]
                for box in map(
                    lambda a: a.bounding_box(),
                    page.locator(SLIDE_FREE_DRAWINGS).all(),
                )
                if box
            ]
        finally:
            page.close()
        assert heights and min(heights) > 40, (stem, heights)
        assert refused == []
