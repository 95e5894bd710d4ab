"""Chapter 5: `layer_norm` and `LayerNorm` with a hand-written backward, tested against PyTorch.

The chapter's code is imported from the notebook's `library` cells with `load_chapter(5)`.
"""

import contextlib
import io

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from booktools.library import load_chapter

ch = load_chapter(5)

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# The CPU always; the GPU too when there is one (CI has none; the notebook loops the same way).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# (rtol, atol as a fraction of the reference's largest magnitude) between two correct results
TOLERANCE = {torch.float64: 1e-7, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}
HYPOTHESIS = settings(max_examples=120, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


def assert_close_dtype(actual, expected, dtype, what):
    tol = TOLERANCE[dtype]
    scale = expected.detach().abs().max().item() if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * max(1.0, scale),
                               equal_nan=True, msg=lambda m: f"{what} ({dtype}): {m}")


def assert_matches_torch(actual, expected, exact, dtype, what):
    """Ours agrees with PyTorch's, or else is at least as close as PyTorch's to the float64 answer.

    Where a result is itself a small difference of large terms (the input gradient of a row of
    two elements is nearly zero; a row of one element normalizes to exactly 0), two correct
    kernels can disagree beyond any fixed tolerance, mostly in 16 bits; then the exact answer
    for the same inputs decides.
    """
    try:
        assert_close_dtype(actual, expected, dtype, what)
    except AssertionError:
        ours = (actual.detach().double() - exact).abs().max().item()
        theirs = (expected.detach().double() - exact).abs().max().item()
        scale = max(1.0, exact.abs().max().item())
        if not ours <= max(theirs, TOLERANCE[dtype] * scale):
            raise


def as_torch_shape(normalized):
    """F.layer_norm wants a sequence; ours also takes an int."""
    return (normalized,) if isinstance(normalized, int) else normalized


def forward_backward(fn, x, normalized, w, b, eps, grad_out):
    named = [(n, t) for n, t in (("input", x), ("weight", w), ("bias", b)) if t is not None]
    out = fn(x, normalized, w, b, eps)
    grads = torch.autograd.grad(out, [t for _, t in named], grad_out)
    return out, dict(zip([n for n, _ in named], grads, strict=True))


@st.composite
def layer_norm_cases(draw):
    lead = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=3)))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)))
    dtype = draw(st.sampled_from(DTYPES))
    form = draw(st.sampled_from(["int", "tuple", "list", "Size"] if len(shape) == 1
                                else ["tuple", "list", "Size"]))
    normalized = {"int": shape[0], "tuple": shape, "list": list(shape),
                  "Size": torch.Size(shape)}[form]
    has_weight, has_bias = draw(st.booleans()), draw(st.booleans())
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.1, 1.0]))
    non_contiguous = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return lead, shape, dtype, normalized, has_weight, has_bias, eps, non_contiguous, seed


@pytest.mark.parametrize("device", DEVICES)
@HYPOTHESIS
@given(case=layer_norm_cases())
def test_forward_and_backward_match_torch(device, case):
    lead, shape, dtype, normalized, has_weight, has_bias, eps, non_contiguous, seed = case
    gen = torch.Generator().manual_seed(seed)
    base = (2 * torch.randn(*lead, *shape[:-1], 2 * shape[-1], generator=gen) + 1).to(device, dtype)
    x = base[..., ::2] if non_contiguous else base[..., : shape[-1]].contiguous()
    x.requires_grad_()
    w = torch.randn(shape, generator=gen).to(device, dtype).requires_grad_() if has_weight else None
    b = torch.randn(shape, generator=gen).to(device, dtype).requires_grad_() if has_bias else None
    grad_out = torch.randn(x.shape, generator=gen).to(device, dtype)

    ours, ours_grads = forward_backward(ch.layer_norm, x, normalized, w, b, eps, grad_out)
    theirs, theirs_grads = forward_backward(F.layer_norm, x, as_torch_shape(normalized), w, b,
                                            eps, grad_out)
    as64 = [None if t is None else t.detach().double().requires_grad_() for t in (x, w, b)]
    exact, exact_grads = forward_backward(F.layer_norm, *as64[:1], as_torch_shape(normalized),
                                          *as64[1:], eps, grad_out.double())
    assert ours.shape == x.shape and ours.dtype == dtype and ours.device == x.device
    assert_matches_torch(ours, theirs, exact, dtype, "output")
    for name in theirs_grads:
        assert ours_grads[name].shape == theirs_grads[name].shape
        assert ours_grads[name].dtype == theirs_grads[name].dtype
        assert_matches_torch(ours_grads[name], theirs_grads[name], exact_grads[name], dtype,
                             f"grad of {name}")


def test_16_bit_disagreement_with_torch_is_settled_by_float64():
    """A bfloat16 row of two elements: the input gradient is nearly zero (pure cancellation).

    PyTorch's CPU kernel (2.13) disagrees with float64 far beyond bfloat16's tolerance here;
    ours must match it.
    """
    x = torch.tensor([[-2.171875, -1.9453125]], dtype=torch.bfloat16, requires_grad=True)
    grad_out = torch.tensor([[0.75, -1.25]], dtype=torch.bfloat16)
    (ours,) = torch.autograd.grad(ch.layer_norm(x, 2), x, grad_out)
    x64 = x.detach().double().requires_grad_()
    (exact,) = torch.autograd.grad(F.layer_norm(x64, (2,)), x64, grad_out.double())
    torch.testing.assert_close(ours.double(), exact, rtol=2e-2, atol=1e-5)


def test_normalized_shape_forms_agree():
    x = torch.randn(2, 3, 8)
    reference = F.layer_norm(x, (8,))
    for form in (8, (8,), [8], torch.Size([8])):
        torch.testing.assert_close(ch.layer_norm(x, form), reference)
    x = torch.randn(2, 3, 4, 5)
    reference = F.layer_norm(x, (3, 4, 5))
    for form in ((3, 4, 5), [3, 4, 5], torch.Size([3, 4, 5])):
        torch.testing.assert_close(ch.layer_norm(x, form), reference)


def test_no_leading_dimensions():
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(ch.layer_norm(x, (4, 6)), F.layer_norm(x, (4, 6)))
    assert torch.autograd.gradcheck(lambda x: ch.layer_norm(x, (4, 6)), (x,))


def f64(*shape, requires_grad=True):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=requires_grad)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "shape, normalized, weight, bias",
    [
        ((4, 6), 6, True, True),
        ((2, 3, 4, 5), (4, 5), True, True),
        ((3, 2, 3, 2), [2, 3, 2], True, False),
        ((5, 7), 7, False, True),
        ((5, 7), 7, False, False),
        ((1, 1), 1, True, True),
    ],
)
def test_gradcheck_float64(shape, normalized, weight, bias, device):
    torch.manual_seed(0)
    size = as_torch_shape(normalized)
    x = f64(*shape).to(device).detach().requires_grad_()
    w = f64(*size).to(device).detach().requires_grad_() if weight else None
    b = f64(*size).to(device).detach().requires_grad_() if bias else None
    assert torch.autograd.gradcheck(lambda x, w, b: ch.layer_norm(x, normalized, w, b), (x, w, b))


@pytest.mark.parametrize("needs", [(False, True, True), (True, False, True), (True, True, False),
                                   (False, False, True), (False, True, False)])
def test_gradients_only_for_what_requires_grad(needs):
    torch.manual_seed(1)
    x, w, b = f64(3, 5, requires_grad=needs[0]), f64(5, requires_grad=needs[1]), f64(5, requires_grad=needs[2])
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
    assert torch.autograd.gradcheck(lambda x, w, b: ch.layer_norm(x, 5, w, b), (x, w, b))


def test_backward_skips_unneeded_gradients():
    """needs_input_grad is honoured: the Function returns None for what nobody asked for."""

    class Ctx:  # stands in for autograd's context object
        def save_for_backward(self, *tensors):
            self.saved_tensors = tensors

    x, w, b = torch.randn(4, 6), torch.randn(6), torch.randn(6)
    for needs in [(False, True, False), (True, False, False), (False, False, True)]:
        ctx = Ctx()
        ctx.needs_input_grad = (*needs, False)
        ch.LayerNormFunction.forward(ctx, x, w, b, 1e-5)
        grads = ch.LayerNormFunction.backward(ctx, torch.ones(4, 6))
        assert [g is not None for g in grads[:3]] == list(needs)
        assert grads[3] is None


def test_once_differentiable():
    x = f64(3, 5)
    (grad_x,) = torch.autograd.grad(ch.layer_norm(x, 5).pow(3).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad_x.sum().backward()


def test_saves_only_statistics_beyond_input():
    rows, hidden = 256, 128
    x = torch.randn(rows, hidden, requires_grad=True)
    w = torch.randn(hidden, requires_grad=True)
    b = torch.randn(hidden, requires_grad=True)
    total, new = ch.saved_tensor_bytes(lambda x, w, b: ch.layer_norm(x, hidden, w, b), x, w, b)
    assert new <= 2 * rows * 4 + 64  # mean and rstd in float32
    assert total >= x.numel() * 4  # the input itself is saved (and x_hat recomputed)


# ---------------------------------------------------------------- numerics


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
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape, normalized", [((8, 3, 64), (64,)), ((16, 4, 8), (4, 8)),
                                               ((2, 2048), (2048,))])
def test_16_bit_inputs_match_float64_reference(dtype, shape, normalized, device):
    gen = torch.Generator().manual_seed(2)
    x = (5 * torch.randn(*shape, generator=gen) + 3).to(device, dtype)
    w = torch.randn(normalized, generator=gen).to(device, dtype)
    b = torch.randn(normalized, generator=gen).to(device, dtype)
    expected = F.layer_norm(x.double(), normalized, w.double(), b.double())
    floor = (expected.to(dtype).double() - expected).abs().max().item()
    out = ch.layer_norm(x, normalized, w, b)
    assert out.dtype == dtype
    assert (out.double() - expected).abs().max().item() <= 2 * floor + 1e-6


def test_float16_with_large_values_stays_finite_and_accurate():
    """(x - mean)^2 overflows float16 for |x| > 256; statistics in float32 do not."""
    x = (1000 * torch.randn(16, 1024, generator=torch.Generator().manual_seed(0))).half()
    naive_var = ((x - x.mean(-1, keepdim=True)) ** 2).mean(-1)
    assert torch.isinf(naive_var).any()
    out = ch.layer_norm(x, 1024)
    assert out.isfinite().all()
    torch.testing.assert_close(out.double(), F.layer_norm(x.double(), (1024,)), rtol=0, atol=1e-2)


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


# ---------------------------------------------------------------- bad input

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
    (lambda: ch.layer_norm(torch.randn(2, 8), 8, eps=-1e-5), ValueError, r"eps must be.*-1e-05"),
    (lambda: ch.layer_norm(torch.randn(2, 8), 8, eps=float("nan")), ValueError, r"eps must be"),
    (lambda: ch.layer_norm(torch.randn(2, 8), 8, eps="0.1"), TypeError, r"eps must be a real"),
    (lambda: ch.layer_norm(torch.randn(2, 8), ()), ValueError, r"at least one dimension"),
    (lambda: ch.layer_norm(torch.randn(2, 8), (8.0,)), TypeError, r"must contain integers"),
    (lambda: ch.layer_norm(torch.randn(2, 8), "8"), TypeError, r"normalized_shape must be an int"),
    (lambda: ch.layer_norm(torch.randn(2, 8), (True,)), TypeError, r"must contain integers"),
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


def test_non_contiguous_inputs():
    torch.manual_seed(3)
    cases = [torch.randn(8, 6).t(), torch.randn(4, 12)[:, ::2], torch.randn(5, 3, 6).transpose(0, 1)]
    for x in cases:
        assert not x.is_contiguous()
        x = x.detach().requires_grad_()
        size = x.shape[-1]
        w = torch.randn(size, requires_grad=True)
        grad_out = torch.randn(x.shape)
        ours, ours_grads = forward_backward(ch.layer_norm, x, size, w, None, 1e-5, grad_out)
        theirs, theirs_grads = forward_backward(F.layer_norm, x, (size,), w, None, 1e-5, grad_out)
        torch.testing.assert_close(ours, theirs)
        for name in theirs_grads:
            torch.testing.assert_close(ours_grads[name], theirs_grads[name])


# ---------------------------------------------------------------- the module


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("normalized", [8, (4, 8), [2, 3, 4], torch.Size([5])])
def test_module_matches_nn_layer_norm(affine, use_bias, normalized):
    ours = ch.LayerNorm(normalized, eps=1e-4, elementwise_affine=affine, bias=use_bias)
    theirs = nn.LayerNorm(normalized, eps=1e-4, elementwise_affine=affine, bias=use_bias)
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
    torch.testing.assert_close(ours(x), theirs(x))
    for parameter in ours.parameters():
        nn.init.normal_(parameter)
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x), theirs(x))

    ours.reset_parameters()
    theirs.reset_parameters()
    torch.testing.assert_close(ours(x), theirs(x))


def test_module_factory_kwargs_and_training_step():
    module = ch.LayerNorm(6, dtype=torch.float64)
    assert module.weight.dtype == torch.float64 and module.bias.dtype == torch.float64
    reference = nn.LayerNorm(6, dtype=torch.float64)
    x = torch.randn(4, 3, 6, dtype=torch.float64)
    for m in (module, reference):
        m(x).pow(2).sum().backward()
    torch.testing.assert_close(module.weight.grad, reference.weight.grad)
    torch.testing.assert_close(module.bias.grad, reference.bias.grad)


def test_library_defines_the_public_names():
    for name in ("layer_norm", "LayerNorm", "LayerNormFunction", "welford_mean_var",
                 "check_my_layer_norm"):
        assert hasattr(ch, name), name


# ---------------------------------------------------------------- the exercise checker


def run_checker(fn):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        report = ch.check_my_layer_norm(fn, device="cpu")
    return report, out.getvalue()


def normalized_dims(normalized_shape):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    return tuple(range(-len(shape), 0))


def good_attempt(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = normalized_dims(normalized_shape)
    x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
    mean = x.mean(dims, keepdim=True)
    out = (x - mean) / torch.sqrt(((x - mean) ** 2).mean(dims, keepdim=True) + eps)
    out = out * weight if weight is not None else out
    out = out + bias if bias is not None else out
    return out.to(input.dtype)


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


def test_checker_passes_right_answers():
    for fn in (ch.layer_norm, good_attempt):
        report, printed = run_checker(fn)
        assert report == {"shape handling": True, "values": True, "gradients": True,
                          "numerics": True}, printed
        assert "FAIL" not in printed and "all checks passed" in printed


@pytest.mark.parametrize(
    "fn, failing, passing",
    [
        (one_pass_attempt, {"numerics"}, {"shape handling", "values", "gradients"}),
        (ignores_weight, {"values", "gradients"}, {"shape handling"}),
        (last_dim_only, {"values"}, {"shape handling"}),
        (wrong_gradient, {"gradients"}, {"shape handling", "values", "numerics"}),
        (always_raises, {"shape handling", "values", "gradients", "numerics"}, set()),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_checker_reports_wrong_answers_without_raising(fn, failing, passing):
    report, printed = run_checker(fn)
    assert {name for name, ok in report.items() if not ok} >= failing, printed
    assert all(report[name] for name in passing), printed
    for name in failing:
        assert f"FAIL  {name}" in printed
    assert "failed:" in printed


def test_checker_reports_wrong_shapes():
    def flattens(input, normalized_shape, weight=None, bias=None, eps=1e-5):
        return good_attempt(input, normalized_shape, weight, bias, eps).reshape(-1)

    report, printed = run_checker(flattens)
    assert not report["shape handling"] and "FAIL  shape handling" in printed


def test_eps_zero_is_allowed_like_torch():
    x = torch.randn(3, 8)
    torch.testing.assert_close(ch.layer_norm(x, 8, eps=0), F.layer_norm(x, (8,), eps=0.0))
    constant = torch.ones(1, 4)  # zero variance and eps = 0: 0 / 0, as in PyTorch
    torch.testing.assert_close(ch.layer_norm(constant, 4, eps=0), F.layer_norm(constant, (4,), eps=0.0),
                               equal_nan=True)
