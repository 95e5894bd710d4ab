"""Tests for chapter 7 (layer norm at work): the `library` code of 07_layer_norm_in_practice.ipynb."""

from __future__ import annotations

import sys
import time

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from booktools.library import load_chapter

ch = load_chapter(7)

SETTINGS = settings(max_examples=25, deadline=None)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models, as in the chapter: one thread is fastest, and steady on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- LN-LSTM --------------------------------------------------------------------------

@SETTINGS
@given(n_in=st.integers(1, 6), H=st.integers(1, 8), B=st.integers(1, 4), T=st.integers(1, 6),
       batch_first=st.booleans(), with_state=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_ln_lstm_without_norm_is_torch_lstm(n_in, H, B, T, batch_first, with_state, seed):
    torch.manual_seed(seed)
    reference = nn.LSTM(n_in, H, batch_first=batch_first).double()
    ours = ch.LNLSTM(n_in, H, layer_norm=False, batch_first=batch_first).double().load_from_lstm(reference)
    x = torch.randn((B, T, n_in) if batch_first else (T, B, n_in), dtype=torch.float64)
    state = (torch.randn(1, B, H, dtype=torch.float64), torch.randn(1, B, H, dtype=torch.float64)) \
        if with_state else None
    out, (h, c) = ours(x, state)
    expected_out, (expected_h, expected_c) = reference(x, state)
    assert out.shape == expected_out.shape and h.shape == (1, B, H) and c.shape == (1, B, H)
    torch.testing.assert_close(out, expected_out)
    torch.testing.assert_close(h, expected_h)
    torch.testing.assert_close(c, expected_c)


def test_ln_lstm_cell_without_norm_is_torch_lstm_cell():
    torch.manual_seed(0)
    reference = nn.LSTMCell(5, 7).double()
    cell = ch.LNLSTMCell(5, 7, layer_norm=False).double()
    with torch.no_grad():
        cell.weight_ih.copy_(reference.weight_ih)
        cell.weight_hh.copy_(reference.weight_hh)
        cell.bias.copy_(reference.bias_ih + reference.bias_hh)
    x, h, c = (torch.randn(3, n, dtype=torch.float64) for n in (5, 7, 7))
    for got, expected in zip(cell(x, (h, c)), reference(x, (h, c)), strict=True):
        torch.testing.assert_close(got, expected)


def _manual_ln_lstm_step(cell, x, h, c):
    def ln(a, gain, bias):
        mean = a.mean(-1, keepdim=True)
        var = ((a - mean) ** 2).mean(-1, keepdim=True)
        return (a - mean) / torch.sqrt(var + cell.eps) * gain + bias

    a = ln(x @ cell.weight_ih.T, cell.gain_x, cell.bias_x) + ln(h @ cell.weight_hh.T, cell.gain_h, cell.bias_h)
    i, f, g, o = (a + cell.bias).chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(ln(c, cell.gain_c, cell.bias_c)), c


def test_ln_lstm_cell_follows_the_papers_equations():
    torch.manual_seed(3)
    cell = ch.LNLSTMCell(4, 6).double()
    with torch.no_grad():
        for name, p in cell.named_parameters():
            if name.startswith(("gain", "bias_")):
                p.uniform_(-1.5, 1.5)
    x, h, c = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64), \
        torch.randn(5, 6, dtype=torch.float64)
    for got, expected in zip(cell(x, (h, c)), _manual_ln_lstm_step(cell, x, h, c), strict=True):
        torch.testing.assert_close(got, expected)
    # six separate normalisation parameters: gains/biases for W_x x, W_h h (4H) and c (H)
    shapes = {n: tuple(p.shape) for n, p in cell.named_parameters()}
    assert shapes["gain_x"] == shapes["gain_h"] == shapes["bias_x"] == shapes["bias_h"] == (24,)
    assert shapes["gain_c"] == shapes["bias_c"] == (6,)


def test_ln_lstm_is_invariant_to_input_scale():
    torch.manual_seed(1)
    cell = ch.LNLSTMCell(3, 5, eps=0.0).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    h, c = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    for a, b in zip(cell(x, (h, c)), cell(37.0 * x, (h, c)), strict=True):
        torch.testing.assert_close(a, b)


def test_ln_lstm_shapes_and_batch_first():
    torch.manual_seed(0)
    model = ch.LNLSTM(3, 8, batch_first=True)
    out, (h, c) = model(torch.randn(2, 9, 3))
    assert out.shape == (2, 9, 8) and h.shape == (1, 2, 8) and c.shape == (1, 2, 8)
    torch.testing.assert_close(out[:, -1], h[0])
    lm = ch.CharLSTM(11, hidden_size=8, embed_size=4)
    assert lm(torch.randint(0, 11, (2, 5))).shape == (2, 5, 11)


def test_ln_lstm_gradcheck_float64():
    torch.manual_seed(0)
    cell = ch.LNLSTMCell(3, 2).double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, h, c: cell(x, (h, c)), (x, h, c))
    model = ch.LNLSTM(2, 2).double()
    seq = torch.randn(3, 1, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: model(s)[0], (seq,))


def test_ln_lstm_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = ch.LNLSTM(3, 4, batch_first=True)
    model(torch.randn(2, 5, 3))[0].pow(2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_ln_lstm_bad_input():
    with pytest.raises(ValueError, match="3-D"):
        ch.LNLSTM(3, 4)(torch.randn(5, 3))
    with pytest.raises(ValueError, match="input of shape"):
        ch.LNLSTMCell(3, 4)(torch.randn(2, 5))
    with pytest.raises(ValueError, match="single-layer"):
        ch.LNLSTM(3, 4, layer_norm=False).load_from_lstm(nn.LSTM(3, 4, num_layers=2))


# --- RMSNorm ---------------------------------------------------------------------------

@SETTINGS
@given(lead=st.lists(st.integers(1, 4), min_size=0, max_size=2),
       normalized=st.lists(st.integers(1, 6), min_size=1, max_size=2),
       eps=st.sampled_from([None, 1e-6, 1e-2, 0.5]), affine=st.booleans(),
       dtype=st.sampled_from([torch.float64, torch.float32]), seed=st.integers(0, 2**31 - 1))
def test_rms_norm_matches_torch(lead, normalized, eps, affine, dtype, seed):
    torch.manual_seed(seed)
    ns = normalized[0] if len(normalized) == 1 else tuple(normalized)
    ours, theirs = ch.RMSNorm(ns, eps, affine).to(dtype), nn.RMSNorm(ns, eps, affine).to(dtype)
    if affine:
        with torch.no_grad():
            ours.weight.normal_()
            theirs.weight.copy_(ours.weight)
    x = (torch.randn(tuple(lead + normalized), dtype=dtype) * 3 + 1).requires_grad_()
    y, expected = ours(x), theirs(x)
    assert y.shape == x.shape and y.dtype == dtype
    tol = {} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(y, expected, **tol)
    dy = torch.randn_like(y)
    got = torch.autograd.grad(y, [x] + list(ours.parameters()), dy)
    want = torch.autograd.grad(expected, [x] + list(theirs.parameters()), dy)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **tol)


def test_rms_norm_default_eps_is_dtype_eps():
    x = torch.full((2, 4), 1e-5, dtype=torch.float64)
    torch.testing.assert_close(ch.rms_norm(x, 4), F.rms_norm(x, (4,)))
    assert ch.RMSNorm(4).eps is None and ch.RMSNorm(4, elementwise_affine=False).weight is None


def test_rms_norm_is_layer_norm_on_zero_mean_inputs():
    x = torch.randn(5, 12, dtype=torch.float64)
    x = x - x.mean(-1, keepdim=True)
    torch.testing.assert_close(ch.rms_norm(x, 12, eps=1e-5), F.layer_norm(x, (12,), eps=1e-5))


def test_rms_norm_gradcheck_float64():
    torch.manual_seed(0)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: ch.rms_norm(x, 5, w, 1e-3), (x, w))


def test_rms_norm_half_precision_keeps_dtype():
    x = torch.randn(4, 64, dtype=torch.bfloat16) * 100
    y = ch.RMSNorm(64).to(torch.bfloat16)(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), F.rms_norm(x.float(), (64,)), rtol=2e-2, atol=2e-2)


def test_rms_norm_is_the_same_in_training_and_evaluation_and_per_example():
    torch.manual_seed(0)
    norm = ch.RMSNorm(6).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 5, 6, dtype=torch.float64) * 2 + 1
    assert not list(norm.buffers())
    torch.testing.assert_close(norm.train()(x), norm.eval()(x), rtol=0, atol=0)
    # one example at one time step, normalized alone, gets what it gets in the batch
    torch.testing.assert_close(norm(x[1:2, 3:4]), norm(x)[1:2, 3:4])


def test_rms_norm_bad_input():
    with pytest.raises(ValueError, match="normalized_shape"):
        ch.RMSNorm(8)(torch.randn(2, 4))
    with pytest.raises(ValueError, match="normalized_shape"):
        ch.rms_norm(torch.randn(4), (2, 4))
    with pytest.raises(TypeError, match="floating-point"):
        ch.RMSNorm(4)(torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="tensor"):
        ch.rms_norm([1.0, 2.0], 2)
    with pytest.raises(ValueError, match="eps"):
        ch.RMSNorm(4, eps=-1.0)
    with pytest.raises(ValueError, match="normalized_shape"):
        ch.RMSNorm(())
    with pytest.raises(ValueError, match="weight"):
        ch.rms_norm(torch.randn(2, 4), 4, torch.ones(3))


# --- Transformer ----------------------------------------------------------------------

@pytest.mark.parametrize("position", ["pre", "post"])
@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_transformer_shapes_and_causality(position, norm):
    torch.manual_seed(0)
    model = ch.TransformerLM(13, d_model=16, n_layers=2, n_heads=2, context=8,
                             norm_position=position, norm=norm).eval()
    idx = torch.randint(0, 13, (2, 8))
    logits = model(idx)
    assert logits.shape == (2, 8, 13)
    changed = idx.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 13
    torch.testing.assert_close(model(changed)[:, :5], logits[:, :5])  # the future is not seen
    kinds = {type(m).__name__ for m in model.modules()}
    assert ("RMSNorm" in kinds) == (norm == "rms") and ("LayerNorm" in kinds) == (norm == "layer")
    assert len(ch.ffn_gradient_norms(model, idx, idx)) == 2


def test_transformer_xavier_and_default_initialisation():
    torch.manual_seed(0)
    xavier = ch.TransformerLM(11, d_model=16, n_layers=2, n_heads=2, context=8)
    for module in xavier.modules():
        if isinstance(module, nn.Linear):
            fan_out, fan_in = module.weight.shape
            bound = (6 / (fan_in + fan_out)) ** 0.5
            assert module.weight.abs().max() <= bound and module.weight.abs().max() > 0.8 * bound
            assert (module.bias == 0).all()
    torch.manual_seed(0)
    default = ch.TransformerLM(11, d_model=16, n_layers=2, n_heads=2, context=8, init="default")
    ffn_in = default.blocks[0].ffn[0]
    assert ffn_in.weight.abs().max() <= 1 / 16 ** 0.5 and ffn_in.bias.abs().max() > 0  # nn.Linear's own


@pytest.mark.parametrize("position", ["pre", "post"])
def test_residual_branch_ratios(position):
    torch.manual_seed(0)
    model = ch.TransformerLM(11, d_model=16, n_layers=3, n_heads=2, context=8, norm_position=position)
    idx = torch.randint(0, 11, (4, 8))
    ratios = ch.residual_branch_ratios(model, idx)
    assert ratios.shape == (3, 2) and (ratios > 0).all()
    # the first block's attention ratio, by hand
    x = model.tok(idx) + model.pos(torch.arange(8))
    block = model.blocks[0]
    branch = block.attn(x if position == "post" else block.norm1(x))
    torch.testing.assert_close(ratios[0, 0].item(), (branch.std() / x.std()).item())
    # silence every FFN branch: its ratio is zero, and the model's output is unchanged by the bookkeeping
    with torch.no_grad():
        for block in model.blocks:
            block.ffn[2].weight.zero_()
            block.ffn[2].bias.zero_()
    assert (ch.residual_branch_ratios(model, idx)[:, 1] == 0).all()
    torch.testing.assert_close(model(idx, []), model(idx))


def test_transformer_bad_arguments():
    with pytest.raises(ValueError, match="norm_position"):
        ch.TransformerLM(5, d_model=8, n_heads=2, norm_position="middle")
    with pytest.raises(ValueError, match="norm"):
        ch.TransformerLM(5, d_model=8, n_heads=2, norm="batch")
    with pytest.raises(ValueError, match="context"):
        ch.TransformerLM(5, d_model=8, n_heads=2, context=4)(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="init"):
        ch.TransformerLM(5, d_model=8, n_heads=2, init="gpt2")


def test_char_data_helpers():
    vocab = ch.CharVocab("hello world")
    ids = vocab.encode("low")
    assert vocab.decode(ids) == "low" and len(vocab) == 8
    with pytest.raises(ValueError, match="vocabulary"):
        vocab.encode("xyz")
    x, y = ch.get_batch(torch.arange(100), 3, 10, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (3, 10)
    torch.testing.assert_close(x[:, 1:], y[:, :-1])
    assert ch.lr_at(0, 1.0, 4) == 0.25 and ch.lr_at(10, 1.0, 4) == 1.0


def test_evaluate_lm_is_the_mean_loss_and_restores_the_mode():
    torch.manual_seed(0)
    model = ch.TransformerLM(7, d_model=8, n_layers=1, n_heads=2, context=6)
    batches = [(torch.randint(0, 7, (2, 6)), torch.randint(0, 7, (2, 6))) for _ in range(3)]
    expected = sum(F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item() for x, y in batches) / 3
    model.train()
    assert ch.evaluate_lm(model, batches) == pytest.approx(expected)
    assert model.training
    model.eval()
    ch.evaluate_lm(model, batches)
    assert not model.training
    with pytest.raises(ValueError, match="at least one batch"):
        ch.evaluate_lm(model, [])


def test_train_lm_lowers_the_loss_and_reports_divergence():
    torch.manual_seed(0)
    data = torch.tensor([0, 1, 2, 3] * 50)  # a cycle: the next character is always predictable
    val = [ch.get_batch(data, 8, 6, torch.Generator().manual_seed(1))]
    model = ch.TransformerLM(4, d_model=8, n_layers=1, n_heads=2, context=6)
    before = ch.evaluate_lm(model, val)
    history = ch.train_lm(model, data, val, 30, 3e-2, 8, 6, warmup_steps=5, eval_every=10)
    assert history["eval_steps"] == [10, 20, 30] and len(history["train"]) == 30
    assert history["final_val"] < 0.5 * before and not history["diverged"]
    broken = ch.TransformerLM(4, d_model=8, n_layers=1, n_heads=2, context=6)
    with torch.no_grad():
        broken.head.bias.fill_(float("nan"))
    history = ch.train_lm(broken, data, val, 5, 1e-2, 8, 6)
    assert history["diverged"] and history["final_val"] == float("inf") and history["train"] == []


def test_median_times_interleaves_after_warming_up():
    calls = []
    times = ch.median_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                            repeats=3, warmup=2)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())
    with pytest.raises(ValueError, match="repeats"):
        ch.median_times({"a": lambda: None}, repeats=0)


@pytest.mark.skipif(torch.cuda.is_available() or sys.platform == "win32",
                    reason="the CPU clock is used on a CPU under Linux or macOS")
def test_median_times_counts_computing_not_waiting():
    clock, name = ch.timing_clock()
    assert clock is time.process_time and name == "CPU time"

    def busy():
        start = time.process_time()
        while time.process_time() - start < 0.02:
            pass

    times = ch.median_times({"sleeps": lambda: time.sleep(0.05), "computes": busy}, repeats=3, warmup=0)
    assert times["sleeps"] < 0.01 < times["computes"]


# --- exercise checkers -----------------------------------------------------------------

def good_rms(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


@pytest.mark.parametrize(
    ("fn", "failing"),
    [
        (lambda x, w, eps: F.layer_norm(x, x.shape[-1:], w, None, eps),  # subtracts the mean
         {"values", "eps inside the square root", "gradient w.r.t. the input", "gradient w.r.t. the weight"}),
        (lambda x, w, eps: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * w,  # eps outside
         {"values", "eps inside the square root", "gradient w.r.t. the input", "gradient w.r.t. the weight"}),
        (lambda x, w, eps: x / torch.sqrt(x.detach().pow(2).mean(-1, keepdim=True) + eps) * w,  # graph cut
         {"gradient w.r.t. the input"}),
        (lambda x, w, eps: 1 / 0,
         {"values", "eps inside the square root", "gradient w.r.t. the input", "gradient w.r.t. the weight",
          "without PyTorch's RMSNorm"}),
        # right values, but PyTorch's own RMSNorm: only the last case fails
        (lambda x, w, eps: F.rms_norm(x, x.shape[-1:], w, eps), {"without PyTorch's RMSNorm"}),
        (lambda x, w, eps: torch.rms_norm(x, x.shape[-1:], w, eps), {"without PyTorch's RMSNorm"}),
        # nn.RMSNorm with the weight copied in: caught too (and the copy cuts the weight's gradient)
        (lambda x, w, eps: _torch_rms_module(x, w, eps), {"gradient w.r.t. the weight", "without PyTorch's RMSNorm"}),
    ],
)
def test_rms_checker_reports_wrong_answers(fn, failing, capsys):
    assert ch.check_my_rms_norm(good_rms, verbose=False)
    report = ch.check_my_rms_norm(fn)  # must not raise
    assert not report and set(report.failed) == failing
    out = capsys.readouterr().out
    assert "FAIL" in out and f"{5 - len(failing)} of 5 cases passed" in out


def _torch_rms_module(x, weight, eps):
    norm = nn.RMSNorm(x.shape[-1], eps=eps).to(x.dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
    return norm(x)


def test_builtin_rms_norm_calls_sees_pytorchs_rms_norm_and_nothing_else():
    x, w = torch.randn(3, 8), torch.randn(8)
    assert ch.builtin_rms_norm_calls(good_rms, x, w, 1e-6) == []
    assert ch.builtin_rms_norm_calls(ch.rms_norm, x, 8, w, 1e-6) == []  # this chapter's composite
    assert ch.builtin_rms_norm_calls(F.layer_norm, x, (8,)) == []
    assert ch.builtin_rms_norm_calls(F.rms_norm, x, (8,), w, 1e-6) == ["rms_norm"]
    assert ch.builtin_rms_norm_calls(nn.RMSNorm(8), x) == ["rms_norm"]


def test_ln_lstm_checker():
    assert ch.check_my_ln_lstm_step(_manual_ln_lstm_step, verbose=False)

    def joint_norm(cell, x, h, c):
        a = F.layer_norm(x @ cell.weight_ih.T + h @ cell.weight_hh.T, (24,), cell.gain_x, cell.bias_x, cell.eps)
        i, f, g, o = (a + cell.bias).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(F.layer_norm(c, (6,), cell.gain_c, cell.bias_c, cell.eps)), c

    def normalized_carry(cell, x, h, c):
        h, c = _manual_ln_lstm_step(cell, x, h, c)
        return h, F.layer_norm(c, (6,), cell.gain_c, cell.bias_c, cell.eps)

    report = ch.check_my_ln_lstm_step(joint_norm, verbose=False)
    assert report["returns a pair (h, c)"] and report.failed == ["hidden state h_t", "cell state c_t"]
    report = ch.check_my_ln_lstm_step(normalized_carry, verbose=False)
    assert report.failed == ["cell state c_t"]
    # calling the cell gives the right values, but the exercise forbids it
    report = ch.check_my_ln_lstm_step(lambda cell, x, h, c: cell(x, (h, c)), verbose=False)
    assert report.failed == ["without calling the cell"]
    report = ch.check_my_ln_lstm_step(lambda cell, x, h, c: cell.forward(x, (h, c)), verbose=False)
    assert report.failed == ["without calling the cell"]
    report = ch.check_my_ln_lstm_step(lambda *a: None, verbose=False)
    assert report.failed == ["returns a pair (h, c)", "hidden state h_t", "cell state c_t"]


def test_checkers_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ch.check_my_ln_lstm_step(_manual_ln_lstm_step, verbose=False)
    ch.check_my_rms_norm(good_rms, verbose=False)
    torch.testing.assert_close(torch.rand(3), expected)
