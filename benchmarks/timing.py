"""The timing harness behind `make bench`: side-by-side medians on a CPU, triton.testing on a
GPU, records of bytes and bandwidth, text tables and a description of the machine.

The code under test (the layer norms and their byte counts) comes from chapter 6's `library`
cells; this module only measures it.
"""

from __future__ import annotations

import datetime
import math
import platform
import statistics
import time

import torch

COPY = "copy (same shape)"


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def cpu_turns(steps: dict, warmup: int = 3, reps: int = 15) -> dict[str, list[float]]:
    """Seconds of every call of each function in ``steps``. The functions take turns within
    every repetition, so that a burst of load from other processes hits all of them alike."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in steps}
    for _ in range(reps):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def gpu_times(fn, kernels_only: bool = True) -> dict[str, float]:
    """Median seconds of ``fn`` on a GPU: the whole call as Python makes it
    (``triton.testing.do_bench``, L2 flushed between calls) and, with ``kernels_only``, its
    kernels alone (``do_bench_cudagraph``: the calls recorded in a CUDA graph and replayed
    back to back, without Python or launch overhead; NaN if the call cannot be captured)."""
    from triton.testing import do_bench, do_bench_cudagraph

    result = {"whole": do_bench(fn, warmup=25, rep=100, return_mode="median") / 1e3}
    if kernels_only:
        try:
            result["kernels"] = do_bench_cudagraph(fn, rep=50, return_mode="median") / 1e3
        except RuntimeError as error:  # recorded as missing, and said so
            print(f"  (no CUDA-graph timing: {str(error).splitlines()[0][:120]})")
            result["kernels"] = math.nan
    return result


def copy_bandwidth(device: str, nbytes: int) -> float:
    """Bytes read plus written per second by ``dst.copy_(src)`` on ``nbytes`` (GB/s, median)."""
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    if str(device).startswith("cuda"):
        seconds = gpu_times(lambda: dst.copy_(src), kernels_only=False)["whole"]
    else:
        seconds = statistics.median(cpu_turns({"copy": lambda: dst.copy_(src)}, 2, 10)["copy"])
    return 2 * nbytes / seconds / 1e9


def layer_norm_step(fn, rows: int, hidden: int, dtype, pass_: str, device: str, seed: int = 0,
                    dynamic_rows: bool = False):
    """A function that runs one layer-norm pass of ``fn`` on a fixed (rows, hidden) input.

    ``backward`` replays the backward of one forward (retain_graph); ``forward+backward`` runs
    both. ``dynamic_rows`` marks the row dimension dynamic for torch.compile (one graph per
    hidden size rather than per shape)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, hidden, generator=gen).to(device=device, dtype=dtype)
    w = (1 + 0.1 * torch.randn(hidden, generator=gen)).to(device=device, dtype=dtype)
    b = (0.1 * torch.randn(hidden, generator=gen)).to(device=device, dtype=dtype)
    dy = torch.randn(rows, hidden, generator=gen).to(device=device, dtype=dtype)
    shape = (hidden,)
    if dynamic_rows:
        torch._dynamo.mark_dynamic(x, 0)
    if pass_ == "forward":
        def step():
            with torch.no_grad():
                return fn(x, shape, w, b)
        return step
    leaves = [t.detach().requires_grad_() for t in (x, w, b)]
    if dynamic_rows:
        torch._dynamo.mark_dynamic(leaves[0], 0)
    if pass_ == "backward":
        y = fn(leaves[0], shape, leaves[1], leaves[2])

        def step():
            return torch.autograd.grad(y, leaves, dy, retain_graph=True)
        return step
    if pass_ == "forward+backward":
        def step():
            return torch.autograd.grad(fn(leaves[0], shape, leaves[1], leaves[2]), leaves, dy)
        return step
    raise ValueError(f"unknown pass {pass_!r}")


def record(name, rows, hidden, dtype, pass_, nbytes, seconds, copy_gbps, kernel_seconds=None) -> dict:
    """One measurement: the shape, the bytes the pass must move, and its effective bandwidth."""
    entry = {"implementation": name, "rows": rows, "hidden": hidden,
             "dtype": str(dtype).removeprefix("torch."), "pass": pass_, "bytes": nbytes,
             "median_s": seconds, "gb_per_s": nbytes / seconds / 1e9}
    entry["fraction_of_copy"] = None if copy_gbps is None else entry["gb_per_s"] / copy_gbps
    if kernel_seconds is not None:
        entry["kernel_s"] = kernel_seconds
        entry["kernel_gb_per_s"] = nbytes / kernel_seconds / 1e9 if kernel_seconds == kernel_seconds else None
        entry["kernel_fraction_of_copy"] = (None if entry["kernel_gb_per_s"] is None or copy_gbps is None
                                            else entry["kernel_gb_per_s"] / copy_gbps)
    return entry


def device_name(device: str = "cpu") -> str:
    """A readable name of the device: the GPU's, or the CPU model from /proc/cpuinfo."""
    if str(device).startswith("cuda"):
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_environment(device: str = "cpu") -> dict:
    """Device, library versions and date for a results file."""
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    info = {"type": torch.device(device).type, "name": device_name(device),
            "cpu_threads": torch.get_num_threads()}
    if str(device).startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        info.update(capability=f"{props.major}.{props.minor}", sms=props.multi_processor_count,
                    memory_gib=round(props.total_memory / 2**30, 1))
    return {"device": info,
            "versions": {"torch": torch.__version__, "triton": triton_version,
                         "python": platform.python_version()},
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def format_table(records: list[dict], baseline: str) -> str:
    """Medians, GB/s, fraction of the copy and the speed-up over ``baseline`` (same shape, pass);
    kernel-only columns where the records have them."""
    key = lambda r: (r["rows"], r["hidden"], r["dtype"], r["pass"])  # noqa: E731
    base = {key(r): r for r in records if r["implementation"] == baseline}
    kernels = any("kernel_s" in r for r in records)
    head = (f"{'pass':<17}{'dtype':<9}{'rows':>6}{'hidden':>7}  {'implementation':<18}"
            f"{'median ms':>10}{'GB/s':>8}{'% copy':>8}{'speed-up':>9}")
    if kernels:
        head += f"{'kernels ms':>11}{'GB/s':>8}{'% copy':>8}{'speed-up':>9}"
    lines = [head]
    for r in records:
        b = base.get(key(r))
        frac = "" if r["fraction_of_copy"] is None else f"{100 * r['fraction_of_copy']:.0f}%"
        speed = f"{b['median_s'] / r['median_s']:.2f}x" if b else ""
        line = (f"{r['pass']:<17}{r['dtype']:<9}{r['rows']:>6}{r['hidden']:>7}  {r['implementation']:<18}"
                f"{1e3 * r['median_s']:>10.3f}{r['gb_per_s']:>8.1f}{frac:>8}{speed:>9}")
        if kernels and r.get("kernel_gb_per_s"):
            kspeed = (f"{b['kernel_s'] / r['kernel_s']:.2f}x" if b and b.get("kernel_gb_per_s") else "")
            line += (f"{1e3 * r['kernel_s']:>11.3f}{r['kernel_gb_per_s']:>8.1f}"
                     f"{100 * r['kernel_fraction_of_copy']:>7.0f}%{kspeed:>9}")
        lines.append(line)
    return "\n".join(lines)
