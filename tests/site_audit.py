"""What the browser tests check on a page, as functions that return readable problems.

tests/test_site.py applies them to every page of the built site; tests/test_site_audit.py
applies them to small synthetic pages, each broken on purpose, to show that each check
reports what it is meant to catch. Every function returns a list of lines, empty when
all is well; each line starts with the prefix that test_site_audit.py looks for.

- ``audit``: the load (HTTP status, console errors, uncaught exceptions, requests to other
  hosts, failed local requests), math typeset by MathJax with no TeX left raw, images
  decoded with alt text, Font Awesome icons drawn;
- ``phone_problems``: nothing wider than a phone's screen;
- ``dark_theme_problems``: a dark background, figures neither inverted nor washed out,
  code readable (WCAG AA contrast).
"""

from __future__ import annotations

import io

from booktools.site_report import PageLoad, load_problems

# WCAG AA contrast for normal text.
MIN_CONTRAST = 4.5

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
    """Everything wrong with a page opened by ``booktools.site_report.open_page``."""
    page = load.page
    problems = load_problems(load)
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


# The screen's width is the layout viewport's (clientWidth: 390 on the phone).
# window.innerWidth would not do: on a mobile browser it grows to fit content that is too
# wide (the page is then shown zoomed out), so a page that overflows would pass.
PHONE_AUDIT = r"""() => {
    const screen = document.documentElement.clientWidth;
    return {
        screen,
        doc: document.documentElement.scrollWidth,
        body: document.body.scrollWidth,
        // Tables, code, outputs and display math scroll inside their own box.
        wide: [...document.querySelectorAll('.bd-article *')]
            .filter(el => el.getBoundingClientRect().right > screen + 1
                          && getComputedStyle(el).position !== 'fixed'
                          && !el.closest('.pst-scrollable-table-container, .highlight, '
                                         + 'mjx-container, .output, .cell_output, '
                                         + 'div.math, .table-wrapper'))
            .slice(0, 5).map(el => el.tagName + '.' + el.className),
    };
}"""


def phone_problems(page) -> list[str]:
    """On a phone's viewport: the page does not scroll sideways, nothing sticks out."""
    sizes = page.evaluate(PHONE_AUDIT)
    problems = []
    if max(sizes["doc"], sizes["body"]) > sizes["screen"]:
        problems.append(f"scrolls sideways: {max(sizes['doc'], sizes['body'])}px of content "
                        f"on a {sizes['screen']}px screen")
    if sizes["wide"]:
        problems.append(f"wider than the screen: {sizes['wide']}")
    return problems


def luminance(rgb) -> float:
    """Relative luminance (WCAG 2) of an sRGB colour given as 0-255 values."""
    def channel(value):
        value /= 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


# The colour of text and of the first opaque background behind it (white if none).
COLORS = r"""() => {
    const rgb = s => (s.match(/[\d.]+/g) || []).map(Number);
    const background = el => {
        for (; el; el = el.parentElement) {
            const c = rgb(getComputedStyle(el).backgroundColor);
            if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
        }
        return [255, 255, 255];
    };
    const code = [];
    const blocks = document.querySelectorAll('.bd-article div.highlight pre, .bd-article .cell_output pre');
    for (const pre of [...blocks].slice(0, 40)) {
        const spans = [pre, ...pre.querySelectorAll('span')].filter(
            el => [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()));
        for (const el of spans.slice(0, 200)) {
            code.push({text: el.textContent.trim().slice(0, 30), cls: el.className,
                       color: rgb(getComputedStyle(el).color), background: background(el)});
        }
    }
    return {page: background(document.body), code};
}"""

FIGURES = ".bd-article .cell_output img, .bd-article figure img"


def dark_theme_problems(page) -> list[str]:
    """In the dark theme: the page is dark, figures stay legible, code stays readable."""
    from PIL import Image

    problems = []
    colors = page.evaluate(COLORS)
    if luminance(colors["page"]) >= 0.1:
        problems.append(f"background not dark: rgb{tuple(colors['page'])}")
    for handle in page.query_selector_all(FIGURES):
        src = handle.get_attribute("src")
        handle.scroll_into_view_if_needed()
        if "invert" in handle.evaluate("img => getComputedStyle(img).filter"):
            problems.append(f"figure inverted: {src}")
        # A figure drawn on white stays light, and its dark strokes stay dark.
        low, high = Image.open(io.BytesIO(handle.screenshot())).convert("L").getextrema()
        if high < 180 or low > 60:
            problems.append(f"figure washed out: {src} (grey levels {low}..{high})")
    poor = [(c["text"], c["cls"], round(contrast(c["color"], c["background"]), 2))
            for c in colors["code"] if contrast(c["color"], c["background"]) < MIN_CONTRAST]
    if poor:
        problems.append(f"code contrast below {MIN_CONTRAST}: {poor[:10]}")
    return problems
