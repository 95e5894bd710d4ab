"""Load the `library` cells of a chapter notebook as if they were a module.

CONTRIBUTING.md's contract: the code cells of a chapter tagged ``library`` hold the
chapter's reusable definitions. Run in order in a fresh namespace they define
the chapter's public names, print nothing and run no experiment. Tests and benchmarks
import a chapter's code through :func:`load_chapter`.
"""

from __future__ import annotations

import functools
import json
import linecache
import types
from pathlib import Path

from booktools.book import chapter_path

LIBRARY_TAG = "library"


class LibraryCellError(RuntimeError):
    """A `library` cell breaks the contract (magic, shell escape, or an error)."""


def library_sources(path: Path) -> list[str]:
    """The source of every code cell tagged `library`, in notebook order."""
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    sources = []
    for cell in notebook["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] == "code" and LIBRARY_TAG in tags:
            source = cell["source"]
            sources.append(source if isinstance(source, str) else "".join(source))
    return sources


def load_library(path: Path, module_name: str | None = None) -> types.ModuleType:
    """Execute the `library` cells of ``path`` in a fresh module and return it."""
    path = Path(path)
    module = types.ModuleType(module_name or f"chapter_{path.stem}")
    module.__file__ = str(path)
    for index, source in enumerate(library_sources(path)):
        for line in source.splitlines():
            if line.lstrip().startswith(("%", "!")):
                raise LibraryCellError(
                    f"{path.name}: library cell {index} uses IPython syntax "
                    f"({line.strip()!r}); library cells must be plain Python"
                )
        # Register the source the way IPython does, so that inspect.getsource
        # works on functions defined here (triton.jit and tracebacks need it).
        filename = f"<{path.stem} library cell {index}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            exec(compile(source, filename, "exec"), module.__dict__)
        except Exception as error:
            raise LibraryCellError(f"{path.name}: library cell {index} failed: {error!r}") from error
    return module


@functools.cache
def load_chapter(number: str | int) -> types.ModuleType:
    """The `library` code of chapter ``number``, loaded once per test session."""
    return load_library(chapter_path(number))
