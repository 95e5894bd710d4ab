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
    assert limit == 65536 // torch.empty((), dtype=dtype).element_size()
    with pytest.raises(ValueError, match=rf"{limit + 1} elements.*{limit}"):
        ch6.triton_layer_norm(torch.zeros(1, limit + 1, dtype=dtype, device=DEVICE), (limit + 1,))


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


def test_byte_model():
    ch6 = load_chapter(6)
    m, n = 4096, 1024
    assert ch6.layer_norm_bytes(m, n, torch.bfloat16, "forward") == 2 * m * n * 2 + 8 * m + 2 * n * 2
    assert ch6.layer_norm_bytes(m, n, torch.float32, "backward") == 3 * m * n * 4 + 8 * m + 3 * n * 4
    both = ch6.layer_norm_bytes(m, n, torch.float32, "forward+backward")
    assert both == ch6.layer_norm_bytes(m, n, torch.float32, "forward") + ch6.layer_norm_bytes(
        m, n, torch.float32, "backward")
    # memory-bound: a few flops per byte
    assert ch6.layer_norm_flops(m, n, "forward") / ch6.layer_norm_bytes(m, n, torch.float32) < 3


def test_benchmark_helpers_on_a_tiny_case(ch6):
    records = ch6.benchmark_layer_norms(
        {"naive": ch6.naive_layer_norm, "F.layer_norm": F.layer_norm}, rows=8, hidden_sizes=(16,),
        dtypes=(torch.float32,), passes=("forward", "backward", "forward+backward"),
        copy_gbps=1.0, warmup=1, reps=2)
    # three passes x two implementations, plus the same-shape copy timed with the forward pass
    assert len(records) == 7
    assert all(r["median_s"] > 0 and r["fraction_of_copy"] == r["gb_per_s"] for r in records)
    (copy,) = [r for r in records if r["implementation"] == ch6.COPY]
    assert copy["pass"] == "forward" and copy["bytes"] == 2 * 8 * 16 * 4
    assert "speed-up" in ch6.format_table(records, baseline="naive")


def _exercise_namespace():
    """The chapter's checker cells (not `library`), run on top of the library."""
    import json
    import linecache

    ns = dict(vars(load_chapter(6)))
    cells = json.loads(chapter_path(6).read_text(encoding="utf-8"))["cells"]
    for i, cell in enumerate(cells):
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        body = src.split("\n", 1)[1] if src.startswith("# @title") else src
        if cell["cell_type"] == "code" and body.startswith(("def check_forward_bytes", "def check_dw_db", "def my_")):
            name = f"<chapter 6 exercise cell {i}>"
            linecache.cache[name] = (len(src), None, src.splitlines(True), name)
            exec(compile(src, name, "exec"), ns)
    return ns


def test_exercise_checkers_pass_the_solutions_and_fail_wrong_answers(capsys):
    ns = _exercise_namespace()
    assert ns["check_forward_bytes"](ns["my_forward_bytes"]) is True
    assert ns["check_dw_db"](ns["my_dw_db"]) is True

    # forgetting the saved statistics is a wrong answer, reported, not raised
    assert ns["check_forward_bytes"](lambda r, n, s: 2 * r * n * s + 2 * n * s) is False
    assert ns["check_forward_bytes"](lambda r, n, s: 1 / 0) is False

    def drops_the_last_rows(xhat, dy, programs):  # floor instead of ceil
        per = xhat.shape[0] // programs
        dw = sum((dy[p * per:(p + 1) * per].float() * xhat[p * per:(p + 1) * per].float()).sum(0)
                 for p in range(programs))
        db = sum(dy[p * per:(p + 1) * per].float().sum(0) for p in range(programs))
        return dw, db

    assert ns["check_dw_db"](drops_the_last_rows) is False
    assert ns["check_dw_db"](lambda xhat, dy, p: ((dy * xhat).sum(0), dy.sum(0))) is False  # fp16 dtype
    out = capsys.readouterr().out
    assert "FAIL" in out and "PASS" in out


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (shapes this large are too slow for the interpreter)")
@pytest.mark.parametrize("hidden", [1024, 4096, 5000, 16384])
def test_gpu_bfloat16_parity(ch6, hidden):
    _compare(ch6.triton_layer_norm, torch.bfloat16, (4096, hidden), (hidden,), device="cuda")


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_gpu_backward_with_many_rows(ch6):
    # far more rows than programs (one per SM): the partial-sum reduction at scale
    _compare(ch6.triton_layer_norm, torch.float32, (20000, 768), (768,), device="cuda")
