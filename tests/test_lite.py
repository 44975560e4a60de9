"""``deploylab build-lite``: the VPC core and its CIDR explorer in the browser alone.

The site is built (Pyodide from npm, wheels from PyPI, JupyterLite), served on 127.0.0.1 by a
static file server and opened in Debian's Chromium with every request that is not for that
server refused and recorded, and every host name but 127.0.0.1 unresolvable: the Pyodide
kernel must start, install deploylab from the site, compute a block's facts, draw the CIDR
explorer and recompute it in Python, with no request leaving the machine.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import free_port, require_tool

from deploylab.export.pdf import CHROMIUM_ARGS, chromium_path

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "vpc-in-the-browser.ipynb"


@pytest.fixture(scope="module")
def lite_site(tmp_path_factory):
    require_tool("npm", "npm")
    from notebooks import ROOT

    from deploylab.export.lite import build_lite

    out = tmp_path_factory.mktemp("lite") / "site"
    started = time.monotonic()
    build_lite(out, ROOT, log=lambda *_: None)
    print(f"build-lite took {time.monotonic() - started:.1f} s")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{base}/jupyter-lite.json", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                pytest.fail("the static server did not answer within 30 s")
            time.sleep(0.2)
    try:
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.timeout(900)  # Pyodide starts in 30-200 s, depending on the machine's load
def test_vpc_core_and_cidr_explorer_run_in_the_browser_with_no_network(lite_site, artifacts_dir):
    from playwright.sync_api import sync_playwright

    refused: list[str] = []
    errors: list[str] = []

    def only_the_site(route):
        if route.request.url.startswith((f"{lite_site}/", "data:", "blob:")):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"],
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.route("**/*", only_the_site)
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{lite_site}/lab/index.html?path={NOTEBOOK}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            page.locator(".jp-Notebook").first.click()
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.locator("[data-command='runmenu:run-all']").click()
            page.wait_for_function(
                """() => document.querySelector("[data-mime-type='application/vnd.jupyter.error']") ||
                  [...document.querySelectorAll(".jp-CodeCell .jp-InputPrompt")]
                    .every((p) => /\\[[0-9]+\\]/.test(p.textContent))""",
                timeout=600_000,
                polling=1000,
            )
            page.locator(".dl-vpc-cidr").first.wait_for(state="visible", timeout=60_000)
            page.locator(".dl-vpc-cidr").first.scroll_into_view_if_needed()
            page.screenshot(path=str(artifacts_dir / "lite-vpc.png"))
            outputs = [text for text in page.locator(".jp-OutputArea-output").all_inner_texts()]
            failed = page.locator("[data-mime-type='application/vnd.jupyter.error']")
            assert failed.count() == 0, f"a cell raised in Pyodide: {failed.all_inner_texts()}"
        except Exception:
            page.screenshot(path=str(artifacts_dir / "lite-vpc-FAILED.png"))
            raise
        finally:
            browser.close()
    text = "\n".join(outputs)
    assert "10.0.0.0/24 256 addresses, 254 usable, 251 in AWS" in text, text
    assert "10.0.0.0/28 → 16 addresses" in text, text  # recomputed by Python in the page
    assert not refused, f"requests that would have left the machine: {refused}"
    assert not errors, f"page errors: {errors}"
