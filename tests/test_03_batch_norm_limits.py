"""Tests for chapter 3 (the four limits of batch norm): its `library` cells."""

import io
import multiprocessing
from contextlib import redirect_stdout

import pytest
import torch

from booktools.library import load_chapter


@pytest.fixture(scope="module")
def ch():
    return load_chapter(3)


def test_loading_runs_no_experiment(ch):
    # The library cells define things only: no worker processes, no collectives.
    assert multiprocessing.active_children() == []
    assert ch.COMMUNICATION == {"calls": 0, "bytes": 0, "seconds": 0.0}
    assert ch.distributed_world_size() == 1


def test_evaluate_leaves_buffers_alone(ch):
    torch.manual_seed(0)
    model = ch.make_mlp("batch")
    x, y = torch.rand(40, 64), torch.randint(0, 10, (40,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ch.evaluate(model, x, y, "train", batch_size=8)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert model.training


def test_sync_stats_single_process_are_local_stats(ch):
    x = torch.randn(10, 5, dtype=torch.float64) * 3 + 2
    mean, var, n = ch.sync_batch_norm_stats(x)
    torch.testing.assert_close(mean, x.mean(0))
    torch.testing.assert_close(var, x.var(0, unbiased=False))
    assert float(n) == 10


def test_synced_batch_norm_matches_batchnorm1d_forward_backward(ch):
    torch.manual_seed(0)
    x = torch.randn(12, 6) * 2 + 1
    ours, ref = ch.SyncedBatchNorm(6), torch.nn.BatchNorm1d(6)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.normal_()
        ref.weight.copy_(ours.weight)
        ref.bias.copy_(ours.bias)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn(12, 6)
    (ours(xa) * g).sum().backward()
    (ref(xb) * g).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)


def test_data_parallel_sync_equals_single_process_local_differs(ch):
    world_size, per_device, steps = 2, 3, 3
    ref = ch.run_single_process("sync", world_size, per_device, steps=steps)
    sync = ch.run_data_parallel(world_size, "sync", per_device, steps=steps, timeout=60)
    local = ch.run_data_parallel(world_size, "local", per_device, steps=steps, timeout=60)
    # The statistics each rank used in its last step: the global batch's mean and biased var.
    assert len(sync["rank_stats"]) == world_size
    for mean, var in sync["rank_stats"]:
        assert mean.shape == (32,) and var.shape == (32,)
        torch.testing.assert_close(mean, ref["stats"][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(var, ref["stats"][1], rtol=1e-5, atol=1e-5)
    for key, value in ref["state"].items():
        torch.testing.assert_close(sync["state"][key], value, rtol=1e-4, atol=1e-5)
    # Per-device statistics differ from the global ones, and so do the parameters.
    assert any((m - ref["stats"][0]).abs().max() > 1e-3 for m, _ in local["rank_stats"])
    diff = max((local["state"][k] - v).abs().max().item() for k, v in ref["state"].items())
    assert diff > 1e-3
    # Communication: 1 gradient all-reduce, plus fwd + bwd per synchronized layer (2 layers).
    assert local["calls_per_step"] == 1 and sync["calls_per_step"] == 5
    assert sync["bytes_per_step"] - local["bytes_per_step"] == 2 * 2 * (2 * 32 + 1) * 4


def test_data_parallel_layer_norm_needs_no_sync(ch):
    ref = ch.run_single_process("layer", 2, 4, steps=2)
    par = ch.run_data_parallel(2, "layer", 4, steps=2, timeout=60)
    assert par["rank_stats"] == [None, None]
    for key, value in ref["state"].items():
        torch.testing.assert_close(par["state"][key], value, rtol=1e-4, atol=1e-5)


def test_run_data_parallel_rejects_bad_arguments(ch):
    with pytest.raises(ValueError, match="mode"):
        ch.run_data_parallel(2, "group")
    with pytest.raises(ValueError, match="mode"):
        ch.run_single_process("group", 2, 4)
    with pytest.raises(ValueError, match="world_size"):
        ch.run_data_parallel(1, "sync")


def test_run_data_parallel_reports_worker_errors(ch):
    # One example per device: per-device batch norm cannot normalize, and the parent must
    # get the worker's error instead of hanging.
    with pytest.raises(RuntimeError, match="more than one example"):
        ch.run_data_parallel(2, "local", per_device=1, steps=1, timeout=60)


def test_synced_batch_norm_bad_input(ch):
    bn = ch.SyncedBatchNorm(4)
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        bn(torch.randn(8, 5))
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        bn(torch.randn(8, 4, 2))
    with pytest.raises(ValueError, match="more than one example"):
        bn(torch.randn(1, 4))
    with pytest.raises(ValueError, match="feature vectors"):
        ch.sync_batch_norm_stats(torch.randn(3))
    bn.eval()
    x = torch.randn(1, 4)  # one example is fine in evaluation: running statistics
    torch.testing.assert_close(bn(x), x / (1 + bn.eps) ** 0.5)


def test_stepwise_batch_norm_keeps_separate_statistics(ch):
    torch.manual_seed(0)
    bn = ch.StepwiseBatchNorm(4, max_steps=3)
    xs = [torch.randn(16, 4) * (t + 1) + 5 * t for t in range(2)]
    for t, x in enumerate(xs):
        assert bn(x, t).shape == (16, 4)
    assert bn.steps_tracked.tolist() == [1, 1, 0]
    for t, x in enumerate(xs):
        torch.testing.assert_close(bn.running_mean[t], 0.1 * x.mean(0))
        torch.testing.assert_close(bn.running_var[t], 0.9 + 0.1 * x.var(0))
    torch.testing.assert_close(bn.running_mean[2], torch.zeros(4))
    assert bn.has_statistics(1) and not bn.has_statistics(2) and not bn.has_statistics(7)


def test_stepwise_batch_norm_longer_sequence_errors_or_falls_back(ch):
    torch.manual_seed(0)
    bn = ch.StepwiseBatchNorm(4, max_steps=2)
    with pytest.raises(ValueError, match="beyond max_steps"):
        bn(torch.randn(8, 4), 2)  # training past max_steps
    bn(torch.randn(8, 4), 0)
    bn(torch.randn(8, 4) + 3, 1)
    bn.eval()
    x = torch.randn(8, 4)
    with pytest.raises(ValueError, match="no running statistics for time step 5"):
        bn(x, 5)
    bn.fallback = "last"
    torch.testing.assert_close(bn(x, 5), bn(x, 1))
    bn.fallback = "batch"
    expected = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + bn.eps)
    torch.testing.assert_close(bn(x, 5), expected)
    with pytest.raises(ValueError, match="fallback"):
        ch.StepwiseBatchNorm(4, 2, fallback="zeros")


def test_recurrent_classifier_shapes_and_lengths(ch):
    torch.manual_seed(0)
    x = ch.digit_rows(torch.rand(6, 64), 8)
    assert x.shape == (6, 8, 8)
    assert ch.digit_rows(torch.rand(6, 64), 12).shape == (6, 12, 8)
    for norm in ["batch", "layer", "none"]:
        model = ch.RecurrentClassifier(norm=norm, max_steps=8)
        assert model(x).shape == (6, 10)
    model = ch.RecurrentClassifier(norm="batch", max_steps=8).eval()
    model.train()
    model(x)
    model.eval()
    longer = ch.digit_rows(torch.rand(6, 64), 10)
    with pytest.raises(ValueError, match="no running statistics"):
        model(longer)
    assert ch.RecurrentClassifier(norm="layer").eval()(longer).shape == (6, 10)


def test_ensemble_members_are_independent(ch):
    torch.manual_seed(0)
    model = ch.EnsembleMLP(["batch", "batch", "layer", "none"])
    x = torch.rand(4, 5, 64)
    out = model(x)
    assert out.shape == (4, 5, 10)
    x2 = x.clone()
    x2[1] = torch.rand(5, 64)
    out2 = model(x2)
    torch.testing.assert_close(out2[[0, 2, 3]], out[[0, 2, 3]])
    with pytest.raises(ValueError, match="contiguous"):
        ch.EnsembleMLP(["batch", "layer", "batch"])
    with pytest.raises(ValueError, match="unknown norm"):
        ch.EnsembleMLP(["group"])
    with pytest.raises(ValueError, match="members=4"):
        model(torch.rand(3, 5, 64))
    with pytest.raises(ValueError, match="at least 2 examples"):
        model(torch.rand(4, 1, 64))


def test_ensemble_member_equals_plain_mlp(ch):
    torch.manual_seed(0)
    for norm in ["batch", "layer", "none"]:
        ens = ch.EnsembleMLP([norm, norm]).train()
        plain = ch.make_mlp(norm).train()
        with torch.no_grad():
            for i, layer in enumerate([0, 3, 6]):
                plain[layer].weight.copy_(ens.weights[i][1].T)
                plain[layer].bias.copy_(ens.biases[i][1])
        x = torch.rand(2, 16, 64)
        torch.testing.assert_close(ens(x)[1], plain(x[1]), rtol=1e-5, atol=1e-5)
        if norm == "batch":  # the running statistics follow nn.BatchNorm1d
            torch.testing.assert_close(ens.running_var[0, 1], plain[1].running_var)
            ens.eval()
            plain.eval()
            torch.testing.assert_close(ens(x)[1], plain(x[1]), rtol=1e-5, atol=1e-5)


def test_train_ensemble_learns(ch):
    x_train, y_train, x_test, y_test = ch.load_digits_split()
    model = ch.train_ensemble(["batch", "layer", "none"], x_train, y_train, 32, examples=1300)
    acc = ch.ensemble_accuracy(model, x_test, y_test)
    assert acc.shape == (3,) and bool((acc > 0.5).all()), acc  # 40 steps: far above chance


def test_exercise_checkers_report_failure_and_success(ch):
    check_merge, check_bytes = ch.check_merge_statistics, ch.check_sync_bytes

    def wrong_merge(counts, means, variances):  # forgets the spread of the means
        return means.mean(0), variances.mean(0)

    def naive_merge(counts, means, variances):  # E[x^2] - mean^2: loses precision
        n = counts.sum()
        mean = (counts[:, None] * means).sum(0) / n
        second = (counts[:, None] * (variances + means**2)).sum(0) / n
        return mean, second - mean**2

    def good_merge(counts, means, variances):
        w = (counts / counts.sum())[:, None]
        mean = (w * means).sum(0)
        return mean, (w * (variances + (means - mean) ** 2)).sum(0)

    def crashing(*args):
        raise RuntimeError("boom")

    for fn, expected in [(wrong_merge, False), (naive_merge, False), (good_merge, True),
                         (crashing, False)]:
        out = io.StringIO()
        with redirect_stdout(out):
            assert check_merge(fn) is expected
        assert ("FAIL" in out.getvalue()) is (not expected)

    out = io.StringIO()
    with redirect_stdout(out):
        assert check_bytes(lambda widths, world_size, b=4: 2 * sum(widths) * b) is False
        assert check_bytes(lambda w, ws, b=4: 0 if ws == 1 else sum(2 * (2 * c + 1) * b for c in w))
    assert "FAIL" in out.getvalue() and "all checks passed" in out.getvalue()
