"""Tests for chapter 3 (the limits of batch norm): its `library` cells."""

import io
import multiprocessing
from contextlib import redirect_stdout

import pytest
import torch
from torch import nn

from booktools.library import load_chapter


@pytest.fixture(scope="module")
def ch():
    return load_chapter(3)


def copy_linear_weights(ensemble, member, plain):
    """Give make_mlp's Linear layers the weights of one EnsembleMLP member."""
    with torch.no_grad():
        for i, layer in enumerate([0, 3, 6]):
            plain[layer].weight.copy_(ensemble.weights[i][member].T)
            plain[layer].bias.copy_(ensemble.biases[i][member])


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


# Batch Renormalization, bias correction, PreciseBN, shifts


def test_batch_renorm_is_batch_norm_until_relaxed(ch):
    torch.manual_seed(0)
    x, g = torch.randn(16, 6) * 2 + 1, torch.randn(16, 6)
    ours, ref = ch.BatchRenorm1d(6, relax_steps=(5, 10)), nn.BatchNorm1d(6)
    assert ours.limits() == (1.0, 0.0)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    (ours(xa) * g).sum().backward()
    (ref(xb) * g).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.num_batches_tracked.fill_(10)
    assert ours.limits() == (3.0, 5.0)
    ours.num_batches_tracked.fill_(7)
    r_max, d_max = ours.limits()
    assert 1.0 < r_max < 3.0 and 0.0 < d_max < 5.0


def test_batch_renorm_trains_the_evaluation_function_where_unclipped(ch):
    torch.manual_seed(0)
    x = torch.randn(16, 6) * 2 + 1
    bn = ch.BatchRenorm1d(6, r_max=100.0, d_max=100.0, relax_steps=(0, 0))
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 3)
        bn.weight.uniform_(0.5, 1.5)
    expected = bn.eval()(x).detach()
    xa = x.clone().requires_grad_()
    out = bn.train()(xa)
    torch.testing.assert_close(out.detach(), expected, rtol=1e-4, atol=1e-4)
    # r and d are constants for autograd: the gradient is batch norm's, scaled by r.
    out.sum().backward()
    assert torch.isfinite(xa.grad).all()


def test_batch_renorm_clips_towards_batch_norm(ch):
    torch.manual_seed(0)
    x = torch.randn(16, 4) * 5 + 10  # far from the initial running estimates 0 and 1
    bn = ch.BatchRenorm1d(4, r_max=2.0, d_max=1.0, relax_steps=(0, 0)).train()
    out = bn(x)
    x_hat = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + bn.eps)
    std = torch.sqrt(x.var(0, unbiased=False) + bn.eps)
    r = (std / 1.0).clamp(0.5, 2.0)  # running std is sqrt(1 + eps), about 1
    torch.testing.assert_close(out, x_hat * r + 1.0, rtol=1e-3, atol=1e-3)


def test_batch_renorm_bad_input(ch):
    with pytest.raises(ValueError, match="r_max"):
        ch.BatchRenorm1d(4, r_max=0.5)
    with pytest.raises(ValueError, match="relax_steps"):
        ch.BatchRenorm1d(4, relax_steps=(10, 5))
    bn = ch.BatchRenorm1d(4)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        bn(torch.randn(8, 5))
    with pytest.raises(ValueError, match="at least 2"):
        bn(torch.randn(1, 4))


def test_bias_correction_recovers_the_batch_statistics(ch):
    torch.manual_seed(0)
    x = torch.randn(20, 3) * 3 + 2
    bn = nn.BatchNorm1d(3, momentum=0.01).train()
    for _ in range(4):
        bn(x)
    mean, var = ch.bias_corrected_statistics(bn)
    torch.testing.assert_close(mean, x.mean(0))
    torch.testing.assert_close(var, x.var(0))  # unbiased, as running_var
    with pytest.raises(ValueError, match="no training batch"):
        ch.bias_corrected_statistics(nn.BatchNorm1d(3))
    with pytest.raises(ValueError, match="momentum=None"):
        ch.bias_corrected_statistics(nn.BatchNorm1d(3, momentum=None))


def test_population_statistics_are_exact_layer_by_layer(ch):
    torch.manual_seed(0)
    x = torch.randn(100, 64)
    model = ch.train_mlp(ch.make_mlp("batch"), x, torch.randint(0, 10, (100,)), epochs=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = ch.population_statistics(model, x)
    for k, v in model.state_dict().items():  # the model is left as it was
        torch.testing.assert_close(v, before[k])
    h = model[0](x)
    torch.testing.assert_close(stats[0][0], h.mean(0))
    torch.testing.assert_close(stats[0][1], h.var(0))
    with torch.no_grad():
        h1 = (h - stats[0][0]) / torch.sqrt(stats[0][1] + 1e-5) * model[1].weight + model[1].bias
        h2 = model[3](torch.relu(h1))
    torch.testing.assert_close(stats[1][0], h2.mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(stats[1][1], h2.var(0), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="no batch-norm layer"):
        ch.population_statistics(ch.make_mlp("layer"), x)


def test_batch_norm_statistics_swaps_and_restores(ch):
    model = ch.make_mlp("batch").eval()
    layers = ch.batch_norm_layers(model)
    stats = [(torch.full((64,), 2.0), torch.full((64,), 4.0)) for _ in layers]
    with ch.batch_norm_statistics(model, stats):
        assert torch.equal(layers[1].running_var, torch.full((64,), 4.0))
    assert torch.equal(layers[1].running_var, torch.ones(64))
    with pytest.raises(ValueError, match="the model has 2"):
        with ch.batch_norm_statistics(model, stats[:1]):
            pass


def test_shifted(ch):
    x = torch.randn(10, 64)
    torch.testing.assert_close(ch.shifted(x, "scale, whole set", 3.0), 3 * x)
    torch.testing.assert_close(ch.shifted(x, "offset, whole set", 1.5), x + 1.5)
    per_example = ch.shifted(x, "scale, per example", 4.0, seed=1)
    factors = per_example[:, 0] / x[:, 0]
    assert ((factors >= 0.25 - 1e-6) & (factors <= 4 + 1e-6)).all() and factors.std() > 0
    torch.testing.assert_close(per_example, x * factors[:, None])
    with pytest.raises(ValueError, match="unknown shift"):
        ch.shifted(x, "rotate", 1.0)


# Recurrent batch norm


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
    with pytest.raises(ValueError, match="single"):
        bn(x[:1], 5)  # one example has no batch statistics
    with pytest.raises(ValueError, match="fallback"):
        ch.StepwiseBatchNorm(4, 2, fallback="zeros")
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        bn(torch.randn(8, 5), 0)


def test_stepwise_batch_norm_members_and_masks(ch):
    torch.manual_seed(0)
    x = torch.randn(2, 8, 4)
    alone, together = ch.StepwiseBatchNorm(4, 3), ch.StepwiseBatchNorm(4, 3, members=2)
    torch.testing.assert_close(together(x, 0)[1], ch.StepwiseBatchNorm(4, 3)(x[1], 0))
    torch.testing.assert_close(together(x, 0)[0], alone(x[0], 0))
    # Padding is left out of the statistics.
    mask = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0.0])
    masked = ch.StepwiseBatchNorm(4, 3)
    torch.testing.assert_close(masked(x[0], 1, mask)[:3], ch.StepwiseBatchNorm(4, 3)(x[0][:3], 1))
    torch.testing.assert_close(masked.running_mean[1], 0.1 * x[0][:3].mean(0))
    # A single live example is normalized to 0 (output: the bias) and not counted.
    single = ch.StepwiseBatchNorm(4, 3)
    out = single(x[0], 2, torch.tensor([1, 0, 0, 0, 0, 0, 0, 0.0]))
    torch.testing.assert_close(out[0], torch.zeros(4))
    assert int(single.steps_tracked[2]) == 0
    with pytest.raises(ValueError, match=r"\(2, N, 4\)"):
        together(x[0], 0)


def test_stepwise_batch_norm_recording_extends_the_table(ch):
    torch.manual_seed(0)
    bn = ch.StepwiseBatchNorm(4, max_steps=2).eval()
    bn.recording = True
    x = torch.randn(10, 4) * 2 + 1
    out = bn(x, 4)
    assert bn.max_steps == 5 and bn.has_statistics(4) and not bn.has_statistics(3)
    torch.testing.assert_close(bn.running_mean[4], x.mean(0))
    torch.testing.assert_close(bn.running_var[4], x.var(0))
    torch.testing.assert_close(out, (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + bn.eps))
    bn.recording = False
    torch.testing.assert_close(bn(x, 4), (x - x.mean(0)) / torch.sqrt(x.var(0) + bn.eps))


def test_ensemble_rnn_members_are_plain_rnns(ch):
    torch.manual_seed(0)
    model = ch.EnsembleRNN(["batch", "batch", "layer", "none"], hidden=8, max_steps=5).train()
    x = torch.randn(4, 6, 5, 1)
    out = model(x)
    assert out.shape == (4, 6, 5, 2)
    # Recompute member 1 (batch norm) and member 2 (layer norm) step by step.
    for member, kind in [(1, "batch"), (2, "layer"), (3, "none")]:
        h = torch.zeros(6, 8)
        bn = ch.StepwiseBatchNorm(8, 5).train()
        for t in range(5):
            a = x[member, :, t] @ model.w_x[member] + h @ model.w_h[member]
            if kind == "batch":
                a = bn(a, t)
            elif kind == "layer":
                a = nn.functional.layer_norm(a, (8,)) * model.layer_gain[0]
            h = torch.tanh(a + model.b[member])
            torch.testing.assert_close(out[member, :, t], h @ model.w_o[member] + model.b_o[member])
    # Members are independent: changing one member's input changes only its output.
    x2 = x.clone()
    x2[0] = torch.randn(6, 5, 1)
    torch.testing.assert_close(model(x2)[1:], model(x)[1:])
    with pytest.raises(ValueError, match="members=4"):
        model(torch.randn(3, 6, 5, 1))
    with pytest.raises(ValueError, match="contiguous"):
        ch.EnsembleRNN(["batch", "layer", "batch"])
    with pytest.raises(ValueError, match="unknown norm"):
        ch.EnsembleRNN(["group"])


def test_ensemble_rnn_recomputes_longer_statistics(ch):
    torch.manual_seed(0)
    model = ch.EnsembleRNN(["batch", "layer"], hidden=8, max_steps=4).train()
    model(torch.randn(2, 16, 4, 1))
    model.eval()
    with pytest.raises(ValueError, match="no running statistics"):
        model(torch.randn(2, 16, 6, 1))
    model.recompute_step_statistics(torch.randn(2, 32, 6, 1))
    assert model.batch_norm.max_steps == 6
    assert model(torch.randn(2, 16, 6, 1)).shape == (2, 16, 6, 2)


def test_leaky_sign_task(ch):
    x, y = ch.leaky_sign_task(2, 50, 12, [0.0, 0.25], torch.Generator().manual_seed(0))
    assert x.shape == (2, 50, 12, 1) and y.shape == (2, 50, 12)
    z = x[..., 0] - torch.tensor([0.0, 0.25])[:, None, None] * torch.arange(12.0)
    s = torch.zeros(2, 50)
    for t in range(12):
        s = 0.5 * s + z[:, :, t]
        assert torch.equal(y[:, :, t], (s > 0).long())
    # The trend shifts the inputs but not the labels: the same noise gives the same labels.
    x0, y0 = ch.leaky_sign_task(2, 50, 12, [0.0, 0.0], torch.Generator().manual_seed(0))
    assert torch.equal(y0, y)


def test_train_rnn_ensemble_learns(ch):
    model = ch.train_rnn_ensemble(["batch", "layer", "none"], trend=0.0, min_length=2,
                                  bucketed=[True, False, False], steps=8, updates=60)
    acc = ch.per_step_accuracy(model, 8, 0.0, n=300)
    assert acc.shape == (3, 8) and bool((acc.mean(1) > 0.75).all()), acc


# Small batches: the ensemble


def test_ensemble_members_are_independent(ch):
    torch.manual_seed(0)
    model = ch.EnsembleMLP(["batch", "batch", "layer", "none"])
    x = torch.rand(4, 5, 64)
    out = model(x)
    assert out.shape == (4, 5, 10)
    x2 = x.clone()
    x2[1] = torch.rand(5, 64)
    torch.testing.assert_close(model(x2)[[0, 2, 3]], out[[0, 2, 3]])
    with pytest.raises(ValueError, match="contiguous"):
        ch.EnsembleMLP(["batch", "layer", "batch"])
    with pytest.raises(ValueError, match="unknown norm"):
        ch.EnsembleMLP(["instance"])
    with pytest.raises(ValueError, match="unknown norm"):
        ch.EnsembleMLP(["layer:4"])
    with pytest.raises(ValueError, match="members=4"):
        model(torch.rand(3, 5, 64))
    with pytest.raises(ValueError, match="at least 2 examples"):
        model(torch.rand(4, 1, 64))
    with pytest.raises(ValueError, match="groups of 4"):
        ch.EnsembleMLP(["batch:4"])(torch.rand(1, 6, 64))


@pytest.mark.parametrize("norm", ["batch", "layer", "none", "group", "renorm", "batch:4"])
def test_ensemble_member_equals_plain_mlp(ch, norm):
    torch.manual_seed(0)
    plain_norm = {"group": lambda w: nn.GroupNorm(8, w),
                  "renorm": lambda w: ch.BatchRenorm1d(w, relax_steps=(0, 0)),
                  "batch:4": lambda w: ch.GhostBatchNorm(w, 4)}.get(norm, norm)
    ens = ch.EnsembleMLP([norm, norm]).train()
    plain = ch.make_mlp(plain_norm).train()
    copy_linear_weights(ens, 1, plain)
    for _ in range(3):  # several steps, so that Batch Renorm's corrections are not trivial
        x = torch.rand(2, 16, 64) * 2
        torch.testing.assert_close(ens(x)[1], plain(x[1]), rtol=1e-5, atol=1e-5)
    if norm in ("batch", "renorm", "batch:4"):  # the running estimates follow the plain layer's
        torch.testing.assert_close(ens.running_var[0, 1], plain[1].running_var)
        ens.eval()
        plain.eval()
        torch.testing.assert_close(ens(x)[1], plain(x[1]), rtol=1e-5, atol=1e-5)


def test_ensemble_recompute_statistics_is_population_statistics(ch):
    torch.manual_seed(0)
    ens = ch.EnsembleMLP(["batch", "batch"]).train()
    ens(torch.rand(2, 16, 64))
    plain = ch.make_mlp("batch")
    copy_linear_weights(ens, 0, plain)
    x = torch.randn(200, 64)
    ens.recompute_statistics(x)
    for layer, (mean, var) in enumerate(ch.population_statistics(plain, x)):
        torch.testing.assert_close(ens.running_mean[layer, 0], mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ens.running_var[layer, 0], var, rtol=1e-4, atol=1e-5)


def test_ensemble_accuracy_modes(ch):
    torch.manual_seed(0)
    ens = ch.EnsembleMLP(["batch", "layer"]).eval()
    x, y = torch.rand(30, 64), torch.randint(0, 10, (30,))
    before = ens.running_var.clone()
    eval_acc = ch.ensemble_accuracy(ens, x, y)
    train_acc = ch.ensemble_accuracy(ens, x, y, "train", batch_size=4)
    assert eval_acc.shape == train_acc.shape == (2,)
    torch.testing.assert_close(ens.running_var, before)
    assert not ens.training
    with pytest.raises(ValueError, match="batch_size"):
        ch.ensemble_accuracy(ens, x, y, "train")


def test_train_ensemble_learns(ch):
    x_train, y_train, x_test, y_test = ch.load_digits_split()
    model = ch.train_ensemble(["batch", "renorm", "layer", "group", "none"], x_train, y_train, 32,
                              examples=1300)
    acc = ch.ensemble_accuracy(model, x_test, y_test)
    assert acc.shape == (5,) and bool((acc > 0.5).all()), acc  # 40 steps: far above chance


# Synchronization


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


def test_ghost_batch_norm_normalizes_each_group(ch):
    torch.manual_seed(0)
    x = torch.randn(12, 5) * 3 + 1
    ghost = ch.GhostBatchNorm(5, 4)
    out = ghost(x)
    for start in range(0, 12, 4):
        reference = nn.BatchNorm1d(5)
        torch.testing.assert_close(out[start:start + 4], reference(x[start:start + 4]))
        if start == 0:  # running estimates follow the first group, as on device 0
            torch.testing.assert_close(ghost.running_var, reference.running_var)
    with pytest.raises(ValueError, match="multiple of 4"):
        ghost(torch.randn(10, 5))
    with pytest.raises(ValueError, match="at least 2"):
        ch.GhostBatchNorm(5, 1)


def test_data_parallel_sync_equals_single_process_local_equals_ghost(ch):
    world_size, per_device, steps = 2, 3, 3
    ref = ch.run_single_process("sync", world_size, per_device, steps=steps)
    sync = ch.run_data_parallel(world_size, "sync", per_device, steps=steps, timeout=60)
    local = ch.run_data_parallel(world_size, "local", per_device, steps=steps, timeout=60)
    ghost = ch.run_single_process("local", world_size, per_device, steps=steps)
    # The statistics each rank used in its last step: the global batch's mean and biased var.
    assert len(sync["rank_stats"]) == world_size
    for mean, var in sync["rank_stats"]:
        assert mean.shape == (32,) and var.shape == (32,)
        torch.testing.assert_close(mean, ref["stats"][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(var, ref["stats"][1], rtol=1e-5, atol=1e-5)
    for key, value in ref["state"].items():
        torch.testing.assert_close(sync["state"][key], value, rtol=1e-4, atol=1e-5)
    # Per-device statistics differ from the global ones, and so do the parameters ...
    assert any((m - ref["stats"][0]).abs().max() > 1e-3 for m, _ in local["rank_stats"])
    diff = max((local["state"][k] - v).abs().max().item() for k, v in ref["state"].items())
    assert diff > 1e-3
    # ... and they are exactly ghost batch norm in one process.
    for key, value in ghost["state"].items():
        torch.testing.assert_close(local["state"][key], value, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(local["rank_stats"][0][0], ghost["stats"][0], rtol=1e-5, atol=1e-5)
    # Communication: 1 gradient all-reduce, plus fwd + bwd per synchronized layer (2 layers).
    assert local["calls_per_step"] == 1 and sync["calls_per_step"] == 5
    assert sync["bytes_per_step"] - local["bytes_per_step"] == 2 * 2 * (2 * 32 + 1) * 4
    assert local["bytes_per_step"] == 4 * local["parameters"]


def test_data_parallel_layer_norm_needs_no_sync(ch):
    ref = ch.run_single_process("layer", 2, 4, steps=2)
    par = ch.run_data_parallel(2, "layer", 4, steps=2, timeout=60)
    assert par["rank_stats"] == [None, None]
    for key, value in ref["state"].items():
        torch.testing.assert_close(par["state"][key], value, rtol=1e-4, atol=1e-5)


def test_communication_census_grows_with_depth(ch):
    census = ch.communication_census([1, 3], world_size=2, steps=1, timeout=60)
    for depth in (1, 3):
        local, sync, layer = (census[(mode, depth)] for mode in ch.DATA_PARALLEL_MODES)
        assert local["calls"] == layer["calls"] == 1
        assert sync["calls"] == 1 + 2 * depth
        assert sync["bytes"] - local["bytes"] == depth * 2 * (2 * 32 + 1) * 4
    assert census[("local", 3)]["parameters"] > census[("local", 1)]["parameters"]


def test_run_in_processes_and_all_reduce_seconds(ch):
    def work(rank, world_size):
        t = torch.tensor([float(rank + 1)])
        ch.dist.all_reduce(t)
        return t.item()

    assert ch.run_in_processes(2, work, timeout=60) == [3.0, 3.0]
    seconds = ch.all_reduce_seconds(2, [8, 64], repeats=3, timeout=60)
    assert set(seconds) == {8, 64} and all(s > 0 for s in seconds.values())


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
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        bn(torch.randn(8, 5))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        bn(torch.randn(8, 4, 2))
    with pytest.raises(ValueError, match="more than one example"):
        bn(torch.randn(1, 4))
    with pytest.raises(ValueError, match="feature vectors"):
        ch.sync_batch_norm_stats(torch.randn(3))
    bn.eval()
    x = torch.randn(1, 4)  # one example is fine in evaluation: running statistics
    torch.testing.assert_close(bn(x), x / (1 + bn.eps) ** 0.5)


# Exercise checkers


def run_quietly(check, fn):
    out = io.StringIO()
    with redirect_stdout(out):
        report = check(fn)
    return report, out.getvalue()


def test_merge_statistics_checker(ch):
    def wrong_merge(counts, means, variances):  # forgets the spread of the means
        return means.mean(0), variances.mean(0)

    def naive_merge(counts, means, variances):  # E[x^2] - mean^2: loses precision
        n = counts.sum()
        mean = (counts[:, None] * means).sum(0) / n
        second = (counts[:, None] * (variances + means**2)).sum(0) / n
        return mean, second - mean**2

    def crashing(*args):
        raise RuntimeError("boom")

    def good_merge(counts, means, variances):
        w = (counts / counts.sum())[:, None]
        mean = (w * means).sum(0)
        return mean, (w * (variances + (means - mean) ** 2)).sum(0)

    for fn, expected in [(wrong_merge, False), (naive_merge, False), (crashing, False),
                         (good_merge, True)]:
        report, printed = run_quietly(ch.check_merge_statistics, fn)
        assert bool(report) is expected and len(report) == 4
        assert ("FAIL" in printed) is (not expected)
    report, _ = run_quietly(ch.check_merge_statistics, naive_merge)
    assert report.failed == ["mean 1e4 times the std, float32"]


def test_sync_bytes_checker(ch):
    report, printed = run_quietly(ch.check_sync_bytes, lambda widths, world_size, b=4: 2 * sum(widths) * b)
    assert not report and "FAIL" in printed
    report, _ = run_quietly(ch.check_sync_bytes, lambda widths, world_size, b=4: sum(2 * (2 * c + 1) * b for c in widths))
    assert report.failed == ["widths [32, 32], 1 processes, 4-byte numbers"]
    report, printed = run_quietly(ch.check_sync_bytes, lambda widths, world_size, b=4: (
        0 if world_size == 1 else sum(2 * (2 * c + 1) * b for c in widths)))
    assert report and "all 6 cases passed" in printed


def test_bias_correction_checker(ch):
    def uncorrected(mean, var, t, momentum):
        return mean, var

    def forgets_initial_variance(mean, var, t, momentum):
        if t < 1:
            raise ValueError("nothing to average")
        keep = (1 - momentum) ** t
        return mean / (1 - keep), var / (1 - keep)

    report, _ = run_quietly(ch.check_bias_correction, uncorrected)
    assert not report and "no batch seen yet" in report.failed
    report, _ = run_quietly(ch.check_bias_correction, forgets_initial_variance)
    assert not report and report["no batch seen yet"]
    def corrected(mean, var, t, momentum):
        if t < 1:
            raise ValueError("nothing to average")
        keep = (1 - momentum) ** t
        return mean / (1 - keep), (var - keep) / (1 - keep)

    report, printed = run_quietly(ch.check_bias_correction, corrected)
    assert report and "FAIL" not in printed


def test_recompute_step_statistics_replaces_trained_statistics(ch):
    # Section 2.1's control: statistics of steps that training did reach are replaced by the
    # population statistics of the new sequences, step by step, for every member.
    torch.manual_seed(0)
    model = ch.EnsembleRNN(["batch", "batch"], hidden=8, max_steps=3).train()
    mask = torch.ones(2, 16, 3, dtype=torch.bool)
    mask[:, 4:, 2] = False  # few sequences reach the last step
    model(torch.randn(2, 16, 3, 1), mask)
    x = torch.randn(2, 64, 3, 1)
    model.recompute_step_statistics(x)
    for member in range(2):
        h = torch.zeros(64, 8)
        for t in range(3):
            a = x[member, :, t] @ model.w_x[member] + h @ model.w_h[member]
            torch.testing.assert_close(model.batch_norm.running_mean[t, member], a.mean(0))
            torch.testing.assert_close(model.batch_norm.running_var[t, member], a.var(0))
            normalized = (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + model.batch_norm.eps)
            h = torch.tanh(normalized * model.batch_norm.weight[member] + model.batch_norm.bias[member]
                           + model.b[member])
