"""Make the built site self-contained and lean for readers.

A local Sphinx extension, loaded through ``sphinx: local_extensions`` in _config.yml.

* **MathJax without a network.** Sphinx loads MathJax from a CDN by default, so an
  offline reader sees raw TeX. The ``sphinx-mathjax-offline`` package (PyPI, pinned in
  requirements.txt) ships MathJax 3.2.2; this extension copies the part of it that the
  site uses into ``_build/html/_static/mathjax`` and ``mathjax_path`` in _config.yml
  points there.
* **Lean templates.** ``templates/layout.html`` (next to this file) drops the 1.5 MB
  Font Awesome JavaScript (the icons are drawn by the theme's web fonts, which its CSS
  already loads) and the search index that pydata-sphinx-theme loads on every page for
  search-as-you-type, which this site does not enable (search.html still loads it).

Every page loads the CSS and JavaScript of every Sphinx extension in use. An extension
that no page needs belongs out of ``extensions`` in _config.yml; `make site-report`
shows what each page weighs.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
MATHJAX_DISTRIBUTION = "sphinx-mathjax-offline"
MATHJAX_PACKAGE_DIR = "sphinx-mathjax-offline/static/mathjax"
# The entry point (TeX input, CommonHTML output; `mathjax_path` in _config.yml) and
# what it loads on demand: its web fonts, TeX extensions that \require or autoload
# pulls in, and the accessibility modules of MathJax's right-click menu.
MATHJAX_FILES = ["tex-chtml.js"]
MATHJAX_DIRS = ["output/chtml", "input/tex/extensions", "ui", "a11y", "sre"]


def mathjax_source() -> Path:
    try:
        distribution = importlib.metadata.distribution(MATHJAX_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as error:
        raise ExtensionError(
            f"{MATHJAX_DISTRIBUTION} is not installed: run `make env` (requirements.txt)"
        ) from error
    source = Path(distribution.locate_file(MATHJAX_PACKAGE_DIR))
    if not (source / MATHJAX_FILES[0]).is_file():
        raise ExtensionError(f"MathJax not found in {source}")
    return source


def check_config(app: Sphinx, config) -> None:
    if "://" in config.mathjax_path:
        logger.warning(
            "mathjax_path %s is not local: offline readers will see raw TeX",
            config.mathjax_path,
            type="offline_site",
        )
    mathjax_source()  # fail early, before any notebook is executed
    config.templates_path.insert(0, str(HERE / "templates"))


def copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source = mathjax_source()
    target = Path(app.outdir) / "_static" / "mathjax"
    for name in MATHJAX_FILES:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target / name)
    for name in MATHJAX_DIRS:
        shutil.copytree(source / name, target / name, dirs_exist_ok=True)


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", check_config)
    app.connect("build-finished", copy_mathjax)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
