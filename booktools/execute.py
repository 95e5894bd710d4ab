"""Execute one chapter the way the build does, for working on it: alone, in an empty folder.

    python -m booktools.execute notebooks/03_batch_norm_limits.ipynb
    python -m booktools.execute notebooks/03_batch_norm_limits.ipynb --save /tmp/03.ipynb

Prints the run time and, on failure, the failing cell's error; ``--save`` writes the executed
notebook (outputs included) to read it. It also prints the CPU time the kernel (and the
processes it started) used: chapters run on one thread, so on a busy machine the CPU time
is a better estimate than the wall time of how long the chapter takes on an idle one. The book build (``make book``) remains the only
executor of ``make test``; this is a development tool and never writes into notebooks/.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from booktools.book import book_config


class CpuMeter:
    """Samples the CPU seconds of a kernel process and its finished children after each cell."""

    def __init__(self):
        self.seconds = 0.0
        self.client = None

    def sample(self, **_) -> None:
        import psutil

        pid = getattr(getattr(self.client.km, "provisioner", None), "pid", None)
        if pid is None:
            return
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            return
        self.seconds = times.user + times.system + times.children_user + times.children_system


def execute_in_empty_folder(path: Path, kernel_name: str = "python3", timeout: int | None = None,
                            notebook: nbformat.NotebookNode | None = None,
                            cpu: CpuMeter | None = None) -> tuple[float, nbformat.NotebookNode]:
    """Run the notebook at ``path`` top to bottom in an empty folder; return (seconds, notebook).

    Raises nbclient's CellExecutionError, naming the failing cell, on any error. Pass
    ``notebook`` (read from ``path``) to keep the outputs up to the failing cell.
    """
    timeout = timeout or book_config()["execute"]["timeout"]
    notebook = notebook if notebook is not None else nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="chapter-") as folder:
        client = NotebookClient(notebook, timeout=timeout, kernel_name=kernel_name,
                                resources={"metadata": {"path": folder}})
        if cpu is not None:
            cpu.client = client
            client.on_cell_executed = cpu.sample
        start = time.perf_counter()
        try:
            client.execute()
        finally:
            seconds = time.perf_counter() - start
            # A chapter may write files (figures, checkpoints); none must outlive it.
            shutil.rmtree(folder, ignore_errors=True)
    return seconds, notebook


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--save", type=Path, help="write the executed notebook here")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel to run it with")
    args = parser.parse_args(argv)
    notebook = nbformat.read(args.notebook, as_version=4)
    cpu = CpuMeter()
    try:
        seconds, _ = execute_in_empty_folder(args.notebook, args.kernel, notebook=notebook, cpu=cpu)
        status = 0
        print(f"{args.notebook}: executed alone in an empty folder in {seconds:.1f} s "
              f"({cpu.seconds:.1f} s of CPU)")
    except CellExecutionError as error:
        status = 1
        print(f"{args.notebook}: FAILED\n{error}", file=sys.stderr)
    if args.save is not None:
        nbformat.write(notebook, args.save)
        print(f"executed notebook written to {args.save}")
    return status


if __name__ == "__main__":
    sys.exit(main())
