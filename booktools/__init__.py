"""The machinery of the Layer Norm book, shared by the tests, the benchmarks and `make`.

- ``booktools.book``: the repository, `_config.yml`, the toc, chapters and their public
  names, the site's and Colab's URLs, the build command;
- ``booktools.library``: a chapter's `library` cells loaded as a module;
- ``booktools.shared_cells``: cells several chapters carry, checked and rewritten;
- ``booktools.execution``: each chapter's executed notebook and run time, from the build;
- ``booktools.execute``: one chapter run alone in an empty folder, while working on it;
- ``booktools.notebooks``: collapsed support cells, in the book and in Colab;
- ``booktools.references``: Colab-friendly citations and links to the book's pages;
- ``booktools.site_report``: the built site served locally, page weights and screenshots;
- ``booktools.colab_check``, ``booktools.colab_pins``: the chapters under Colab's versions.

Run from the repository root (``python -m booktools.<module>``); nothing here imports
from ``tests/``.
"""
