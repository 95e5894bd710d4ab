"""The built site as readers get it, checked in a real browser (headless Chromium).

Every page of ``_build/html`` is served on 127.0.0.1 and opened with pytest-playwright's
``page`` fixture, in Debian's Chromium, each in a new browser context (a cold cache).
Anything a page asks of another host is aborted and reported, which is also how the site
behaves for a reader with no network. The checks are those of tests/site_audit.py, which
tests/test_site_audit.py shows can fail. For every page:

* it loads (HTTP 200), logs no console error and raises no uncaught exception;
* it requests nothing outside 127.0.0.1, and every local request succeeds;
* every math element was typeset by MathJax (no raw TeX left, no TeX errors);
* every image decodes and every figure has alt text; every Font Awesome icon is drawn;
* it loads neither the assets the site leaves out nor, except on search.html, the
  search index;
* on a phone (390x844) nothing is wider than the screen and the menu opens the contents.

Chapters, in addition: the Colab button and the .ipynb download point to the chapter's
own notebook (the repository is read from _config.yml), and the dark theme, chosen with
the switch in the header, keeps figures and code readable. Search and the execution-time
page are tested through the UI, and the build is checked for what GitHub Pages needs.

Page weights and screenshots are not tests: `make site-report` writes them.

Set SITE_HTML_DIR=path/to/_build/html (and SITE_TOC=path/to/toc.yml for a build made with
another toc) to audit an existing build without building the book.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from site_audit import audit, dark_theme_problems, phone_problems

from booktools.book import REPO_ROOT, colab_url
from booktools.site_report import (
    PHONE_CONTEXT,
    StaticSite,
    chapter_stems,
    open_page,
    site_pages,
    wait_for_mathjax,
)

pytestmark = pytest.mark.browser

TOC = Path(os.environ.get("SITE_TOC", REPO_ROOT / "_toc.yml"))
PAGES = site_pages(TOC)
CHAPTERS = chapter_stems(TOC)
# What the default Jupyter Book site loads and this one leaves out (_config.yml and
# book/_ext/templates/layout.html): thebe, Font Awesome's 1.5 MB JavaScript, require.js
# for widgets, anything from a CDN.
LEFT_OUT_ASSETS = ["sphinx-thebe", "thebe", "fontawesome.js", "require.js", "cdn.jsdelivr.net",
                   "embed-amd.js"]
# Loaded only by search.html (pydata-sphinx-theme loads them everywhere by default).
SEARCH_ONLY_ASSETS = ["searchindex.js", "searchtools.js", "language_data.js"]


@pytest.fixture(scope="module")
def html_root(request) -> Path:
    override = os.environ.get("SITE_HTML_DIR")
    if override:
        return Path(override).resolve()
    built_book = request.getfixturevalue("built_book")
    assert built_book.returncode == 0, built_book.log[-5000:]
    return built_book.html


@pytest.fixture(scope="module")
def site(html_root):
    with StaticSite(html_root) as served:
        yield served


# --------------------------------------------------------------------------- every page


def test_every_built_page_is_audited(html_root):
    """The parametrized audits below cover every HTML page of the built site."""
    built = sorted(
        path.relative_to(html_root).with_suffix("").as_posix()
        for path in html_root.rglob("*.html")
        if not path.relative_to(html_root).parts[0].startswith("_")
    )
    assert built == sorted(PAGES), "pages the audit does not know about (or lacks)"


@pytest.mark.parametrize("name", PAGES)
def test_page_loads_clean_and_offline(page, site, name):
    load = open_page(page, site.page_url(name))
    problems = audit(load)
    assert not problems, f"{name}:\n" + "\n".join(problems)
    requested = [response.url for response in load.responses]
    left_out = [url for url in requested for asset in LEFT_OUT_ASSETS if asset in url]
    assert not left_out, f"{name} loads assets the site leaves out: {left_out}"
    if name != "search":
        search = [url for url in requested for asset in SEARCH_ONLY_ASSETS if asset in url]
        assert not search, f"{name} loads the search index: {search}"


@pytest.mark.browser_context_args(**PHONE_CONTEXT)
@pytest.mark.parametrize("name", PAGES)
def test_page_fits_a_phone(page, site, name):
    load = open_page(page, site.page_url(name), settle_ms=100)
    problems = phone_problems(page)
    # The menu button opens the book's table of contents.
    toggle = page.locator("button.primary-toggle:visible").first
    assert toggle.count() == 1, "no menu button on a phone"
    toggle.click()
    chapter_links = page.locator(".bd-sidebar-primary a.reference.internal:visible")
    chapter_links.first.wait_for(state="visible", timeout=5_000)
    assert chapter_links.count() > 0, "the menu does not open the table of contents"
    page.keyboard.press("Escape")
    problems += audit(load)
    assert not problems, f"{name} on a phone:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- chapters


@pytest.mark.parametrize("stem", CHAPTERS)
def test_chapter_launch_and_download_buttons(page, site, stem):
    open_page(page, site.page_url(f"notebooks/{stem}"))
    # The rocket menu opens and offers Colab, pointing to this chapter's notebook.
    page.click(".dropdown-launch-buttons button")
    page.locator(".dropdown-launch-buttons a", has_text="Colab").wait_for(state="visible")
    colab_links = page.eval_on_selector_all(
        "a[href*='colab.research.google.com']", "els => els.map(e => e.href)")
    assert set(colab_links) == {colab_url(stem)}
    # The download menu offers the .ipynb, and it is this chapter's notebook.
    page.click(".dropdown-download-buttons button")
    download = page.locator(".dropdown-download-buttons a[href$='.ipynb']")
    download.wait_for(state="visible")
    href = download.evaluate("a => a.href")
    assert href == site.url(f"_sources/notebooks/{stem}.ipynb")
    response = page.request.get(href)
    assert response.status == 200
    assert json.loads(response.body())["nbformat"] == 4
    assert response.body() == (REPO_ROOT / "notebooks" / f"{stem}.ipynb").read_bytes()


def switch_to_dark(page) -> None:
    """Use the theme switch in the header, as a reader would, until the theme is dark."""
    for _ in range(3):
        if page.evaluate("document.documentElement.dataset.theme") == "dark":
            return
        page.locator(".theme-switch-button").first.click()
        page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"


@pytest.mark.parametrize("stem", CHAPTERS)
def test_chapter_in_dark_theme(page, site, stem):
    load = open_page(page, site.page_url(f"notebooks/{stem}"))
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    switch_to_dark(page)
    # The choice is remembered across pages.
    page.reload(wait_until="load")
    wait_for_mathjax(page)
    page.wait_for_load_state("networkidle")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    problems = dark_theme_problems(page) + audit(load)
    assert not problems, f"{stem} in the dark theme:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- features


def test_search_finds_variance(page, site):
    load = open_page(page, site.page_url("book/intro"))
    page.locator("button.search-button__button").first.click()
    field = page.locator("#pst-search-dialog input[name='q']")
    field.wait_for(state="visible")
    field.fill("variance")
    field.press("Enter")
    page.wait_for_url("**/search.html?q=variance*")
    # Sphinx lists results one by one; its summary line appears when all are in.
    page.wait_for_function(
        "() => (document.querySelector('#search-results p.search-summary')?.innerText || '') !== ''",
        timeout=30_000,
    )
    results = page.eval_on_selector_all(
        "#search-results ul.search li a", "els => els.map(e => e.getAttribute('href'))")
    assert results, "no search results for 'variance'"
    assert any("notation" in href for href in results), results
    problems = audit(load)
    assert not problems, "\n".join(problems)


def test_execution_page_lists_every_chapter(page, site):
    load = open_page(page, site.page_url("book/execution"))
    rows = page.eval_on_selector_all(
        ".bd-article table tbody tr",
        "rows => rows.map(r => [...r.querySelectorAll('td')].map(td => td.innerText.trim()))",
    )
    problems = audit(load)
    assert not problems, "\n".join(problems)
    by_document = {row[0]: row for row in rows}
    for stem in CHAPTERS:
        row = by_document.get(f"notebooks/{stem}")
        assert row, f"{stem} is missing from the execution table: {rows}"
        assert row[-1] == "✅", row
        assert float(row[-2]) > 0, row


def test_site_is_ready_for_github_pages(html_root):
    assert (html_root / ".nojekyll").exists(), "GitHub Pages would run Jekyll and hide _static"
    assert (html_root / "_static" / "mathjax" / "tex-chtml.js").exists()
