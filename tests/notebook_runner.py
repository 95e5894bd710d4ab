"""Execute a chapter notebook the way a reader's Colab runtime would.

A copy of the notebook is run alone in an empty temporary folder, so it can
rely on no file of this repository. Usable from the command line too:

    .venv/bin/python tests/notebook_runner.py notebooks/01_why_normalize.ipynb
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

CELL_TIMEOUT_S = 600


def execute_in_empty_folder(path: Path, save_to: Path | None = None) -> tuple[float, nbformat.NotebookNode]:
    """Run ``path`` top to bottom from an empty folder; return (seconds, executed notebook).

    Raises nbclient's CellExecutionError, naming the failing cell, on any error.
    """
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="colab-like-") as folder:
        copy = Path(folder) / path.name
        shutil.copy(path, copy)
        notebook = nbformat.read(copy, as_version=4)
        client = NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT_S,
            kernel_name="python3",
            resources={"metadata": {"path": folder}},
        )
        start = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - start
    if save_to is not None:
        nbformat.write(notebook, save_to)
    return seconds, notebook


if __name__ == "__main__":
    for name in sys.argv[1:]:
        seconds, _ = execute_in_empty_folder(Path(name))
        print(f"{name}: executed from an empty folder in {seconds:.1f} s")
