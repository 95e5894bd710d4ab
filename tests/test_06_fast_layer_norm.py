"""Chapter 6: the fused Triton layer norm (run by Triton's interpreter on a CPU), the byte
model and the exercise checkers."""

import pytest
import torch
import torch.nn.functional as F

from booktools.book import chapter_path
from booktools.library import load_chapter

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"


@pytest.fixture(scope="module")
def ch6():
    return load_chapter(6)


def _compare(fn, dtype, shape, normalized_shape, affine=True, bias=True, non_contiguous=False,
             seed=0, device=DEVICE):
    """Forward and all gradients of ``fn`` against F.layer_norm computed in float32."""
    gen = torch.Generator().manual_seed(seed)
    if non_contiguous:  # the same logical shape, laid out transposed in memory
        base = torch.randn((shape[1], shape[0], *shape[2:]), generator=gen)
        x = base.to(device=device, dtype=dtype).transpose(0, 1)
        assert not x.is_contiguous()
    else:
        x = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    w = torch.randn(normalized_shape, generator=gen).to(device=device, dtype=dtype) if affine else None
    b = torch.randn(normalized_shape, generator=gen).to(device=device, dtype=dtype) if bias else None
    dy = torch.randn(x.shape, generator=gen).to(device=device, dtype=dtype)
    leaves = [t.detach().requires_grad_() if t is not None else None for t in (x, w, b)]
    refs = [t.detach().float().requires_grad_() if t is not None else None for t in (x, w, b)]
    y = fn(leaves[0], normalized_shape, leaves[1], leaves[2])
    y_ref = F.layer_norm(refs[0], normalized_shape, refs[1], refs[2])
    assert y.dtype == dtype and y.shape == x.shape
    present = [i for i, t in enumerate(leaves) if t is not None]
    grads = torch.autograd.grad(y, [leaves[i] for i in present], dy)
    grads_ref = torch.autograd.grad(y_ref, [refs[i] for i in present], dy.float())
    if dtype == torch.float32:
        tol = {"atol": 1e-4, "rtol": 1e-4}
    else:  # a reference rounded once from float32: allow a few low-precision ulps
        tol = {"atol": 3e-2, "rtol": 2e-2}
    torch.testing.assert_close(y, y_ref.to(dtype), **tol)
    for i, g, g_ref in zip(present, grads, grads_ref, strict=True):
        assert g.dtype == leaves[i].dtype and g.shape == leaves[i].shape
        torch.testing.assert_close(g, g_ref.to(dtype), **tol)


def test_library_defines_public_names(ch6):
    assert callable(ch6.triton_layer_norm)
    assert ch6.triton is not None, "triton should import (interpreted on a CPU)"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("hidden", [1, 3, 127, 1000, 4097])
def test_odd_hidden_sizes(ch6, dtype, hidden):
    _compare(ch6.triton_layer_norm, dtype, (5, hidden), (hidden,), seed=hidden)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(
    "shape, normalized_shape",
    [((7, 64), (64,)), ((2, 3, 33), (33,)), ((2, 2, 2, 20), (20,)), ((3, 4, 6), (4, 6)), ((50,), (50,))],
)
def test_leading_dimensions(ch6, dtype, shape, normalized_shape):
    _compare(ch6.triton_layer_norm, dtype, shape, normalized_shape)


@pytest.mark.parametrize("affine, bias", [(True, True), (True, False), (False, True), (False, False)])
def test_with_and_without_weight_and_bias(ch6, affine, bias):
    _compare(ch6.triton_layer_norm, torch.float32, (9, 100), (100,), affine=affine, bias=bias)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_non_contiguous_input(ch6, dtype):
    _compare(ch6.triton_layer_norm, dtype, (6, 4, 48), (48,), non_contiguous=True)


def test_many_rows_per_program(ch6):
    # More rows than backward programs, not a multiple of their number: the partial sums
    # and the row ranges must cover every row exactly once.
    _compare(ch6.triton_layer_norm, torch.float32, (37, 24), (24,))


def test_int_normalized_shape_and_only_some_grads(ch6):
    x = torch.randn(4, 10, device=DEVICE)
    w = torch.randn(10, device=DEVICE, requires_grad=True)
    y = ch6.triton_layer_norm(x, 10, w)
    (dw,) = torch.autograd.grad(y.sum(), [w])
    w_ref = w.detach().clone().requires_grad_()
    (dw_ref,) = torch.autograd.grad(F.layer_norm(x, (10,), w_ref).sum(), [w_ref])
    torch.testing.assert_close(dw, dw_ref, atol=1e-5, rtol=1e-5)


def test_weight_gradients_are_deterministic(ch6):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(23, 40, generator=gen).to(DEVICE)
    w = torch.randn(40, generator=gen).to(DEVICE).requires_grad_()
    b = torch.randn(40, generator=gen).to(DEVICE).requires_grad_()
    dy = torch.randn(23, 40, generator=gen).to(DEVICE)
    first = torch.autograd.grad(ch6.triton_layer_norm(x, (40,), w, b), (w, b), dy)
    second = torch.autograd.grad(ch6.triton_layer_norm(x, (40,), w, b), (w, b), dy)
    assert all(torch.equal(p, q) for p, q in zip(first, second, strict=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_too_long_rows_raise_a_clear_error(ch6, dtype):
    limit = ch6.max_hidden_size(dtype)
    assert limit == ch6.MAX_HIDDEN == 16384
    with pytest.raises(ValueError, match=rf"{limit + 1} elements.*{limit}"):
        ch6.triton_layer_norm(torch.zeros(1, limit + 1, dtype=dtype, device=DEVICE), (limit + 1,))


@pytest.mark.parametrize("hidden", [16384, 4097, 5000])
def test_rows_shared_by_several_programs(ch6, hidden):
    # 16384 (two programs per row), 4097 (unaligned: four), 5000 (8-aligned, one program)
    config = ch6.backward_config(hidden, torch.float32, ch6.GPU_TARGETS[90])
    assert config.constexprs["SPLIT"] == {16384: 2, 4097: 4, 5000: 1}[hidden]
    _compare(ch6.triton_layer_norm, torch.float32, (3, hidden), (hidden,), seed=hidden)


def test_bfloat16_where_the_interpreter_supports_it(ch6):
    # NumPy has no bfloat16; recent Triton interpreters emulate it, older ones reject it.
    try:
        ch6.triton_layer_norm(torch.ones(2, 8, dtype=torch.bfloat16, device=DEVICE), (8,))
    except Exception as error:  # an unsupported dtype in this Triton version
        pytest.skip(f"this Triton interpreter does not run bfloat16: {error!r}")
    for hidden in (3, 127, 1000):
        _compare(ch6.triton_layer_norm, torch.bfloat16, (4, hidden), (hidden,), seed=hidden)
    _compare(ch6.triton_layer_norm, torch.bfloat16, (5, 3, 40), (40,), non_contiguous=True)


def test_eps_is_used(ch6):
    x = torch.randn(6, 30, device=DEVICE)
    torch.testing.assert_close(ch6.triton_layer_norm(x, (30,), eps=0.5),
                               F.layer_norm(x, (30,), eps=0.5), atol=1e-5, rtol=1e-5)


def test_strided_slice_input(ch6):
    # every other column of a wider tensor: rows are not dense in memory
    gen = torch.Generator().manual_seed(5)
    wide = torch.randn(7, 80, generator=gen).to(DEVICE).requires_grad_()
    x = wide[:, ::2]
    assert not x.is_contiguous()
    w = torch.randn(40, generator=gen).to(DEVICE)
    dy = torch.randn(7, 40, generator=gen).to(DEVICE)
    (g,) = torch.autograd.grad(ch6.triton_layer_norm(x, (40,), w), [wide], dy)
    (g_ref,) = torch.autograd.grad(F.layer_norm(x, (40,), w), [wide], dy)
    torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4)


def test_bad_arguments_raise_clear_errors(ch6):
    x = torch.zeros(2, 8, device=DEVICE)
    with pytest.raises(TypeError, match="floating-point"):
        ch6.triton_layer_norm(torch.zeros(2, 8, dtype=torch.int64, device=DEVICE), (8,))
    with pytest.raises(TypeError, match="torch.Tensor"):
        ch6.triton_layer_norm([[0.0] * 8], (8,))
    with pytest.raises(ValueError, match="eps"):
        ch6.triton_layer_norm(x, (8,), eps=-1.0)
    with pytest.raises(ValueError, match="bias"):
        ch6.triton_layer_norm(x, (8,), torch.ones(8, device=DEVICE), torch.ones(3, device=DEVICE))
    with pytest.raises(ValueError, match="at least one dimension"):
        ch6.triton_layer_norm(x, ())


def test_bad_shapes_raise(ch6):
    x = torch.zeros(2, 8, device=DEVICE)
    with pytest.raises(ValueError, match="normalized_shape"):
        ch6.triton_layer_norm(x, (4,))
    with pytest.raises(ValueError, match="weight"):
        ch6.triton_layer_norm(x, (8,), torch.ones(4, device=DEVICE))


def test_empty_input(ch6):
    x = torch.zeros(0, 8, device=DEVICE)
    assert ch6.triton_layer_norm(x, (8,)).shape == (0, 8)


def test_reference_implementations_match_pytorch_in_float64(ch6):
    for fn in (ch6.naive_layer_norm, ch6.layer_norm):
        x = torch.randn(3, 4, 16, dtype=torch.float64)
        w, b = torch.randn(4, 16, dtype=torch.float64), torch.randn(4, 16, dtype=torch.float64)
        _compare(fn, torch.float32, (3, 16), (16,), device="cpu")
        leaves = [t.clone().requires_grad_() for t in (x, w, b)]
        assert torch.autograd.gradcheck(lambda x, w, b, fn=fn: fn(x, (4, 16), w, b), leaves)


def test_byte_model(ch6):
    m, n = 4096, 1024
    assert ch6.layer_norm_bytes(m, n, torch.bfloat16, "forward") == 2 * m * n * 2 + 8 * m + 2 * n * 2
    assert ch6.layer_norm_bytes(m, n, torch.float32, "backward") == 3 * m * n * 4 + 8 * m + 3 * n * 4
    both = ch6.layer_norm_bytes(m, n, torch.float32, "forward+backward")
    assert both == ch6.layer_norm_bytes(m, n, torch.float32, "forward") + ch6.layer_norm_bytes(
        m, n, torch.float32, "backward")
    # memory-bound: a few flops per byte
    assert ch6.layer_norm_flops(m, n, "forward") / ch6.layer_norm_bytes(m, n, torch.float32) < 3


def _solutions():
    """The chapter's worked solutions (collapsed cells), run on top of its library."""
    import linecache

    import nbformat

    ns = dict(vars(load_chapter(6)))
    notebook = nbformat.read(chapter_path(6), as_version=4)
    for i, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and cell.source.startswith("# @title Worked solution"):
            name = f"<chapter 6 solution cell {i}>"
            linecache.cache[name] = (len(cell.source), None, cell.source.splitlines(True), name)
            exec(compile(cell.source, name, "exec"), ns)
    return ns


def test_exercise_checkers_pass_the_solutions_and_fail_wrong_answers(ch6, capsys):
    ns = _solutions()
    assert all(ch6.check_forward_bytes(ns["solution_forward_bytes"]).values())
    assert all(ch6.check_dw_db(ns["solution_dw_db"]).values())

    # forgetting the saved statistics is a wrong answer, reported, not raised
    assert not ch6.check_forward_bytes(lambda r, n, s: 2 * r * n * s + 2 * n * s)
    assert not ch6.check_forward_bytes(lambda r, n, s: 1 / 0)
    assert not ch6.check_forward_bytes(lambda r, n, s: None)  # the unfinished template

    def drops_the_last_rows(xhat, dy, programs):  # floor instead of ceil
        per = xhat.shape[0] // programs
        dw_partial = torch.stack([(dy[p * per:(p + 1) * per].float() * xhat[p * per:(p + 1) * per].float()).sum(0)
                                  for p in range(programs)])
        db_partial = torch.stack([dy[p * per:(p + 1) * per].float().sum(0) for p in range(programs)])
        return dw_partial.sum(0), db_partial.sum(0), dw_partial, db_partial

    report = ch6.check_dw_db(drops_the_last_rows)
    assert not report and report.failed and len(report.failed) < len(report)  # rows divisible: pass

    def ignores_the_design(xhat, dy, programs):  # right sums, but one "partial" row for all
        dw, db = (dy.float() * xhat.float()).sum(0), dy.float().sum(0)
        return dw, db, dw[None].expand(programs, -1), db[None].expand(programs, -1)

    assert ch6.check_dw_db(ignores_the_design, verbose=False).failed

    def balanced_blocks(xhat, dy, programs):  # right sums over blocks the kernel does not make
        dw_partial = torch.stack([(d.float() * x.float()).sum(0) for x, d in
                                  zip(torch.tensor_split(xhat, programs), torch.tensor_split(dy, programs), strict=True)])
        db_partial = torch.stack([d.float().sum(0) for d in torch.tensor_split(dy, programs)])
        return dw_partial.sum(0), db_partial.sum(0), dw_partial, db_partial

    report = ch6.check_dw_db(balanced_blocks, verbose=False)
    # 10 rows for 4 programs: balanced blocks of 3, 3, 2, 2 rows, the kernel's of 3, 3, 3, 1
    assert report.failed == ["rows=10, hidden=8, programs=4, torch.float32"]
    assert [len(b) for b in torch.tensor_split(torch.empty(10), 4)] == [3, 3, 2, 2]
    assert not ch6.check_dw_db(lambda xhat, dy, p: ((dy * xhat).sum(0), dy.sum(0)))  # no partials
    out = capsys.readouterr().out
    assert "FAIL" in out and "PASS" in out


def test_launch_configurations_respect_the_hardware(ch6):
    """The launcher's plan, for every row length it accepts, on both compile targets."""
    for gpu in ch6.GPU_TARGETS.values():
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            size = torch.empty((), dtype=dtype).element_size()
            for n in [1, 3, 64, 127, 1000, 1024, 3000, 4096, 5000, 8192, 12288, 16383, 16384]:
                f = ch6.forward_config(n, dtype)
                b = ch6.backward_config(n, dtype, gpu)
                fc, bc = f.constexprs, b.constexprs
                assert fc["BLOCK"] >= n and bc["BLOCK"] == fc["BLOCK"] < 2 * n
                assert n % fc["ALIGN"] == 0 and fc["ALIGN"] == bc["ALIGN"]
                assert 1 <= f.num_warps <= 16 and 1 <= b.num_warps <= 16
                assert bc["BLOCK"] % bc["SPLIT"] == 0
                chunk = bc["BLOCK"] // bc["SPLIT"]
                # each thread holds at most 16 elements (8 where loads are scalar)
                per_thread = bc["ROWS"] * chunk / (32 * b.num_warps)
                assert per_thread <= (16 if fc["ALIGN"] * size >= 16 else 4)
                # the planned programs fit the SM's warps; the pipeline fits its shared memory
                assert b.programs_per_sm * b.num_warps <= gpu.max_warps_per_sm
                stage_bytes = bc["ROWS"] * chunk * 2 * size
                assert (b.num_stages - 1) * stage_bytes * b.programs_per_sm <= gpu.smem_per_sm
                assert bc["STAGES"] == b.num_stages and (b.num_stages == 1 or bc["SPLIT"] == 1)
    # the ladder of programs per SM, as the chapter describes it (bfloat16 on an H100)
    h100 = ch6.GPU_TARGETS[90]
    ladder = {n: ch6.backward_config(n, torch.bfloat16, h100).programs_per_sm
              for n in (1024, 2048, 4096, 8192, 16384)}
    assert ladder == {1024: 8, 2048: 4, 4096: 2, 8192: 1, 16384: 1}
    config = ch6.backward_config(1024, torch.bfloat16, h100)
    # (blocks of rows, rows per block): few rows keep MIN_TILES_PER_PROGRAM tiles per program
    assert ch6.backward_grid(4096, config, h100) == (4096 // ch6.MIN_TILES_PER_PROGRAM, ch6.MIN_TILES_PER_PROGRAM)
    blocks, per_block = ch6.backward_grid(10**6, config, h100)
    assert blocks == 8 * h100.sms and (blocks - 1) * per_block < 10**6 <= blocks * per_block
    assert ch6.backward_grid(1, config, h100) == (1, 1)
    # the register cap lets the planned programs share the register file
    for n in (1024, 2048, 4096, 8192, 16384):
        b = ch6.backward_config(n, torch.bfloat16, h100)
        assert b.max_registers * 32 * b.num_warps * b.programs_per_sm <= h100.registers_per_sm


def test_triton_version_for_torch(ch6):
    assert ch6.triton_pin(["filelock", 'triton==3.6.0; platform_system == "Linux"']) == "3.6.0"
    assert ch6.triton_pin(["triton == 3.9.0"]) == "3.9.0"
    assert ch6.triton_pin(["tritonclient==2.0", "sympy>=1.13"]) is None
    assert ch6.triton_pin(None) is None
    version, source = ch6.triton_version_for_torch()
    # this build's torch is a CPU wheel (no Triton requirement): the table answers
    release = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    assert version == ch6.TRITON_FOR_TORCH.get(release) or version == ch6.triton_pin(
        __import__("importlib.metadata").metadata.requires("torch"))
    assert isinstance(source, str) and source


def test_backward_is_once_differentiable(ch6):
    x = torch.randn(4, 16, device=DEVICE, requires_grad=True)
    (g,) = torch.autograd.grad(ch6.triton_layer_norm(x, (16,)).pow(2).sum(), [x], create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_gpu_backward_with_many_rows(ch6):
    # far more rows than programs: the partial-sum reduction at scale
    _compare(ch6.triton_layer_norm, torch.float32, (20000, 768), (768,), device="cuda")


@pytest.mark.skipif(not CUDA or torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_gpu_tensor_on_the_second_device(ch6):
    # the launcher must run on the tensor's device, not the current one
    assert torch.cuda.current_device() == 0
    _compare(ch6.triton_layer_norm, torch.float32, (300, 1024), (1024,), device="cuda:1")


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("hidden", [1024, 2048, 4096, 5000, 8192, 16384, 16383])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_parity_over_the_launch_configurations(ch6, hidden, dtype):
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("no native bfloat16 on this GPU")
    _compare(ch6.triton_layer_norm, dtype, (2048, hidden), (hidden,), device="cuda", seed=hidden)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_gpu_gradients_are_deterministic_at_scale(ch6):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(8192, 1024, generator=gen).cuda().requires_grad_()
    w = torch.randn(1024, generator=gen).cuda().requires_grad_()
    b = torch.randn(1024, generator=gen).cuda().requires_grad_()
    dy = torch.randn(8192, 1024, generator=gen).cuda()
    first = torch.autograd.grad(ch6.triton_layer_norm(x, (1024,), w, b), (x, w, b), dy)
    second = torch.autograd.grad(ch6.triton_layer_norm(x, (1024,), w, b), (x, w, b), dy)
    assert all(torch.equal(p, q) for p, q in zip(first, second, strict=True))


# The benchmark's plumbing (benchmarks/). Without a GPU the GPU sweep's loop runs through
# Triton's interpreter with a stand-in timer, so that a GPU session finds it working.

def test_gpu_benchmark_loop_records_every_measurement(ch6):
    from benchmarks import page, run

    timed = []

    def fake_timer(step):
        step()  # every step must run
        timed.append(step)
        return {"whole": 2e-3, "kernels": 1e-3}

    # A stand-in L2 cache of 16 KiB: 8 rows of 64 float16 columns (2 KiB of x and y) are within
    # it, so the sweep adds rows there: 256 make x and y 4 x L2, rounded up to 1024.
    shapes = {"rows": (8,), "hidden_sizes": (64, 4096), "l2_multiple": 4}
    assert run.rows_for(64, torch.float16, shapes, 16384) == [8, 1024]
    assert run.rows_for(4096, torch.float16, shapes, 16384) == [8]  # 8 x 16 KiB: 4 x L2 already
    result = run.run_gpu(ch6, quick=True, device=DEVICE, shapes=shapes, dtypes=[torch.float16, torch.float32],
                         timer=fake_timer, copy_gbps=100.0, with_compile=False, l2_bytes=16384)
    records = result["records"]
    # per dtype and shape: 3 passes x 2 implementations, and the same-shape copy; (8 and 1024
    # rows at 64 columns, 8 rows at 4096) x 2 dtypes
    assert len(records) == len(timed) == 3 * 2 * (3 * 2 + 1)
    fused = [r for r in records if r["implementation"] == "Triton (fused)"]
    assert {(r["dtype"], r["rows"], r["hidden"], r["pass"]) for r in fused} == {
        (d, m, h, p) for d in ("float16", "float32") for m, h in ((8, 64), (1024, 64), (8, 4096))
        for p in run.GPU_PASSES}
    r = fused[0]
    assert r["kernel_gb_per_s"] == pytest.approx(r["bytes"] / 1e-3 / 1e9)
    assert r["kernel_fraction_of_copy"] == pytest.approx(r["kernel_gb_per_s"] / 100.0)
    copy = next(c for c in records if c["implementation"] == "copy (same shape)"
                and (c["rows"], c["hidden"], c["dtype"]) == (r["rows"], r["hidden"], r["dtype"]))
    assert r["kernel_fraction_of_same_shape_copy"] == pytest.approx(r["kernel_gb_per_s"] / copy["kernel_gb_per_s"])
    assert r["working_set_over_l2"] == pytest.approx(2 * r["rows"] * r["hidden"] * 2 / 16384)
    checks = run.gpu_targets(records)
    # 16-bit shapes with x and y >= 4 x L2 only (1024 x 64 and 8 x 4096): forward (hidden >= 4096),
    # backward (both), forward+backward vs F.layer_norm (both)
    assert len(checks) == 1 + 2 + 2 and all("float16" in c["shape"] for c in checks)
    assert not any(c["shape"].startswith("float16 8x64 ") for c in checks)  # within the L2 cache
    speed = [c for c in checks if "F.layer_norm" in c["target"]]
    assert [c["met"] for c in speed] == [True, False]  # equal times: 1.0x meets 1.0, not 1.3
    bounded = run.gpu_targets(records, lambda rows, hidden, dtype, pass_: 1.25)
    speed = [c for c in bounded if "F.layer_norm" in c["target"]]
    assert [c["byte_ceiling"] for c in speed] == [1.25, 1.25]
    assert all(c["value"] == "1.00x (80% of the 1.25x byte ceiling)" for c in speed)
    assert all("byte_ceiling" not in c for c in bounded if "F.layer_norm" not in c["target"])

    result["device"]["type"], result["device"]["name"] = "cuda", "Stand-in GPU"
    result.update(targets=checks, note=None, _file="benchmarks/results/x.json")
    text = page.render([result])
    assert "Stand-in GPU" in text and "No GPU results have been recorded yet" not in text
    assert f"**{sum(c['met'] for c in checks)} of {len(checks)} met**" in text


def test_byte_ceiling_of_the_judged_h100_shapes(ch6):
    # benchmarks/README.md: on the bfloat16 shapes an H100 (50 MiB of L2) is judged on, the byte
    # model caps the forward+backward speed-up over F.layer_norm at 1.36x to 1.39x, so the 1.3x
    # target asks for 93% to 96% of PyTorch's bandwidth.
    from benchmarks import run

    h100, l2 = ch6.GPU_TARGETS[90], 50 * 2**20
    judged = [(rows, n) for n in run.GPU_FULL["hidden_sizes"] if n >= run.TARGETS["large_hidden"]
              for rows in run.rows_for(n, torch.bfloat16, run.GPU_FULL, l2)
              if 2 * rows * n * 2 >= run.TARGETS["min_l2_multiple"] * l2]
    ceilings = [ch6.byte_ceiling(rows, n, torch.bfloat16, "forward+backward", h100) for rows, n in judged]
    assert len(judged) == 4 and 1.355 <= min(ceilings) and max(ceilings) < 1.395
    needed = [run.TARGETS["speedup_large"] / c for c in ceilings]
    assert 0.93 <= min(needed) and max(needed) < 0.965
    # the chapter's timed rows are the benchmark's extra rows for the same L2 size
    for n in run.GPU_FULL["hidden_sizes"]:
        extra = set(run.rows_for(n, torch.bfloat16, run.GPU_FULL, l2)) - set(run.GPU_FULL["rows"])
        assert extra <= {ch6.timed_rows(n, torch.bfloat16, l2)}
    assert ch6.byte_ceiling(4096, 1024, torch.bfloat16, "forward", h100) == 1.0
    native, fused, partials = ch6.backward_bytes(4096, 1024, torch.bfloat16, h100)
    assert native == 5 * 4096 * 1024 * 2 and fused == ch6.layer_norm_bytes(4096, 1024, torch.bfloat16, "backward")
    assert partials == 512 * 1024 * 16  # 512 blocks of rows (the chapter's launch table)


def test_results_page_is_generated_from_the_recorded_results():
    from benchmarks import page

    results = page.load_results()
    committed = page.PAGE.read_text(encoding="utf-8")
    assert committed == page.render(results), "run `python -m benchmarks.page` and commit the page"
    if not any(r["device"]["type"] == "cuda" for r in results):
        assert "No GPU results have been recorded yet" in committed
    for r in results:
        assert r["device"]["name"] in committed and r["date"] in committed


def test_gpu_check_runs_the_chapter_as_a_script():
    from benchmarks import gpu_check

    script = gpu_check.chapter_script(chapter_path(6))
    compile(script, "chapter_06.py", "exec")  # plain Python: no IPython magics
    assert "triton_layer_norm" in script
