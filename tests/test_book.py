"""The book builds with -W -n, has every page, and links each chapter to Colab."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from chapters import REPO_ROOT, book_config, chapter_notebooks, toc_files

pytestmark = pytest.mark.slow

JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"


def build(book_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(JUPYTER_BOOK), "build", ".", "-W", "-n", "--keep-going"],
        cwd=book_dir,
        capture_output=True,
        text=True,
    )


def colab_url(notebook_stem: str) -> str:
    config = book_config()
    repo = config["repository"]["url"].removeprefix("https://github.com/").strip("/")
    colab = config["launch_buttons"]["colab_url"].rstrip("/")
    branch = config["repository"]["branch"]
    return f"{colab}/github/{repo}/blob/{branch}/notebooks/{notebook_stem}.ipynb"


def test_book_builds_without_warnings(built_book):
    assert built_book.returncode == 0, built_book.log[-5000:]
    warnings = [line for line in built_book.log.splitlines() if re.search(r"\b(WARNING|ERROR):", line)]
    assert not warnings, "\n".join(warnings)
    assert (built_book.html / "index.html").exists()


def test_every_toc_entry_has_a_page(built_book):
    missing = [entry for entry in toc_files() if not (built_book.html / f"{entry}.html").exists()]
    assert not missing, f"no HTML page for {missing}"


def test_repository_is_configured_once_on_branch_main():
    config = book_config()
    assert config["repository"]["branch"] == "main"
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda p: p.stem)
def test_chapter_page_links_to_colab_and_download(built_book, path):
    page = (built_book.html / "notebooks" / f"{path.stem}.html").read_text(encoding="utf-8")
    assert colab_url(path.stem) in page, f"no Colab link to {colab_url(path.stem)}"
    assert f"_sources/notebooks/{path.stem}.ipynb" in page, "no .ipynb download link"
    assert (built_book.html / "_sources" / "notebooks" / f"{path.stem}.ipynb").exists()


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda p: p.stem)
def test_chapter_page_shows_no_error_output(built_book, path):
    page = (built_book.html / "notebooks" / f"{path.stem}.html").read_text(encoding="utf-8")
    assert not re.search(r'class="[^"]*\btraceback\b', page), "a cell shows a traceback"
    assert "Traceback (most recent call last)" not in page


def test_rebuild_with_unchanged_notebooks_executes_nothing(built_book):
    """The execution cache makes a second `make book` take seconds."""
    assert built_book.returncode == 0
    second = build(REPO_ROOT)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    executed = [line for line in second.stdout.splitlines() if "Executing" in line]
    assert not executed, f"the rebuild re-executed notebooks: {executed}"


def test_a_notebook_that_raises_fails_the_build(tmp_path):
    """allow_errors: false plus -W: a broken chapter can never be published."""
    shutil.copy(REPO_ROOT / "_config.yml", tmp_path / "_config.yml")
    shutil.copytree(REPO_ROOT / "book", tmp_path / "book")
    (tmp_path / "book" / "intro.md").write_text("# Intro\n\nA test book.\n")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Broken chapter"),
        nbformat.v4.new_code_cell("1 / 0"),
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "notebooks").mkdir()
    nbformat.write(notebook, tmp_path / "notebooks" / "01_broken.ipynb")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/01_broken\n"
    )
    result = build(tmp_path)
    assert result.returncode != 0, "a notebook raising ZeroDivisionError did not fail the build"
    assert "ZeroDivisionError" in result.stdout + result.stderr
