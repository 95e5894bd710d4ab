"""Conventions of a chapter notebook's cells that more than one tool needs.

Support code (exercise checkers, harnesses, worked solutions) is *collapsed*: the reader
sees a title and can open the code, in the book and in Colab alike. A collapsed code cell

- carries the tag ``hide-input`` (Jupyter Book shows a "Show code cell source" toggle),
- has the metadata ``cellView: form`` and starts with a ``# @title ...`` line (Colab shows
  the title and hides the code), and
- has ``jupyter.source_hidden: true`` (JupyterLab shows it collapsed).

:func:`collapse` makes a cell so; :func:`collapse_problems` lists cells that are half so.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

COLLAPSED_TAG = "hide-input"
TITLE_PREFIX = "# @title "


def title_of(cell) -> str | None:
    first = cell.source.split("\n", 1)[0]
    return first[len(TITLE_PREFIX):].strip() if first.startswith(TITLE_PREFIX) else None


def collapse(cell, title: str) -> None:
    """Collapse the code cell ``cell`` under ``title`` (in place)."""
    if cell.cell_type != "code":
        raise ValueError("only code cells can be collapsed")
    if not title or "\n" in title:
        raise ValueError(f"a collapsed cell needs a one-line title, got {title!r}")
    body = cell.source
    if title_of(cell) is not None:
        body = body.split("\n", 1)[1] if "\n" in body else ""
    cell.source = f"{TITLE_PREFIX}{title}\n{body}"
    tags = cell.metadata.setdefault("tags", [])
    if COLLAPSED_TAG not in tags:
        tags.append(COLLAPSED_TAG)
    cell.metadata["cellView"] = "form"
    cell.metadata.setdefault("jupyter", {})["source_hidden"] = True


def collapse_problems(path: Path) -> list[str]:
    """Cells of the notebook at ``path`` that are collapsed in one place but not another."""
    notebook = nbformat.read(path, as_version=4)
    problems = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        marks = {
            "tag hide-input": COLLAPSED_TAG in cell.metadata.get("tags", []),
            "metadata cellView: form": cell.metadata.get("cellView") == "form",
            "a first line '# @title ...'": bool(title_of(cell)),
            "metadata jupyter.source_hidden": cell.metadata.get("jupyter", {}).get("source_hidden")
            is True,
        }
        if any(marks.values()) and not all(marks.values()):
            missing = [name for name, present in marks.items() if not present]
            problems.append(f"{path.name} cell {index} is collapsed but lacks {', '.join(missing)}")
    return problems
