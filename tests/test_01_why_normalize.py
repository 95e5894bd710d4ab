"""Tests for chapter 1 (why normalize): the `library` code of 01_why_normalize.ipynb."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from booktools.library import load_chapter


@pytest.fixture(scope="module")
def ch():
    return load_chapter(1)


@pytest.fixture(scope="module")
def data(ch):
    return ch.load_digits_split(seed=0)


def test_deep_mlp_shapes_and_depth(ch):
    torch.manual_seed(0)
    for depth, width in [(1, 8), (5, 16), (30, 32)]:
        model = ch.DeepMLP(depth, width, 64, 10, activation="relu", init="kaiming")
        assert len(model.hidden) == depth
        assert model.hidden[0].weight.shape == (width, 64)
        assert all(layer.weight.shape == (width, width) for layer in model.hidden[1:])
        x = torch.randn(7, 64)
        logits, record = model(x, return_activations=True)
        assert logits.shape == (7, 10)
        assert len(record) == depth
        assert all(r["pre"].shape == (7, width) and r["post"].shape == (7, width) for r in record)
        torch.testing.assert_close(model(x), logits)


@pytest.mark.parametrize(("init", "expected"), [("xavier", lambda i, o: math.sqrt(2 / (i + o))),
                                                ("kaiming", lambda i, o: math.sqrt(2 / i)),
                                                ("normal", lambda i, o: 0.3)])
def test_initial_weight_scale_and_zero_bias(ch, init, expected):
    torch.manual_seed(1)
    model = ch.DeepMLP(3, 512, 256, 10, activation="tanh", init=init, std=0.3)
    for layer in model.hidden:
        fan_out, fan_in = layer.weight.shape
        assert layer.weight.std().item() == pytest.approx(expected(fan_in, fan_out), rel=0.03)
        assert torch.count_nonzero(layer.bias) == 0


def test_gain_multiplies_the_hidden_weights_scale_as_in_pytorch(ch):
    torch.manual_seed(1)
    model = ch.DeepMLP(2, 512, 256, 10, activation="tanh", init="xavier", gain=5 / 3)
    reference = torch.empty(512, 512)
    torch.nn.init.xavier_normal_(reference, gain=torch.nn.init.calculate_gain("tanh"))
    assert model.hidden[1].weight.std().item() == pytest.approx(reference.std().item(), rel=0.03)
    assert ch.init_std("xavier", 512, 512, gain=5 / 3) == pytest.approx(5 / 3 * math.sqrt(2 / 1024))
    head_std = model.head.weight.std().item()  # the read-out keeps the plain Xavier scale
    assert head_std == pytest.approx(math.sqrt(2 / (512 + 10)), rel=0.1)
    with pytest.raises(ValueError, match="gain"):
        ch.DeepMLP(2, 8, 4, 2, init="xavier", gain=0.0)


def test_activation_statistics_match_direct_computation(ch):
    torch.manual_seed(2)
    model = ch.DeepMLP(6, 32, 20, 3, activation="tanh", init="xavier")
    x = torch.randn(50, 20) * 2 + 1
    with torch.no_grad():
        h, expected_pre, expected_post = x, [], []
        for layer in model.hidden:
            a = h @ layer.weight.T + layer.bias
            h = torch.tanh(a)
            expected_pre.append(a)
            expected_post.append(h)
    for where, expected in (("pre", expected_pre), ("post", expected_post)):
        stats = ch.activation_statistics(model, x, where=where)
        assert stats["mean"].shape == stats["std"].shape == (6,)
        torch.testing.assert_close(stats["mean"], torch.stack([e.mean() for e in expected]))
        torch.testing.assert_close(stats["std"], torch.stack([e.std(unbiased=False) for e in expected]))


def test_gradient_norms_match_autograd(ch):
    torch.manual_seed(3)
    model = ch.DeepMLP(4, 16, 10, 5, activation="relu", init="kaiming")
    x, y = torch.randn(30, 10), torch.randint(0, 5, (30,))
    norms = ch.gradient_norms(model, x, y)
    assert norms.shape == (4,) and norms.dtype == torch.float64
    assert all(p.grad is None for p in model.parameters())  # leaves .grad untouched
    F.cross_entropy(model(x), y).backward()
    torch.testing.assert_close(norms, torch.stack([layer.weight.grad.double().norm() for layer in model.hidden]))


def test_gradient_norms_of_tiny_gradients_are_not_zero(ch):
    # std-0.01 weights give gradient entries far below 1e-23, whose float32 squares underflow
    torch.manual_seed(3)
    model = ch.DeepMLP(30, 64, 64, 10, activation="tanh", init="normal", std=0.01)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), [layer.weight for layer in model.hidden])
    assert grads[-1].norm() == 0  # the float32 norm underflows ...
    norms = ch.gradient_norms(model, x, y)
    assert (norms > 0).all()  # ... the float64 norm does not
    torch.testing.assert_close(norms[-1], grads[-1].double().pow(2).sum().sqrt())


def test_saturation_fraction_matches_direct_computation_and_needs_tanh(ch):
    torch.manual_seed(7)
    model = ch.DeepMLP(4, 32, 16, 3, activation="tanh", init="normal", std=1.0)
    x = torch.randn(40, 16)
    with torch.no_grad():
        _, record = model(x, return_activations=True)
    expected = torch.stack([(r["post"].abs() > 0.99).float().mean() for r in record])
    torch.testing.assert_close(ch.saturation_fraction(model, x), expected)
    assert expected[1:].min() > 0.5  # std-1 weights on 32 inputs: most units saturate
    with pytest.raises(ValueError, match="relu"):
        ch.saturation_fraction(ch.DeepMLP(2, 4, 3, 2, activation="relu"), torch.randn(5, 3))


def test_variance_propagation_kaiming_keeps_std_small_std_collapses(ch):
    torch.manual_seed(4)
    x = torch.randn(256, 64)
    kaiming = ch.activation_statistics(ch.DeepMLP(30, 256, 64, 10, "relu", "kaiming"), x)["std"]
    # Var(a_1) = 64 * (2/64) * E[x^2] = 2: std sqrt(2), kept at every layer.
    assert kaiming[0].item() == pytest.approx(math.sqrt(2), rel=0.1)
    assert 0.5 < (kaiming.max() / kaiming.min()).item() < 2.0
    small = ch.activation_statistics(ch.DeepMLP(30, 256, 64, 10, "relu", "normal", std=0.01), x)["std"]
    assert small[-1].item() < 1e-20
    assert (small[1:] < small[:-1]).all()
    xavier = ch.activation_statistics(ch.DeepMLP(30, 256, 64, 10, "relu", "xavier"), x)["std"]
    ratio = (xavier[-1] / xavier[0]).item()
    assert 2 ** -14.5 / 3 < ratio < 2 ** -14.5 * 3  # halves the variance at every layer


@pytest.mark.parametrize("standardize", [True, "example", "batch"])
@pytest.mark.parametrize(("activation", "init", "std"), [("relu", "normal", 0.01), ("tanh", "normal", 1.0),
                                                         ("relu", "kaiming", 1.0)])
def test_standardize_pins_mean_zero_std_one(ch, standardize, activation, init, std):
    torch.manual_seed(5)
    model = ch.DeepMLP(20, 64, 64, 10, activation, init, std, standardize=standardize)
    stats = ch.activation_statistics(model, torch.randn(128, 64) * 3 + 1)
    torch.testing.assert_close(stats["mean"], torch.zeros(20), atol=1e-5, rtol=0)
    # eps = 1e-5 inside the square root: std is sqrt(v / (v + eps)), a little below 1 when the
    # summed inputs have a small variance v (std 0.01 weights give v of order 1e-3).
    torch.testing.assert_close(stats["std"], torch.ones(20), atol=1e-2, rtol=0)


def test_per_example_standardization_is_independent_of_the_batch(ch):
    torch.manual_seed(6)
    model = ch.DeepMLP(5, 16, 8, 3, "tanh", "xavier", standardize="example")
    x = torch.randn(10, 8)
    torch.testing.assert_close(model(x[3:4]), model(x)[3:4])
    batch = ch.DeepMLP(5, 16, 8, 3, "tanh", "xavier", standardize="batch")
    assert not torch.allclose(batch(x[:5])[0], batch(x)[0])


@pytest.mark.parametrize(("kwargs", "bad"), [
    ({"activation": "sigmoid"}, "sigmoid"),
    ({"init": "orthogonal"}, "orthogonal"),
    ({"depth": 0}, "depth=0"),
    ({"depth": -3}, "depth=-3"),
    ({"width": 0}, "width=0"),
    ({"standardize": "layer"}, "layer"),
    ({"init": "normal", "std": -1.0}, "std=-1.0"),
])
def test_bad_arguments_raise_value_error_naming_the_value(ch, kwargs, bad):
    args = {"depth": 3, "width": 8, "in_features": 4, "out_features": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=bad):
        ch.DeepMLP(**args)


def test_activation_statistics_rejects_unknown_location(ch):
    with pytest.raises(ValueError, match="middle"):
        ch.activation_statistics(ch.DeepMLP(2, 4, 3, 2), torch.randn(5, 3), where="middle")


def test_load_digits_split(ch, data):
    x_train, y_train, x_test, y_test = data
    assert x_train.dtype == x_test.dtype == torch.float32
    assert x_train.shape[1] == x_test.shape[1] == 64
    assert len(x_train) + len(x_test) == 1797
    assert len(x_test) == 450
    assert set(y_train.tolist()) == set(range(10))
    torch.testing.assert_close(x_train.mean(0), torch.zeros(64), atol=1e-5, rtol=0)
    stds = x_train.std(0, unbiased=False)
    assert ((stds - 1).abs() < 1e-4).sum() >= 60  # constant pixels stay 0
    again = ch.load_digits_split(seed=0)
    assert all(torch.equal(a, b) for a, b in zip(data, again, strict=True))
    other = ch.load_digits_split(seed=1)
    assert not torch.equal(other[0], x_train)
    with pytest.raises(ValueError, match="test_fraction"):
        ch.load_digits_split(test_fraction=1.0)


# --- exercise checkers -----------------------------------------------------------------

def right_init_std(fan_in, fan_out, activation):
    gain = {"linear": 1.0, "relu": 2.0}.get(activation) if isinstance(activation, str) else \
        2.0 / (1 + activation[1] ** 2)
    return math.sqrt(gain / fan_in)


def test_init_checker_passes_a_right_answer(ch, capsys):
    report = ch.check_my_init_std(right_init_std)
    assert isinstance(report, ch.CheckReport) and report
    out = capsys.readouterr().out
    assert "FAIL" not in out and f"all {len(report)} cases passed" in out


def xavier_style(fan_in, fan_out, activation):  # the right gain, but Xavier's average of the fans
    return right_init_std((fan_in + fan_out) / 2, fan_out, activation)


@pytest.mark.parametrize("wrong", [
    xavier_style,
    lambda fan_in, fan_out, activation: math.sqrt(2 / (fan_in + fan_out)),   # plain Xavier
    lambda fan_in, fan_out, activation: right_init_std(fan_out, fan_in, activation),  # fan_out
    lambda fan_in, fan_out, activation: math.sqrt(2 / fan_in),               # Kaiming for every f
], ids=["xavier-style", "xavier", "fan-out", "kaiming-everywhere"])
def test_init_checker_reports_wrong_answers(ch, capsys, wrong):
    report = ch.check_my_init_std(wrong)  # must not raise
    assert not report and report.failed
    assert "FAIL" in capsys.readouterr().out


def test_init_checker_rejects_a_xavier_style_answer_on_non_square_layers(ch):
    report = ch.check_my_init_std(xavier_style, verbose=False)
    assert report["formula, fan_in=64, fan_out=64, relu"]  # square layers cannot tell them apart
    assert not report["formula, fan_in=256, fan_out=128, relu"]
    assert not report["formula, fan_in=100, fan_out=300, linear"]
    assert not report["simulation, 40 relu layers of widths 512 and 256"]
    assert not report["simulation, 40 linear layers of widths 512 and 256"]


def test_init_checker_reports_crashes_and_non_numbers(ch):
    def broken(fan_in, fan_out, activation):
        raise RuntimeError("not written yet")

    assert not any(ch.check_my_init_std(broken, verbose=False).values())
    assert not any(ch.check_my_init_std(lambda *a: "big", verbose=False).values())


def test_standardize_checker(ch, capsys):
    def right(h):
        return F.layer_norm(h, h.shape[-1:], eps=1e-5)

    assert ch.check_my_standardize(right)
    assert "FAIL" not in capsys.readouterr().out

    def per_feature(h):
        return (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5)

    report = ch.check_my_standardize(per_feature)
    assert not any(passed for case, passed in report.items() if case.startswith("values"))
    assert not report["independence, batch of one"] and not report["independence, other rows scaled"]
    assert "FAIL" in capsys.readouterr().out

    def unbiased(h):
        return (h - h.mean(1, keepdim=True)) / torch.sqrt(h.var(1, keepdim=True) + 1e-5)

    report = ch.check_my_standardize(unbiased, verbose=False)
    assert not any(passed for case, passed in report.items() if case.startswith("values"))

    def detached(h):
        d = h.detach()
        return (h - d.mean(1, keepdim=True)) / torch.sqrt(d.var(1, unbiased=False, keepdim=True) + 1e-5)

    report = ch.check_my_standardize(detached, verbose=False)
    assert all(passed for case, passed in report.items() if case.startswith("values"))
    assert not report["gradients"]
    assert not any(ch.check_my_standardize(lambda h: 1 / 0, verbose=False).values())


def test_breaking_depth_checker(ch, capsys):
    assert ch.check_breaking_depth(21)
    assert "FAIL" not in capsys.readouterr().out
    report = ch.check_breaking_depth(20, verbose=False)  # the absolute-threshold answer
    assert not report["the variance rule's prediction"]
    assert not any(ch.check_breaking_depth(15, verbose=False).values())
    assert not any(ch.check_breaking_depth("twenty", verbose=False).values())


def test_breaking_depth_checker_leaves_the_global_random_state_alone(ch):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ch.check_breaking_depth(21, verbose=False)
    torch.testing.assert_close(torch.rand(3), expected)
