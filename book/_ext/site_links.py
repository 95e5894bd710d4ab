"""Links from a notebook to another page of the book, written so that they work in Colab.

A chapter opened in Colab is a lone notebook: a relative link such as
``04_layer_norm.ipynb`` or a MyST role such as ``{cite}`` shows there as a broken link or
as raw text. So notebooks link to the book's pages by their published address
(``html.baseurl`` in _config.yml, e.g. ``.../notebooks/04_layer_norm.html`` or
``.../book/bibliography.html#cite-ba2016layer``), which works everywhere.

On the site itself those links should stay on the site a reader is on (a local build, an
offline copy or the published one), so this extension rewrites every link under the
base address into a relative link. A link to a page the book does not have is a warning,
which fails the build (``-W``); tests/test_book.py checks the anchors in the built HTML.
"""

from __future__ import annotations

import posixpath

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)


def relative_link(from_docname: str, to_docname: str, anchor: str) -> str:
    start = posixpath.dirname(from_docname) or "."
    target = posixpath.relpath(f"{to_docname}.html", start)
    return f"{target}#{anchor}" if anchor else target


def rewrite_site_links(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    base = (app.config.html_baseurl or "").rstrip("/") + "/"
    if base == "/":
        return
    for node in doctree.findall(nodes.reference):
        uri = node.get("refuri", "")
        if not uri.startswith(base):
            continue
        path, _, anchor = uri[len(base):].partition("#")
        target = path.removesuffix(".html")
        if not path.endswith(".html") or target not in app.env.found_docs:
            logger.warning("link to %s: the book has no page %r", uri, target or path,
                           location=node, type="site_links")
            continue
        node["refuri"] = relative_link(docname, target, anchor)
        node["internal"] = True  # Sphinx's HTML writer marks other refuri links "external"


def setup(app: Sphinx) -> dict:
    app.connect("doctree-resolved", rewrite_site_links)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
