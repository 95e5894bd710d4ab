"""Citations and links in chapter notebooks, in a form that reads well in Colab too.

Colab shows a notebook's Markdown as it is, so MyST roles (``{cite}`key` ``) appear as
raw text there and relative links between notebooks lead nowhere. Chapters therefore
write both as ordinary Markdown links to the published book:

- a citation is ``[Ba et al., 2016](<site>/book/bibliography.html#cite-ba2016layer)``:
  the label is the first author's surname ("A and B" for two authors, "A et al." for
  more) and the year, exactly as :func:`citation_label` derives them from
  ``book/references.bib``;
- a link to another chapter is ``[Chapter 4](<site>/notebooks/04_layer_norm.html)``.

The build rewrites links under the site's address into relative ones
(book/_ext/site_links.py); tests/test_sources.py and tests/test_book.py check the form,
the labels and that every target exists.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from booktools.book import REPO_ROOT, page_url, site_url

BIBLIOGRAPHY_PAGE = "book/bibliography"
BIB_FILE = REPO_ROOT / "book" / "references.bib"
CITE_ANCHOR_PREFIX = "cite-"

# A Markdown link: [text](target)
MARKDOWN_LINK = re.compile(r"\[([^\[\]\n]+)\]\(([^)\s]+)\)")
# MyST syntax that Colab shows as raw text.
MYST_ROLE = re.compile(r"\{[a-z][a-z:-]*\}`")
MYST_DIRECTIVE = re.compile(r"^(```|:::)\{[a-z]", re.M)


@functools.cache
def bibliography(path: Path = BIB_FILE) -> dict[str, dict]:
    """``{key: {"authors": [surnames], "others": bool, "year": str}}`` from references.bib."""
    from pybtex.database import parse_file

    entries = {}
    for key, entry in parse_file(str(path)).entries.items():
        people = entry.persons.get("author", []) or entry.persons.get("editor", [])
        surnames = [" ".join(p.last_names) for p in people]
        others = "others" in [s.lower() for s in surnames]
        surnames = [s for s in surnames if s.lower() != "others"]
        entries[key] = {"authors": [strip_braces(s) for s in surnames], "others": others,
                        "year": entry.fields.get("year", "")}
    return entries


def strip_braces(text: str) -> str:
    return text.replace("{", "").replace("}", "")


def _plain_label(entry: dict) -> str:
    authors = entry["authors"]
    if len(authors) == 1 and not entry["others"]:
        names = authors[0]
    elif len(authors) == 2 and not entry["others"]:
        names = f"{authors[0]} and {authors[1]}"
    else:
        names = f"{authors[0]} et al."
    return f"{names}, {entry['year']}"


@functools.cache
def citation_labels() -> dict[str, str]:
    """Every entry's label; entries that would share one get a, b, ... after the year, in
    the order of their keys ("Liu et al., 2020a", "Liu et al., 2020b")."""
    entries = bibliography()
    plain = {key: _plain_label(entry) for key, entry in entries.items()}
    labels = {}
    for key, label in plain.items():
        same = sorted(k for k, other in plain.items() if other == label)
        labels[key] = label if len(same) == 1 else label + "abcdefghijklmnopqrstuvwxyz"[same.index(key)]
    return labels


def citation_label(key: str) -> str:
    """The text of a citation of ``key``: "Ba et al., 2016", "Glorot and Bengio, 2010"."""
    return citation_labels()[key]


def citation_url(key: str) -> str:
    return page_url(BIBLIOGRAPHY_PAGE, CITE_ANCHOR_PREFIX + key)


def citation_link(key: str) -> str:
    """The Markdown a chapter writes to cite ``key``."""
    return f"[{citation_label(key)}]({citation_url(key)})"


def site_links(markdown: str) -> list[tuple[str, str, str]]:
    """Every link to the book's own site in ``markdown``: (text, page, anchor)."""
    base = site_url()
    found = []
    for text, target in MARKDOWN_LINK.findall(markdown):
        if target.startswith(base):
            path, _, anchor = target[len(base):].partition("#")
            found.append((text, path.removesuffix(".html"), anchor))
    return found


def cited_keys(markdown: str) -> list[tuple[str, str]]:
    """Every citation in ``markdown``: (link text, bibliography key)."""
    return [(text, anchor[len(CITE_ANCHOR_PREFIX):]) for text, page, anchor in site_links(markdown)
            if page == BIBLIOGRAPHY_PAGE and anchor.startswith(CITE_ANCHOR_PREFIX)]
