"""Tests for chapter 4 (layer norm derived): the `library` code of 04_layer_norm.ipynb."""

from __future__ import annotations

import math

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


# --- exercise checkers -----------------------------------------------------------------

def good_layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    return F.layer_norm(x, torch.Size([normalized_shape]) if isinstance(normalized_shape, int)
                        else tuple(normalized_shape), weight, bias, eps)


def _affine(y, weight, bias):
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def last_dim_only(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return _affine((x - mean) / torch.sqrt(var + eps), weight, bias)


def _dims(normalized_shape):
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    return tuple(range(-k, 0))


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


def raises(*args):
    raise RuntimeError("not implemented yet")


def test_layer_norm_checker_passes_a_correct_answer(capsys):
    report = ch.check_my_layer_norm(good_layer_norm)
    assert report == {"shape handling": True, "values": True, "gradients": True, "numerics": True}
    assert "FAIL" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("fn", "failing"),
    [
        (last_dim_only, {"shape handling", "values", "gradients"}),
        (unbiased_variance, {"shape handling", "values", "gradients", "numerics"}),
        (detached_statistics, {"shape handling", "gradients"}),
        (one_pass_variance, {"shape handling", "numerics"}),
        (raises, {"shape handling", "values", "gradients", "numerics"}),
        (lambda x, *args: x.mean(), {"shape handling", "values", "gradients", "numerics"}),
    ],
)
def test_layer_norm_checker_reports_failures_separately(fn, failing, capsys):
    report = ch.check_my_layer_norm(fn)  # must not raise
    assert {k for k, ok in report.items() if not ok} == failing
    assert "FAIL" in capsys.readouterr().out


def test_layer_norm_checker_catches_eps_outside_the_root():
    def eps_outside(x, normalized_shape, weight=None, bias=None, eps=1e-5):
        dims = _dims(normalized_shape)
        mean = x.mean(dims, keepdim=True)
        std = x.var(dims, unbiased=False, keepdim=True).sqrt()
        return _affine((x - mean) / (std + eps), weight, bias)

    report = ch.check_my_layer_norm(eps_outside, verbose=False)
    assert not report["numerics"]


def test_group_norm_checker():
    def good(x, num_groups, weight=None, bias=None, eps=1e-5):
        return F.group_norm(x, num_groups, weight, bias, eps)

    def per_group_statistics_over_channels_only(x, num_groups, weight=None, bias=None, eps=1e-5):
        return F.instance_norm(x, weight=weight, bias=bias, eps=eps)

    assert all(ch.check_my_group_norm(good, verbose=False).values())
    assert not ch.check_my_group_norm(per_group_statistics_over_channels_only, verbose=False)["values"]
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
