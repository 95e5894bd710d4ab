"""The machinery of the Layer Norm book, shared by the tests, the benchmarks and `make`.

- ``booktools.book``: the repository, `_config.yml`, the toc, chapters and their public
  names, the site's and Colab's URLs, the build command;
- ``booktools.library``: a chapter's `library` cells loaded as a module;
- ``booktools.shared_cells``: cells several chapters carry, checked and rewritten;
- ``booktools.execution``: each chapter's executed notebook and run time, from the build.

Run from the repository root (``python -m booktools.<module>``); nothing here imports
from ``tests/``.
"""
