"""Cells that several chapters carry (tag shared:<key>) are identical to their source."""

import nbformat
import pytest

from booktools.book import chapter_notebooks
from booktools.shared_cells import find_shared_cells, problems, write_copies


def test_every_shared_cell_is_identical_to_its_source():
    found = problems()
    assert not found, "\n".join(found)


def test_the_book_shares_the_checker_kit_and_chapter_5s_layer_norm():
    shared = find_shared_cells(chapter_notebooks())
    for key in ("checker-kit", "layer-norm-checks", "layer-norm-function"):
        assert key in shared, f"no chapter carries the shared cell {key!r}"
        assert len(shared[key]) >= 2


def _notebook(path, cells):
    notebook = nbformat.v4.new_notebook()
    for source, tags in cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = tags
        notebook.cells.append(cell)
    nbformat.write(notebook, path)
    return path


def test_a_changed_copy_is_reported_and_rewritten_from_its_source(tmp_path):
    source = _notebook(tmp_path / "01_a.ipynb", [("x = 1", []), ("def f():\n    return 1", ["shared:f"])])
    copy = _notebook(tmp_path / "02_b.ipynb", [("# @title f, copied\ndef f():\n    return 2",
                                                ["library", "shared:f"])])
    found = problems([source, copy])
    assert len(found) == 1 and "02_b.ipynb cell 0 differs" in found[0]

    assert write_copies([source, copy]) == ["02_b.ipynb cell 0: 'f' rewritten from its source"]
    rewritten = nbformat.read(copy, as_version=4).cells[0]
    assert rewritten.source == "# @title f, copied\ndef f():\n    return 1"  # its own title kept
    assert rewritten.metadata["tags"] == ["library", "shared:f"]
    assert problems([source, copy]) == []
    assert nbformat.read(source, as_version=4).cells[1].source == "def f():\n    return 1"


def test_a_key_in_one_notebook_only_is_reported(tmp_path):
    lone = _notebook(tmp_path / "01_a.ipynb", [("y = 2", ["shared:lonely"])])
    assert any("appears only in 01_a.ipynb" in line for line in problems([lone]))


def test_a_cell_with_two_keys_is_refused(tmp_path):
    path = _notebook(tmp_path / "01_a.ipynb", [("z = 3", ["shared:a", "shared:b"])])
    with pytest.raises(ValueError, match="several shared keys"):
        problems([path])
