"""Run every chapter under Google Colab's published CPU runtime versions: `make colab-check`.

Run by the Python of .venv-colab, the environment `make colab-check` builds from
colab/requirements-cpu.txt (Colab's versions, from googlecolab/backend-info). The kernel is
that same Python: the check registers a kernelspec for it and refuses to start when the
environment differs from the pins. Each chapter runs alone in an empty folder, as in
booktools.execute, and gets one line:

    PASS  01_why_normalize             wall  126.3 s   CPU   39.3 s   figures  4

with the failing cell and its error under a FAIL. The executed notebooks are kept in
_build/colab-check/ for reading. Exit status 1 when a chapter fails, 2 when the environment
is not the pinned one. The budget (3 minutes on an idle 2-core machine) is reported, not
enforced, by CPU time: for a chapter on one thread, the estimate that holds on a busy machine.

    python -m booktools.colab_check                        # every chapter in _toc.yml
    python -m booktools.colab_check notebooks/05_*.ipynb   # some
    python -m booktools.colab_check --timeout 1200         # another per-cell limit than the book's
    python -m booktools.colab_check --prune                # after installing: remove what Colab lacks
    python -m booktools.colab_check --triton-version       # the Triton a chapter installs on Colab
    python -m booktools.colab_check --triton DIR           # also run Triton chapters with DIR's Triton

Colab's CPU runtime has no Triton; chapter 6 installs the release that matches torch
(its `triton_version_for_torch`) and then runs its kernels in Triton's interpreter. With
``--triton DIR`` (where `make colab-check` installs that release), every chapter that imports
Triton runs a second time with DIR on the kernel's PYTHONPATH: the reader's path after the
install cell.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path

import nbformat

from booktools.book import NOTEBOOKS, PUBLIC_NAMES, REPO_ROOT, book_config, chapter_notebooks
from booktools.colab_pins import PINS_FILE, canonical, parse_pins, pins_header, python_minor
from booktools.execute import CpuMeter, execute_in_empty_folder
from booktools.library import load_library

OUT_DIR = REPO_ROOT / "_build" / "colab-check"
KERNEL_NAME = "colab-cpu"
BUDGET_SECONDS = 180
SAMPLE_SECONDS = 2.0
# Installed with torch from PyPI (a CUDA build) and needed to import it; Colab's CPU
# build of torch has none of them. `--prune` keeps them.
CUDA_LIBRARIES = re.compile(r"^(nvidia|cuda)-")
NEVER_PRUNED = {"pip"}
# The versions the header reports, in this order.
REPORTED = ["torch", "numpy", "matplotlib", "scikit-learn", "scipy", "tqdm", "ipykernel",
            "ipython", "jupyter-client", "nbclient"]


def installed() -> dict[str, tuple[str, str]]:
    """Every distribution in this environment: canonical name -> (name, version)."""
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[canonical(name)] = (name, dist.version)
    return found


def pin_mismatches(pins: dict[str, str], have: dict[str, tuple[str, str]]) -> list[str]:
    """Pinned packages that are missing here or installed at another version."""
    problems = []
    for name, version in pins.items():
        present = have.get(canonical(name))
        if present is None:
            problems.append(f"{name}=={version} is not installed")
        elif present[1].split("+", 1)[0] != version:
            problems.append(f"{name}=={version} is installed at {present[1]}")
    return problems


def unpinned(pins: dict[str, str], have: dict[str, tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Installed but not pinned: (CUDA libraries of torch's PyPI build, everything else)."""
    pinned = {canonical(name) for name in pins}
    extra = sorted(key for key in have if key not in pinned and key not in NEVER_PRUNED)
    cuda = [have[key][0] for key in extra if CUDA_LIBRARIES.match(key)]
    other = [have[key][0] for key in extra if not CUDA_LIBRARIES.match(key)]
    return cuda, other


def prune(pins: dict[str, str]) -> int:
    """Uninstall what pip pulled in that Colab's CPU runtime does not have (e.g. triton, jedi)."""
    _, other = unpinned(pins, installed())
    if not other:
        print("nothing to remove: every installed package is pinned or a CUDA library of torch")
        return 0
    print(f"removing what Colab's CPU runtime does not ship: {', '.join(other)}")
    return subprocess.run([sys.executable, "-m", "pip", "uninstall", "--quiet", "--yes", *other]).returncode


def register_kernel() -> str:
    """Register this environment's Python as the kernel KERNEL_NAME; return its executable."""
    # ipykernel before 6.29.3 has debugpy warn about frozen modules at every kernel start
    # (ipython/ipykernel#1198); the kernel inherits this and debugging is never used here.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    from ipykernel.kernelspec import install
    from jupyter_client.kernelspec import KernelSpecManager

    install(kernel_name=KERNEL_NAME, display_name="Python 3 (Colab's versions)", prefix=sys.prefix)
    argv = KernelSpecManager().get_kernel_spec(KERNEL_NAME).argv
    if Path(argv[0]).resolve() != Path(sys.executable).resolve():
        raise RuntimeError(f"kernel {KERNEL_NAME} runs {argv[0]}, not this environment's {sys.executable}")
    return argv[0]


@dataclass
class ChapterResult:
    name: str
    passed: bool
    wall: float
    cpu: float
    figures: int
    failure: list[str]  # the failing cell and its error, when not passed
    slowest: str = ""  # the cell that took longest, as "cell N (S s): first line"


def count_figures(notebook: nbformat.NotebookNode) -> int:
    """Outputs that carry an image: each figure a chapter drew and showed."""
    return sum(1 for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.get("outputs", [])
               if any(mime.startswith("image/") for mime in output.get("data", {})))


def slowest_cell(notebook: nbformat.NotebookNode) -> str:
    """The code cell that ran longest (nbclient records each cell's start and end)."""
    longest = None
    for index, cell in enumerate(notebook.cells, start=1):
        timing = cell.get("metadata", {}).get("execution", {})
        start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if cell.cell_type != "code" or not start or not end:
            continue
        seconds = (datetime.fromisoformat(end.replace("Z", "+00:00"))
                   - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
        if longest is None or seconds > longest[1]:
            longest = (index, seconds, _first_line(cell, 70))
    return "" if longest is None else f"cell {longest[0]} ({longest[1]:.0f} s wall): {longest[2]}"


def _first_line(cell: nbformat.NotebookNode, width: int) -> str:
    return next((line for line in cell.source.splitlines() if line.strip()), "").strip()[:width]


def describe_failure(notebook: nbformat.NotebookNode, error: BaseException,
                     timeout: int | None = None) -> list[str]:
    """The failing cell (its number and first line) and the error, in a few lines.

    The failing cell is the one with an error output, else (a dead kernel) the last one that
    started. A cell that ran past the time limit is reported as such: the KeyboardInterrupt
    it shows comes from the executor stopping it.
    """
    failing, message = None, None
    for index, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type != "code":
            continue
        errors = [output for output in cell.get("outputs", []) if output.get("output_type") == "error"]
        if errors:
            failing = index
            message = f"{errors[0].get('ename')}: {errors[0].get('evalue')}".splitlines()
            break
        if cell.get("metadata", {}).get("execution", {}).get("iopub.execute_input"):
            failing = index
    if isinstance(error, TimeoutError):
        message = [f"ran past the limit of {timeout or '?'} s per cell"]
    elif message is None:
        text = str(error).strip()
        message = [f"{type(error).__name__}: {text.splitlines()[-1] if text else ''}"]
    where = [] if failing is None else [
        f"cell {failing} of {len(notebook.cells)}: {_first_line(notebook.cells[failing - 1], 90)}"]
    return where + message[:8] + (["..."] if len(message) > 8 else [])


def triton_for_this_torch() -> str:
    """The Triton release a chapter installs on Colab for this environment's torch: what the
    chapter's own ``triton_version_for_torch`` answers, not a second copy of its table."""
    owner = next((stem for stem, names in PUBLIC_NAMES.items() if "triton_version_for_torch" in names), None)
    if owner is None:
        raise SystemExit("no chapter defines triton_version_for_torch")
    version, _ = load_library(NOTEBOOKS / f"{owner}.ipynb").triton_version_for_torch()
    if version is None:
        raise SystemExit(f"{owner} names no Triton release for this torch")
    return version


def triton_version_in(folder: Path) -> str:
    """The version of the Triton installed (pip --target) in ``folder``."""
    found = [dist.version for dist in metadata.distributions(path=[str(folder)])
             if canonical(dist.metadata["Name"] or "") == "triton"]
    if not found:
        raise SystemExit(f"no Triton installed in {folder}")
    return found[0]


def uses_triton(path: Path) -> bool:
    """Whether a chapter imports Triton (under a guard: it runs without it too)."""
    notebook = nbformat.read(path, as_version=4)
    return any(re.search(r"^\s*(import triton|from triton)", cell.source, re.M)
               for cell in notebook.cells if cell.cell_type == "code")


def run_chapter(path: Path, out_dir: Path, timeout: int, label: str = "") -> ChapterResult:
    notebook = nbformat.read(path, as_version=4)
    cpu = CpuMeter()
    failure: list[str] = []
    # The meter samples after each cell; sampling every few seconds as well keeps the CPU time
    # of a cell that never finishes (a timeout), which the executor stops with the kernel.
    done = threading.Event()

    def sample_while_running() -> None:
        while not done.wait(SAMPLE_SECONDS):
            if cpu.client is not None:
                cpu.sample()

    sampler = threading.Thread(target=sample_while_running, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        execute_in_empty_folder(path, KERNEL_NAME, timeout=timeout, notebook=notebook, cpu=cpu)
    except Exception as error:  # a failing cell, a timeout, a dead kernel: all are a FAIL
        failure = describe_failure(notebook, error, timeout)
    finally:
        done.set()
        sampler.join()
    wall = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, out_dir / f"{path.stem}{re.sub(r'[^0-9A-Za-z.]+', '-', label)}.ipynb")
    return ChapterResult(path.stem + label, not failure, wall, cpu.seconds, count_figures(notebook), failure,
                         slowest_cell(notebook))


def result_lines(result: ChapterResult) -> list[str]:
    line = (f"{'PASS' if result.passed else 'FAIL'}  {result.name:36} wall {result.wall:6.1f} s"
            f"   CPU {result.cpu:6.1f} s   figures {result.figures:2d}")
    details = list(result.failure)
    so_far = "" if result.passed else " up to the failure"
    if result.cpu > BUDGET_SECONDS:
        line += f"   over the 3-minute budget (CPU{so_far})"
    elif result.wall > BUDGET_SECONDS:
        line += f"   wall over 3 minutes (busy machine; CPU{so_far} within budget)"
    if result.passed and max(result.cpu, result.wall) > BUDGET_SECONDS and result.slowest:
        details.append(f"slowest: {result.slowest}")
    return [line] + [f"      {detail}" for detail in details]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="chapters (default: all in _toc.yml)")
    parser.add_argument("--pins", type=Path, default=PINS_FILE)
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where the executed notebooks go")
    parser.add_argument("--timeout", type=int, default=None,
                        help="seconds a cell may run (default: the book's, execute.timeout in _config.yml)")
    parser.add_argument("--prune", action="store_true",
                        help="only uninstall what Colab's CPU runtime lacks, then exit")
    parser.add_argument("--triton", type=Path, metavar="DIR",
                        help="also run the chapters that import Triton with DIR's Triton on PYTHONPATH")
    parser.add_argument("--triton-version", action="store_true",
                        help="only print the Triton release a chapter installs for this torch, then exit")
    args = parser.parse_args(argv)
    if args.triton_version:
        print(triton_for_this_torch())
        return 0

    pins_text = args.pins.read_text(encoding="utf-8")
    pins = parse_pins(pins_text)
    if args.prune:
        return prune(pins)

    header = pins_header(pins_text)
    wanted, running = python_minor(pins_text), f"{sys.version_info[0]}.{sys.version_info[1]}"
    have = installed()
    problems = pin_mismatches(pins, have)
    if wanted != running:
        problems.insert(0, f"the pins are for Python {wanted}; this is Python {running}")
    if problems:
        print("This environment is not the one colab/requirements-cpu.txt describes "
              "(rebuild it: rm -rf .venv-colab && make colab-check):", file=sys.stderr)
        for problem in problems[:12]:
            print(f"  {problem}", file=sys.stderr)
        if len(problems) > 12:
            print(f"  ... and {len(problems) - 12} more", file=sys.stderr)
        return 2
    register_kernel()
    cuda, other = unpinned(pins, have)

    print(f"Colab's CPU runtime of {header.get('Date', '?')} ({header.get('Source', '?')})")
    print(f"Python {sys.version.split()[0]} (Colab: {header.get('Python', '?')}); "
          + ", ".join(f"{have[key][0]} {have[key][1]}" for key in REPORTED if key in have))
    if cuda:
        print(f"Not on Colab's CPU runtime: torch's {len(cuda)} CUDA libraries from PyPI "
              "(Colab installs the CPU build); unused on a machine without a GPU")
    if other:
        print(f"Also installed, not pinned: {', '.join(other)} (run --prune to remove)")
    print(f"Each chapter alone in an empty folder; kernel {KERNEL_NAME} = {sys.executable}")
    print()

    paths = args.notebooks or chapter_notebooks()
    timeout = args.timeout or book_config()["execute"]["timeout"]
    results = []
    for path in paths:
        result = run_chapter(path, args.out, timeout)
        results.append(result)
        print("\n".join(result_lines(result)), flush=True)
    triton_paths = [path for path in paths if args.triton and uses_triton(path)]
    if triton_paths:
        version = triton_version_in(args.triton)
        print(f"\nAs after the chapter's install cell: Triton {version} from {args.triton}")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(args.triton.resolve())] + [p for p in [os.environ.get("PYTHONPATH")] if p])
        for path in triton_paths:
            result = run_chapter(path, args.out, timeout, label=f" + triton {version}")
            results.append(result)
            print("\n".join(result_lines(result)), flush=True)

    passed = sum(result.passed for result in results)
    over = [result.name for result in results if result.cpu > BUDGET_SECONDS]
    print()
    runs = f"{len(results)} runs ({len(paths)} chapters, {len(triton_paths)} again with Triton)" \
        if triton_paths else f"{len(results)} chapters"
    print(f"{passed} of {runs} passed under Colab's versions"
          + (f"; over the 3-minute budget: {', '.join(over)}" if over else "")
          + f". Executed notebooks: {args.out.relative_to(REPO_ROOT) if args.out.is_relative_to(REPO_ROOT) else args.out}/")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
