"""Every page of the built book, opened in a real browser with the network cut off.

Run after the book is built (``make book``; ``make test`` does both): headless
Chromium (Debian's ``chromium``, driven by Playwright without downloading a
browser of its own) opens every HTML page of ``_build/html`` from disk while
every host name resolves to nothing, so a page that needs the internet fails
here as it would for an offline reader. Each page must load without a console
error, an uncaught exception or a failed request, show every image, and
render its maths with the MathJax copy shipped in the book.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("METALEARN_BOOK_HTML", REPO / "_build" / "html"))
SKIP = {"genindex.html", "search.html"}  # Sphinx's generated index pages


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "No Chromium found: install Debian's package (apt-get install chromium); "
        ".ci/run does this on CI."
    )


def pages() -> list[Path]:
    if not (BUILD / "index.html").is_file():
        return []
    return sorted(
        p for p in BUILD.rglob("*.html")
        if p.name not in SKIP and "_static" not in p.parts and "_sources" not in p.parts
        # the root index.html only redirects to the first page, tested itself
        and 'http-equiv="Refresh"' not in p.read_text(errors="replace")[:500]
    )


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=chromium(),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: no host resolves
            ],
        )
        yield launched
        launched.close()


def test_the_book_is_built():
    assert pages(), (
        f"No built book in {BUILD}: run `make book` first (make test does), or set "
        "METALEARN_BOOK_HTML to the folder of index.html."
    )


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(BUILD)))
def test_page_renders_offline(browser, page):
    tab = browser.new_page()
    problems: list[str] = []
    def console(message) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    tab.on("console", console)
    tab.on("pageerror", lambda e: problems.append(f"exception: {e}"))
    tab.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
    tab.goto(page.as_uri(), wait_until="load")
    has_maths = tab.evaluate("document.querySelectorAll('.math').length") > 0
    if has_maths:
        tab.wait_for_function(
            "window.MathJax && MathJax.startup && MathJax.startup.promise"
            " && document.querySelectorAll('mjx-container').length > 0",
            timeout=30_000,
        )
    broken = tab.evaluate(
        "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.getAttribute('src'))"
    )
    unrendered = tab.evaluate(  # MathJax marks TeX it could not parse as merror
        "document.querySelectorAll('mjx-merror').length"
    )
    tab.close()
    assert not problems, f"{page.name}: " + "; ".join(problems[:5])
    assert not broken, f"{page.name}: images that did not load: {broken[:5]}"
    assert not unrendered, f"{page.name}: {unrendered} formulas MathJax could not parse"
