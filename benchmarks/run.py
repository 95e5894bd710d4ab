"""Benchmark layer norm implementations side by side and record the results as JSON.

    .venv/bin/python -m benchmarks.run            # what `make bench` runs (from the repository root)
    .venv/bin/python -m benchmarks.run --quick    # a smoke test in seconds

On every machine it runs the CPU comparison of chapter 6 (naive composite, chapter 5's
`layer_norm` with its hand-written backward, torch.compile of the naive version,
F.layer_norm; one thread). Where CUDA is available it also checks the fused Triton kernel
against F.layer_norm and runs the GPU comparison (the fused Triton kernel, F.layer_norm,
torch.compile, naive; bfloat16 and float32; forward, backward and both). Each run measures
the device's copy bandwidth, plus a copy of every benchmarked shape timed in the same turns,
and writes one JSON file per device to benchmarks/results/<device>.json (a later run on the
same device replaces it). The code under test is chapter 6's own `library` cells, loaded
from the notebook, so the benchmark and the book cannot drift apart. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import torch

if not torch.cuda.is_available():
    # Before anything imports triton (the notebook's library cells, torch.compile): without
    # CUDA, Triton kernels can only run in its interpreter.
    os.environ.setdefault("TRITON_INTERPRET", "1")

from booktools.book import REPO_ROOT  # noqa: E402
from booktools.library import load_chapter  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results"

# The full CPU run: larger than the notebook's (which must finish in a couple of minutes).
CPU_FULL = {"rows": 1024, "hidden_sizes": (512, 1024, 2048, 4096, 8192)}
CPU_QUICK = {"rows": 64, "hidden_sizes": (256, 512)}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def write_result(result: dict, folder: Path = RESULTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{slug(result['device']['type'] + '-' + result['device']['name'])}.json"
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return path


def compile_seconds(compiled, device: str) -> float:
    """Compile the inference and the training graph of ``compiled`` before any timing."""
    start = time.perf_counter()
    x = torch.randn(8, 64, device=device, requires_grad=True)
    w, b = torch.ones(64, device=device), torch.zeros(64, device=device)
    with torch.no_grad():
        compiled(x, (64,), w, b)
    compiled(x, (64,), w, b).sum().backward()
    return time.perf_counter() - start


def run_cpu(ch6, quick: bool) -> dict:
    cfg = dict(ch6.CPU_BENCHMARK, **(CPU_QUICK if quick else CPU_FULL))
    warmup, reps = (1, 3) if quick else (3, 15)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the chapter: one core for every implementation
    try:
        copy_gbps = ch6.measure_copy_bandwidth("cpu", nbytes=2**24 if quick else 2**27)
        compiled = torch.compile(ch6.naive_layer_norm, dynamic=True)
        compile_s = compile_seconds(compiled, "cpu")
        implementations = {
            "naive": ch6.naive_layer_norm,
            "chapter 5": ch6.layer_norm,
            "torch.compile": compiled,
            "F.layer_norm": torch.nn.functional.layer_norm,
        }
        records = ch6.benchmark_layer_norms(
            implementations, cfg["rows"], cfg["hidden_sizes"], cfg["dtypes"], cfg["passes"],
            device="cpu", copy_gbps=copy_gbps, warmup=warmup, reps=reps)
        env = ch6.describe_environment("cpu")
    finally:
        torch.set_num_threads(threads)
    return dict(env, benchmark="cpu", quick=quick, copy_gb_per_s=copy_gbps,
                copy_bytes=2 * (2**24 if quick else 2**27), torch_compile_seconds=compile_s,
                warmup=warmup, repetitions=reps,
                timing="median wall time; implementations take turns within each repetition",
                records=records)


def check_gpu_kernel(ch6) -> None:
    """Stop before benchmarking a kernel that computes the wrong thing."""
    gen = torch.Generator().manual_seed(0)
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 3e-2)):
        for rows, hidden in ((4096, 1024), (1000, 5000), (300, 16384)):
            x = torch.randn(rows, hidden, generator=gen).to("cuda", dtype).requires_grad_()
            w = torch.randn(hidden, generator=gen).to("cuda", dtype).requires_grad_()
            b = torch.randn(hidden, generator=gen).to("cuda", dtype).requires_grad_()
            dy = torch.randn(rows, hidden, generator=gen).to("cuda", dtype)
            refs = [t.detach().float().requires_grad_() for t in (x, w, b)]
            y = ch6.triton_layer_norm(x, (hidden,), w, b)
            y_ref = torch.nn.functional.layer_norm(refs[0], (hidden,), refs[1], refs[2])
            got = (y, *torch.autograd.grad(y, (x, w, b), dy))
            want = (y_ref, *torch.autograd.grad(y_ref, refs, dy.float()))
            for g, r in zip(got, want, strict=True):
                scale = max(1.0, r.abs().max().item())
                torch.testing.assert_close(g.float(), r, rtol=tol, atol=tol * scale)
    print("GPU: triton_layer_norm matches F.layer_norm (output and all three gradients)")


def run_gpu(ch6, quick: bool) -> dict:
    cfg = dict(ch6.GPU_BENCHMARK)
    if quick:
        cfg.update(rows=(4096,), hidden_sizes=(1024, 4096))
    check_gpu_kernel(ch6)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
    compiled = torch.compile(ch6.naive_layer_norm, dynamic=False)  # one kernel per shape
    implementations = {
        "Triton (fused)": ch6.triton_layer_norm,
        "F.layer_norm": torch.nn.functional.layer_norm,
        "torch.compile": compiled,
        "naive": ch6.naive_layer_norm,
    }
    copy_bytes = 2**30
    copy_gbps = ch6.measure_copy_bandwidth("cuda", nbytes=copy_bytes)
    records = []
    for rows in cfg["rows"]:
        records += ch6.benchmark_layer_norms(
            implementations, rows, cfg["hidden_sizes"], cfg["dtypes"], cfg["passes"],
            device="cuda", copy_gbps=copy_gbps)
    return dict(ch6.describe_environment("cuda"), benchmark="gpu", quick=quick,
                copy_gb_per_s=copy_gbps, copy_bytes=2 * copy_bytes,
                timing="triton.testing.do_bench median (L2 flushed between calls)",
                records=records)


def gpu_targets(records) -> list[str]:
    """The chapter's targets in bfloat16, checked against the records (reported, not asserted)."""
    lines = []
    key = lambda r: (r["rows"], r["hidden"], r["dtype"], r["pass"])  # noqa: E731
    ref = {key(r): r for r in records if r["implementation"] == "F.layer_norm"}
    for r in records:
        if r["implementation"] != "Triton (fused)" or r["dtype"] != "bfloat16":
            continue
        speedup = ref[key(r)]["median_s"] / r["median_s"]
        line = (f"bf16 rows {r['rows']:6} hidden {r['hidden']:6} {r['pass']:16} "
                f"{speedup:5.2f}x F.layer_norm, {100 * r['fraction_of_copy']:4.0f}% of copy")
        if r["pass"] in ("forward", "backward") and speedup <= 1:
            line += "  <- not faster than F.layer_norm"
        if r["pass"] == "forward" and r["hidden"] >= 4096 and r["fraction_of_copy"] < 0.85:
            line += "  <- below 85% of copy bandwidth"
        lines.append(line)
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, for a smoke test")
    parser.add_argument("--no-save", action="store_true", help="print only, write no JSON")
    parser.add_argument("--skip-cpu", action="store_true", help="only the GPU benchmark")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON files")
    parser.add_argument("--note", default=None,
                        help="free text stored in the JSON (e.g. 'shared machine, timings inflated')")
    args = parser.parse_args(argv)

    ch6 = load_chapter(6)
    runs = []
    if not args.skip_cpu:
        runs.append(("CPU", run_cpu))
    if torch.cuda.is_available():
        if ch6.triton is None:
            print("CUDA is available but Triton is not installed: skipping the GPU benchmark.")
        else:
            runs.append(("GPU", run_gpu))
    else:
        print("No CUDA device: running the CPU benchmark only (GPU results need `make bench` "
              "on a CUDA machine).")
    for label, run in runs:
        start = time.perf_counter()
        result = run(ch6, args.quick)
        result["note"] = args.note
        baseline = "naive" if label == "CPU" else "F.layer_norm"
        print(f"\n{label}: {result['device']['name']} | torch {result['versions']['torch']}, "
              f"triton {result['versions']['triton']}, python {result['versions']['python']} | "
              f"{result['date']} | copy bandwidth {result['copy_gb_per_s']:.1f} GB/s "
              f"(read + write) | speed-up relative to {baseline}")
        if "torch_compile_seconds" in result:
            print(f"torch.compile compiled in {result['torch_compile_seconds']:.1f} s "
                  "(before timing; dynamic shapes)")
        print(ch6.format_table(result["records"], baseline=baseline))
        if label == "GPU":
            print("\nTargets (bfloat16): faster than F.layer_norm forward and backward; "
                  "forward >= 85% of copy bandwidth for hidden >= 4096")
            print("\n".join(gpu_targets(result["records"])))
        print(f"({time.perf_counter() - start:.0f} s)")
        if not args.no_save:
            path = write_result(result, args.out)
            shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
            print(f"wrote {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
