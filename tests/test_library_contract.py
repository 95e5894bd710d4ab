"""The `library` cell contract of CONTRIBUTING.md, for every chapter in _toc.yml.

Running a chapter's `library` cells in order, in a fresh namespace, defines the
chapter's public names, prints nothing, draws nothing and runs no experiment.
"""

import contextlib
import io
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from booktools.book import PUBLIC_NAMES, chapter_notebooks  # noqa: E402
from booktools.library import LibraryCellError, library_sources, load_library  # noqa: E402

# Defining functions and classes takes milliseconds; anything slower is an
# experiment hiding in a library cell.
LIBRARY_SECONDS_LIMIT = 15.0


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda p: p.stem)
def test_library_cells_define_public_names_quietly(path):
    assert library_sources(path), f"{path.name} has no cell tagged 'library'"
    figures_before = set(plt.get_fignums())
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        module = load_library(path)
    seconds = time.perf_counter() - start

    assert out.getvalue() == "", f"{path.name}: library cells printed {out.getvalue()[:300]!r}"
    assert err.getvalue() == "", f"{path.name}: library cells wrote to stderr {err.getvalue()[:300]!r}"
    assert set(plt.get_fignums()) == figures_before, f"{path.name}: library cells drew a figure"
    assert seconds < LIBRARY_SECONDS_LIMIT, (
        f"{path.name}: library cells took {seconds:.1f} s; they should only define things"
    )
    missing = [name for name in PUBLIC_NAMES.get(path.stem, []) if not hasattr(module, name)]
    assert not missing, f"{path.name}: library cells do not define {missing}"


def write_notebook(path, library_cells, other_cells=()):
    """A notebook whose first cells are tagged `library`, followed by untagged ones."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    for source in library_cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = ["library"]
        notebook.cells.append(cell)
    notebook.cells.extend(nbformat.v4.new_code_cell(source) for source in other_cells)
    nbformat.write(notebook, path)
    return path


def test_loader_rejects_ipython_syntax(tmp_path):
    path = write_notebook(tmp_path / "99_magic.ipynb", ["%matplotlib inline\nx = 1"])
    with pytest.raises(LibraryCellError, match="IPython syntax"):
        load_library(path)


def test_loader_names_the_failing_cell(tmp_path):
    path = write_notebook(tmp_path / "98_broken.ipynb", ["x = 1", "y = undefined_name"],
                          ["raise SystemExit('not a library cell')"])
    with pytest.raises(LibraryCellError, match="library cell 1 failed"):
        load_library(path)


def test_loader_makes_source_inspectable(tmp_path):
    """triton.jit and tracebacks read a function's source through inspect."""
    import inspect

    path = write_notebook(tmp_path / "97_inspect.ipynb", ["def twice(x):\n    return 2 * x\n"])
    module = load_library(path)
    assert module.twice(3) == 6
    assert "return 2 * x" in inspect.getsource(module.twice)
