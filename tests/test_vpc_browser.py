"""The VPC widgets in a real browser: moving the slider, typing a block, stepping through a
route lookup and clicking a subnet all reach the kernel and come back drawn.

Uses the JupyterLab and Chromium fixtures of ``test_browser.py``; run with ``-m browser``.
"""

from __future__ import annotations

import re

import pytest
from conftest import seconds_left
from notebooks import ROOT
from test_browser import (  # noqa: F401 (fixtures)
    BENIGN_CONSOLE_ERRORS,
    browser_context,
    jupyterlab,
    run_all_cells_to_the_end,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
LESSON = ROOT / "lessons" / "05-vpc-and-cidr.ipynb"


def test_vpc_widgets_respond_in_the_browser(jupyterlab, browser_context, artifacts_dir, request):  # noqa: F811
    base, token = jupyterlab
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    try:
        page.goto(
            f"{base}/lab/tree/{LESSON.relative_to(ROOT).as_posix()}?token={token}&reset",
            wait_until="domcontentloaded",
        )
        page.wait_for_selector(
            ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000
        )
        run_all_cells_to_the_end(page, seconds_left(request))
        page.locator(".dl-vpc-route").first.wait_for(state="attached", timeout=90_000)
        page.wait_for_selector(
            ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000
        )

        explorer = page.locator(".dl-vpc-cidr").first
        explorer.scroll_into_view_if_needed()
        explorer.locator(".dl-vpc-cidr-slider").fill("20")
        facts = explorer.locator(".dl-vpc-cidr-facts")
        # 4,091 = 2**12 - 5 comes back from deploylab.vpc in the kernel, not from the JS
        facts.get_by_text("4,091", exact=False).wait_for(timeout=20_000)
        page.wait_for_timeout(800)  # let the bits finish their colour animation
        blue = explorer.locator("rect.dl-bit[fill='rgb(26,115,232)']").count()
        assert blue == 20, (
            f"20 network bits should be blue after moving the slider to /20, saw {blue}"
        )
        box = explorer.locator(".dl-vpc-cidr-input")
        box.fill("192.168.1.77/26")
        box.press("Enter")
        facts.get_by_text("192.168.1.64/26", exact=False).wait_for(timeout=20_000)
        assert "host bits" in explorer.inner_text()

        stepper = page.locator(".dl-vpc-route").first
        stepper.scroll_into_view_if_needed()
        step = stepper.get_by_role("button", name="step")
        for _ in range(4):
            step.click()
        stepper.locator(".dl-route-winner").wait_for(timeout=5_000)
        assert "wins over" in stepper.locator(".dl-vpc-route-caption").inner_text()

        graph = page.locator(".dl-vpc-graph").first
        graph.scroll_into_view_if_needed()
        graph.locator("[data-node='subnet:private-a']").click()
        caption = graph.locator(".dl-vpc-graph-caption").inner_text()
        assert re.search(r"rt-private", caption), caption
        page.screenshot(path=str(artifacts_dir / "browser-vpc-widgets.png"))
    except Exception:
        page.screenshot(path=str(artifacts_dir / "browser-vpc-widgets-FAILED.png"))
        raise
    finally:
        page.close()
    real = [text for text in errors if not any(b in text for b in BENIGN_CONSOLE_ERRORS)]
    assert not real, f"browser console errors: {real}"
