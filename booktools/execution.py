"""What the book build's execution recorded about each chapter.

The build executes every chapter once, alone in an empty temporary folder
(``execute.run_in_temp`` in _config.yml), and stores the executed notebook with its run
time in the execution cache (``_build/.jupyter_cache``). The tests read the chapters'
outputs and run times from here instead of executing them again.

    python -m booktools.execution     # each chapter's run time in the current cache
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from booktools.book import REPO_ROOT, chapter_notebooks

CACHE = REPO_ROOT / "_build" / ".jupyter_cache"
TIMES_FILE = REPO_ROOT / "_build" / "notebook_times.json"


@dataclass
class ExecutedChapter:
    path: Path
    seconds: float | None  # None: executed before run times were recorded
    notebook: nbformat.NotebookNode


def executed_chapter(path: Path, cache_path: Path = CACHE) -> ExecutedChapter:
    """The cached execution of the notebook at ``path`` as it is now (its code unchanged).

    Raises KeyError when the cache holds no execution of the current code: build first.
    """
    from jupyter_cache import get_cache

    cache = get_cache(str(cache_path))
    notebook = nbformat.read(path, as_version=4)
    record = cache.match_cache_notebook(notebook)
    bundle = cache.get_cache_bundle(record.pk)
    return ExecutedChapter(Path(path), record.data.get("execution_seconds"), bundle.nb)


def record_times(cache_path: Path = CACHE, out: Path = TIMES_FILE) -> dict[str, float | None]:
    """Write each chapter's run time from the cache to ``out`` (JSON) and return them."""
    times = {}
    for path in chapter_notebooks():
        seconds = executed_chapter(path, cache_path).seconds
        times[path.name] = None if seconds is None else round(seconds, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(times, indent=2) + "\n", encoding="utf-8")
    return times


def main() -> int:
    try:
        times = record_times()
    except KeyError as error:
        print(f"no cached execution of the current code ({error}): run `make book` first",
              file=sys.stderr)
        return 1
    for name, seconds in times.items():
        print(f"{name:36} {'?' if seconds is None else f'{seconds:6.1f}'} s")
    print(f"(written to {TIMES_FILE.relative_to(REPO_ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
