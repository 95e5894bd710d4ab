"""Chapter 6's kernels compiled for real GPUs, without one: every configuration the launcher
uses, for sm_80 (A100) and sm_90 (H100), in float32, float16 and bfloat16, at hidden sizes
from 1024 to the largest it accepts (and rows that allow only 8-byte or scalar loads).

Triton compiles for any target without a GPU or a driver; ptxas -v reports registers and
spills, cuobjdump -sass the machine code (chapter 6's `compile_for_gpu` runs both in a
separate Python, since this session's Triton only interprets). Asserted for every kernel:

- no register spills;
- the backward either pipelines its row loop (LDGSTS, i.e. cp.async, in the SASS) or keeps
  at least 16 warps live per SM, and the programs the launcher places on an SM fit there;
- 128-bit loads wherever rows start on 16-byte boundaries.

The table of registers, shared memory and occupancy is printed (pytest -s shows it).
"""

import os
import time

import pytest
import torch

from booktools.library import load_chapter

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
CAPABILITIES = (80, 90)
# Powers of two from 1024 to the limit, a width aligned to 8 elements only (5000), and an
# odd one (16383: scalar loads, the row shared by eight programs).
HIDDEN_SIZES = (1024, 2048, 4096, 8192, 16384, 5000, 16383)
# The launcher also passes other flags: no weight and no bias, or only one of them, or
# gradients for only some parameters. Compiled at the longest rows, where registers are scarcest.
FLAG_VARIANTS = [("forward", {"HAS_WEIGHT": False, "HAS_BIAS": False}),
                 ("forward", {"HAS_BIAS": False}),
                 ("backward", {"HAS_WEIGHT": False, "COMPUTE_DW": False, "COMPUTE_DB": False}),
                 ("backward", {"HAS_WEIGHT": False, "COMPUTE_DW": False}),
                 ("backward", {"COMPUTE_DB": False})]


@pytest.fixture(scope="module")
def ch6():
    return load_chapter(6)


@pytest.fixture(scope="module")
def compiled(ch6):
    """Every kernel compiled once for this test session (about two minutes on two cores)."""
    assert max(HIDDEN_SIZES) == ch6.MAX_HIDDEN
    requests = [(kind, n, dtype, cc) for cc in CAPABILITIES for dtype in DTYPES for n in HIDDEN_SIZES
                for kind in ("forward", "backward")]
    requests += [(kind, ch6.MAX_HIDDEN, torch.bfloat16, cc, flags) for cc in CAPABILITIES
                 for kind, flags in FLAG_VARIANTS]
    start = time.perf_counter()
    results = ch6.compile_for_gpu(requests, jobs=os.cpu_count())
    print(f"\ncompiled {len(results)} kernels in {time.perf_counter() - start:.0f} s")
    print(format_table(results))
    return results


def format_table(results):
    lines = [f"{'target':7}{'kernel':9}{'dtype':>9}{'N':>7}{'warps':>6}{'stages':>7}{'split':>6}"
             f"{'regs':>5}{'spill B':>8}{'smem KB':>8}{'fit/SM':>7}{'warps/SM':>9}{'LDGSTS':>7}"
             f"{'LDG.128':>8}"]
    for r in results:
        lines.append(
            f"sm_{r['capability']:<4}{r['kind']:9}{r['dtype']:>9}{r['n']:>7}{r['num_warps']:>6}"
            f"{r['num_stages']:>7}{r['constexprs'].get('SPLIT', 1):>6}{r['registers']:>5}"
            f"{r['spill_stores'] + r['spill_loads']:>8}{r['shared_memory'] / 1024:>8.1f}"
            f"{r['programs_fit']:>7}{r['warps_per_sm']:>9}{r['async_copies']:>7}{r['vector_loads']:>8}"
            + (f"  {r['changed']}" if r["changed"] else ""))
    return "\n".join(lines)


def test_every_configuration_compiles(compiled):
    expected = len(CAPABILITIES) * (len(DTYPES) * len(HIDDEN_SIZES) * 2 + len(FLAG_VARIANTS))
    assert len(compiled) == expected


def test_no_kernel_spills_registers(compiled):
    spilling = [f"sm_{r['capability']} {r['kind']} {r['dtype']} N={r['n']}: "
                f"{r['spill_stores']} B stored, {r['spill_loads']} B loaded"
                for r in compiled if r["spill_stores"] or r["spill_loads"]]
    assert not spilling, "\n".join(spilling)


def test_backward_hides_memory_latency(compiled):
    for r in compiled:
        if r["kind"] != "backward":
            continue
        what = f"sm_{r['capability']} {r['dtype']} N={r['n']}"
        assert r["async_copies"] > 0 or r["warps_per_sm"] >= 16, (
            f"{what}: neither pipelined (no LDGSTS) nor 16 warps per SM ({r['warps_per_sm']})")
        if r["num_stages"] > 1:  # the launcher asked for a pipeline: Triton must have built it
            assert r["async_copies"] > 0, f"{what}: {r['num_stages']} stages but no cp.async"
        assert r["programs_fit"] >= r["programs_per_sm"], (
            f"{what}: the launcher places {r['programs_per_sm']} programs per SM, "
            f"{r['programs_fit']} fit ({r['registers']} registers, {r['shared_memory']} B shared)")


def test_aligned_rows_use_vector_loads(compiled):
    for r in compiled:
        element = torch.empty((), dtype=getattr(torch, r["dtype"])).element_size()
        if r["constexprs"]["ALIGN"] * element >= 16:
            assert r["vector_loads"] > 0, f"sm_{r['capability']} {r['kind']} {r['dtype']} N={r['n']}"


def test_the_compile_report_reads_a_spilling_kernel(ch6):
    """The checks above can fail: a backward with one program holding a whole row of 16384
    float32 columns (the design the launcher avoids) spills, and the report says so."""
    (result,) = ch6.compile_for_gpu([("backward", 16384, torch.float32, 90, {"SPLIT": 1})], jobs=1)
    assert result["changed"] == {"SPLIT": 1}
    assert result["spill_stores"] > 0 and result["spill_loads"] > 0
