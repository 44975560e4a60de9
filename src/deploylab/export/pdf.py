"""Printing an exported lesson to PDF with Debian's Chromium, driven by Playwright.

The page is opened from disk with every network request refused (the export must not need
one), the widgets are given time to render from their embedded state, then Chromium prints.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

#: Chromium flags for a quiet headless run in a closed network (without the background
#: networking flags Chromium floods the closed network with refused connections).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

#: A page's widgets have rendered when every embedded view has a widget area with content.
WIDGETS_RENDERED = """() => {
  const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
  const areas = document.querySelectorAll('.widget-subarea');
  return areas.length >= views.length && [...areas].every(area => area.childElementCount > 0);
}"""


class PrintError(RuntimeError):
    """Chromium or Playwright is missing, or the page did not render."""


def chromium_path() -> str:
    """Debian's Chromium binary (the ``/usr/bin/chromium`` wrapper prints a shell warning)."""
    for candidate in ("/usr/lib/chromium/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    raise PrintError("chromium is missing (apt-get install chromium): needed for the PDF copies")


def block_network(page_or_context) -> list[str]:
    """Refuse every request that is not a local file; returns the list of refused URLs."""
    refused: list[str] = []

    def handle(route):
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    page_or_context.route("**/*", handle)
    return refused


def print_to_pdf(pages: Sequence[tuple[Path, Path]], timeout_s: float = 60) -> list[Path]:
    """Open each ``(html, pdf)`` page offline in one Chromium, wait for its widgets, print it.

    Runs in a thread of its own: Playwright's synchronous API refuses to run where an asyncio
    loop is running, as one is after nbclient has executed a notebook in this thread.
    """
    with ThreadPoolExecutor(max_workers=1) as worker:
        return worker.submit(_print_all, list(pages), timeout_s).result()


def _print_all(pages: list[tuple[Path, Path]], timeout_s: float) -> list[Path]:
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        raise PrintError(
            "playwright is missing: pip install playwright (no browser download needed;"
            " Debian's chromium is used), or pass --no-pdf"
        ) from None
    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            for html, pdf in pages:
                page = browser.new_page(viewport={"width": 1024, "height": 1000})
                refused = block_network(page)
                page.goto(html.resolve().as_uri(), wait_until="load")
                page.wait_for_function(WIDGETS_RENDERED, timeout=timeout_s * 1000)
                page.pdf(path=str(pdf), format="A4", print_background=True)
                page.close()
                if refused:
                    raise PrintError(f"{html} asked for the network while printing: {refused[:5]}")
                written.append(pdf)
        finally:
            browser.close()
    return written
