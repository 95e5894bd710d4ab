"""The built site served on 127.0.0.1 and opened in Debian's Chromium, and `make site-report`.

What the browser tests (tests/test_site*.py) and the report share:

- the pages of the built site: every toc entry plus the pages Sphinx writes itself;
- ``StaticSite``: a folder served by http.server on 127.0.0.1;
- Chromium's launch options: Debian's ``/usr/bin/chromium``, never a downloaded browser;
- the browser contexts' options: a desktop window, a phone;
- ``open_page``: a page opened as a reader without a network gets it. Requests to other
  hosts are aborted and recorded, and so are console errors, failed requests and every
  response; it returns once MathJax has typeset the page.

The report is for a person to look at; it asserts nothing about the site (the tests do):

    python -m booktools.site_report [--html _build/html] [--out _build/site-report] [--toc _toc.yml]

writes into ``--out`` (replacing an earlier report):

- ``page-weight.json`` and ``page-weight.md``: for a first visit to each page (cold
  cache), the requests and the bytes transferred, as served here and gzipped as GitHub
  Pages serves text, with every resource's size in the JSON;
- ``screenshots/<chapter>-light.png``, ``-dark.png`` (whole page, the reader's system in
  light or dark mode) and ``-phone.png`` (the first screen at 390x844).

It exits with status 1, after writing what it measured, when a page does not load
(HTTP status other than 200) or asks another host for anything.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import http.server
import json
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from booktools.book import REPO_ROOT, toc_files

HTML_DIR = REPO_ROOT / "_build" / "html"
REPORT_DIR = REPO_ROOT / "_build" / "site-report"

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
# Options of every browser context (pytest-playwright's browser_context_args).
DESKTOP_CONTEXT = {"viewport": DESKTOP, "color_scheme": "light", "service_workers": "block"}
# What changes on a phone.
PHONE_CONTEXT = {"viewport": PHONE, "is_mobile": True, "has_touch": True,
                 "device_scale_factor": 2}

# Pages Sphinx writes besides those in the toc; index.html redirects to the first page.
GENERATED_PAGES = ["index", "search", "genindex"]
REDIRECT_PAGES = ["index"]
# Content types GitHub Pages compresses.
TEXT_TYPES = ("text/", "javascript", "json", "svg", "xml")


def site_pages(toc_path: Path = REPO_ROOT / "_toc.yml") -> list[str]:
    """Every HTML page of the built site (without .html): the toc's, then Sphinx's own."""
    return [*toc_files(toc_path), *GENERATED_PAGES]


def chapter_stems(toc_path: Path = REPO_ROOT / "_toc.yml") -> list[str]:
    """The chapters' notebook names (``01_why_normalize``, ...) in reading order."""
    return [entry.removeprefix("notebooks/") for entry in toc_files(toc_path)
            if entry.startswith("notebooks/")]


def chromium_launch_options() -> dict:
    """How Playwright starts Debian's Chromium (pip cannot provide it; nothing is downloaded)."""
    if not CHROMIUM.exists():
        raise FileNotFoundError(
            f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run installs it)")
    return {"executable_path": str(CHROMIUM), "args": list(CHROMIUM_ARGS), "headless": True}


# --------------------------------------------------------------------------- serving


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


class StaticSite:
    """``root`` served by http.server on 127.0.0.1 (a free port) in a daemon thread."""

    def __init__(self, root: Path):
        self.root = Path(root)
        handler = functools.partial(_QuietHandler, directory=str(self.root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        """The address of a file of the site (``_sources/notebooks/x.ipynb``)."""
        return self.base + path

    def page_url(self, name: str) -> str:
        """The address of a page by its name (``book/intro``, ``notebooks/01_why_normalize``)."""
        return self.url(f"{name}.html")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> StaticSite:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# --------------------------------------------------------------------------- loading


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or parts.hostname == "127.0.0.1"


@dataclass
class PageLoad:
    """A page opened by ``open_page``, and what happened while it loaded."""

    page: object  # playwright.sync_api.Page
    status: int | None = None
    console_errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    responses: list = field(default_factory=list)


def wait_for_mathjax(page) -> None:
    """MathJax typesets after the load event; its startup promise settles when it is done."""
    page.evaluate("""async () => {
        if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
            await MathJax.startup.promise;
        }
        await document.fonts.ready;
    }""")


def open_page(page, url: str, *, settle_ms: int = 300) -> PageLoad:
    """Open ``url`` in ``page`` (a fresh one, in its own context) as a reader offline would.

    Every request to another host is aborted, as it fails for a reader with no network,
    and recorded. A page that redirects (index.html) is followed to where it leads.
    """
    load = PageLoad(page=page)

    def route(route):
        if is_local(route.request.url):
            route.continue_()
        else:
            load.outside_requests.append(route.request.url)
            route.abort("internetdisconnected")

    page.context.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and load.console_errors.append(
        f"console.error: {m.text} ({m.location.get('url', '')})"))
    page.on("pageerror", lambda e: load.console_errors.append(f"uncaught: {e}"))
    page.on("response", lambda r: load.responses.append(r))
    page.on("requestfailed", lambda r: is_local(r.url) and load.failed_requests.append(
        f"{r.url}: {r.failure}"))
    if url.endswith("/index.html"):
        with page.expect_navigation(url=lambda target: target != url, wait_until="load"):
            response = page.goto(url)
    else:
        response = page.goto(url, wait_until="load")
    load.status = response.status if response else None
    wait_for_mathjax(page)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(settle_ms)
    return load


def load_problems(load: PageLoad) -> list[str]:
    """What went wrong in loading: HTTP status, console errors, requests (empty: none)."""
    problems = []
    if load.status != 200:
        problems.append(f"HTTP status {load.status}")
    problems += load.console_errors
    problems += [f"outside request: {url}" for url in load.outside_requests]
    problems += [f"failed request: {line}" for line in load.failed_requests]
    problems += [f"HTTP {r.status}: {r.url}" for r in load.responses
                 if r.status >= 400 and is_local(r.url)]
    return problems


# --------------------------------------------------------------------------- the report


def transferred(response) -> tuple[int, int]:
    """(bytes as served here, bytes with gzip for text types, as GitHub Pages serves)."""
    try:
        body = response.body()
    except Exception:  # a redirect or an aborted request has no body
        return 0, 0
    kind = response.headers.get("content-type", "")
    compressed = len(gzip.compress(body, 6)) if any(t in kind for t in TEXT_TYPES) else len(body)
    return len(body), compressed


def page_weight(browser, site: StaticSite, page_name: str) -> tuple[dict, list[str]]:
    """Requests and bytes of a first visit to one page, and what went wrong loading it."""
    context = browser.new_context(**DESKTOP_CONTEXT)
    try:
        load = open_page(context.new_page(), site.page_url(page_name), settle_ms=100)
        per_resource = {}
        for response in load.responses:
            if is_local(response.url) and response.status < 400:
                per_resource[urlsplit(response.url).path] = transferred(response)
        problems = [line for line in load_problems(load)
                    if line.startswith(("HTTP", "outside request"))]
    finally:
        context.close()
    by_size = sorted(per_resource.items(), key=lambda item: -item[1][0])
    return {
        "requests": len(per_resource),
        "bytes": sum(size for size, _ in per_resource.values()),
        "bytes_gzip": sum(size for _, size in per_resource.values()),
        "resources": {path: {"bytes": size, "bytes_gzip": gz} for path, (size, gz) in by_size},
    }, problems


def weight_table(weights: dict) -> str:
    lines = [
        "| page | requests | bytes | bytes (gzip, as served by GitHub Pages) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, entry in weights.items():
        lines.append(f"| {name} | {entry['requests']} | {entry['bytes']:,} | "
                     f"{entry['bytes_gzip']:,} |")
    return "\n".join(lines)


def screenshots(browser, site: StaticSite, stem: str, folder: Path) -> list[Path]:
    """A chapter in light and dark mode (whole page) and on a phone (first screen)."""
    shots = []
    for name, options, full_page in [
        ("light", {**DESKTOP_CONTEXT, "color_scheme": "light"}, True),
        # The site follows the reader's system (default_mode: auto in _config.yml).
        ("dark", {**DESKTOP_CONTEXT, "color_scheme": "dark"}, True),
        ("phone", {**DESKTOP_CONTEXT, **PHONE_CONTEXT}, False),
    ]:
        context = browser.new_context(**options)
        try:
            page = context.new_page()
            open_page(page, site.page_url(f"notebooks/{stem}"))
            path = folder / f"{stem}-{name}.png"
            page.screenshot(path=path, full_page=full_page)
            shots.append(path)
        finally:
            context.close()
    return shots


def write_report(html_root: Path, out: Path, toc_path: Path = REPO_ROOT / "_toc.yml") -> int:
    from playwright.sync_api import sync_playwright

    if not (html_root / "index.html").is_file():
        print(f"no built site in {html_root}: run `make book` first", file=sys.stderr)
        return 1
    # Nothing from an earlier report (a renamed chapter's screenshots) survives.
    shutil.rmtree(out / "screenshots", ignore_errors=True)
    for name in ("page-weight.json", "page-weight.md"):
        (out / name).unlink(missing_ok=True)
    (out / "screenshots").mkdir(parents=True)
    weights, problems, shots = {}, {}, []
    with StaticSite(html_root) as site, sync_playwright() as playwright:
        browser = playwright.chromium.launch(**chromium_launch_options())
        try:
            for name in site_pages(toc_path):
                if name in REDIRECT_PAGES:
                    continue
                weights[name], page_problems = page_weight(browser, site, name)
                if page_problems:
                    problems[name] = page_problems
            for stem in chapter_stems(toc_path):
                shots += screenshots(browser, site, stem, out / "screenshots")
        finally:
            browser.close()
    (out / "page-weight.json").write_text(json.dumps(weights, indent=2) + "\n", encoding="utf-8")
    table = weight_table(weights)
    (out / "page-weight.md").write_text(
        "# Bytes transferred per page (first visit, cold cache)\n\n" + table + "\n",
        encoding="utf-8")
    print("Bytes transferred per page, first visit (cold cache):\n")
    print(table)
    print(f"\nWritten to {out}: page-weight.json, page-weight.md and {len(shots)} screenshots "
          "(screenshots/<chapter>-light.png, -dark.png, -phone.png).")
    for name, lines in problems.items():
        print(f"\n{name} did not load cleanly:\n  " + "\n  ".join(lines), file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m booktools.site_report",
        description="Page weights and screenshots of the built site, for a person to read.")
    parser.add_argument("--html", type=Path, default=HTML_DIR, help="the built site")
    parser.add_argument("--out", type=Path, default=REPORT_DIR,
                        help="where the report goes")
    parser.add_argument("--toc", type=Path, default=REPO_ROOT / "_toc.yml",
                        help="the toc the site was built with")
    args = parser.parse_args(argv)
    return write_report(args.html.resolve(), args.out.resolve(), args.toc)


if __name__ == "__main__":
    sys.exit(main())
