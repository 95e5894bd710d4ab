"""Cells that several chapters must carry, kept identical.

A Colab notebook cannot import another notebook, so code that several chapters use (the
exercise checker kit, the digits loader, chapter 5's `layer_norm` in chapter 6) is copied
into each of them. Each copy carries the cell tag ``shared:<key>``. The *source* of a key
is its cell in the first chapter, in reading order, that carries it; every other cell with
the same key is a copy and must have exactly the source's code. Only a first line
``# @title ...`` (the title of a collapsed cell, booktools/notebooks.py) may differ: each
copy keeps its own.

    python -m booktools.shared_cells            # report copies that differ (exit 1 if any)
    python -m booktools.shared_cells --write    # rewrite every copy from its source
    make shared-cells                           # the same as --write

Edit a shared cell in its source chapter, then run ``make shared-cells``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from booktools.book import chapter_notebooks
from booktools.notebooks import TITLE_PREFIX

TAG_PREFIX = "shared:"


@dataclass(frozen=True)
class SharedCell:
    key: str
    path: Path
    index: int  # position of the cell in its notebook
    source: str


def code_of(source: str) -> str:
    """``source`` without a first ``# @title`` line: what must be identical across copies."""
    if source.startswith(TITLE_PREFIX):
        return source.split("\n", 1)[1] if "\n" in source else ""
    return source


def with_code(source: str, code: str) -> str:
    """``source``'s own title line (if any) followed by ``code``."""
    if source.startswith(TITLE_PREFIX):
        return source.split("\n", 1)[0] + "\n" + code
    return code


def shared_keys(cell) -> list[str]:
    return [tag[len(TAG_PREFIX):] for tag in cell.get("metadata", {}).get("tags", [])
            if tag.startswith(TAG_PREFIX)]


def find_shared_cells(notebooks: list[Path]) -> dict[str, list[SharedCell]]:
    """Every shared cell of ``notebooks``, by key; each list is in the notebooks' order."""
    found: dict[str, list[SharedCell]] = {}
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        for index, cell in enumerate(notebook.cells):
            keys = shared_keys(cell)
            if len(keys) > 1:
                raise ValueError(f"{path.name} cell {index} has several shared keys {keys}")
            if keys and cell.cell_type != "code":
                raise ValueError(f"{path.name} cell {index} is tagged {TAG_PREFIX}{keys[0]} but "
                                 "is not a code cell")
            if keys:
                found.setdefault(keys[0], []).append(SharedCell(keys[0], path, index, cell.source))
    return found


def problems(notebooks: list[Path] | None = None) -> list[str]:
    """What is wrong with the shared cells, one readable line each (empty: all identical)."""
    notebooks = chapter_notebooks() if notebooks is None else notebooks
    lines = []
    for key, cells in find_shared_cells(notebooks).items():
        source = cells[0]
        if len(cells) == 1:
            lines.append(f"shared cell {key!r} appears only in {source.path.name}: "
                         "a cell that is not copied needs no shared tag")
        paths = [cell.path for cell in cells]
        duplicated = sorted({p.name for p in paths if paths.count(p) > 1})
        if duplicated:
            lines.append(f"shared cell {key!r} appears more than once in {duplicated}")
        for copy in cells[1:]:
            if code_of(copy.source) != code_of(source.source):
                lines.append(f"shared cell {key!r}: {copy.path.name} cell {copy.index} differs from "
                             f"its source, {source.path.name} cell {source.index} "
                             "(run `make shared-cells`)")
    return lines


def write_copies(notebooks: list[Path] | None = None) -> list[str]:
    """Rewrite every copy from its source; return one line per notebook cell changed."""
    notebooks = chapter_notebooks() if notebooks is None else notebooks
    changed = []
    by_path: dict[Path, list[SharedCell]] = {}
    for cells in find_shared_cells(notebooks).values():
        for copy in cells[1:]:
            if code_of(copy.source) != code_of(cells[0].source):
                by_path.setdefault(copy.path, []).append(SharedCell(
                    copy.key, copy.path, copy.index,
                    with_code(copy.source, code_of(cells[0].source))))
    for path, updates in by_path.items():
        notebook = nbformat.read(path, as_version=4)
        for update in updates:
            notebook.cells[update.index].source = update.source
            changed.append(f"{path.name} cell {update.index}: {update.key!r} rewritten from its source")
        nbformat.write(notebook, path)
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Check or rewrite the chapters' shared cells.")
    parser.add_argument("--write", action="store_true", help="rewrite every copy from its source")
    args = parser.parse_args(argv)
    if args.write:
        for line in write_copies():
            print(line)
    found = problems()
    for line in found:
        print(line, file=sys.stderr)
    if not found:
        keys = find_shared_cells(chapter_notebooks())
        print(f"{len(keys)} shared cells, every copy identical to its source: "
              + ", ".join(f"{key} ({len(cells)})" for key, cells in sorted(keys.items())))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
