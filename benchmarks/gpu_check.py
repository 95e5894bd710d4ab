"""Everything chapter 6 needs a GPU for, in one command (`make gpu-check`).

    python3 -m benchmarks.gpu_check                 # from the repository root, on a CUDA machine
    python3 -m benchmarks.gpu_check --out /tmp/out  # also copy the logs, JSON and page there
    python3 -m benchmarks.gpu_check --steps chapter # only some of the steps (tests, benchmark, chapter)

It uses the Python it is started with (PyTorch with CUDA, Triton, pytest, matplotlib, tqdm,
PyYAML; no virtual environment and no network needed) and runs, in order:

1. chapter 6's tests on the GPU (parity over every launch configuration and dtype, a tensor on
   a second GPU where there is one, determinism at scale) and the compile test (every
   configuration compiled for sm_80 and sm_90 with this Triton: no spills);
2. the GPU benchmark (`benchmarks.run --skip-cpu`): correctness check, copy bandwidth, the
   fused kernels against F.layer_norm and torch.compile, whole calls and kernels only, the
   benchmark's targets; it writes benchmarks/results/cuda-<gpu>.json and regenerates
   book/benchmark_results.md;
3. chapter 6's code cells, top to bottom, as a script in an empty folder (the chapter's GPU
   section measures live; nbclient is not needed).

It prints a summary and exits non-zero if any step failed. Its run time on an H100/H200 has
not been measured (an estimate: several minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from booktools.book import REPO_ROOT, chapter_path


def run_step(name: str, command: list[str], log: Path, cwd: Path = REPO_ROOT, env=None) -> dict:
    print(f"\n=== {name}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:  # show it and keep it
            sys.stdout.write(line)
            out.write(line)
        process.wait()
    seconds = time.perf_counter() - start
    print(f"=== {name}: {'passed' if process.returncode == 0 else 'FAILED'} in {seconds:.0f} s",
          flush=True)
    return {"step": name, "returncode": process.returncode, "seconds": round(seconds, 1),
            "log": str(log)}


def chapter_script(path: Path) -> str:
    """The chapter's code cells as one script (they are plain Python: no magics)."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    cells = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
             for c in notebook["cells"] if c["cell_type"] == "code"]
    return "\n\n".join(f"# --- cell {i}\n{source}" for i, source in enumerate(cells))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="copy logs, JSON and page here")
    parser.add_argument("--steps", default="tests,benchmark,chapter",
                        help="which steps to run, comma-separated (default: all three)")
    args = parser.parse_args(argv)
    wanted = set(args.steps.split(","))
    unknown = wanted - {"tests", "benchmark", "chapter"}
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}; choose from tests, benchmark, chapter")

    import torch

    if not torch.cuda.is_available():
        print("gpu-check needs a CUDA GPU; this machine has none.")
        return 2
    import triton

    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | triton {triton.__version__} "
          f"| python {sys.version.split()[0]} | {torch.cuda.device_count()} GPU(s)")
    logs = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    env = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    steps = []
    if "tests" in wanted:
        steps.append(run_step("tests", [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                                        "tests/test_06_fast_layer_norm.py", "tests/test_06_kernel_compile.py"],
                              logs / "tests.log", env=env))
    if "benchmark" in wanted:
        steps.append(run_step("benchmark", [sys.executable, "-m", "benchmarks.run", "--skip-cpu",
                                            "--note", "make gpu-check"], logs / "benchmark.log", env=env))
    if "chapter" in wanted:
        with tempfile.TemporaryDirectory(prefix="chapter-") as folder:  # an empty folder, as in Colab
            script = Path(folder) / "chapter_06.py"
            script.write_text(chapter_script(chapter_path(6)), encoding="utf-8")
            steps.append(run_step("chapter 6", [sys.executable, str(script)], logs / "chapter.log",
                                  cwd=Path(folder), env=env))
    print("\nsummary:")
    for s in steps:
        print(f"  {'ok    ' if s['returncode'] == 0 else 'FAILED'} {s['step']:10} {s['seconds']:6.0f} s  {s['log']}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for s in steps:
            shutil.copy(s["log"], args.out / Path(s["log"]).name)
        for path in (REPO_ROOT / "benchmarks" / "results").glob("cuda-*.json"):
            shutil.copy(path, args.out / path.name)
        shutil.copy(REPO_ROOT / "book" / "benchmark_results.md", args.out / "benchmark_results.md")
        (args.out / "summary.json").write_text(json.dumps(steps, indent=1), encoding="utf-8")
    return 0 if all(s["returncode"] == 0 for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
