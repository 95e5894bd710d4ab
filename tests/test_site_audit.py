"""The site's checks (tests/site_audit.py) can fail: each one catches a page broken on purpose.

Small synthetic pages are served on 127.0.0.1 and opened in Chromium exactly as the built
site is (booktools.site_report.open_page), loading the same MathJax from the same
package. A clean page, light and dark, passes every check; each broken variant (MathJax
from a CDN or missing, a TeX error, raw TeX, a missing or corrupt image, a figure without
alt text, a console error, an uncaught exception, a missing script, a web font or
analytics from another host, icons that are not drawn, something too wide for a phone, a
light page in the dark theme, an inverted or washed-out figure, unreadable code) must be
reported by the check that is meant to catch it. These tests need no build.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from site_audit import audit, dark_theme_problems, phone_problems

from booktools.book import REPO_ROOT
from booktools.site_report import PHONE_CONTEXT, StaticSite, open_page

pytestmark = pytest.mark.browser

MATHJAX_TAG = '<script defer="defer" src="mathjax/tex-chtml.js"></script>'
SYNTHETIC_PAGE = r"""<!DOCTYPE html>
<html lang="en" data-theme="THEME"><head><meta charset="utf-8"><title>Audit check</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { margin: 0 1rem; font-family: sans-serif; }
  html[data-theme="dark"] body { background: #121212; color: #ced6dd; }
  html[data-theme="dark"] .cell_output img { background-color: #fff; }
  html[data-theme="dark"] .highlight .k { color: #ff7b72; }
</style>
<script>window.MathJax = {"options": {"processHtmlClass": "tex2jax_process|mathjax_process|math|output_area"}}</script>
MATHJAX_TAG
<!--HEAD-->
</head><body><main><article class="bd-article">
<h1>Audit check</h1>
<p>The mean is <span class="math notranslate nohighlight">\(\mu = \frac{1}{H}\sum_{i=1}^{H} x_i\)</span>.</p>
<div class="math notranslate nohighlight">\[\hat{x}_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}}\]</div>
<div class="math notranslate nohighlight">\begin{align} y &amp;= \gamma \hat{x} + \beta \\ z &amp;= y^2 \end{align}</div>
<div class="highlight"><pre><span class="k">def</span> mean(x): <span class="k">return</span> x.mean()</pre></div>
<div class="cell_output"><img src="figure.png" alt="A grey square with a black stroke."></div>
<!--BODY-->
</article></main></body></html>
""".replace("MATHJAX_TAG", MATHJAX_TAG)


@dataclass
class Sabotage:
    """A synthetic page broken on purpose, and the start of the line its check must report."""

    expected: str
    head: str = ""
    body: str = ""
    mathjax: str = MATHJAX_TAG  # what replaces the local MathJax <script>
    theme: str = "light"


# Each check with the pages that must fail it.
SABOTAGE = {
    audit: {
        "mathjax_from_cdn": Sabotage("outside request", mathjax='<script defer src="https://'
                                     'cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'),
        "mathjax_missing": Sabotage("math not typeset", mathjax=""),
        "tex_error": Sabotage("math TeX error", body=r'<p><span class="math">\(x^2^3\)</span></p>'),
        "undefined_macro": Sabotage("math undefined macro",
                                    body=r'<p><span class="math">\(\notamacro x\)</span></p>'),
        # what dollar math looks like when the Markdown parser leaves it alone
        "raw_tex": Sabotage("math raw TeX", body=r"<p>so $\alpha x + \beta$ follows</p>"),
        "missing_image": Sabotage("image not decoded", body='<img src="missing.png" alt="gone">'),
        "corrupt_image": Sabotage("image not decoded", body='<img src="corrupt.png" alt="not a PNG">'),
        "figure_without_alt": Sabotage("figure without alt", body='<img src="figure.png">'),
        "console_error": Sabotage("console.error", body='<script>console.error("sabotage")</script>'),
        "uncaught_exception": Sabotage("uncaught", body="<script>null.sabotage()</script>"),
        "missing_script": Sabotage("HTTP 404", body='<script src="missing.js"></script>'),
        "web_font_from_cdn": Sabotage("outside request", head=(
            '<link rel="stylesheet" href="https://fonts.googleapis.com/css2?family=Roboto">')),
        "analytics": Sabotage("outside request", head=(
            '<script async src="https://www.googletagmanager.com/gtag/js?id=G-XXXX"></script>')),
        # an icon whose CSS is missing: an empty <i>
        "icon_without_css": Sabotage("icon not drawn", body='<i class="fa-solid fa-rocket"></i>'),
        # the icon font's file is missing: the glyph is a blank box
        "icon_font_missing": Sabotage("Font Awesome web font not loaded", head=(
            '<style>@font-face { font-family: "Font Awesome 6 Free"; font-weight: 900;'
            ' src: url("missing-fa-solid-900.woff2") format("woff2"); }'
            ' .fa-solid::before { font-family: "Font Awesome 6 Free"; font-weight: 900;'
            ' content: "\\f135"; }</style>'), body='<i class="fa-solid fa-rocket"></i>'),
    },
    phone_problems: {
        "too_wide_for_a_phone": Sabotage(
            "scrolls sideways", body='<p style="width: 900px">A paragraph 900 pixels wide.</p>'),
    },
    dark_theme_problems: {
        "light_background_in_dark_theme": Sabotage(
            "background not dark", theme="dark", head='<style>html[data-theme="dark"] body { background: #fff; }</style>'),
        "inverted_figure": Sabotage(
            "figure inverted", theme="dark", head="<style>img { filter: invert(1); }</style>"),
        "washed_out_figure": Sabotage(
            "figure washed out", theme="dark", head="<style>img { opacity: 0.3; }</style>"),
        "unreadable_code": Sabotage(
            "code contrast below", theme="dark",
            head="<style>html[data-theme=dark] .highlight .k { color: #333; }</style>"),
    },
}
# On a desktop window; the phone's check runs on a phone (test_phone_check_catches).
CASES = [pytest.param(check, kind, id=kind) for check, pages in SABOTAGE.items()
         if check is not phone_problems for kind in pages]


def render(sabotage: Sabotage) -> str:
    return (SYNTHETIC_PAGE.replace("THEME", sabotage.theme)
            .replace(MATHJAX_TAG, sabotage.mathjax)
            .replace("<!--HEAD-->", sabotage.head)
            .replace("<!--BODY-->", sabotage.body))


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
    (root / "mathjax").mkdir()
    for name in files:
        shutil.copy(source / name, root / "mathjax" / name)
    for name in dirs:
        shutil.copytree(source / name, root / "mathjax" / name)
    figure = Image.new("RGB", (120, 80), "#dddddd")
    ImageDraw.Draw(figure).line((10, 70, 110, 10), fill="black", width=3)
    figure.save(root / "figure.png")
    (root / "corrupt.png").write_bytes(b"this is not a PNG file")
    for theme in ("light", "dark"):
        (root / f"clean-{theme}.html").write_text(render(Sabotage("", theme=theme)),
                                                  encoding="utf-8")
    for pages in SABOTAGE.values():
        for kind, sabotage in pages.items():
            text = render(sabotage)
            assert text != render(Sabotage("", theme=sabotage.theme)), kind
            (root / f"{kind}.html").write_text(text, encoding="utf-8")
    with StaticSite(root) as served:
        yield served


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_a_clean_page_passes(page, synthetic_site, theme):
    load = open_page(page, synthetic_site.url(f"clean-{theme}.html"))
    assert not audit(load)
    assert page.locator("mjx-container").count() == 3, "inline, display and align math typeset"
    if theme == "dark":
        assert not dark_theme_problems(page)


@pytest.mark.browser_context_args(**PHONE_CONTEXT)
def test_a_clean_page_fits_a_phone(page, synthetic_site):
    load = open_page(page, synthetic_site.url("clean-light.html"))
    assert not audit(load)
    assert not phone_problems(page)


@pytest.mark.parametrize(("check", "kind"), CASES)
def test_check_catches(page, synthetic_site, check, kind):
    load = open_page(page, synthetic_site.url(f"{kind}.html"))
    problems = audit(load) if check is audit else check(page)
    expected = SABOTAGE[check][kind].expected
    assert any(line.startswith(expected) for line in problems), (
        f"{check.__name__} missed {kind}; it reported {problems}"
    )


@pytest.mark.browser_context_args(**PHONE_CONTEXT)
@pytest.mark.parametrize("kind", SABOTAGE[phone_problems])
def test_phone_check_catches(page, synthetic_site, kind):
    open_page(page, synthetic_site.url(f"{kind}.html"))
    problems = phone_problems(page)
    expected = SABOTAGE[phone_problems][kind].expected
    assert any(line.startswith(expected) for line in problems), (
        f"phone_problems missed {kind}; it reported {problems}"
    )
