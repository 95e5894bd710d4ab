"""Checks on the sources themselves: stored without outputs, lint-clean, Colab-safe."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from chapters import REPO_ROOT, chapter_notebooks, toc_files

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
    assert "{cite}" in text, f"{path.name} cites nothing from book/references.bib"


def test_every_toc_entry_has_a_source():
    missing = [
        entry
        for entry in toc_files()
        if not any((REPO_ROOT / f"{entry}{suffix}").exists() for suffix in (".md", ".ipynb"))
    ]
    assert not missing, f"_toc.yml lists {missing}, which have no .md or .ipynb source"


def test_ruff_passes_on_notebooks_tests_and_benchmarks():
    targets = [name for name in ("notebooks", "tests", "benchmarks") if (REPO_ROOT / name).exists()]
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run(
        [str(ruff), "check", *targets], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
