"""Tests for chapter 4 (layer norm derived): the `library` code of 04_layer_norm.ipynb."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from booktools.library import load_chapter

ch = load_chapter(4)

# Ba, Kiros & Hinton (2016), Table 1, typed in independently of the notebook.
PAPER = {
    "batch norm": (True, False, True, True, True, False),
    "weight norm": (True, False, True, False, False, False),
    "layer norm": (True, True, False, True, False, True),
}
COLUMNS = (
    "weight matrix re-scaling",
    "weight matrix re-centering",
    "weight vector re-scaling",
    "dataset re-scaling",
    "dataset re-centering",
    "single training case re-scaling",
)

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def layer_norm_cases(draw):
    leading = draw(st.lists(st.integers(1, 4), min_size=0, max_size=2))
    normalized = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    seed = draw(st.integers(0, 2**31 - 1))
    has_weight = draw(st.booleans())
    has_bias = draw(st.booleans())
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    as_int = len(normalized) == 1 and draw(st.booleans())
    ns = normalized[0] if as_int else tuple(normalized)
    return tuple(leading + normalized), ns, tuple(normalized), seed, has_weight, has_bias, eps


def _tensors(shape, normalized, seed, has_weight, has_bias, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 1).to(dtype)
    w = torch.randn(normalized, generator=g, dtype=torch.float64).to(dtype) if has_weight else None
    b = torch.randn(normalized, generator=g, dtype=torch.float64).to(dtype) if has_bias else None
    return x, w, b


@SETTINGS
@given(case=layer_norm_cases(), dtype=st.sampled_from([torch.float64, torch.float32]))
def test_reference_matches_torch(case, dtype):
    shape, ns, normalized, seed, has_weight, has_bias, eps = case
    x, w, b = _tensors(shape, normalized, seed, has_weight, has_bias, dtype)
    ours = ch.layer_norm_reference(x, ns, w, b, eps)
    expected = F.layer_norm(x, normalized, w, b, eps)
    assert ours.dtype == dtype and ours.shape == x.shape
    if dtype == torch.float64:
        torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)
    else:
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=2e-5)


def test_reference_rejects_mismatched_shape():
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="normalized_shape"):
        ch.layer_norm_reference(x, (3,))
    with pytest.raises(ValueError, match="normalized_shape"):
        ch.layer_norm_reference(x, (1, 2, 3, 4))


@SETTINGS
@given(case=layer_norm_cases())
def test_backward_matches_autograd_float64(case):
    shape, ns, normalized, seed, has_weight, has_bias, eps = case
    x, w, b = _tensors(shape, normalized, seed, has_weight, has_bias)
    dy = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)

    leaves = [x.clone().requires_grad_()]
    leaves += [p.clone().requires_grad_() for p in (w, b) if p is not None]
    params = iter(leaves[1:])
    w_leaf = next(params) if w is not None else None
    b_leaf = next(params) if b is not None else None
    y = F.layer_norm(leaves[0], normalized, w_leaf, b_leaf, eps)
    expected = torch.autograd.grad(y, leaves, dy)

    dx, dw, db = ch.layer_norm_backward(dy, x, w, eps, ns)
    tol = {"rtol": 1e-9, "atol": 1e-11}
    torch.testing.assert_close(dx, expected[0], **tol)
    k = 1
    if w is not None:
        torch.testing.assert_close(dw, expected[k], **tol)
        k += 1
    else:
        assert dw is None
    if b is not None:
        torch.testing.assert_close(db, expected[k], **tol)
    assert db.shape == tuple(normalized)


def test_backward_without_leading_dims_and_default_shape():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64)
    dy = torch.randn(3, 4, generator=g, dtype=torch.float64)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    br = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    expected = torch.autograd.grad(F.layer_norm(xr, (3, 4), wr, br, 1e-5), (xr, wr, br), dy)
    # normalized_shape omitted: taken from weight.shape
    got = ch.layer_norm_backward(dy, x, w, 1e-5)
    for a, e in zip(got, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


def test_backward_gradient_is_orthogonal_to_ones_and_x_hat():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 16, generator=g, dtype=torch.float64) * 4 - 2
    dy = torch.randn(5, 16, generator=g, dtype=torch.float64)
    dx, _, _ = ch.layer_norm_backward(dy, x, None, 0.0, 16)
    x_hat = ch.layer_norm_reference(x, 16, eps=0.0)
    torch.testing.assert_close(dx.sum(-1), torch.zeros(5, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close((dx * x_hat).sum(-1), torch.zeros(5, dtype=torch.float64),
                               atol=1e-12, rtol=0)


def test_paper_table_constant_is_the_papers():
    expected = {m: dict(zip(COLUMNS, row, strict=True)) for m, row in PAPER.items()}
    assert tuple(ch.TABLE_1_COLUMNS) == COLUMNS
    assert ch.PAPER_TABLE_1 == expected


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_invariance_table_equals_paper(seed):
    table = ch.invariance_table(seed=seed)
    for method in ("batch norm", "layer norm", "weight norm"):
        assert table[method] == dict(zip(COLUMNS, PAPER[method], strict=True)), method


def test_invariance_margins_are_wide():
    changes = ch.invariance_changes()
    for method, row in PAPER.items():
        for column, invariant in zip(COLUMNS, row, strict=True):
            value = changes[method][column]
            assert (value < 1e-12) if invariant else (value > 1e-2), (method, column, value)


def test_eps_error_of_the_scale_invariances_is_first_order_predicted():
    x, W, delta, _ = ch.table_1_setting()
    a = x @ W.T
    var = a.var(dim=1, unbiased=False, keepdim=True)
    x_hat = (a - a.mean(dim=1, keepdim=True)) / var.sqrt()
    predicted = (x_hat.abs() * 1e-5 / (2 * var) * abs(1 - delta**-2)).max().item()
    measured = ch.invariance_changes(eps=1e-5)["layer norm"]["weight matrix re-scaling"]
    assert 0.9 < measured / predicted < 1.1


def test_table_1_setting_is_what_invariance_changes_uses():
    x, W, delta, shift = ch.table_1_setting(seed=5)
    expected = (ch.layer_norm_summed_inputs(delta * W, x) - ch.layer_norm_summed_inputs(W, x)).abs().max()
    assert ch.invariance_changes(seed=5, eps=0.0)["layer norm"]["weight matrix re-scaling"] == expected.item()
    assert ch.table_1_setting(delta=-2.0)[2] == -2.0


def test_eps_makes_scale_invariance_approximate():
    ln = ch.invariance_table(eps=1e-5, delta=1e-3)["layer norm"]
    assert ln["weight matrix re-centering"]
    assert not ln["single training case re-scaling"]
    assert not ch.invariance_table(delta=-2.0)["layer norm"]["single training case re-scaling"]


@SETTINGS
@given(H=st.integers(2, 64), lead=st.integers(1, 8), seed=st.integers(0, 2**31 - 1),
       scale=st.sampled_from([1e-2, 1.0, 1e3]))
def test_output_geometry(H, lead, seed, scale):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(lead, H, generator=g, dtype=torch.float64) + 5) * scale
    y = ch.layer_norm_reference(x, H, eps=0.0)
    torch.testing.assert_close(y.mean(-1), torch.zeros(lead, dtype=torch.float64),
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(y.norm(dim=-1), torch.full((lead,), math.sqrt(H), dtype=torch.float64))
    eps = 1e-5
    var = x.var(-1, unbiased=False)
    torch.testing.assert_close(ch.layer_norm_reference(x, H, eps=eps).norm(dim=-1),
                               math.sqrt(H) * torch.sqrt(var / (var + eps)))


def test_statistics_partners_match_reduction_axes():
    shape = (4, 6, 3)
    expected_counts = {"Batch Norm": 12, "Layer Norm": 18, "Instance Norm": 3, "Group Norm": 9}
    for index in [(0, 0, 0), (3, 5, 2), (1, 2, 1)]:
        for name, fn in ch.PYTORCH_NORMALIZATIONS.items():
            mask = ch.statistics_partners(fn, shape, index)
            assert torch.equal(mask, ch.statistics_partners_from_axes(name, shape, index)), name
            assert int(mask.sum()) == expected_counts[name]


# --- normalized_shape: one parser, the same as chapter 5's -----------------------------

NORMALIZED_SHAPE_FORMS = [
    (8, (8,)), ((8,), (8,)), ([2, 4], (2, 4)), (torch.Size([3, 4]), (3, 4)),
    (range(4, 5), (4,)), (np.array([2, 3]), (2, 3)), ([np.int64(5)], (5,)), (np.int64(6), (6,)),
]
BAD_NORMALIZED_SHAPES = [("8", TypeError), ((8.0,), TypeError), ((True,), TypeError),
                         (True, TypeError), (None, TypeError), ((), ValueError), (-1, ValueError),
                         ((4, -2), ValueError), (np.array(3.5), TypeError)]


@pytest.mark.parametrize(("given", "expected"), NORMALIZED_SHAPE_FORMS, ids=repr)
def test_normalized_shape_accepts_what_nn_layer_norm_accepts(given, expected):
    shape = ch._normalized_shape(given)
    assert shape == expected and all(type(size) is int for size in shape)
    assert tuple(torch.nn.LayerNorm(given).normalized_shape) == expected
    x = torch.randn(2, *expected, dtype=torch.float64)
    torch.testing.assert_close(ch.layer_norm_reference(x, given), F.layer_norm(x, expected))


@pytest.mark.parametrize(("given", "error"), BAD_NORMALIZED_SHAPES, ids=repr)
def test_normalized_shape_rejects_bad_forms_like_chapter_5(given, error):
    with pytest.raises(error, match="normalized_shape"):
        ch._normalized_shape(given)
    with pytest.raises(error, match="normalized_shape"):  # chapter 5 parses it the same way
        load_chapter(5)._normalized_shape(given)


def test_chapter_4_and_5_parse_normalized_shape_with_the_same_code():
    import inspect

    assert inspect.getsource(ch._normalized_shape) == inspect.getsource(load_chapter(5)._normalized_shape)


# --- the paper's Section 5.2: the geometry of parameter space ---------------------------


def _weight_gradient(W, x, labels, readout, eps=0.0):
    W = W.detach().clone().requires_grad_()
    h = torch.tanh(ch.layer_norm_reference(x @ W.T, W.shape[0], eps=eps))
    (grad,) = torch.autograd.grad(F.cross_entropy(h @ readout, labels), W)
    return grad


@pytest.mark.parametrize("delta", [1e-3, 0.5, 7.0, 1e4])
def test_scaling_w_by_delta_scales_its_gradient_by_one_over_delta(delta):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(20, 6, generator=g, dtype=torch.float64)
    W = torch.randn(5, 6, generator=g, dtype=torch.float64)
    readout = torch.randn(5, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (20,), generator=g)
    grad = _weight_gradient(W, x, labels, readout)
    torch.testing.assert_close(delta * _weight_gradient(delta * W, x, labels, readout), grad,
                               rtol=1e-10, atol=1e-14)
    assert abs((grad * W).sum().item()) < 1e-12 * grad.norm().item() * W.norm().item()
    torch.testing.assert_close(grad.sum(dim=0), torch.zeros(6, dtype=torch.float64), rtol=0, atol=1e-13)


def test_training_from_a_longer_w_is_training_with_a_smaller_learning_rate():
    x, labels = ch.teacher_task(3, examples=64)
    start = ch.init_ln_classifier(3)
    delta, lr = 3.0, 0.7  # not a power of two: the equivalence holds to rounding, not bit for bit
    longer = ch.train_ln_classifier([delta * start[0], *start[1:]], x, labels, lr, 40)
    slower = ch.train_ln_classifier(start, x, labels, lr, 40, weight_lr=lr / delta**2)
    torch.testing.assert_close(torch.tensor(longer["loss"]), torch.tensor(slower["loss"]),
                               rtol=1e-9, atol=0)
    norms = torch.tensor(longer["weight_norm"], dtype=torch.float64)
    grads = torch.tensor(longer["weight_grad_norm"], dtype=torch.float64)
    torch.testing.assert_close(norms[1:] ** 2 - norms[:-1] ** 2, lr**2 * grads[:-1] ** 2,
                               rtol=1e-6, atol=1e-12)


def test_fixed_weight_norm_keeps_the_norm_and_the_function():
    x, labels = ch.teacher_task(4, examples=64)
    start = ch.init_ln_classifier(4)
    free = ch.train_ln_classifier(start, x, labels, 3.0, 20, weight_lr=30.0)
    fixed = ch.train_ln_classifier(start, x, labels, 3.0, 20, weight_lr=30.0, fixed_weight_norm=True)
    norms = torch.tensor(fixed["weight_norm"], dtype=torch.float64)
    torch.testing.assert_close(norms, norms[:1].expand_as(norms))
    assert free["weight_norm"][-1] > 1.5 * free["weight_norm"][0]
    # rescaling W changes nothing the network computes: the first step is the same in both runs
    assert free["loss"][:2] == fixed["loss"][:2]
    assert free["loss"][-1] != fixed["loss"][-1]


def test_scaling_w_divides_the_hessian_by_delta_squared():
    g = torch.Generator().manual_seed(12)
    x = torch.randn(16, 5, generator=g, dtype=torch.float64)
    W = torch.randn(4, 5, generator=g, dtype=torch.float64)
    readout = torch.randn(4, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (16,), generator=g)

    def loss(w):
        h = torch.tanh(ch.layer_norm_reference(x @ w.view_as(W).T, 4, eps=0.0))
        return F.cross_entropy(h @ readout, labels)

    hessian = torch.autograd.functional.hessian(loss, W.flatten())
    delta = 3.0
    scaled = torch.autograd.functional.hessian(loss, delta * W.flatten())
    torch.testing.assert_close(delta**2 * scaled, hessian, rtol=1e-8, atol=1e-12)


# --- exercise checkers -----------------------------------------------------------------


def _affine(y, weight, bias):
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _dims(normalized_shape):
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    return tuple(range(-k, 0))


def from_the_definition(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = ch.normalized_dims(x, normalized_shape)
    mean = x.mean(dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dims, keepdim=True)
    return _affine((x - mean) / torch.sqrt(var + eps), weight, bias)


def calls_f_layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    return F.layer_norm(x, shape, weight, bias, eps)


def calls_the_module(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    module = torch.nn.LayerNorm(shape, eps=eps, elementwise_affine=False, dtype=x.dtype)
    return _affine(module(x), weight, bias)


def last_dim_only(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return _affine((x - mean) / torch.sqrt(var + eps), weight, bias)


def unbiased_variance(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = _dims(normalized_shape)
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, unbiased=True, keepdim=True)
    return _affine((x - mean) / torch.sqrt(var + eps), weight, bias)


def detached_statistics(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = _dims(normalized_shape)
    ref = x.detach()
    mean = ref.mean(dims, keepdim=True)
    var = ref.var(dims, unbiased=False, keepdim=True)
    return _affine((x - mean) / torch.sqrt(var + eps), weight, bias)


def one_pass_variance(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = _dims(normalized_shape)
    mean = x.mean(dims, keepdim=True)
    var = (x * x).mean(dims, keepdim=True) - mean * mean
    return _affine((x - mean) / torch.sqrt(var.clamp_min(0) + eps), weight, bias)


def eps_outside(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = _dims(normalized_shape)
    mean = x.mean(dims, keepdim=True)
    std = x.var(dims, unbiased=False, keepdim=True).sqrt()
    return _affine((x - mean) / (std + eps), weight, bias)


def centres_then_rms_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Runs PyTorch's own RMSNorm, which on a CPU has no kernel of its own."""
    dims = ch.normalized_dims(x, normalized_shape)
    shape = tuple(x.shape[d] for d in dims)
    return _affine(F.rms_norm(x - x.mean(dims, keepdim=True), shape, eps=eps), weight, bias)


def raises(*args):
    raise RuntimeError("not implemented yet")


MISMATCH = "mismatched normalized_shape raises"
VALUES = {"values with gain and bias", "values without gain and bias"}
GRADIENTS = {"gradients of x, gain and bias", "gradient of x without gain and bias"}
ALL_CASES = {"normalized_shape forms", MISMATCH, *VALUES, *GRADIENTS, "constant rows",
             "variance below eps", "float32 input with a large mean", "output dtype",
             "written from the definition"}


def test_layer_norm_checker_passes_a_correct_answer(capsys):
    report = ch.check_my_layer_norm(from_the_definition)
    assert report and set(report) == ALL_CASES
    out = capsys.readouterr().out
    assert "FAIL" not in out and f"all {len(ALL_CASES)} cases passed" in out


@pytest.mark.parametrize(
    ("fn", "failing"),
    [
        (calls_f_layer_norm, {"written from the definition"}),
        (calls_the_module, {"written from the definition"}),
        (centres_then_rms_norm, {"written from the definition"}),
        (last_dim_only, {MISMATCH, *VALUES, "gradients of x, gain and bias"}),
        (unbiased_variance, {MISMATCH, *VALUES, *GRADIENTS, "variance below eps"}),
        (detached_statistics, {MISMATCH, *GRADIENTS}),
        (one_pass_variance, {MISMATCH, "float32 input with a large mean"}),
        (eps_outside, {MISMATCH, *VALUES, *GRADIENTS, "variance below eps"}),
        (raises, ALL_CASES),
        (lambda x, *args: x.mean(), ALL_CASES - {"output dtype", "written from the definition"}),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_layer_norm_checker_reports_each_failure(fn, failing, capsys):
    report = ch.check_my_layer_norm(fn)  # must not raise
    assert set(report.failed) == failing and not report
    out = capsys.readouterr().out
    for case in failing:
        assert f"FAIL  {case}" in out
    assert "cases passed; failed:" in out


def test_normalization_kernels_are_detected():
    x = torch.randn(2, 4, 6)
    found = {
        "layer": ch.normalization_kernels_called(F.layer_norm, x, (6,)),
        "module": ch.normalization_kernels_called(torch.nn.LayerNorm(6), x),
        "group": ch.normalization_kernels_called(F.group_norm, x, 2),
        "batch": ch.normalization_kernels_called(F.batch_norm, x, None, None, training=True),
        "instance": ch.normalization_kernels_called(F.instance_norm, x),
        "rms": ch.normalization_kernels_called(F.rms_norm, x, (6,)),
        "rms module": ch.normalization_kernels_called(torch.nn.RMSNorm(6), x),
        "torch.rms_norm": ch.normalization_kernels_called(torch.rms_norm, x, (6,)),
    }
    assert all(found.values()), found
    assert ch.normalization_kernels_called(ch.layer_norm_reference, x, 6) == []


def _group_norm_from_layer_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    N, C = x.shape[:2]
    grouped = x.reshape(N, num_groups, -1)
    y = ch.layer_norm_reference(grouped, grouped.shape[-1:], eps=eps).reshape(x.shape)
    shape = (1, C) + (1,) * (x.dim() - 2)
    return _affine(y, None if weight is None else weight.reshape(shape),
                   None if bias is None else bias.reshape(shape))


def test_group_norm_checker():
    def good(x, num_groups, weight=None, bias=None, eps=1e-5):
        return F.group_norm(x, num_groups, weight, bias, eps)

    def per_group_statistics_over_channels_only(x, num_groups, weight=None, bias=None, eps=1e-5):
        return F.instance_norm(x, weight=weight, bias=bias, eps=eps)

    calls_torch = ch.check_my_group_norm(good, verbose=False)
    assert calls_torch.failed == ["not F.group_norm"]

    def from_f_layer_norm(x, num_groups, weight=None, bias=None, eps=1e-5):  # allowed: the idea
        grouped = x.reshape(x.shape[0], num_groups, -1)
        y = F.layer_norm(grouped, grouped.shape[-1:], eps=eps).reshape(x.shape)
        shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
        return _affine(y, None if weight is None else weight.reshape(shape),
                       None if bias is None else bias.reshape(shape))

    assert ch.check_my_group_norm(from_f_layer_norm, verbose=False)
    assert ch.check_my_group_norm(_group_norm_from_layer_norm, verbose=False)
    wrong = ch.check_my_group_norm(per_group_statistics_over_channels_only, verbose=False)
    assert not wrong["values: input (4, 6, 5), 2 groups"]
    assert not any(ch.check_my_group_norm(raises, verbose=False).values())


def test_invariance_answer_checker():
    right = dict(zip(COLUMNS, (True, False, False, True, False, True), strict=True))
    assert all(ch.check_invariance_answer(right, verbose=False).values())
    layer_norm_row = dict(zip(COLUMNS, PAPER["layer norm"], strict=True))
    report = ch.check_invariance_answer(layer_norm_row, verbose=False)
    assert not report["weight matrix re-centering"] and report["dataset re-scaling"]
    assert not any(ch.check_invariance_answer({}, verbose=False).values())
    assert not any(ch.check_invariance_answer("no idea", verbose=False).values())


def test_jacobian_eigenvalue_checker():
    def right(x, eps):
        H, var = x.numel(), x.var(unbiased=False)
        r = 1 / torch.sqrt(var + eps)
        return torch.stack([torch.zeros((), dtype=x.dtype), r * eps / (var + eps)] + [r] * (H - 2)).sort().values

    def eps_ignored(x, eps):
        H, var = x.numel(), x.var(unbiased=False)
        r = 1 / torch.sqrt(var + eps)
        return torch.stack([torch.zeros((), dtype=x.dtype)] * 2 + [r] * (H - 2))

    assert all(ch.check_jacobian_eigenvalues(right, verbose=False).values())
    assert not any(ch.check_jacobian_eigenvalues(eps_ignored, verbose=False).values())
    assert not any(ch.check_jacobian_eigenvalues(raises, verbose=False).values())
