"""Checks on the sources themselves: stored without outputs, lint-clean, Colab-safe, and
written so that they read well in Colab as well as in the book."""

import ast
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from booktools.book import REPO_ROOT, chapter_notebooks, toc_files
from booktools.notebooks import collapse_problems
from booktools.references import (
    MARKDOWN_LINK,
    MYST_DIRECTIVE,
    MYST_ROLE,
    bibliography,
    citation_label,
    cited_keys,
    site_links,
)

ALL_NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))

# What a fresh Colab runtime has besides the standard library (CONTRIBUTING.md).
COLAB_MODULES = {"torch", "numpy", "matplotlib", "tqdm", "sklearn", "triton"}


def code_cells(path: Path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            yield cell


def markdown_text(path: Path) -> str:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return "\n".join(
        "".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "markdown"
    )


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    dirty = [
        index
        for index, cell in enumerate(code_cells(path))
        if cell.get("outputs") or cell.get("execution_count") is not None
    ]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs; the build executes them"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_imports_only_what_colab_ships(path):
    imported = set()
    for cell in code_cells(path):
        source = "".join(cell["source"])
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    foreign = imported - COLAB_MODULES - set(sys.stdlib_module_names)
    assert not foreign, f"{path.name} imports {sorted(foreign)}, which Colab does not ship"


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda p: p.stem)
def test_chapter_has_the_conventional_frame(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    first = "".join(notebook["cells"][0]["source"])
    assert notebook["cells"][0]["cell_type"] == "markdown" and first.startswith("# "), (
        f"{path.name} must open with a markdown cell holding the H1 title"
    )
    text = markdown_text(path)
    h1_titles = [line for line in text.splitlines() if line.startswith("# ")]
    assert len(h1_titles) == 1, f"{path.name} has {len(h1_titles)} H1 titles: {h1_titles}"
    for heading in ("## Summary", "## Exercises", "## References"):
        assert heading in text, f"{path.name} lacks a '{heading}' section"
    assert cited_keys(text), f"{path.name} cites nothing from book/references.bib"


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda p: p.stem)
def test_markdown_reads_well_in_colab(path):
    """Colab shows Markdown as it is: no MyST roles or directives, no relative links."""
    text = markdown_text(path)
    roles = sorted(set(MYST_ROLE.findall(text)) | set(MYST_DIRECTIVE.findall(text)))
    assert not roles, f"{path.name} uses MyST syntax that Colab shows as raw text: {roles}"
    relative = [target for _, target in MARKDOWN_LINK.findall(text)
                if not urlsplit(target).scheme and not target.startswith("#")]
    assert not relative, (f"{path.name} has relative links, which lead nowhere in Colab: "
                          f"{relative}; link to the published page (booktools/references.py)")


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda p: p.stem)
def test_citations_name_their_bibliography_entry(path):
    """A citation's text is the author-year label of the entry it links to."""
    entries = bibliography()
    wrong = []
    for text, key in cited_keys(markdown_text(path)):
        if key not in entries:
            wrong.append(f"{text!r} links to #cite-{key}, which is not in book/references.bib")
        elif text != citation_label(key):
            wrong.append(f"{text!r} links to {key}; write it as {citation_label(key)!r}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda p: p.stem)
def test_links_to_the_book_name_a_page_of_the_book(path):
    pages = set(toc_files())
    missing = [f"{text!r} -> {page}" for text, page, _ in site_links(markdown_text(path))
               if page not in pages]
    assert not missing, f"{path.name} links to pages the book does not have: {missing}"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.stem)
def test_collapsed_cells_are_collapsed_in_the_book_and_in_colab(path):
    problems = collapse_problems(path)
    assert not problems, "\n".join(problems)


def test_every_toc_entry_has_a_source():
    missing = [
        entry
        for entry in toc_files()
        if not any((REPO_ROOT / f"{entry}{suffix}").exists() for suffix in (".md", ".ipynb"))
    ]
    assert not missing, f"_toc.yml lists {missing}, which have no .md or .ipynb source"


def test_ruff_passes_on_notebooks_tests_and_benchmarks():
    targets = [name for name in ("notebooks", "tests", "benchmarks", "booktools", "book/_ext")
               if (REPO_ROOT / name).exists()]
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run(
        [str(ruff), "check", *targets], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
