"""The book builds with -W -n, executes each chapter once, alone, and links it where it should.

The build is the only executor of the chapters (execute.run_in_temp in _config.yml): each
one runs in a new, empty temporary folder, as in a fresh Colab runtime. The tests read the
executed notebooks and their run times from the build's execution cache.
"""

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

from booktools.book import REPO_ROOT, book_config, build, chapter_notebooks, colab_url, toc_files
from booktools.execution import TIMES_FILE, executed_chapter, record_times

pytestmark = pytest.mark.slow


def run_build(book_dir: Path) -> subprocess.CompletedProcess:
    return build(book_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


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


def test_chapters_execute_alone_in_an_empty_folder():
    """The guarantee "each chapter runs as in a fresh Colab runtime" rests on this setting."""
    execute = book_config()["execute"]
    assert execute["execute_notebooks"] == "cache"
    assert execute["run_in_temp"] is True
    assert execute["allow_errors"] is False


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda p: p.stem)
def test_chapter_was_executed_by_the_build_without_errors(built_book, path):
    assert built_book.returncode == 0, built_book.log[-3000:]
    executed = executed_chapter(path)
    errors = [output for cell in executed.notebook.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert not errors, f"{path.name} produced error outputs: {errors}"
    code_cells = [cell for cell in executed.notebook.cells if cell.cell_type == "code"]
    assert all(cell.get("execution_count") for cell in code_cells), "a code cell did not run"


def test_chapter_run_times_are_recorded(built_book, capsys):
    """Each chapter's run time in the build, written to _build/notebook_times.json.

    The 3-minute budget per chapter is reported, not asserted: a shared machine's timings
    are noisy. The book's execution page shows the same numbers to readers.
    """
    assert built_book.returncode == 0
    times = record_times()
    assert set(times) == {path.name for path in chapter_notebooks()}
    assert all(seconds is None or seconds > 0 for seconds in times.values())
    with capsys.disabled():
        print(f"\n\nChapter run times in the build ({TIMES_FILE.relative_to(REPO_ROOT)}):")
        for name, seconds in times.items():
            print(f"  {name:36} {seconds} s")


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


class _Links(HTMLParser):
    """The ids and the href of every link of a built page."""

    def __init__(self):
        super().__init__()
        self.ids, self.hrefs = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda p: p.stem)
def test_links_within_the_book_resolve(built_book, path):
    """Links between pages (rewritten from the site's address by site_links.py) and to
    bibliography entries lead to a page that exists and to an anchor on it."""
    page = built_book.html / "notebooks" / f"{path.stem}.html"
    base = book_config()["html"]["baseurl"]
    broken, parsed = [], {}
    for href in _parse(page).hrefs:
        assert not href.startswith(base), f"a link to the published site was not made relative: {href}"
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or not parts.path.endswith(".html"):
            continue
        target = (page.parent / unquote(parts.path)).resolve()
        if not target.is_file():
            broken.append(f"{href}: no such page")
            continue
        if parts.fragment:
            ids = parsed.setdefault(target, _parse(target).ids)
            if parts.fragment not in ids:
                broken.append(f"{href}: no anchor #{parts.fragment} on {target.name}")
    assert not broken, "\n".join(broken)


def test_rebuild_with_unchanged_notebooks_executes_nothing(built_book):
    """The execution cache makes a second `make book` take seconds."""
    assert built_book.returncode == 0
    second = run_build(REPO_ROOT)
    assert second.returncode == 0, second.stdout[-3000:]
    executed = [line for line in second.stdout.splitlines() if "Executing" in line]
    assert not executed, f"the rebuild re-executed notebooks: {executed}"


def _tiny_book(folder: Path, cells: list[str]) -> Path:
    """A one-chapter book with the real configuration and the given code cells."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "_config.yml", folder / "_config.yml")
    shutil.copytree(REPO_ROOT / "book", folder / "book")
    (folder / "book" / "intro.md").write_text("# Intro\n\nA test book.\n")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# A chapter"),
                      *(nbformat.v4.new_code_cell(source) for source in cells)]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (folder / "notebooks").mkdir()
    nbformat.write(notebook, folder / "notebooks" / "01_chapter.ipynb")
    (folder / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/01_chapter\n")
    return folder


def test_a_notebook_that_raises_fails_the_build(tmp_path):
    """allow_errors: false plus -W: a broken chapter can never be published."""
    result = run_build(_tiny_book(tmp_path, ["1 / 0"]))
    assert result.returncode != 0, "a notebook raising ZeroDivisionError did not fail the build"
    assert "ZeroDivisionError" in result.stdout


def test_a_chapter_runs_in_an_empty_folder_outside_the_repository(tmp_path):
    """A chapter sees an empty working folder, so it cannot read a file of the repository."""
    book = _tiny_book(tmp_path / "ok", ["import os\nfrom pathlib import Path\n"
                                        "assert os.listdir('.') == [], os.listdir('.')\n"
                                        f"assert Path.cwd() != Path({str(tmp_path / 'ok')!r})"])
    ok = run_build(book)
    assert ok.returncode == 0, ok.stdout[-3000:]
    reads_repository = run_build(_tiny_book(tmp_path / "reads", ["open('../_config.yml').read()"]))
    assert reads_repository.returncode != 0, "a chapter read a repository file and still built"
    assert "FileNotFoundError" in reads_repository.stdout
