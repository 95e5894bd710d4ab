"""Tests for chapter 2 (batch norm from scratch): the `library` code of 02_batch_norm.ipynb."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from booktools.library import load_chapter

SETTINGS = settings(max_examples=25, deadline=None)


@pytest.fixture(scope="module")
def ch():
    return load_chapter(2)


def _reference(shape, **kwargs):
    return (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(shape[1], **kwargs)


@st.composite
def bn_cases(draw):
    rank = draw(st.sampled_from([2, 3, 4]))
    n = draw(st.integers(2, 6))
    c = draw(st.integers(1, 5))
    spatial = draw(st.lists(st.integers(1, 4), min_size=rank - 2, max_size=rank - 2))
    momentum = draw(st.sampled_from([0.1, 0.3, 0.0, 1.0, None]))
    affine = draw(st.booleans())
    track = draw(st.booleans())
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    seed = draw(st.integers(0, 2**31 - 1))
    return (n, c, *spatial), momentum, affine, track, eps, seed


@SETTINGS
@given(case=bn_cases())
def test_parity_train_eval_and_buffers(ch, case):
    shape, momentum, affine, track, eps, seed = case
    g = torch.Generator().manual_seed(seed)
    kwargs = dict(eps=eps, momentum=momentum, affine=affine, track_running_stats=track)
    ref = _reference(shape, **kwargs)
    ours = ch.BatchNorm(shape[1], **kwargs)
    if affine:
        with torch.no_grad():
            ref.weight.copy_(torch.randn(shape[1], generator=g))
            ref.bias.copy_(torch.randn(shape[1], generator=g))
    ours.load_state_dict(ref.state_dict())
    for _ in range(4):
        x = torch.randn(shape, generator=g) * 2 + 1
        torch.testing.assert_close(ours(x), ref(x))
    assert list(ours.state_dict()) == list(ref.state_dict())
    for name, value in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, msg=name)
    if track:
        assert int(ours.num_batches_tracked) == 4
    ours.eval(), ref.eval()
    x = torch.randn(shape, generator=g) * 2 + 1
    torch.testing.assert_close(ours(x), ref(x))


def test_momentum_none_is_cumulative_average(ch):
    g = torch.Generator().manual_seed(0)
    bn = ch.BatchNorm(3, momentum=None)
    xs = [torch.randn(5, 3, 4, generator=g) + 2 for _ in range(6)]
    for x in xs:
        bn(x)
    torch.testing.assert_close(bn.running_mean, torch.stack([x.mean((0, 2)) for x in xs]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([x.var((0, 2)) for x in xs]).mean(0))
    assert int(bn.num_batches_tracked) == 6


def test_running_var_is_unbiased(ch):
    x = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(1))
    bn = ch.BatchNorm(2, momentum=1.0)
    bn(x)
    torch.testing.assert_close(bn.running_var, x.var((0, 2), correction=1))
    torch.testing.assert_close(bn.running_mean, x.mean((0, 2)))


def test_without_running_stats_eval_uses_batch_statistics(ch):
    bn = ch.BatchNorm(3, track_running_stats=False).eval()
    assert bn.running_mean is None and bn.running_var is None and bn.num_batches_tracked is None
    assert set(bn.state_dict()) == {"weight", "bias"}
    x = torch.randn(7, 3) * 4 + 3
    torch.testing.assert_close(bn(x), F.batch_norm(x, None, None, bn.weight, bn.bias, training=True))
    torch.testing.assert_close(bn(x).mean(0), torch.zeros(3), atol=1e-5, rtol=0)


def test_state_dict_interchange_both_ways(ch):
    ref = nn.BatchNorm2d(4)
    with torch.no_grad():
        ref.weight.normal_(), ref.bias.normal_()
    for _ in range(3):
        ref(torch.randn(3, 4, 2, 2) + 1)
    ours = ch.BatchNorm(4)
    ours.load_state_dict(ref.state_dict())  # strict
    for _ in range(2):
        ours(torch.randn(3, 4, 2, 2))
    back = nn.BatchNorm2d(4)
    back.load_state_dict(ours.state_dict())  # strict
    assert int(back.num_batches_tracked) == 5
    assert ours.num_batches_tracked.dtype == torch.long
    assert [n for n, _ in ours.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in ours.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]


def test_running_stats_have_no_autograd_history(ch):
    bn = ch.BatchNorm(3)
    x = torch.randn(6, 3, requires_grad=True)
    bn(x).sum().backward()
    bn(x * 2).sum().backward()  # a second step must not reach into the first graph
    for name, buffer in bn.named_buffers():
        assert buffer.grad_fn is None and not buffer.requires_grad, name


@SETTINGS
@given(rank=st.sampled_from([2, 3, 4]), use_weight=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_hand_backward_equals_autograd(ch, rank, use_weight, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (4, 3, 5, 2)[:rank]
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 1).requires_grad_()
    dy = torch.randn(shape, generator=g, dtype=torch.float64)
    weight = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_() if use_weight else None
    bias = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_()
    y = F.batch_norm(x, None, None, weight, bias, training=True, eps=1e-5)
    inputs = [x, bias] + ([weight] if use_weight else [])
    grads = torch.autograd.grad(y, inputs, dy)
    dx, dweight, dbias = ch.batch_norm_backward(dy, x.detach(), None if weight is None else weight.detach(), 1e-5)
    torch.testing.assert_close(dx, grads[0], rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(dbias, grads[1], rtol=1e-9, atol=1e-11)
    if use_weight:
        torch.testing.assert_close(dweight, grads[2], rtol=1e-9, atol=1e-11)


def test_module_gradcheck(ch):
    bn = ch.BatchNorm(2, dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(bn, (x,))


def test_examples_are_coupled_in_training_only(ch):
    bn = ch.BatchNorm(2, dtype=torch.float64)
    x = torch.randn(5, 2, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(bn, x)
    assert jac[0, 0, 1, 0].abs() > 1e-6  # example 1's input moves example 0's output
    bn.eval()
    jac = torch.autograd.functional.jacobian(bn, x)
    assert jac[0, 0, 1, 0] == 0


@pytest.mark.parametrize(
    ("make", "shape", "words"),
    [
        (lambda m: m, (8, 4), "channels"),
        (lambda m: m, (8, 3, 2, 2, 2), "5-D"),
        (lambda m: m, (3,), "1-D"),
        (lambda m: m, (1, 3), "1 value per channel"),
        (lambda m: m, (1, 3, 1, 1), "1 value per channel"),
        (lambda m: m.eval(), (8, 5), "channels"),
    ],
)
def test_bad_input_raises_clear_value_error(ch, make, shape, words):
    with pytest.raises(ValueError, match=words):
        make(ch.BatchNorm(3))(torch.randn(shape))


def test_single_example_is_fine_when_defined(ch):
    ch.BatchNorm(3)(torch.randn(1, 3, 4))  # 4 values per channel in training
    ch.BatchNorm(3).eval()(torch.randn(1, 3))  # running statistics
    with pytest.raises(ValueError, match="1 value per channel"):  # batch statistics in eval
        ch.BatchNorm(3, track_running_stats=False).eval()(torch.randn(1, 3))


def test_make_mlp_variants(ch):
    x = torch.randn(5, 64)
    for options in ({}, {"init": "he"}, {"norm": ch.BatchNorm}, {"norm": "layer"}):
        assert ch.make_mlp(depth=3, width=8, **options)(x).shape == (5, 10)
    assert sum(isinstance(m, ch.BatchNorm) for m in ch.make_mlp(ch.BatchNorm, depth=3)) == 3
    he = ch.make_mlp(depth=2, width=256, init="he")
    assert abs(he[0].weight.std().item() - (2 / 64) ** 0.5) < 0.02 and not he[0].bias.any()
    with pytest.raises(ValueError, match="norm"):
        ch.make_mlp("group norm")
    with pytest.raises(ValueError, match="init"):
        ch.make_mlp(init="xavier")


def test_recompute_batch_norm_statistics_matches_update_bn(ch):
    from torch.optim.swa_utils import update_bn

    torch.manual_seed(0)
    x = torch.randn(200, 64) * 2 + 1
    reference = ch.make_mlp("batch", depth=3, width=8)
    for momentum_layer in reference:
        if isinstance(momentum_layer, nn.BatchNorm1d):
            momentum_layer.momentum = 0.3
    reference.train()
    reference(x[:50])  # running estimates that differ from the population statistics
    ours = ch.make_mlp("batch", depth=3, width=8)
    ours.load_state_dict(reference.state_dict())
    for layer in ours:
        if isinstance(layer, nn.BatchNorm1d):
            layer.momentum = 0.3
    ours.eval()
    update_bn([x[i : i + 32] for i in range(0, 200 - 31, 32)], reference)
    assert ch.recompute_batch_norm_statistics(ours, x, batch_size=32) is ours
    for (name, expected), (_, got) in zip(reference.named_buffers(), ours.named_buffers(), strict=True):
        torch.testing.assert_close(got, expected, msg=name)
    assert not ours.training  # the mode is restored
    assert all(layer.momentum == 0.3 for layer in ours if isinstance(layer, nn.BatchNorm1d))
    for (name, a), (_, b) in zip(reference.named_parameters(), ours.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, msg=name)  # parameters untouched


def test_recompute_batch_norm_statistics_works_on_our_module_and_rejects_bad_input(ch):
    torch.manual_seed(1)
    model = ch.make_mlp(ch.BatchNorm, depth=2, width=4)
    x = torch.randn(64, 64) + 3
    ch.recompute_batch_norm_statistics(model, x, batch_size=16)
    first = model[1]
    with torch.no_grad():
        summed = model[0](x)
    means = torch.stack([summed[i : i + 16].mean(0) for i in range(0, 64, 16)]).mean(0)
    torch.testing.assert_close(first.running_mean, means, rtol=1e-5, atol=1e-6)
    assert int(first.num_batches_tracked) == 4
    with pytest.raises(ValueError, match="no batch norm"):
        ch.recompute_batch_norm_statistics(ch.make_mlp("layer", depth=2), x)
    with pytest.raises(ValueError, match="batch_size"):
        ch.recompute_batch_norm_statistics(model, x, batch_size=65)


# --- exercise checkers -----------------------------------------------------------------

def _good_update(running_mean, running_var, count, x, momentum):
    with torch.no_grad():
        dims = [0, *range(2, x.dim())]
        m = x.numel() // x.shape[1]
        count = count + 1
        f = 1.0 / float(count) if momentum is None else momentum
        return ((1 - f) * running_mean + f * x.mean(dims),
                (1 - f) * running_var + f * x.var(dims, correction=0) * m / (m - 1), count)


def test_check_running_update_accepts_a_right_answer(ch, capsys):
    report = ch.check_running_update(_good_update)
    assert isinstance(report, ch.CheckReport) and report
    out = capsys.readouterr().out
    assert "FAIL" not in out and f"all {len(report)} cases passed" in out


def test_check_running_update_reports_wrong_answers(ch, capsys):
    def biased(rm, rv, c, x, momentum):  # forgets Bessel's correction
        with torch.no_grad():
            dims = [0, *range(2, x.dim())]
            f = 1.0 / float(c + 1) if momentum is None else momentum
            return (1 - f) * rm + f * x.mean(dims), (1 - f) * rv + f * x.var(dims, correction=0), c + 1

    report = ch.check_running_update(biased)
    assert not report and report["no autograd history"] and report["arguments unchanged"]
    assert "FAIL" in capsys.readouterr().out

    def keras_momentum(rm, rv, c, x, momentum):  # uses momentum the Keras way round
        return _good_update(rm, rv, c, x, None if momentum is None else 1 - momentum)

    assert not ch.check_running_update(keras_momentum, verbose=False)

    def with_graph(rm, rv, c, x, momentum):  # builds autograd history
        dims = [0, *range(2, x.dim())]
        m = x.numel() // x.shape[1]
        f = 1.0 / float(c + 1) if momentum is None else momentum
        return ((1 - f) * rm + f * x.mean(dims),
                (1 - f) * rv + f * x.var(dims, correction=0) * m / (m - 1), c + 1)

    report = ch.check_running_update(with_graph, verbose=False)
    assert report.failed == ["no autograd history"]

    def in_place(rm, rv, c, x, momentum):  # right values, but updates the buffers it was given
        new_mean, new_var, new_count = _good_update(rm, rv, c, x, momentum)
        rm.copy_(new_mean), rv.copy_(new_var), c.add_(1)
        return rm, rv, c

    report = ch.check_running_update(in_place, verbose=False)
    assert report.failed == ["arguments unchanged"]

    def broken(*args):
        raise RuntimeError("not implemented")

    assert not any(ch.check_running_update(broken, verbose=False).values())  # reports, no raise


def test_check_batch_norm_backward_accepts_right_and_reports_wrong(ch):
    assert ch.check_batch_norm_backward(ch.batch_norm_backward, verbose=False)

    def divides_by_n(dy, x, weight, eps):  # normalizes the sums by N instead of m
        dx, dw, db = ch.batch_norm_backward(dy, x, weight, eps)
        return dx * (x.numel() // x.shape[1]) / x.shape[0], dw, db

    report = ch.check_batch_norm_backward(divides_by_n, verbose=False)
    assert [case for case, passed in report.items() if passed] == [
        "x of shape (7, 3), weight given", "x of shape (7, 3), weight None"]  # 2-D passes, others fail
    assert not any(ch.check_batch_norm_backward(lambda *a: None, verbose=False).values())

    def no_weight_gradient(dy, x, weight, eps):  # forgets the gain in dx
        return ch.batch_norm_backward(dy, x, None, eps)

    report = ch.check_batch_norm_backward(no_weight_gradient, verbose=False)
    assert not any(passed for case, passed in report.items() if case.endswith("weight given"))


def _fold(linear, bn):
    with torch.no_grad():
        gamma = bn.weight if bn.affine else torch.ones_like(bn.running_mean)
        beta = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        b = linear.bias if linear.bias is not None else torch.zeros_like(bn.running_mean)
        s = gamma / torch.sqrt(bn.running_var + bn.eps)
        out = nn.Linear(linear.in_features, linear.out_features, dtype=linear.weight.dtype)
        out.weight.copy_(s[:, None] * linear.weight)
        out.bias.copy_(s * (b - bn.running_mean) + beta)
    return out


def test_check_folded_linear_accepts_right_and_reports_wrong(ch):
    assert ch.check_folded_linear(_fold, verbose=False)
    assert not any(ch.check_folded_linear(lambda linear, bn: linear, verbose=False).values())

    def folds_in_place(linear, bn):  # right values, written into the layer it was given
        folded = _fold(linear, bn)
        if linear.bias is None:
            return folded
        with torch.no_grad():
            linear.weight.copy_(folded.weight), linear.bias.copy_(folded.bias)
        return linear

    report = ch.check_folded_linear(folds_in_place, verbose=False)
    assert report.failed == ["linear bias on, batch norm affine on", "linear bias on, batch norm affine off"]

    def ignores_eps(linear, bn):
        eps, bn.eps = bn.eps, 0.5
        try:
            return _fold(linear, bn)
        finally:
            bn.eps = eps

    assert not any(ch.check_folded_linear(ignores_eps, verbose=False).values())


# The shared `mlp` cell (its source is this chapter): bad arguments, and state kept on failure


def test_empty_batch_error_counts_its_values(ch):
    with pytest.raises(ValueError, match=r"has 0 value\(s\) per channel"):
        ch.BatchNorm(3)(torch.randn(0, 3))


def _digits_like(n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 64, generator=generator), torch.randint(0, 10, (n,), generator=generator)


@pytest.mark.parametrize("batch_size, words", [
    (0, "positive batch_size"),
    (-5, "positive batch_size"),
    (2.0, "batch_size to be an int"),
    (True, "batch_size to be an int"),
    (64, "larger than the data"),
])
def test_train_mlp_rejects_bad_batch_size(ch, batch_size, words):
    x, y = _digits_like(50)
    model = ch.make_mlp("none")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=words):
        ch.train_mlp(model, x, y, epochs=1, batch_size=batch_size)
    for k, v in model.state_dict().items():  # rejected before any step
        torch.testing.assert_close(v, before[k])


def test_train_mlp_rejects_callback_without_every_and_the_reverse(ch):
    x, y = _digits_like(40)
    for kwargs in ({"callback": lambda step: None}, {"every": 5},
                   {"callback": lambda step: None, "every": 0}):
        with pytest.raises(ValueError, match="every"):
            ch.train_mlp(ch.make_mlp("none"), x, y, epochs=1, batch_size=8, **kwargs)


def test_train_mlp_runs_callback_every_steps_and_drops_the_short_batch(ch):
    x, y = _digits_like(43)  # 5 batches of 8 per epoch, 3 examples dropped
    steps = []
    ch.train_mlp(ch.make_mlp("batch"), x, y, epochs=2, batch_size=8, every=3, callback=steps.append)
    assert steps == [0, 3, 6, 9]


def test_train_mlp_rejects_an_empty_custom_batch(ch):
    x, y = _digits_like(40)
    with pytest.raises(ValueError, match="empty batch"):
        ch.train_mlp(ch.make_mlp("none"), x, y, epochs=1,
                     batches=lambda epoch, g: [torch.arange(8), torch.arange(0)])


def test_train_mlp_batch_of_one_trains_without_batch_norm_and_is_refused_with_it(ch):
    x, y = _digits_like(6)
    ch.train_mlp(ch.make_mlp("layer"), x, y, epochs=1, batch_size=1)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ch.train_mlp(ch.make_mlp(ch.BatchNorm), x, y, epochs=1, batch_size=1)


@pytest.mark.parametrize("batch_size, mode, words", [
    (0, "eval", "positive batch_size"),
    (-5, "eval", "positive batch_size"),
    (2.5, "eval", "batch_size to be an int"),
    (449, "train", "last batch of 1"),   # 450 = 449 + 1
    (2, "train", "last batch of 1"),     # 451 = 2 * 225 + 1
    (32, "train", "last batch of 2"),    # 450 = 14 * 32 + 2
])
def test_evaluate_rejects_bad_batch_size_before_touching_the_model(ch, batch_size, mode, words):
    n = 451 if batch_size == 2 else 450
    x, y = _digits_like(n)
    for norm in ("batch", ch.BatchNorm, "layer", "none"):
        torch.manual_seed(0)
        model = ch.train_mlp(ch.make_mlp(norm, depth=3, width=16), x, y, epochs=1, batch_size=64).eval()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(ValueError, match=words):
            ch.evaluate(model, x, y, mode=mode, batch_size=batch_size)
        assert not model.training
        for k, v in model.state_dict().items():
            torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_evaluate_restores_buffers_and_mode_when_the_model_raises(ch):
    torch.manual_seed(0)
    x, y = _digits_like(10)
    model = ch.train_mlp(ch.make_mlp(ch.BatchNorm, depth=3, width=16), x, y, epochs=2, batch_size=5).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    class FailsOnSecondBatch(nn.Module):  # the first batch updates the running estimates
        calls = 0

        def forward(self, h):
            FailsOnSecondBatch.calls += 1
            if FailsOnSecondBatch.calls == 2:
                raise RuntimeError("second batch")
            return h

    model.append(FailsOnSecondBatch())
    with pytest.raises(RuntimeError, match="second batch"):
        ch.evaluate(model, x, y, mode="train", batch_size=5)
    assert not model.training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    # One example in mode "train" reaches the model, and batch norm refuses it, state intact.
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ch.evaluate(model[:-1], x[:1], y[:1], mode="train")
    assert not model.training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_evaluate_rejects_mismatched_or_empty_data(ch):
    model = ch.make_mlp("none")
    x, y = _digits_like(10)
    with pytest.raises(ValueError, match="10 inputs but 9 labels"):
        ch.evaluate(model, x, y[:9])
    with pytest.raises(ValueError, match="no examples"):
        ch.evaluate(model, x[:0], y[:0])


def test_evaluate_in_train_mode_keeps_buffers_and_matches_batchwise_statistics(ch):
    torch.manual_seed(0)
    x, y = _digits_like(40)
    model = ch.train_mlp(ch.make_mlp("batch", depth=2, width=16), x, y, epochs=1, batch_size=8).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss, _ = ch.evaluate(model, x, y, "train", batch_size=8)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert not model.training
    model.train()
    with torch.no_grad():
        expected = torch.cat([model(x[i : i + 8]) for i in range(0, 40, 8)])
    torch.testing.assert_close(loss, F.cross_entropy(expected, y).item())


def test_evaluate_batch_larger_than_the_data_is_the_whole_set(ch):
    torch.manual_seed(0)
    x, y = _digits_like(40)
    model = ch.train_mlp(ch.make_mlp("batch", depth=2, width=16), x, y, epochs=1, batch_size=8)
    for mode in ("eval", "train"):
        assert ch.evaluate(model, x, y, mode, batch_size=1000) == ch.evaluate(model, x, y, mode)


@pytest.mark.parametrize("make", [
    lambda n: np.int64(n), lambda n: np.int32(n), lambda n: torch.tensor(n), lambda n: int(n)])
def test_integer_like_batch_size_and_every_are_accepted(ch, make):
    x, y = _digits_like(43)  # 5 batches of 8 per epoch
    steps = []
    model = ch.train_mlp(ch.make_mlp("batch", depth=2, width=16), x, y, epochs=make(2), batch_size=make(8),
                         every=make(3), callback=steps.append)
    assert steps == [0, 3, 6, 9]
    loss, accuracy = ch.evaluate(model, x[:40], y[:40], mode="train", batch_size=make(8))
    assert (loss, accuracy) == ch.evaluate(model, x[:40], y[:40], mode="train", batch_size=8)


@pytest.mark.parametrize("epochs, words", [
    (0, "at least 1 epoch, got epochs=0"),
    (-1, "at least 1 epoch, got epochs=-1"),
    (1.5, "epochs to be an int, got 1.5"),
    (True, "epochs to be an int, got True"),
])
def test_train_mlp_refuses_fewer_than_one_epoch(ch, epochs, words):
    x, y = _digits_like(40)
    with pytest.raises(ValueError, match=words):
        ch.train_mlp(ch.make_mlp("none"), x, y, epochs=epochs, batch_size=8)


@pytest.mark.parametrize("every", [np.float64(2.0), "2", True])
def test_train_mlp_refuses_non_integer_every(ch, every):
    x, y = _digits_like(40)
    with pytest.raises(ValueError, match="every to be an int"):
        ch.train_mlp(ch.make_mlp("none"), x, y, epochs=1, batch_size=8, every=every, callback=lambda step: None)


def test_train_mlp_refuses_an_empty_batch_list(ch):
    x, y = _digits_like(40)
    model = ch.make_mlp("none")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"batches\(0, generator\) returned no batch"):
        ch.train_mlp(model, x, y, epochs=1, batches=lambda epoch, g: [])
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
