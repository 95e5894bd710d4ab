"""Chapter 5: `layer_norm` and `LayerNorm` with a hand-written backward, tested against PyTorch.

The chapter's code is imported from the notebook's `library` cells with `load_chapter(5)`.
"""

import contextlib
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.autograd.function import once_differentiable

from booktools.library import load_chapter

ch = load_chapter(5)

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
SIXTEEN_BIT = (torch.float16, torch.bfloat16)
# The CPU always; the GPU too when there is one (CI has none; the notebook loops the same way).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# rtol, and atol relative to the reference's largest magnitude, between two correct results
TOLERANCE = {torch.float64: 1e-7, torch.float32: 1e-4}
HYPOTHESIS = settings(max_examples=150, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ judging a result
# Written independently of the chapter's assert_accurate: the same rules, stated again.


def mean_over_std(x, k):
    """Largest |mean| / std over the rows of ``x`` that vary (k normalized dimensions)."""
    x = x.detach().double()
    dims = tuple(range(-k, 0))
    std = x.std(dim=dims, unbiased=False) if x.numel() else x.new_zeros(0)
    varying = std > 0
    return (x.mean(dim=dims)[varying].abs() / std[varying]).max().item() if varying.any() else 1.0


def allowance(exact, dtype, kappa):
    """Rounding inside a correct computation in ``dtype``: centering amplifies it by mean/std."""
    scale = max(1.0, exact.abs().max().item()) if exact.numel() else 1.0
    return 64 * (torch.finfo(dtype).eps / 2) * (1 + kappa) * scale  # 64 unit roundoffs


def within_one_ulp(result, exact, dtype, kappa):
    """Every element within one ulp of ``dtype`` of the float64 answer, plus float32 rounding."""
    if exact.numel() == 0:
        return True
    spacing = torch.finfo(dtype).eps * torch.exp2(torch.frexp(exact)[1].double() - 1)
    spacing = spacing.clamp_min(torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps)
    error = (result.detach().double() - exact).abs()
    return bool((error <= spacing + allowance(exact, torch.float32, kappa)).all())


def assert_right(actual, expected, exact, dtype, kappa, what):
    """16 bits: within one ulp of float64. float32/64: agrees with PyTorch, or with float64."""
    exact = exact.detach()
    if dtype in SIXTEEN_BIT:
        assert within_one_ulp(actual, exact, dtype, kappa), (
            f"{what} ({dtype}): off by {(actual.double() - exact).abs().max().item():.3g} "
            f"from float64, more than one ulp")
        return
    tol = TOLERANCE[dtype]
    scale = max(1.0, exact.abs().max().item()) if exact.numel() else 1.0
    try:
        torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * scale, equal_nan=True)
    except AssertionError:
        error = (actual.detach().double() - exact).abs().max().item()
        assert error <= max(tol * scale, allowance(exact, dtype, kappa)), (what, dtype, error)


def as_torch_shape(normalized):
    """F.layer_norm wants a tuple or list; ours also takes an int and any sequence of ints."""
    if isinstance(normalized, int):
        return (normalized,)
    return tuple(int(s) for s in normalized)


def forward_backward(fn, x, normalized, w, b, eps, grad_out):
    named = [(n, t) for n, t in (("input", x), ("weight", w), ("bias", b)) if t is not None]
    out = fn(x, normalized, w, b, eps)
    grads = torch.autograd.grad(out, [t for _, t in named], grad_out)
    return out, dict(zip([n for n, _ in named], grads, strict=True))


# ------------------------------------------------------------------ parity with PyTorch


@st.composite
def layer_norm_cases(draw):
    lead = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=3)))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)))
    dtype = draw(st.sampled_from(DTYPES))
    forms = ["int", "tuple", "list", "Size", "range", "numpy"] if len(shape) == 1 else [
        "tuple", "list", "Size", "numpy"]
    form = draw(st.sampled_from(forms))
    normalized = {"int": shape[0], "tuple": shape, "list": list(shape), "Size": torch.Size(shape),
                  "range": range(shape[0], shape[0] + 1), "numpy": np.array(shape)}[form]
    has_weight, has_bias = draw(st.booleans()), draw(st.booleans())
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.1, 1.0]))
    layout = draw(st.sampled_from(["contiguous", "strided", "transposed"]))
    mean_over_spread = draw(st.sampled_from([0.0, 1.0, 30.0, 300.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    return lead, shape, dtype, normalized, has_weight, has_bias, eps, layout, mean_over_spread, seed


def make_input(lead, shape, dtype, layout, mean_over_spread, gen, device):
    full = (*lead, *shape)
    if layout == "strided":  # every other column of a wider tensor
        base = torch.randn(*full[:-1], 2 * full[-1], generator=gen)
        x = (base + mean_over_spread).to(device, dtype)[..., ::2]
    elif layout == "transposed" and len(full) >= 2:  # the last two dimensions swapped in memory
        base = torch.randn(*full[:-2], full[-1], full[-2], generator=gen)
        x = (base + mean_over_spread).to(device, dtype).transpose(-1, -2)
    else:
        x = (torch.randn(full, generator=gen) + mean_over_spread).to(device, dtype)
    return x.requires_grad_()


@pytest.mark.parametrize("device", DEVICES)
@HYPOTHESIS
@given(case=layer_norm_cases())
def test_forward_and_backward_match_torch(device, case):
    lead, shape, dtype, normalized, has_weight, has_bias, eps, layout, offset, seed = case
    gen = torch.Generator().manual_seed(seed)
    x = make_input(lead, shape, dtype, layout, offset, gen, device)
    w = torch.randn(shape, generator=gen).to(device, dtype).requires_grad_() if has_weight else None
    b = torch.randn(shape, generator=gen).to(device, dtype).requires_grad_() if has_bias else None
    grad_out = torch.randn(x.shape, generator=gen).to(device, dtype)

    size = as_torch_shape(normalized)
    ours, ours_grads = forward_backward(ch.layer_norm, x, normalized, w, b, eps, grad_out)
    theirs, theirs_grads = forward_backward(F.layer_norm, x, size, w, b, eps, grad_out)
    as64 = [None if t is None else t.detach().double().requires_grad_() for t in (x, w, b)]
    exact, exact_grads = forward_backward(F.layer_norm, as64[0], size, as64[1], as64[2], eps,
                                          grad_out.double())
    kappa = mean_over_std(x, len(shape))
    assert ours.shape == x.shape and ours.dtype == dtype and ours.device == x.device
    assert ours.is_contiguous()  # as F.layer_norm's output is, with the same strides:
    assert ours.stride() == theirs.stride() or ours.numel() == 0  # (an empty tensor's are arbitrary)
    assert_right(ours, theirs, exact, dtype, kappa, "output")
    for name in theirs_grads:
        assert ours_grads[name].shape == theirs_grads[name].shape
        assert ours_grads[name].dtype == theirs_grads[name].dtype
        assert_right(ours_grads[name], theirs_grads[name], exact_grads[name], dtype, kappa,
                     f"grad of {name}")


@pytest.mark.parametrize("dtype", SIXTEEN_BIT)
@pytest.mark.parametrize("hidden", [2, 3, 64, 1000])
@pytest.mark.parametrize("mean_over_spread", [1.0, 30.0, 300.0])
def test_16_bit_rows_with_a_large_mean_are_within_one_ulp(dtype, hidden, mean_over_spread):
    """Where PyTorch's CPU backward is weak (16-bit statistics), ours must still be right."""
    gen = torch.Generator().manual_seed(hidden)
    x = (torch.randn(64, hidden, generator=gen) + mean_over_spread).to(dtype).requires_grad_()
    w = (1 + 0.1 * torch.randn(hidden, generator=gen)).to(dtype).requires_grad_()
    b = torch.randn(hidden, generator=gen).to(dtype).requires_grad_()
    grad_out = torch.randn(64, hidden, generator=gen).to(dtype)
    out, grads = forward_backward(ch.layer_norm, x, hidden, w, b, 1e-5, grad_out)
    as64 = [t.detach().double().requires_grad_() for t in (x, w, b)]
    exact, exact_grads = forward_backward(F.layer_norm, as64[0], (hidden,), as64[1], as64[2], 1e-5,
                                          grad_out.double())
    kappa = mean_over_std(x, 1)
    assert within_one_ulp(out, exact, dtype, kappa)
    for name, grad in grads.items():
        assert within_one_ulp(grad, exact_grads[name], dtype, kappa), name


def test_the_16_bit_judge_rejects_a_result_off_by_a_few_ulps():
    exact = torch.linspace(-3, 3, 101, dtype=torch.float64)
    for dtype in SIXTEEN_BIT:
        rounded = exact.to(dtype)
        assert within_one_ulp(rounded, exact, dtype, 1.0)
        worse = rounded.double() + 3 * torch.finfo(dtype).eps * exact.abs().clamp_min(1)
        assert not within_one_ulp(worse, exact, dtype, 1.0)
        assert ch.sixteen_bit_excess(rounded, exact, dtype) <= 1 < ch.sixteen_bit_excess(worse, exact, dtype)


def test_normalized_shape_forms_agree():
    x = torch.randn(2, 3, 8)
    reference = F.layer_norm(x, (8,))
    for form in (8, (8,), [8], torch.Size([8]), range(8, 9), np.array([8]), np.int64(8)):
        torch.testing.assert_close(ch.layer_norm(x, form), reference)
    x = torch.randn(2, 3, 4, 5)
    reference = F.layer_norm(x, (3, 4, 5))
    for form in ((3, 4, 5), [3, 4, 5], torch.Size([3, 4, 5]), np.array([3, 4, 5])):
        torch.testing.assert_close(ch.layer_norm(x, form), reference)


def test_no_leading_dimensions():
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(ch.layer_norm(x, (4, 6)), F.layer_norm(x, (4, 6)))
    assert torch.autograd.gradcheck(lambda x: ch.layer_norm(x, (4, 6)), (x,))


def test_non_contiguous_inputs_give_contiguous_outputs_like_torch():
    torch.manual_seed(3)
    cases = [torch.randn(8, 6).t(), torch.randn(4, 12)[:, ::2], torch.randn(5, 3, 6).transpose(0, 1),
             torch.randn(6, 4, 5).permute(2, 0, 1)]
    for x in cases:
        assert not x.is_contiguous()
        x = x.detach().requires_grad_()
        size = x.shape[-1]
        w = torch.randn(size, requires_grad=True)
        grad_out = torch.randn(x.shape)
        ours, ours_grads = forward_backward(ch.layer_norm, x, size, w, None, 1e-5, grad_out)
        theirs, theirs_grads = forward_backward(F.layer_norm, x, (size,), w, None, 1e-5, grad_out)
        torch.testing.assert_close(ours, theirs)
        assert ours.is_contiguous() and ours.stride() == theirs.stride()
        for name in theirs_grads:
            torch.testing.assert_close(ours_grads[name], theirs_grads[name])


# ------------------------------------------------------------------ first and second derivatives


def f64(*shape, requires_grad=True, device="cpu", seed=None):
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return torch.randn(*shape, dtype=torch.float64, generator=gen).to(device).requires_grad_(requires_grad)


GRAD_CASES = [
    ((4, 6), 6, True, True),
    ((2, 3, 4, 5), (4, 5), True, True),
    ((3, 2, 3, 2), [2, 3, 2], True, False),
    ((5, 7), 7, False, True),
    ((5, 7), 7, False, False),
    ((1, 1), 1, True, True),
    ((2, 2), 2, True, True),  # a row of two: its input gradient is almost pure cancellation
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("shape", "normalized", "weight", "bias"), GRAD_CASES)
def test_gradcheck_float64_backward_and_forward_mode(shape, normalized, weight, bias, device):
    size = as_torch_shape(normalized)
    x = f64(*shape, device=device, seed=0)
    w = f64(*size, device=device, seed=1) if weight else None
    b = f64(*size, device=device, seed=2) if bias else None
    assert torch.autograd.gradcheck(lambda x, w, b: ch.layer_norm(x, normalized, w, b), (x, w, b),
                                    check_forward_ad=True, check_batched_grad=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("shape", "normalized", "weight", "bias"), GRAD_CASES[:5])
def test_gradgradcheck_float64(shape, normalized, weight, bias, device):
    size = as_torch_shape(normalized)
    x = f64(*shape, device=device, seed=3)
    w = f64(*size, device=device, seed=4) if weight else None
    b = f64(*size, device=device, seed=5) if bias else None
    assert torch.autograd.gradgradcheck(lambda x, w, b: ch.layer_norm(x, normalized, w, b), (x, w, b),
                                        check_fwd_over_rev=True, check_rev_over_rev=True)


@pytest.mark.parametrize("needs", [(False, True, True), (True, False, True), (True, True, False),
                                   (False, False, True), (False, True, False), (True, False, False)])
def test_gradients_only_for_what_requires_grad(needs):
    x, w, b = (f64(*s, requires_grad=r, seed=i) for i, (s, r) in enumerate(zip(((3, 5), (5,), (5,)), needs,
                                                                                strict=True)))
    out = ch.layer_norm(x, 5, w, b)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    ref_inputs = [t.detach().clone().requires_grad_(t.requires_grad) for t in (x, w, b)]
    F.layer_norm(ref_inputs[0], (5,), ref_inputs[1], ref_inputs[2]).backward(grad_out)
    for need, tensor, ref in zip(needs, (x, w, b), ref_inputs, strict=True):
        if need:
            torch.testing.assert_close(tensor.grad, ref.grad)
        else:
            assert tensor.grad is None
    assert torch.autograd.gradgradcheck(lambda x, w, b: ch.layer_norm(x, 5, w, b), (x, w, b))


class _Ctx:
    """Stands in for autograd's context object."""

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors

    def save_for_forward(self, *tensors):
        self.saved_for_forward = tensors

    def set_materialize_grads(self, value):
        self.materialize_grads = value


def test_backward_skips_unneeded_gradients():
    """needs_input_grad is honoured: the Function returns None for what nobody asked for."""
    x, w, b = torch.randn(4, 6), torch.randn(6), torch.randn(6)
    for needs in [(False, True, False), (True, False, False), (False, False, True)]:
        ctx = _Ctx()
        ctx.needs_input_grad = (*needs, False)
        output = ch.LayerNormFunction.forward(x, w, b, 1e-5)
        ch.LayerNormFunction.setup_context(ctx, (x, w, b, 1e-5), output)
        assert ctx.materialize_grads is False
        grads = ch.LayerNormFunction.backward(ctx, torch.ones(4, 6), None, None)
        assert [g is not None for g in grads[:3]] == list(needs)
        assert grads[3] is None


def test_saved_tensors_are_inputs_and_outputs_only():
    """What makes second derivatives right: autograd knows how every saved tensor depends on x."""
    x, w, b = torch.randn(4, 6), torch.randn(6), torch.randn(6)
    ctx = _Ctx()
    out, mean, rstd = ch.LayerNormFunction.forward(x, w, b, 1e-5)
    ch.LayerNormFunction.setup_context(ctx, (x, w, b, 1e-5), (out, mean, rstd))
    assert ctx.saved_tensors[0] is x and ctx.saved_tensors[1] is w
    assert ctx.saved_tensors[2] is mean and ctx.saved_tensors[3] is rstd


@pytest.mark.parametrize("device", DEVICES)
def test_hessian_matches_torch(device):
    x = f64(2, 5, requires_grad=False, device=device, seed=6)
    w, b = f64(5, requires_grad=False, device=device, seed=7), f64(5, requires_grad=False, device=device, seed=8)
    for loss in (lambda y: y.pow(3).sum(), lambda y: (y.sin() * torch.arange(5, device=device)).sum()):
        ours = torch.autograd.functional.hessian(lambda x, loss=loss: loss(ch.layer_norm(x, 5, w, b)), x)
        theirs = torch.autograd.functional.hessian(lambda x, loss=loss: loss(F.layer_norm(x, (5,), w, b)), x)
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
        assert theirs.abs().max() > 0.1
    # with respect to all three arguments at once
    inputs = (x, w, b)
    ours = torch.autograd.functional.hessian(lambda x, w, b: ch.layer_norm(x, 5, w, b).pow(3).sum(), inputs)
    theirs = torch.autograd.functional.hessian(lambda x, w, b: F.layer_norm(x, (5,), w, b).pow(3).sum(), inputs)
    for row_ours, row_theirs in zip(ours, theirs, strict=True):
        for a, e in zip(row_ours, row_theirs, strict=True):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


def test_second_derivative_is_never_silently_missing():
    x = f64(3, 5)
    (grad_x,) = torch.autograd.grad(ch.layer_norm(x, 5).pow(3).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(grad_x.sum(), x, allow_unused=True)
    assert second is not None and second.abs().max() > 0


def test_the_once_differentiable_recipe_fails_silently_where_ours_does_not():
    """Why the chapter left @once_differentiable: the Hessian comes back as zeros."""

    class Once(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            out, mean, rstd = ch.LayerNormFunction.forward(x, None, None, 1e-5)
            ctx.save_for_backward(x, mean, rstd)
            return out

        @staticmethod
        @once_differentiable
        def backward(ctx, grad_out):
            x, mean, rstd = ctx.saved_tensors
            return ch.layer_norm_input_grad(grad_out, (x - mean) * rstd, rstd)

    x = f64(2, 5, requires_grad=False, seed=9)
    zeros = torch.autograd.functional.hessian(lambda x: Once.apply(x).pow(3).sum(), x)
    ours = torch.autograd.functional.hessian(lambda x: ch.layer_norm(x, 5).pow(3).sum(), x)
    assert torch.count_nonzero(zeros) == 0 and ours.abs().max() > 0.1


# ------------------------------------------------------------------ forward mode and torch.func


def _both(fn_of_layer_norm):
    return (fn_of_layer_norm(ch.layer_norm),
            fn_of_layer_norm(lambda x, n, w=None, b=None: F.layer_norm(x, as_torch_shape(n), w, b)))


@pytest.mark.parametrize("device", DEVICES)
def test_forward_mode_matches_torch(device):
    import torch.autograd.forward_ad as fwAD
    from torch.func import jvp

    x, w, b = f64(3, 6, requires_grad=False, device=device, seed=10), f64(6, requires_grad=False, seed=11).to(device), \
        f64(6, requires_grad=False, seed=12).to(device)
    tx, tw, tb = (torch.randn_like(t) for t in (x, w, b))

    def jvp_all(ln):
        return jvp(lambda x, w, b: ln(x, 6, w, b), (x, w, b), (tx, tw, tb))[1]

    def jvp_x_only(ln):
        return jvp(lambda x: ln(x, 6), (x,), (tx,))[1]

    def dual(ln):
        with fwAD.dual_level():
            out = ln(fwAD.make_dual(x, tx), 6, fwAD.make_dual(w, tw), b)
            return fwAD.unpack_dual(out).tangent

    for compute in (jvp_all, jvp_x_only, dual):
        ours, theirs = _both(compute)
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_torch_func_transforms_match_torch():
    from torch.func import grad, hessian, jacfwd, jacrev, vmap

    x = f64(4, 6, requires_grad=False, seed=13)
    w, b = f64(6, requires_grad=False, seed=14), f64(6, requires_grad=False, seed=15)
    transforms = {
        "vmap(jacrev)": lambda ln: vmap(jacrev(lambda v: ln(v, 6, w, b)))(x),
        "vmap(jacfwd)": lambda ln: vmap(jacfwd(lambda v: ln(v, 6, w, b)))(x),
        "jacrev wrt weight": lambda ln: jacrev(lambda w_: ln(x, 6, w_, b))(w),
        "vmap(grad) per example": lambda ln: vmap(grad(lambda w_, row: ln(row, 6, w_, b).pow(2).sum()),
                                                  in_dims=(None, 0))(w, x),
        "hessian": lambda ln: hessian(lambda v: ln(v, 6, w, b).pow(3).sum())(x[0]),
        "vmap over a batch": lambda ln: vmap(lambda v: ln(v, 6, w, b))(x.reshape(2, 2, 6)),
        "vmap over weights": lambda ln: vmap(lambda w_: ln(x, 6, w_, b))(torch.stack([w, 2 * w])),
    }
    for name, transform in transforms.items():
        ours, theirs = _both(transform)
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}")


def test_vmap_in_16_bits_keeps_dtypes():
    from torch.func import vmap

    x = torch.randn(3, 2, 8).bfloat16()
    w = torch.randn(8)  # float32 weight with a bfloat16 input: PyTorch's mixed-precision path
    ours = vmap(lambda v: ch.layer_norm(v, 8, w))(x)
    assert ours.dtype == torch.bfloat16
    assert within_one_ulp(ours, F.layer_norm(x.double(), (8,), w.double()), torch.bfloat16, 1.0)


# ------------------------------------------------------------------ autocast


@pytest.mark.parametrize("x_dtype, p_dtype", [(torch.float32, torch.float32),
                                              (torch.bfloat16, torch.float32),
                                              (torch.bfloat16, torch.bfloat16)])
def test_cpu_autocast_policy_matches_torch(x_dtype, p_dtype):
    results = {}
    for name, ln in (("ours", ch.layer_norm), ("torch", lambda x, n, w, b: F.layer_norm(x, (n,), w, b))):
        gen = torch.Generator().manual_seed(0)
        leaves = [torch.randn(*s, generator=gen).to(d).requires_grad_()
                  for s, d in (((4, 8), x_dtype), ((8,), p_dtype), ((8,), p_dtype))]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = ln(leaves[0], 8, leaves[1], leaves[2])
            inner = F.linear(out, torch.randn(3, 8))  # autocast still applies after layer norm
        out.float().sum().backward()
        results[name] = (out, *(t.grad for t in leaves), inner)
    for a, e in zip(results["ours"], results["torch"], strict=True):
        assert a.dtype == e.dtype
    torch.testing.assert_close(results["ours"][0].float(), results["torch"][0].float(), rtol=2e-2, atol=5e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA autocast policy needs a GPU")
@pytest.mark.parametrize("low", [torch.float16, torch.bfloat16])
def test_cuda_autocast_runs_layer_norm_in_float32_like_torch(low):
    x = torch.randn(4, 8, device="cuda", dtype=low, requires_grad=True)
    w = torch.randn(8, device="cuda", dtype=low, requires_grad=True)
    with torch.autocast("cuda", dtype=low):
        ours, theirs = ch.layer_norm(x, 8, w), F.layer_norm(x, (8,), w)
    assert ours.dtype == theirs.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    (gx_ours, gw_ours) = torch.autograd.grad(ours.sum(), (x, w))
    (gx_theirs, gw_theirs) = torch.autograd.grad(theirs.sum(), (x, w))
    assert gx_ours.dtype == gx_theirs.dtype and gw_ours.dtype == gw_theirs.dtype


# ------------------------------------------------------------------ memory


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_saves_only_float32_statistics_beyond_input(dtype):
    rows, hidden = 256, 128
    x = torch.randn(rows, hidden, dtype=dtype, requires_grad=True)
    w = torch.randn(hidden, dtype=dtype, requires_grad=True)
    b = torch.randn(hidden, dtype=dtype, requires_grad=True)
    total, new = ch.saved_tensor_bytes(lambda x, w, b: ch.layer_norm(x, hidden, w, b), x, w, b)
    assert new == 2 * rows * 4  # mean and rstd in float32, whatever the input's dtype
    assert total >= x.numel() * x.element_size()  # the input itself is saved (x_hat recomputed)


@pytest.mark.parametrize("dtype", SIXTEEN_BIT)
@pytest.mark.parametrize("param_dtype", ["float32", "same"])
def test_16_bit_parameter_gradients_are_summed_in_float32_and_rounded_once(dtype, param_dtype):
    rows, hidden = 4096, 16
    gen = torch.Generator().manual_seed(5)
    p_dtype = torch.float32 if param_dtype == "float32" else dtype
    x = torch.randn(rows, hidden, generator=gen).to(dtype)
    dy = torch.randn(rows, hidden, generator=gen).to(dtype)
    w = (1 + 0.1 * torch.randn(hidden, generator=gen)).to(p_dtype).requires_grad_()
    b = torch.randn(hidden, generator=gen).to(p_dtype).requires_grad_()
    grads = torch.autograd.grad(ch.layer_norm(x, hidden, w, b), (w, b), dy)
    w64, b64 = (t.detach().double().requires_grad_() for t in (w, b))
    exact = torch.autograd.grad(F.layer_norm(x.double(), (hidden,), w64, b64), (w64, b64), dy.double())
    for got, want in zip(grads, exact, strict=True):
        assert got.dtype == p_dtype
        error = (got.double() - want).abs().max().item()
        floor = (want.to(p_dtype).double() - want).abs().max().item()  # rounded once to p_dtype
        assert error <= floor + 1e-6 * want.abs().max().item(), (error, floor)


# ------------------------------------------------------------------ numerics


def test_one_pass_variance_fails_where_two_pass_and_welford_do_not():
    gen = torch.Generator().manual_seed(0)
    x = 1e4 + torch.randn(128, 256, generator=gen)
    reference = x.double().var(dim=-1, unbiased=False)

    def rel_error(var):
        return ((var.double() - reference) / reference).abs()

    one_pass = ch.one_pass_var(x)
    assert rel_error(one_pass).median() > 0.5
    assert (one_pass < 0).any(), "the one-pass formula should produce negative variances here"
    assert rel_error(ch.two_pass_var(x)).max() < 1e-5
    for chunk in (1, 7, 64, 256):
        mean, var = ch.welford_mean_var(x, chunk=chunk)
        assert rel_error(var).max() < 1e-2, chunk
        torch.testing.assert_close(mean.double(), x.double().mean(-1), rtol=1e-6, atol=0)
    naive = (x - x.mean(-1, keepdim=True)) / torch.sqrt(one_pass[:, None] + 1e-5)
    assert not naive.isfinite().all()
    torch.testing.assert_close(ch.layer_norm(x, 256).double(), F.layer_norm(x.double(), (256,)),
                               rtol=0, atol=1e-2)


def test_an_outlier_does_not_make_mean_over_std_large():
    row = torch.randn(1024, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    row[0] = 1000.0
    assert row.mean().abs() / row.std(unbiased=False) < 0.1
    rel = ((ch.one_pass_var(row.float()).double() - ch.two_pass_var(row)) / ch.two_pass_var(row)).abs()
    assert rel < 1e-4


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 5), size=st.integers(1, 40), chunk=st.integers(1, 50),
       seed=st.integers(0, 2**31 - 1))
def test_welford_matches_var_mean(rows, size, chunk, seed):
    gen = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn(rows, size, generator=gen, dtype=torch.float64) + 5
    mean, var = ch.welford_mean_var(x, chunk=chunk)
    ref_var, ref_mean = torch.var_mean(x, dim=-1, unbiased=False)
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(var, ref_var)


def test_welford_merge_combines_halves_exactly():
    x = torch.randn(3, 30, dtype=torch.float64) + 2
    a, b = x[:, :11], x[:, 11:]

    def stats(t):
        return t.shape[-1], t.mean(-1), ((t - t.mean(-1, keepdim=True)) ** 2).sum(-1)

    n, mean, m2 = ch.welford_merge(*stats(a), *stats(b))
    assert n == 30
    torch.testing.assert_close(mean, x.mean(-1))
    torch.testing.assert_close(m2 / n, x.var(-1, unbiased=False))


def test_16_bit_accumulators_overflow_and_stall():
    ones = torch.ones(4096)
    assert ch.sequential_sum(ones, torch.float16)[-1].item() == 2048
    assert ch.sequential_sum(ones, torch.bfloat16)[-1].item() == 256
    assert ch.sequential_sum(ones, torch.float32)[-1].item() == 4096
    squares = (10 * torch.randn(1024, generator=torch.Generator().manual_seed(0))) ** 2
    assert torch.isinf(ch.sequential_sum(squares, torch.float16)[-1])
    assert torch.isfinite(ch.sequential_sum(squares, torch.float32)[-1])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", SIXTEEN_BIT)
@pytest.mark.parametrize("shape, normalized", [((8, 3, 64), (64,)), ((16, 4, 8), (4, 8)),
                                               ((2, 2048), (2048,))])
@pytest.mark.parametrize("mean_over_spread", [0.6, 30.0, 300.0])
def test_16_bit_outputs_are_within_twice_the_rounding_floor(dtype, shape, normalized, device,
                                                             mean_over_spread):
    gen = torch.Generator().manual_seed(2)
    x = (5 * (torch.randn(*shape, generator=gen) + mean_over_spread)).to(device, dtype)
    w = torch.randn(normalized, generator=gen).to(device, dtype)
    b = torch.randn(normalized, generator=gen).to(device, dtype)
    expected = F.layer_norm(x.double(), normalized, w.double(), b.double())
    floor = ch.rounding_floor(expected, dtype)
    out = ch.layer_norm(x, normalized, w, b)
    assert out.dtype == dtype
    assert (out.double() - expected).abs().max().item() <= 2 * floor + 1e-6


def test_float16_with_large_values_stays_finite_and_accurate():
    """(x - mean)^2 overflows float16 for |x - mean| > 256; statistics in float32 do not."""
    x = (1000 * torch.randn(16, 1024, generator=torch.Generator().manual_seed(0))).half()
    naive_var = ((x - x.mean(-1, keepdim=True)) ** 2).mean(-1)
    assert torch.isinf(naive_var).any()
    out = ch.layer_norm(x, 1024)
    assert out.isfinite().all()
    torch.testing.assert_close(out.double(), F.layer_norm(x.double(), (1024,)), rtol=0, atol=1e-2)


def test_nan_stays_in_its_example_unlike_batch_norm():
    x = torch.randn(8, 16)
    x[3, 5] = float("nan")
    out = ch.layer_norm(x, 16)
    assert out[3].isnan().all()
    assert not out[[i for i in range(8) if i != 3]].isnan().any()
    batch_norm = F.batch_norm(x, None, None, training=True)
    assert batch_norm.isnan().any(dim=1).all()  # every example is touched under batch norm

    x.requires_grad_(True)
    w = torch.ones(16, requires_grad=True)
    y = ch.layer_norm(x, 16, w)
    y.backward(torch.randn_like(y))
    assert not x.grad[[i for i in range(8) if i != 3]].isnan().any()
    assert w.grad.isnan().all()  # the cost: every entry of the gain gradient is NaN


def test_nan_poisons_one_entry_of_batch_norms_gain_gradient_but_all_of_layer_norms():
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    x[3, 5] = float("nan")
    others = [i for i in range(8) if i != 3]
    grad_out = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    for normalize, gain_nan, others_nan in [
        (lambda x, w: ch.layer_norm(x, 16, w), list(range(16)), []),
        (lambda x, w: F.batch_norm(x, None, None, w, training=True), [5], [5]),
    ]:
        leaf, w = x.clone().requires_grad_(), torch.ones(16, requires_grad=True)
        grad_x, grad_w = torch.autograd.grad(normalize(leaf, w), (leaf, w), grad_out)
        assert grad_w.isnan().nonzero().flatten().tolist() == gain_nan
        assert grad_x[others].isnan().any(0).nonzero().flatten().tolist() == others_nan


@pytest.mark.parametrize("form", [range(4, 5), np.array([4]), 4], ids=["range", "numpy", "int"])
def test_normalized_shape_forms_that_f_layer_norm_refuses_are_accepted(form):
    x = torch.randn(3, 4)
    with pytest.raises(TypeError):
        F.layer_norm(x, form)
    torch.testing.assert_close(ch.layer_norm(x, form), F.layer_norm(x, (4,)))


# ------------------------------------------------------------------ dtypes and bad input


@pytest.mark.parametrize("x_dtype", DTYPES)
@pytest.mark.parametrize("w_dtype", DTYPES)
@pytest.mark.parametrize("b_dtype", [None, *DTYPES])
def test_dtype_rule_matches_torch_on_cpu(x_dtype, w_dtype, b_dtype):
    """Ours refuses exactly the dtype combinations PyTorch's CPU kernel refuses."""
    outcome = {}
    for name, ln in (("ours", ch.layer_norm), ("torch", lambda x, n, w, b: F.layer_norm(x, (n,), w, b))):
        x = torch.randn(3, 8).to(x_dtype).requires_grad_()
        w = torch.randn(8).to(w_dtype).requires_grad_()
        b = None if b_dtype is None else torch.randn(8).to(b_dtype).requires_grad_()
        try:
            out = ln(x, 8, w, b)
            out.float().sum().backward()
            outcome[name] = (out.dtype, x.grad.dtype, w.grad.dtype)
        except (TypeError, RuntimeError) as error:
            outcome[name] = "refused"
            if name == "ours":
                assert isinstance(error, TypeError) and "dtype" in str(error)
    assert outcome["ours"] == outcome["torch"]


def test_mixed_dtypes_follow_torch():
    x = torch.randn(4, 8, dtype=torch.float16, requires_grad=True)
    w = torch.randn(8, requires_grad=True)
    b = torch.randn(8, requires_grad=True)
    ours = ch.layer_norm(x, 8, w, b)
    theirs = F.layer_norm(x, (8,), w, b)
    assert ours.dtype == theirs.dtype == torch.float16
    torch.testing.assert_close(ours, theirs, rtol=1e-2, atol=1e-2)
    ours.sum().backward()
    assert x.grad.dtype == torch.float16 and w.grad.dtype == torch.float32


BAD_INPUTS = [
    (lambda: ch.layer_norm(torch.randn(2, 3, 8), (4, 8)), ValueError,
     r"normalized_shape \(4, 8\) expects the input's trailing dimensions to be \(4, 8\), "
     r"but the input has shape \(2, 3, 8\)"),
    (lambda: ch.layer_norm(torch.randn(8), (2, 8)), ValueError, r"input has shape \(8,\)"),
    (lambda: ch.layer_norm(torch.ones(2, 8, dtype=torch.long), 8), TypeError,
     r"floating-point.*torch\.int64"),
    (lambda: ch.layer_norm(torch.ones(2, 8, dtype=torch.int32), 8), TypeError, r"torch\.int32"),
    (lambda: ch.layer_norm(torch.randn(2, 8), 8, weight=torch.ones(4)), ValueError,
     r"weight must have shape normalized_shape = \(8,\), but weight has shape \(4,\)"),
    (lambda: ch.layer_norm(torch.randn(2, 8), 8, bias=torch.ones(2, 8)), ValueError,
     r"bias must have shape.*\(2, 8\)"),
    (lambda: ch.layer_norm(torch.randn(2, 8), 8, weight=torch.ones(8, dtype=torch.long)),
     TypeError, r"weight must be a floating-point tensor"),
    (lambda: ch.layer_norm(torch.randn(2, 8), 8, weight=[1.0] * 8), TypeError,
     r"weight must be a torch\.Tensor or None"),
    (lambda: ch.layer_norm(torch.randn(2, 8), 8, weight=torch.ones(8, dtype=torch.float64)),
     TypeError, r"dtype torch\.float32.*weight torch\.float64"),
    (lambda: ch.layer_norm(torch.randn(2, 8).bfloat16(), 8, torch.ones(8), torch.ones(8).bfloat16()),
     TypeError, r"\(or both float32\)"),
    (lambda: ch.layer_norm(torch.randn(2, 8), 8, eps=-1e-5), ValueError, r"eps must be.*-1e-05"),
    (lambda: ch.layer_norm(torch.randn(2, 8), 8, eps=float("nan")), ValueError, r"eps must be"),
    (lambda: ch.layer_norm(torch.randn(2, 8), 8, eps="0.1"), TypeError, r"eps must be a real"),
    (lambda: ch.layer_norm(torch.randn(2, 8), ()), ValueError, r"at least one dimension"),
    (lambda: ch.layer_norm(torch.randn(2, 8), (8.0,)), TypeError, r"must contain integers"),
    (lambda: ch.layer_norm(torch.randn(2, 8), "8"), TypeError, r"normalized_shape must be an int"),
    (lambda: ch.layer_norm(torch.randn(2, 8), None), TypeError, r"normalized_shape must be an int"),
    (lambda: ch.layer_norm(torch.randn(2, 8), (True,)), TypeError, r"must contain integers"),
    (lambda: ch.layer_norm(torch.randn(2, 8), np.array([8.0])), TypeError, r"must contain integers"),
    (lambda: ch.layer_norm(torch.randn(2, 8), -8), ValueError, r"must not be negative"),
    (lambda: ch.layer_norm([[1.0, 2.0]], 2), TypeError, r"input must be a torch\.Tensor"),
    (lambda: ch.LayerNorm("8"), TypeError, r"LayerNorm: normalized_shape must be an int"),
    (lambda: ch.LayerNorm(8, eps=-1.0), ValueError, r"LayerNorm: eps must be"),
    (lambda: ch.LayerNorm((4, 8))(torch.randn(3, 8)), ValueError,
     r"expects the input's trailing dimensions to be \(4, 8\)"),
]


@pytest.mark.parametrize("call, error, message", BAD_INPUTS, ids=[m[:30] for *_, m in BAD_INPUTS])
def test_bad_input_raises_a_message_naming_the_problem(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("lead", [(0,), (0, 3), (2, 0)])
def test_empty_batch(lead):
    x = torch.randn(*lead, 4, 5, requires_grad=True)
    w = torch.randn(4, 5, requires_grad=True)
    b = torch.randn(4, 5, requires_grad=True)
    out = ch.layer_norm(x, (4, 5), w, b)
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, torch.zeros_like(b))


def test_zero_sized_normalized_shape_gives_empty_result():
    x = torch.randn(3, 0)
    assert ch.layer_norm(x, 0).shape == F.layer_norm(x, (0,)).shape == (3, 0)


def test_eps_zero_is_allowed_like_torch():
    x = torch.randn(3, 8)
    torch.testing.assert_close(ch.layer_norm(x, 8, eps=0), F.layer_norm(x, (8,), eps=0.0))
    constant = torch.ones(1, 4)  # zero variance and eps = 0: 0 / 0, as in PyTorch
    torch.testing.assert_close(ch.layer_norm(constant, 4, eps=0), F.layer_norm(constant, (4,), eps=0.0),
                               equal_nan=True)


# ------------------------------------------------------------------ the module


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("normalized", [8, (4, 8), [2, 3, 4], torch.Size([5]), range(3, 4)])
@pytest.mark.parametrize("eps", [1e-4, 0, 1])
def test_module_matches_nn_layer_norm(affine, use_bias, normalized, eps):
    ours = ch.LayerNorm(normalized, eps=eps, elementwise_affine=affine, bias=use_bias)
    theirs = nn.LayerNorm(normalized, eps=eps, elementwise_affine=affine, bias=use_bias)
    assert repr(ours) == repr(theirs)
    assert ours.normalized_shape == theirs.normalized_shape
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for name, tensor in theirs.state_dict().items():  # same initial values
        torch.testing.assert_close(ours.state_dict()[name], tensor)

    size = as_torch_shape(normalized)
    x = torch.randn(3, *size)
    for parameter in theirs.parameters():
        nn.init.normal_(parameter)
    ours.load_state_dict(theirs.state_dict())
    torch.testing.assert_close(ours(x), theirs(x), equal_nan=True)
    for parameter in ours.parameters():
        nn.init.normal_(parameter)
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x), theirs(x), equal_nan=True)

    ours.reset_parameters()
    theirs.reset_parameters()
    torch.testing.assert_close(ours(x), theirs(x), equal_nan=True)


def test_module_accepts_a_numpy_shape_and_stores_python_ints():
    ours, theirs = ch.LayerNorm(np.array([2, 3])), nn.LayerNorm(np.array([2, 3]))
    assert ours.normalized_shape == theirs.normalized_shape == (2, 3)
    assert all(type(size) is int for size in ours.normalized_shape)


def test_module_factory_kwargs_and_training_step():
    module = ch.LayerNorm(6, dtype=torch.float64)
    assert module.weight.dtype == torch.float64 and module.bias.dtype == torch.float64
    reference = nn.LayerNorm(6, dtype=torch.float64)
    x = torch.randn(4, 3, 6, dtype=torch.float64)
    for m in (module, reference):
        m(x).pow(2).sum().backward()
    torch.testing.assert_close(module.weight.grad, reference.weight.grad)
    torch.testing.assert_close(module.bias.grad, reference.bias.grad)


def test_module_exports_with_torch_export():
    """TorchScript cannot compile a Python autograd.Function; torch.export, its successor, can."""
    module = ch.LayerNorm((4, 8))
    nn.init.normal_(module.weight)
    x = torch.randn(2, 4, 8)
    exported = torch.export.export(module, (x,))
    torch.testing.assert_close(exported.module()(x), module(x))


def test_library_defines_the_public_names():
    for name in ("layer_norm", "LayerNorm", "LayerNormFunction", "layer_norm_input_grad",
                 "welford_mean_var", "check_my_layer_norm", "check_my_rms_norm_function"):
        assert hasattr(ch, name), name


# ------------------------------------------------------------------ the exercise checkers


def run_checker(checker, fn, **kwargs):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        report = checker(fn, **kwargs)
    return report, out.getvalue()


def normalized_dims(normalized_shape):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    return tuple(range(-len(shape), 0))


def good_attempt(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = normalized_dims(normalized_shape)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[input.dim() - len(shape):]) != shape:
        raise ValueError("normalized_shape does not match the input")
    x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
    mean = x.mean(dims, keepdim=True)
    out = (x - mean) / torch.sqrt(((x - mean) ** 2).mean(dims, keepdim=True) + eps)
    out = out * weight if weight is not None else out
    out = out + bias if bias is not None else out
    return out.to(input.dtype)


def calls_f_layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    return F.layer_norm(input, shape, weight, bias, eps)


def one_pass_attempt(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = normalized_dims(normalized_shape)
    mean = input.mean(dims, keepdim=True)
    var = (input * input).mean(dims, keepdim=True) - mean * mean
    out = (input - mean) / torch.sqrt(var + eps)
    out = out * weight if weight is not None else out
    return out + bias if bias is not None else out


def ignores_weight(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    return good_attempt(input, normalized_shape, None, bias, eps)


def last_dim_only(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalizes over the last dimension whatever normalized_shape says."""
    return good_attempt(input, input.shape[-1], None, None, eps)


def sixteen_bit_statistics(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Everything in the input's own dtype: (x - mean)^2 overflows float16."""
    dims = normalized_dims(normalized_shape)
    mean = input.mean(dims, keepdim=True)
    out = (input - mean) / torch.sqrt(((input - mean) ** 2).mean(dims, keepdim=True) + eps)
    out = out * weight if weight is not None else out
    return out + bias if bias is not None else out


def nan_everywhere(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalizes with statistics of the whole batch' values: a NaN reaches every example."""
    out = good_attempt(input, normalized_shape, weight, bias, eps)
    return out + 0 * input.float().sum()


class _WrongBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return 2 * grad


def wrong_gradient(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    return good_attempt(_WrongBackward.apply(input), normalized_shape, weight, bias, eps)


def always_raises(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    raise NotImplementedError("not written yet")


def centres_then_rms_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """PyTorch's own RMSNorm after centring: on a CPU it runs no normalization kernel."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    dims = normalized_dims(normalized_shape)
    x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
    out = F.rms_norm(x - x.mean(dims, keepdim=True), shape, eps=eps)
    out = out * weight if weight is not None else out
    out = out + bias if bias is not None else out
    return out.to(input.dtype)


MISMATCH = "mismatched normalized_shape raises"
LN_CASES = {"shape handling", MISMATCH, "values", "gradients", "float32 input with a large mean",
            "float16 input with large values", "a NaN stays in its example",
            "written from tensor operations"}


def test_layer_norm_checker_passes_right_answers():
    for fn in (ch.layer_norm, good_attempt):
        report, printed = run_checker(ch.check_my_layer_norm, fn, device="cpu")
        assert report and set(report) == LN_CASES, printed
        assert "FAIL" not in printed and f"all {len(LN_CASES)} cases passed" in printed


@pytest.mark.parametrize(
    "fn, failing",
    [
        (calls_f_layer_norm, {"written from tensor operations"}),
        (centres_then_rms_norm, {"written from tensor operations"}),
        (one_pass_attempt, {MISMATCH, "float32 input with a large mean",
                            "float16 input with large values"}),
        (ignores_weight, {"values", "gradients"}),
        (last_dim_only, {MISMATCH, "values", "gradients"}),
        (wrong_gradient, {"gradients"}),
        (sixteen_bit_statistics, {MISMATCH, "float16 input with large values"}),
        (nan_everywhere, {"a NaN stays in its example"}),
        (always_raises, LN_CASES),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_layer_norm_checker_reports_each_failure(fn, failing):
    report, printed = run_checker(ch.check_my_layer_norm, fn, device="cpu")
    assert set(report.failed) == failing, printed
    for name in failing:
        assert f"FAIL  {name}" in printed
    assert "cases passed; failed:" in printed


def test_layer_norm_checker_reports_wrong_shapes():
    def flattens(input, normalized_shape, weight=None, bias=None, eps=1e-5):
        return good_attempt(input, normalized_shape, weight, bias, eps).reshape(-1)

    report, printed = run_checker(ch.check_my_layer_norm, flattens, device="cpu")
    assert not report["shape handling"] and "FAIL  shape handling" in printed


class _RMSNorm(torch.autograd.Function):
    """A correct RMSNorm Function in the chapter's style (independent of the worked solution)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, eps):
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return x * rstd * (weight if weight is not None else 1), rstd

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1], output[1])
        ctx.save_for_forward(inputs[0], inputs[1], output[1])
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad_out, grad_rstd):
        x, weight, rstd = ctx.saved_tensors
        x_hat = x * rstd
        size = x.shape[-1]
        grad_x = torch.zeros_like(x)
        grad_weight = None
        if grad_out is not None:
            g = grad_out * weight if weight is not None else grad_out
            grad_x = grad_x + rstd * (g - x_hat * (g * x_hat).mean(-1, keepdim=True))
            if weight is not None:
                grad_weight = (grad_out * x_hat).reshape(-1, size).sum(0)
        if grad_rstd is not None:
            grad_x = grad_x - grad_rstd * rstd * rstd * x_hat / size
        return grad_x, grad_weight, None

    @staticmethod
    def jvp(ctx, x_t, weight_t, _):
        x, weight, rstd = ctx.saved_tensors
        x_hat = x * rstd
        out_t, rstd_t = torch.zeros_like(x), torch.zeros_like(rstd)
        if x_t is not None:
            proj = (x_hat * x_t).mean(-1, keepdim=True)
            rstd_t = -rstd * rstd * proj
            out_t = rstd * (x_t - x_hat * proj) * (weight if weight is not None else 1)
        if weight_t is not None:
            out_t = out_t + x_hat * weight_t
        return out_t, rstd_t


def rms_function(x, weight=None, eps=1e-6):
    return _RMSNorm.apply(x, weight, eps)[0]


class _RMSNormOnce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, rstd)
        return x * rstd * (weight if weight is not None else 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight, rstd = ctx.saved_tensors
        x_hat = x * rstd
        g = grad_out * weight if weight is not None else grad_out
        grad_x = rstd * (g - x_hat * (g * x_hat).mean(-1, keepdim=True))
        grad_w = (grad_out * x_hat).reshape(-1, x.shape[-1]).sum(0) if weight is not None else None
        return grad_x, grad_w, None


def rms_once(x, weight=None, eps=1e-6):
    return _RMSNormOnce.apply(x, weight, eps)


RMS_CASES = {"a custom autograd.Function", "values", "first derivatives (gradcheck)",
             "second derivatives (gradgradcheck)", "forward mode", "vmap(jacrev(...))", "memory"}


def test_rms_norm_function_checker():
    report, printed = run_checker(ch.check_my_rms_norm_function, rms_function)
    assert report and set(report) == RMS_CASES, printed
    composite, _ = run_checker(ch.check_my_rms_norm_function, ch.rms_norm_composite)
    assert set(composite.failed) == {"a custom autograd.Function", "memory"}  # autograd keeps more
    once, printed = run_checker(ch.check_my_rms_norm_function, rms_once)
    assert set(once.failed) == {"second derivatives (gradgradcheck)", "forward mode",
                                "vmap(jacrev(...))"}, printed

    class _ModernOnce(_RMSNorm):  # the modern Function, its backward marked @once_differentiable
        @staticmethod
        @once_differentiable
        def backward(ctx, grad_out, grad_rstd):
            return _RMSNorm.backward(ctx, grad_out, grad_rstd)

    modern_once, printed = run_checker(ch.check_my_rms_norm_function,
                                       lambda x, w=None, eps=1e-6: _ModernOnce.apply(x, w, eps)[0])
    assert modern_once.failed == ["second derivatives (gradgradcheck)"], printed
    broken, _ = run_checker(ch.check_my_rms_norm_function, lambda x, w=None, eps=1e-6: 2 * rms_function(x, w))
    assert not broken["values"]
    crashes, _ = run_checker(ch.check_my_rms_norm_function, always_raises)
    assert set(crashes.failed) == RMS_CASES


def test_rms_norm_checker_flags_a_backward_that_saves_full_size_tensors():
    class SavesOutput(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, eps):
            out = rms_function(x.detach(), None if weight is None else weight.detach(), eps)
            ctx.save_for_backward(x, weight, out.clone())
            return out

        @staticmethod
        def backward(ctx, grad_out):
            x, weight, _ = ctx.saved_tensors
            with torch.enable_grad():
                xx = x.detach().requires_grad_()
                ww = None if weight is None else weight.detach().requires_grad_()
                y = rms_norm_composite_ref(xx, ww)
                leaves = [xx] + ([ww] if ww is not None else [])
                grads = torch.autograd.grad(y, leaves, grad_out)
            return grads[0], (grads[1] if ww is not None else None), None

    def rms_norm_composite_ref(x, weight=None, eps=1e-6):
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return y * weight if weight is not None else y

    report, _ = run_checker(ch.check_my_rms_norm_function,
                            lambda x, w=None, eps=1e-6: SavesOutput.apply(x, w, eps))
    assert not report["memory"]


def test_math_of_the_chapter_is_imported():  # guards the library cells' own imports
    assert ch.math is math
