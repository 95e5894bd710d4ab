"""Chapter 6's kernels compiled for real GPUs, without one: every configuration the launcher
uses for 4096 rows, for sm_75 (T4, Colab's free GPU; float16 and float32, as the chapter runs
there), sm_80 (A100) and sm_90 (H100) (float32, float16 and bfloat16), at hidden sizes from
1024 to the largest it accepts (and rows that allow only 8-byte or scalar loads), and the
mixed-precision launch (a 16-bit input with float32 weight and bias, as chapter 5's dtype rule
allows).

Triton compiles for any target without a GPU or a driver; ptxas -v reports registers and
spills, cuobjdump -sass the machine code (chapter 6's `compile_for_gpu` runs both in a
separate Python, since this session's Triton only interprets). Integer arguments get the
alignment a real launch on 4096 rows gives them. Asserted for every kernel, whatever the
Triton version's register allocation:

- no register spills;
- the programs per SM the launcher plans for the backward fit there at once, on the compiled
  registers and shared memory (the launcher caps registers with Triton's maxnreg for that);
- the backward either pipelines its row loop (LDGSTS, i.e. cp.async, in the SASS) or keeps
  at least 16 warps live per SM; where the launcher asks for pipeline stages, Triton built
  the pipeline; sm_75 has no cp.async, and the launcher asks for none there;
- where rows start on 16-byte boundaries, every load of a row, of the weight and of the bias
  is a 128-bit vector load (LDG or LDGSTS); only the per-row statistics are loaded narrower.

The table of registers, shared memory, occupancy and loads is printed (pytest -s shows it).
About 165 kernels: a minute or two on two idle cores.
"""

import os
import time

import pytest
import torch

from booktools.library import load_chapter

# (capability, dtypes): the T4 runs the chapter's GPU section in float16 (no native bfloat16).
TARGETS = ((75, (torch.float32, torch.float16)),
           (80, (torch.float32, torch.float16, torch.bfloat16)),
           (90, (torch.float32, torch.float16, torch.bfloat16)))
# Mixed precision: the 16-bit input each target runs, with float32 weight and bias.
MIXED = ((75, torch.float16), (80, torch.bfloat16), (90, torch.bfloat16))
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
KINDS = ("forward", "backward")


def test_the_matrix_is_what_the_chapter_says():
    # "for the three GPUs, all three dtypes (float32 and float16 on the T4) and a float32 weight
    # and bias with 16-bit input"
    all_three = {torch.float32, torch.float16, torch.bfloat16}
    assert {cc: set(dtypes) for cc, dtypes in TARGETS} == {75: all_three - {torch.bfloat16}, 80: all_three,
                                                           90: all_three}
    assert {cc for cc, _ in MIXED} == {75, 80, 90} and all(d != torch.float32 for _, d in MIXED)


def _requests(max_hidden):
    requests = [(kind, n, dtype, cc) for cc, dtypes in TARGETS for dtype in dtypes
                for n in HIDDEN_SIZES for kind in KINDS]
    requests += [(kind, n, dtype, cc, {"param_dtype": torch.float32}) for cc, dtype in MIXED
                 for n in HIDDEN_SIZES for kind in KINDS]
    requests += [(kind, max_hidden, torch.bfloat16, cc, flags) for cc in (80, 90)
                 for kind, flags in FLAG_VARIANTS]
    return requests


@pytest.fixture(scope="module")
def ch6():
    return load_chapter(6)


@pytest.fixture(scope="module")
def compiled(ch6):
    """Every kernel compiled once for this test session."""
    assert max(HIDDEN_SIZES) == ch6.MAX_HIDDEN
    start = time.perf_counter()
    results = ch6.compile_for_gpu(_requests(ch6.MAX_HIDDEN), jobs=os.cpu_count())
    print(f"\ncompiled {len(results)} kernels in {time.perf_counter() - start:.0f} s")
    print(format_table(results))
    return results


def _name(r):
    mixed = f"/{r['param_dtype']}" if r["param_dtype"] != r["dtype"] else ""
    return f"sm_{r['capability']} {r['kind']} {r['dtype']}{mixed} N={r['n']}" + (
        f" {r['changed']}" if r["changed"] else "")


def format_table(results):
    lines = [f"{'target':7}{'kernel':9}{'dtype':>17}{'N':>7}{'warps':>6}{'stages':>7}{'split':>6}"
             f"{'cap':>5}{'regs':>5}{'spill B':>8}{'smem KB':>8}{'fit/SM':>7}{'plan':>5}{'warps/SM':>9}"
             f"{'LDGSTS':>7}{'128-bit':>8}{'narrow':>7}"]
    for r in results:
        dtype = r["dtype"] + (f"/{r['param_dtype']}" if r["param_dtype"] != r["dtype"] else "")
        lines.append(
            f"sm_{r['capability']:<4}{r['kind']:9}{dtype:>17}{r['n']:>7}{r['num_warps']:>6}"
            f"{r['num_stages']:>7}{r['constexprs'].get('SPLIT', 1):>6}{r['max_registers'] or '':>5}"
            f"{r['registers']:>5}{r['spill_stores'] + r['spill_loads']:>8}{r['shared_memory'] / 1024:>8.1f}"
            f"{r['programs_fit']:>7}{r['programs_per_sm'] or '':>5}{r['warps_per_sm']:>9}"
            f"{r['async_copies']:>7}{r['wide_loads']:>8}{r['narrow_loads']:>7}"
            + (f"  {r['changed']}" if r["changed"] else ""))
    return "\n".join(lines)


def test_every_configuration_compiles(ch6, compiled):
    assert len(compiled) == len(_requests(ch6.MAX_HIDDEN))
    assert {r["capability"] for r in compiled} == {75, 80, 90}
    assert any(r["param_dtype"] == "float32" and r["dtype"] != "float32" for r in compiled)


def test_no_kernel_spills_registers(compiled):
    spilling = [f"{_name(r)}: {r['spill_stores']} B stored, {r['spill_loads']} B loaded"
                for r in compiled if r["spill_stores"] or r["spill_loads"]]
    assert not spilling, "\n".join(spilling)


def test_the_planned_backward_programs_fit_on_an_sm(compiled):
    for r in compiled:
        if r["kind"] == "backward":
            assert r["programs_fit"] >= r["programs_per_sm"] >= 1, (
                f"{_name(r)}: the launcher places {r['programs_per_sm']} programs per SM, "
                f"{r['programs_fit']} fit ({r['registers']} registers, {r['shared_memory']} B shared)")


def test_backward_hides_memory_latency(compiled):
    for r in compiled:
        if r["kind"] != "backward":
            continue
        assert r["async_copies"] > 0 or r["warps_per_sm"] >= 16, (
            f"{_name(r)}: neither pipelined (no LDGSTS) nor 16 warps per SM ({r['warps_per_sm']})")
        if r["num_stages"] > 1:  # the launcher asked for a pipeline: Triton must have built it
            assert r["async_copies"] > 0, f"{_name(r)}: {r['num_stages']} stages but no cp.async"
        if r["capability"] < 80:  # no cp.async before sm_80: no stages asked for, none built
            assert r["num_stages"] == 1 and r["async_copies"] == 0, _name(r)


def test_aligned_rows_use_128_bit_loads(compiled):
    for r in compiled:
        element = torch.empty((), dtype=getattr(torch, r["dtype"])).element_size()
        if r["constexprs"]["ALIGN"] * element < 16:
            continue
        # narrower loads: only mean and rstd, once per pipeline stage, in the backward
        statistics = 2 * r["num_stages"] if r["kind"] == "backward" else 0
        assert r["wide_loads"] > 0 and r["narrow_loads"] <= statistics, (
            f"{_name(r)}: {r['wide_loads']} 128-bit loads, {r['narrow_loads']} narrower")


def test_the_compile_report_reads_a_spilling_kernel(ch6):
    """The checks above can fail: a backward with one program holding a whole row of 16384
    float32 columns (the design the launcher avoids) spills, and the report says so."""
    (result,) = ch6.compile_for_gpu([("backward", 16384, torch.float32, 90, {"SPLIT": 1})], jobs=1)
    assert result["changed"] == {"SPLIT": 1}
    assert result["spill_stores"] > 0 and result["spill_loads"] > 0


def test_the_specialisation_of_integer_arguments(ch6):
    """Triton specialises an integer argument at launch: 1 becomes a constant, a multiple of 16
    gets tt.divisibility=16. kernel_launch must describe the launch the same way."""
    h100 = ch6.GPU_TARGETS[90]
    launch = ch6.kernel_launch("backward", 4096, torch.bfloat16, h100, rows=4096)
    names = list(launch["signature"])
    blocks, rows_per_program = ch6.backward_grid(4096, ch6.backward_config(4096, torch.bfloat16, h100), h100)
    assert launch["signature"]["M"] == "i32" and names.index("M") in launch["aligned"]
    assert (names.index("rows_per_program") in launch["aligned"]) == (rows_per_program % 16 == 0)
    one_row = ch6.kernel_launch("forward", 4096, torch.bfloat16, h100, rows=1)
    assert one_row["signature"]["M"] == "constexpr" and one_row["constexprs"]["M"] == 1
    odd = ch6.kernel_launch("forward", 4096, torch.bfloat16, h100, rows=4095)
    assert odd["signature"]["M"] == "i32" and list(odd["signature"]).index("M") not in odd["aligned"]
    mixed = ch6.kernel_launch("forward", 4096, torch.bfloat16, h100, param_dtype=torch.float32)
    assert mixed["signature"]["X"] == "*bf16" and mixed["signature"]["W"] == mixed["signature"]["B"] == "*fp32"
