"""Write the book's page of recorded benchmark results, book/benchmark_results.md, from the
JSON files in benchmarks/results/ (written by `make bench`).

    .venv/bin/python -m benchmarks.page

The page is plain Markdown, committed with the results and never executed: chapter 6 links to
it (on a GPU the chapter measures live instead). It shows only what the JSON files hold, with
each run's device, versions and date, and says so plainly where nothing has been recorded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from booktools.book import REPO_ROOT

RESULTS = REPO_ROOT / "benchmarks" / "results"
PAGE = REPO_ROOT / "book" / "benchmark_results.md"
REPOSITORY_FILES = "benchmarks/results/"


def load_results(folder: Path = RESULTS) -> list[dict]:
    """Every results file, GPU runs first, newest first within each kind."""
    results = []
    for path in sorted(folder.glob("*.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        result["_file"] = f"{REPOSITORY_FILES}{path.name}"
        results.append(result)
    return sorted(results, key=lambda r: (r["device"]["type"] != "cuda", r["date"]), reverse=False)


def _header(result: dict) -> list[str]:
    d, v = result["device"], result["versions"]
    lines = [f"- **Device:** {d['name']}"
             + (f" (compute capability {d['capability']}, {d['sms']} SMs, {d['memory_gib']} GiB)"
                if d.get("capability") else f", {d.get('cpu_threads', 1)} thread(s)"),
             f"- **Versions:** torch {v['torch']}, triton {v['triton']}, Python {v['python']}",
             f"- **Date:** {result['date']} (file `{result['_file']}`)",
             f"- **Copy bandwidth:** {result['copy_gb_per_s']:.1f} GB/s (read + write, "
             f"{result['copy_bytes'] / 2**20:.0f} MiB moved per copy)",
             f"- **Timing:** {result['timing']}"]
    if result.get("quick"):
        lines.append("- **Quick run:** tiny shapes, a smoke test rather than a measurement")
    if result.get("note"):
        lines.append(f"- **Note recorded with the run:** {result['note']}")
    else:
        lines.append("- **Note recorded with the run:** none (the conditions of the run, such as other "
                     "load on the machine, were not recorded)")
    return lines


def _table(result: dict, baseline: str) -> list[str]:
    records = result["records"]
    key = lambda r: (r["rows"], r["hidden"], r["dtype"], r["pass"])  # noqa: E731
    base = {key(r): r for r in records if r["implementation"] == baseline}
    kernels = any(r.get("kernel_s") for r in records)
    head = "| pass | dtype | rows | N | implementation | median ms | GB/s | % of copy | speed-up vs " + baseline + " |"
    rule = "|---|---|---:|---:|---|---:|---:|---:|---:|"
    if kernels:
        head += (" kernels ms | kernels GB/s | kernels % of same-shape copy | kernels speed-up |"
                 " x and y / L2 |")
        rule += "---:|---:|---:|---:|---:|"
    lines = [head, rule]
    for r in records:
        b = base.get(key(r))
        frac = "" if r.get("fraction_of_copy") is None else f"{100 * r['fraction_of_copy']:.0f}%"
        speed = f"{b['median_s'] / r['median_s']:.2f}x" if b else ""
        row = (f"| {r['pass']} | {r['dtype']} | {r['rows']} | {r['hidden']} | {r['implementation']} | "
               f"{1e3 * r['median_s']:.3f} | {r['gb_per_s']:.1f} | {frac} | {speed} |")
        if kernels:
            l2 = "" if r.get("working_set_over_l2") is None else f"{r['working_set_over_l2']:.1f}"
            if r.get("kernel_gb_per_s"):
                kspeed = (f"{b['kernel_s'] / r['kernel_s']:.2f}x" if b and b.get("kernel_gb_per_s") else "")
                same = r.get("kernel_fraction_of_same_shape_copy")
                row += (f" {1e3 * r['kernel_s']:.3f} | {r['kernel_gb_per_s']:.1f} | "
                        f"{'' if same is None else f'{100 * same:.0f}%'} | {kspeed} | {l2} |")
            else:
                row += f" | | | | {l2} |"
        lines.append(row)
    return lines


def render(results: list[dict]) -> str:
    gpu = [r for r in results if r["device"]["type"] == "cuda"]
    cpu = [r for r in results if r["device"]["type"] != "cuda"]
    out = ["# Recorded benchmark results", "",
           "The book's benchmark (`make bench` in its repository, `benchmarks/run.py`) times the layer",
           "norms of [Chapter 6](../notebooks/06_fast_layer_norm.ipynb) side by side and records",
           f"each run in `{REPOSITORY_FILES}`. This page is generated from those files by",
           "`benchmarks/page.py`; it is not executed, and it shows exactly what they hold. Effective",
           "bandwidth counts the *minimum* bytes of a pass (chapter 6's byte count), so an",
           "implementation that moves more than the minimum shows as a lower number. Chapter 6 itself",
           "measures live when it runs on a GPU.", "", "## GPU", ""]
    if not gpu:
        out += ["**No GPU results have been recorded yet.** The fused Triton kernels have been checked",
                "for correctness (by Triton's interpreter on a CPU) and compiled for a T4, an A100 and",
                "an H100 without a GPU (no register spills; the backward's row loop pipelined up to",
                "8192 columns on the A100 and H100, and 16 or more warps per SM where it is not), but",
                "their speed has not been measured. To record it, run `make gpu-check` (or `make bench`)",
                "in the repository on a machine with a CUDA GPU and Triton, and commit the JSON file",
                "and this page.", ""]
    for result in gpu:
        out += [f"### {result['device']['name']}", "", *_header(result), "",
                "\"% of copy\" compares a whole call (L2 cache flushed) with the large copy of the",
                "header. The kernel-only times replay the kernels back to back without flushing the",
                "L2 cache, so they are compared with a copy of a tensor of the same shape timed the",
                "same way; where x and y take less than 4 times the L2 cache (last column), part of",
                "the data comes from the L2 cache, and such shapes are not judged against the targets.", ""]
        targets = result.get("targets") or []
        if targets:
            met = sum(t["met"] for t in targets)
            out += [f"The benchmark's targets (16-bit, kernels only): **{met} of {len(targets)} met**.", "",
                    "They are goals set for the kernels, not predictions of chapter 6. Next to each speed-up",
                    "over F.layer_norm stands the byte ceiling: the speed-up the fused kernels would have if",
                    "they moved their fewer bytes exactly as fast as PyTorch's kernels move theirs.", "",
                    "| shape and pass | target | measured | met |", "|---|---|---:|---|"]
            out += [f"| {t['shape']} | {t['target']} | {t['value']} | {'yes' if t['met'] else 'no'} |"
                    for t in targets]
            out.append("")
        for line in result.get("skipped") or []:
            out.append(f"- skipped: {line}")
        out += ["", *_table(result, "F.layer_norm"), ""]
    out += ["## CPU", ""]
    if not cpu:
        out += ["No CPU results have been recorded.", ""]
    for result in cpu:
        out += [f"### {result['device']['name']}", "", *_header(result), "",
                "One thread; speed-ups are relative to the naive composite of tensor operations. CPU",
                "timings depend heavily on the machine and on its load when they were taken. \"% of",
                "copy\" compares with the large copy of the header, which streams from main memory; the",
                "tensors here take a few MiB, and the processor's caches serve part of them, so a",
                "figure above 100% (the same-shape copy's, or a layer norm's) means cache, not a",
                "kernel faster than memory. The same-shape copy, timed in the same turns, is the fair",
                "ceiling for each row.", "",
                *_table(result, "naive"), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def write_page(folder: Path = RESULTS, page: Path = PAGE) -> Path:
    page.write_text(render(load_results(folder)), encoding="utf-8")
    return page


def main() -> int:
    print(f"wrote {write_page().relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
