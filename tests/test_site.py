"""The built site as readers get it, checked in a real browser (headless Chromium).

Every page of ``_build/html`` is served on 127.0.0.1 and opened with Playwright driving
Debian's Chromium. Anything the page asks of another host is aborted and reported,
which is also how the site behaves for a reader with no network. For every page:

* it loads (HTTP 200), logs no console error and raises no uncaught exception;
* it requests nothing outside 127.0.0.1, and every local request succeeds;
* every math element was typeset by MathJax (no raw TeX left, no TeX errors);
* every image decodes (naturalWidth > 0) and every figure has alt text;
* every Font Awesome icon is drawn;
* at 390x844 (a phone) the page does not scroll sideways.

Chapters, in addition: the Colab button and the .ipynb download point to the chapter's
own notebook (the repository is read from _config.yml), the dark theme keeps figures
and code readable, and screenshots (light, dark, phone) are saved in
_build/site-report/screenshots/. Search, the theme switch and the execution-time page
are tested through the UI. ``test_page_weight`` writes _build/site-report/page-weight.{json,md}.

The ``test_audit_catches`` tests serve small synthetic pages the same way, each broken
on purpose (MathJax from a CDN, no MathJax, a TeX error, raw TeX, a missing or corrupt
image, an image without alt text, a console error, an uncaught exception, a web font or
analytics from another host), and check that the same audit reports it, so these tests
cannot pass by checking nothing. They need no build.

Set SITE_HTML_DIR=path/to/_build/html (and SITE_TOC=path/to/toc.yml for a build made with
another toc) to audit an existing build without building the book.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import importlib.util
import io
import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from booktools import book
from booktools.book import REPO_ROOT, colab_url

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# For development: audit a build made with another toc (SITE_TOC) into another
# folder (SITE_HTML_DIR) instead of building the book.
TOC = Path(os.environ.get("SITE_TOC", REPO_ROOT / "_toc.yml"))


def toc_files() -> list[str]:
    return book.toc_files(TOC)


CHAPTERS = [entry.removeprefix("notebooks/") for entry in toc_files()
            if entry.startswith("notebooks/")]
# Pages Sphinx writes besides those in the toc.
GENERATED_PAGES = ["index", "search", "genindex"]
PAGES = [*toc_files(), *GENERATED_PAGES]
# Assets removed from the default Jupyter Book site (book/_ext/offline_site.py and
# _config.yml): they must not come back.
REMOVED_ASSETS = ["sphinx-thebe", "thebe", "fontawesome.js", "require.js", "cdn.jsdelivr.net",
                  "embed-amd.js"]
# Loaded only by search.html (pydata-sphinx-theme loads them everywhere by default).
SEARCH_ONLY_ASSETS = ["searchindex.js", "searchtools.js", "language_data.js"]
TEXT_TYPES = ("text/", "javascript", "json", "svg", "xml")
# WCAG AA contrast for normal text.
MIN_CONTRAST = 4.5


# --------------------------------------------------------------------------- serving


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


class StaticSite:
    """``root`` served by http.server on 127.0.0.1 (a free port) in a daemon thread."""

    def __init__(self, root: Path):
        self.root = root
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, page: str) -> str:
        return self.base + page

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def html_root(request) -> Path:
    override = os.environ.get("SITE_HTML_DIR")
    if override:
        return Path(override).resolve()
    built_book = request.getfixturevalue("built_book")
    assert built_book.returncode == 0, built_book.log[-5000:]
    return built_book.html


@pytest.fixture(scope="module")
def report_dir(html_root) -> Path:
    """_build/site-report: page weights and screenshots, for a person to look at."""
    path = html_root.parent / "site-report"
    (path / "screenshots").mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def site(html_root):
    served = StaticSite(html_root)
    yield served
    served.close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does this)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


# --------------------------------------------------------------------------- loading


@dataclass
class PageLoad:
    """One page opened in a fresh browser context (cold cache), and what happened."""

    page: object
    context: object
    status: int | None = None
    console_errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    responses: list = field(default_factory=list)

    def close(self) -> None:
        self.context.close()


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or parts.hostname == "127.0.0.1"


def open_page(browser, url: str, *, color_scheme="light", viewport=DESKTOP, phone=False,
              settle_ms=300) -> PageLoad:
    redirect = url.endswith("/index.html")
    options = {"viewport": viewport, "color_scheme": color_scheme, "service_workers": "block"}
    if phone:
        options.update(is_mobile=True, has_touch=True, device_scale_factor=2)
    context = browser.new_context(**options)
    page = context.new_page()
    load = PageLoad(page=page, context=context)

    def route(route):
        if _is_local(route.request.url):
            route.continue_()
        else:  # what a reader without a network gets; reported below
            load.outside_requests.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and load.console_errors.append(
        f"console.error: {m.text} ({m.location.get('url', '')})"))
    page.on("pageerror", lambda e: load.console_errors.append(f"uncaught: {e}"))
    page.on("response", lambda r: load.responses.append(r))
    page.on("requestfailed", lambda r: _is_local(r.url) and load.failed_requests.append(
        f"{r.url}: {r.failure}"))
    if redirect:  # index.html sends the reader on to the first page: audit that one
        with page.expect_navigation(url=lambda target: target != url, wait_until="load"):
            response = page.goto(url)
    else:
        response = page.goto(url, wait_until="load")
    load.status = response.status if response else None
    # MathJax typesets after load; its startup promise settles when it is done.
    page.evaluate("""async () => {
        if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
            await MathJax.startup.promise;
        }
        await document.fonts.ready;
    }""")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(settle_ms)
    return load


# --------------------------------------------------------------------------- audits

MATH_AUDIT = r"""() => {
    const problems = [];
    const maths = [...document.querySelectorAll('span.math, div.math')];
    for (const el of maths) {
        if (!el.querySelector('mjx-container')) {
            problems.push('not typeset: ' + el.textContent.trim().slice(0, 80));
        }
    }
    for (const el of document.querySelectorAll('mjx-merror, [data-mjx-error]')) {
        problems.push('TeX error: ' + (el.getAttribute('data-mjx-error') || el.textContent));
    }
    // MathJax's noundefined extension draws an undefined \macro in red instead
    for (const el of document.querySelectorAll('mjx-container mtext[mathcolor="red"]')) {
        if (el.textContent.startsWith('\\')) problems.push('undefined macro: ' + el.textContent);
    }
    // Raw TeX left anywhere in the text a reader sees (code excepted).
    const root = document.querySelector('main') || document.body;
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    // Search results quote the pages' source text (Sphinx's search summaries).
    const skip = 'pre, code, script, style, textarea, mjx-container, .highlight, .math, '
               + '#search-results';
    const tex = /\\\(|\\\)|\\\[|\\\]|\\begin\{|\$\$|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$/;
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (node.parentElement.closest(skip)) continue;
        const match = node.textContent.match(tex);
        if (match) problems.push('raw TeX in text: ' + node.textContent.trim().slice(0, 80));
    }
    return {count: maths.length, problems};
}"""

IMAGE_AUDIT = r"""async () => {
    const images = [...document.images];
    for (const img of images) img.loading = 'eager';
    await Promise.all(images.map(img => img.complete ? null :
        new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done); })));
    return images.map(img => ({
        src: img.getAttribute('src'),
        width: img.naturalWidth,
        alt: img.hasAttribute('alt') ? img.getAttribute('alt').trim() : null,
        inArticle: !!img.closest('.bd-article'),
    }));
}"""

ICON_AUDIT = r"""() => {
    const fontsLoaded = document.fonts.check('900 16px "Font Awesome 6 Free"');
    const missing = [];
    for (const icon of document.querySelectorAll('i[class*="fa-"]')) {
        const content = getComputedStyle(icon, '::before').content;
        if (!content || content === 'none' || content === 'normal' || content === '""') {
            missing.push(icon.className);
        }
    }
    return {fontsLoaded, missing};
}"""


def audit(load: PageLoad) -> list[str]:
    """Everything wrong with a loaded page, as readable lines (empty: all good)."""
    page = load.page
    problems = []
    if load.status != 200:
        problems.append(f"HTTP status {load.status}")
    problems += load.console_errors
    problems += [f"outside request: {url}" for url in load.outside_requests]
    problems += [f"failed request: {line}" for line in load.failed_requests]
    problems += [
        f"HTTP {r.status}: {r.url}" for r in load.responses if r.status >= 400 and _is_local(r.url)
    ]
    math = page.evaluate(MATH_AUDIT)
    problems += [f"math {line}" for line in math["problems"]]
    for image in page.evaluate(IMAGE_AUDIT):
        if image["width"] == 0:
            problems.append(f"image not decoded: {image['src']}")
        if image["inArticle"] and not image["alt"]:
            problems.append(f"figure without alt text: {image['src']}")
        if not image["inArticle"] and image["alt"] is None:
            problems.append(f"image without an alt attribute: {image['src']}")
    icons = page.evaluate(ICON_AUDIT)
    if page.query_selector('i[class*="fa-"]') and not icons["fontsLoaded"]:
        problems.append("Font Awesome web font not loaded: icons are blank")
    problems += [f"icon not drawn: {name}" for name in icons["missing"]]
    return problems


def page_file(page: str) -> str:
    return f"{page}.html"


def chapter_url(site: StaticSite, stem: str) -> str:
    return site.url(f"notebooks/{stem}.html")


# --------------------------------------------------------------------------- every page


def test_every_built_page_is_audited(html_root):
    """The parametrized audits below cover every HTML page of the built site."""
    built = sorted(
        path.relative_to(html_root).with_suffix("").as_posix()
        for path in html_root.rglob("*.html")
        if not path.relative_to(html_root).parts[0].startswith("_")
    )
    assert built == sorted(PAGES), "pages the audit does not know about (or lacks)"


@pytest.mark.parametrize("page", PAGES)
def test_page_loads_clean_and_offline(browser, site, page):
    load = open_page(browser, site.url(page_file(page)))
    try:
        problems = audit(load)
        requested = [r.url for r in load.responses]
    finally:
        load.close()
    assert not problems, f"{page}:\n" + "\n".join(problems)
    removed = [url for url in requested for name in REMOVED_ASSETS if name in url]
    assert not removed, f"{page} loads removed assets: {removed}"
    if page != "search":
        search_assets = [url for url in requested for name in SEARCH_ONLY_ASSETS if name in url]
        assert not search_assets, f"{page} loads the search index: {search_assets}"


@pytest.mark.parametrize("page", PAGES)
def test_page_fits_a_phone(browser, site, page):
    load = open_page(browser, site.url(page_file(page)), viewport=PHONE, phone=True, settle_ms=100)
    try:
        sizes = load.page.evaluate("""() => ({
            inner: window.innerWidth,
            doc: document.documentElement.scrollWidth,
            body: document.body.scrollWidth,
            wide: [...document.querySelectorAll('.bd-article *')]
                .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1
                              && getComputedStyle(el).position !== 'fixed'
                              && !el.closest('.pst-scrollable-table-container, .highlight, '
                                             + 'mjx-container, .output, .cell_output, '
                                             + 'div.math, .table-wrapper'))
                .slice(0, 5).map(el => el.tagName + '.' + el.className),
        })""")
        # The menu button opens the book's table of contents.
        toggle = load.page.locator("button.primary-toggle:visible").first
        toggle_visible = toggle.count() == 1
        nav_visible = False
        if toggle_visible:
            toggle.click()
            chapter_link = load.page.locator(".bd-sidebar-primary a.reference.internal:visible")
            chapter_link.first.wait_for(state="visible", timeout=5_000)
            nav_visible = chapter_link.count() > 0
            load.page.keyboard.press("Escape")
        problems = audit(load)
    finally:
        load.close()
    assert sizes["doc"] <= sizes["inner"] and sizes["body"] <= sizes["inner"], (
        f"{page} scrolls sideways on a phone: {sizes}"
    )
    assert not sizes["wide"], f"{page}: elements wider than the phone screen: {sizes['wide']}"
    assert toggle_visible and nav_visible, "the navigation menu cannot be opened on a phone"
    assert not problems, f"{page} on a phone:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- chapters


@pytest.mark.parametrize("stem", CHAPTERS)
def test_chapter_launch_and_download_buttons(browser, site, stem):
    load = open_page(browser, chapter_url(site, stem))
    page = load.page
    try:
        # The rocket menu opens and offers Colab, pointing to this chapter's notebook.
        page.click(".dropdown-launch-buttons button")
        colab = page.locator(".dropdown-launch-buttons a", has_text="Colab")
        colab.wait_for(state="visible")
        colab_links = page.eval_on_selector_all(
            "a[href*='colab.research.google.com']", "els => els.map(e => e.href)")
        # The download menu offers the .ipynb, and it is this chapter's notebook.
        page.click(".dropdown-download-buttons button")
        download = page.locator(".dropdown-download-buttons a[href$='.ipynb']")
        download.wait_for(state="visible")
        href = download.evaluate("a => a.href")
        response = page.request.get(href)
        body = response.body()
        status = response.status
    finally:
        load.close()
    assert set(colab_links) == {colab_url(stem)}
    assert href == site.url(f"_sources/notebooks/{stem}.ipynb")
    assert status == 200
    notebook = json.loads(body)
    assert notebook["nbformat"] == 4
    assert body == (REPO_ROOT / "notebooks" / f"{stem}.ipynb").read_bytes()


def _luminance(rgb) -> float:
    def channel(value):
        value /= 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


CODE_COLORS = r"""() => {
    const rgb = s => (s.match(/[\d.]+/g) || []).map(Number);
    const background = el => {
        for (; el; el = el.parentElement) {
            const c = rgb(getComputedStyle(el).backgroundColor);
            if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
        }
        return [255, 255, 255];
    };
    const out = [];
    const blocks = document.querySelectorAll('.bd-article div.highlight pre, .bd-article .cell_output pre');
    for (const pre of [...blocks].slice(0, 40)) {
        const spans = [pre, ...pre.querySelectorAll('span')].filter(
            el => [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()));
        for (const el of spans.slice(0, 200)) {
            const style = getComputedStyle(el);
            out.push({text: el.textContent.trim().slice(0, 30), cls: el.className,
                      color: rgb(style.color), background: background(el)});
        }
    }
    return out;
}"""


def switch_to_dark(page) -> None:
    """Use the theme switch in the header, as a reader would, until the theme is dark."""
    for _ in range(3):
        if page.evaluate("document.documentElement.dataset.theme") == "dark":
            return
        page.locator(".theme-switch-button").first.click()
        page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"


@pytest.mark.parametrize("stem", CHAPTERS)
def test_chapter_in_dark_theme_and_screenshots(browser, site, report_dir, stem):
    from PIL import Image

    shots = report_dir / "screenshots"
    load = open_page(browser, chapter_url(site, stem), color_scheme="light")
    page = load.page
    try:
        assert page.evaluate("document.documentElement.dataset.theme") == "light"
        page.screenshot(path=shots / f"{stem}-light.png", full_page=True)
        switch_to_dark(page)
        page.wait_for_timeout(300)
        # The choice is remembered across pages.
        page.reload(wait_until="load")
        page.evaluate("async () => { if (window.MathJax?.startup?.promise) await MathJax.startup.promise; }")
        page.wait_for_load_state("networkidle")
        assert page.evaluate("document.documentElement.dataset.theme") == "dark"
        background = page.evaluate(
            "getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number)")
        page.screenshot(path=shots / f"{stem}-dark.png", full_page=True)
        figures = []
        for handle in page.query_selector_all(".bd-article .cell_output img, .bd-article figure img"):
            handle.scroll_into_view_if_needed()
            filter_ = handle.evaluate("img => getComputedStyle(img).filter")
            pixels = Image.open(io.BytesIO(handle.screenshot())).convert("L")
            low, high = pixels.getextrema()
            figures.append((handle.get_attribute("src"), filter_, low, high))
        code = page.evaluate(CODE_COLORS)
        problems = audit(load)
    finally:
        load.close()
    assert _luminance(background) < 0.1, f"dark theme background is not dark: {background}"
    assert not problems, "\n".join(problems)
    for src, filter_, low, high in figures:
        assert "invert" not in filter_, f"{src} is inverted in the dark theme"
        # A white-background figure stays light, and its dark strokes stay dark.
        assert high >= 180 and low <= 60, f"{src} is washed out in the dark theme ({low}..{high})"
    poor = [
        (c["text"], c["cls"], round(contrast(c["color"], c["background"]), 2))
        for c in code
        if contrast(c["color"], c["background"]) < MIN_CONTRAST
    ]
    assert not poor, f"code with contrast below {MIN_CONTRAST} in the dark theme: {poor[:10]}"


@pytest.mark.parametrize("stem", CHAPTERS)
def test_chapter_phone_screenshot(browser, site, report_dir, stem):
    shots = report_dir / "screenshots"
    load = open_page(browser, chapter_url(site, stem), viewport=PHONE, phone=True)
    try:
        load.page.screenshot(path=shots / f"{stem}-phone.png", full_page=False)
    finally:
        load.close()
    assert (shots / f"{stem}-phone.png").stat().st_size > 0


# --------------------------------------------------------------------------- features


def test_search_finds_variance(browser, site):
    load = open_page(browser, site.url("book/intro.html"))
    page = load.page
    try:
        page.locator("button.search-button__button").first.click()
        field_ = page.locator("#pst-search-dialog input[name='q']")
        field_.wait_for(state="visible")
        field_.fill("variance")
        field_.press("Enter")
        page.wait_for_url("**/search.html?q=variance*")
        # Sphinx lists results one by one; its summary line appears when all are in.
        page.wait_for_function(
            "() => (document.querySelector('#search-results p.search-summary')?.innerText || '') !== ''",
            timeout=30_000,
        )
        results = page.eval_on_selector_all(
            "#search-results ul.search li a", "els => els.map(e => e.getAttribute('href'))")
        problems = audit(load)
    finally:
        load.close()
    assert results, "no search results for 'variance'"
    assert any("notation" in href for href in results), results
    assert not problems, "\n".join(problems)


def test_execution_page_lists_every_chapter(browser, site):
    load = open_page(browser, site.url("book/execution.html"))
    try:
        rows = load.page.eval_on_selector_all(
            ".bd-article table tbody tr",
            "rows => rows.map(r => [...r.querySelectorAll('td')].map(td => td.innerText.trim()))",
        )
        problems = audit(load)
    finally:
        load.close()
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


# --------------------------------------------------------------------------- weight


def _transferred(response) -> tuple[int, int]:
    """(bytes as served here, bytes with gzip for text types, as GitHub Pages serves)."""
    try:
        body = response.body()
    except Exception:  # a redirect or an aborted request has no body
        return 0, 0
    kind = response.headers.get("content-type", "")
    compressed = len(gzip.compress(body, 6)) if any(t in kind for t in TEXT_TYPES) else len(body)
    return len(body), compressed


def test_page_weight(browser, site, report_dir, capsys):
    """Bytes transferred for a first visit (cold cache) to each page; written to _build/."""
    report = {}
    for page in PAGES:
        if page == "index":
            continue  # a redirect to the first page
        load = open_page(browser, site.url(page_file(page)), settle_ms=100)
        try:
            per_resource = {}
            for response in load.responses:
                if _is_local(response.url) and response.status < 400:
                    path = urlsplit(response.url).path
                    per_resource[path] = _transferred(response)
        finally:
            load.close()
        raw = sum(size for size, _ in per_resource.values())
        compressed = sum(size for _, size in per_resource.values())
        by_size = sorted(per_resource.items(), key=lambda item: -item[1][0])
        report[page] = {
            "requests": len(per_resource),
            "bytes": raw,
            "bytes_gzip": compressed,
            "resources": {path: size for path, (size, _) in by_size},
        }
    (report_dir / "page-weight.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    lines = [
        "| page | requests | bytes | bytes (gzip, as served by GitHub Pages) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for page, entry in report.items():
        lines.append(f"| {page} | {entry['requests']} | {entry['bytes']:,} | {entry['bytes_gzip']:,} |")
    (report_dir / "page-weight.md").write_text("# Bytes transferred per page (first visit)\n\n" + "\n".join(lines) + "\n",
                         encoding="utf-8")
    with capsys.disabled():
        print("\n\nBytes transferred per page, first visit (also in _build/site-report/page-weight.md):")
        print("\n".join(lines))
    for stem in CHAPTERS:
        assert report[f"notebooks/{stem}"]["bytes"] > 0


# --------------------------------------------------------------------------- the audit itself


# The audit is checked on small synthetic pages served the same way (http.server on
# 127.0.0.1) and loading the same MathJax as the site, from the same package. The
# clean page must pass; each broken variant must be reported.
SYNTHETIC_PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Audit check</title>
<script>window.MathJax = {"options": {"processHtmlClass": "tex2jax_process|mathjax_process|math|output_area"}}</script>
<script defer="defer" src="mathjax/tex-chtml.js"></script>
<!--HEAD-->
</head><body><main><article class="bd-article">
<h1>Audit check</h1>
<p>The mean is <span class="math notranslate nohighlight">\(\mu = \frac{1}{H}\sum_{i=1}^{H} x_i\)</span>.</p>
<div class="math notranslate nohighlight">\[\hat{x}_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}}\]</div>
<div class="math notranslate nohighlight">\begin{align} y &amp;= \gamma \hat{x} + \beta \\ z &amp;= y^2 \end{align}</div>
<div class="cell_output"><img src="figure.png" alt="A grey square with a black stroke."></div>
<!--BODY-->
</article></main></body></html>
"""
SABOTAGE = {
    # name: (what the audit must report, text put into the page: (head, body))
    "mathjax_from_cdn": ("outside request", ("", "")),
    "mathjax_missing": ("math not typeset", ("", "")),
    "tex_error": ("math TeX error", ("", r'<p><span class="math">\(x^2^3\)</span></p>')),
    "undefined_macro": ("math undefined macro", ("", r'<p><span class="math">\(\notamacro x\)</span></p>')),
    # what dollar math looks like when the Markdown parser leaves it alone
    "raw_tex": ("math raw TeX", ("", r"<p>so $\alpha x + \beta$ follows</p>")),
    "missing_image": ("image not decoded", ("", '<img src="missing.png" alt="gone">')),
    "corrupt_image": ("image not decoded", ("", '<img src="corrupt.png" alt="not a PNG">')),
    "figure_without_alt": ("figure without alt", ("", '<img src="figure.png">')),
    "console_error": ("console.error", ("", '<script>console.error("sabotage")</script>')),
    "uncaught_exception": ("uncaught", ("", "<script>null.sabotage()</script>")),
    "web_font_from_cdn": ("outside request", (
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css2?family=Roboto">', "")),
    "analytics": ("outside request", (
        '<script async src="https://www.googletagmanager.com/gtag/js?id=G-XXXX"></script>', "")),
}
MATHJAX_TAG = '<script defer="defer" src="mathjax/tex-chtml.js"></script>'


def _mathjax_source() -> tuple[Path, list[str], list[str]]:
    """MathJax as offline_site.py copies it into the site (sphinx-mathjax-offline)."""
    spec = importlib.util.spec_from_file_location(
        "offline_site", REPO_ROOT / "book" / "_ext" / "offline_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.mathjax_source(), module.MATHJAX_FILES, module.MATHJAX_DIRS


@pytest.fixture(scope="module")
def synthetic_site(tmp_path_factory):
    from PIL import Image, ImageDraw

    root = tmp_path_factory.mktemp("synthetic")
    source, files, dirs = _mathjax_source()
    for name in files:
        (root / "mathjax").mkdir(exist_ok=True)
        shutil.copy(source / name, root / "mathjax" / name)
    for name in dirs:
        shutil.copytree(source / name, root / "mathjax" / name)
    figure = Image.new("RGB", (120, 80), "#dddddd")
    ImageDraw.Draw(figure).line((10, 70, 110, 10), fill="black", width=3)
    figure.save(root / "figure.png")
    (root / "corrupt.png").write_bytes(b"this is not a PNG file")
    (root / "clean.html").write_text(SYNTHETIC_PAGE, encoding="utf-8")
    for kind, (_, (head, body)) in SABOTAGE.items():
        text = SYNTHETIC_PAGE.replace("<!--HEAD-->", head).replace("<!--BODY-->", body)
        if kind == "mathjax_from_cdn":
            text = text.replace(MATHJAX_TAG, '<script defer src="https://cdn.jsdelivr.net/npm/'
                                'mathjax@3/es5/tex-mml-chtml.js"></script>')
        elif kind == "mathjax_missing":
            text = text.replace(MATHJAX_TAG, "")
        assert text != SYNTHETIC_PAGE, kind
        (root / f"{kind}.html").write_text(text, encoding="utf-8")
    served = StaticSite(root)
    yield served
    served.close()


def test_audit_passes_a_clean_page(browser, synthetic_site):
    load = open_page(browser, synthetic_site.url("clean.html"))
    try:
        problems = audit(load)
        typeset = load.page.locator("mjx-container").count()
    finally:
        load.close()
    assert not problems, problems
    assert typeset == 3, "inline, display and align math are all typeset"


@pytest.mark.parametrize("kind", SABOTAGE)
def test_audit_catches(browser, synthetic_site, kind):
    expected = SABOTAGE[kind][0]
    load = open_page(browser, synthetic_site.url(f"{kind}.html"))
    try:
        problems = audit(load)
    finally:
        load.close()
    assert any(line.startswith(expected) for line in problems), (
        f"the audit missed {kind}; it reported {problems}"
    )
