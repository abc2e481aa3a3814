"""Nets (protocol, torch.func friendliness, torch equivalence) and the trainer (learning, save/load)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from interp.rnn import Recurrent, load_run, make_net, make_task, save_run, train
from interp.rnn.nets import known_nets
from interp.rnn.tasks import Task, TaskBatch

KINDS = ["rnn_tanh", "rnn_relu", "gru", "lstm", "leaky"]


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny nets: extra threads only add contention on a shared machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("kind", KINDS)
def test_net_protocol_shapes_and_config(kind):
    net = make_net(kind, 2, 5, 3, seed=0)
    assert isinstance(net, Recurrent)
    outputs, states = net(torch.randn(4, 6, 2))
    assert outputs.shape == (4, 6, 3) and states.shape == (4, 6, net.state_size)
    rebuilt = make_net(**net.config)
    rebuilt.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, 2)
    torch.testing.assert_close(rebuilt(x)[0], net(x)[0])
    assert torch.equal(
        make_net(kind, 2, 5, 3, seed=1).weight_hh, make_net(kind, 2, 5, 3, seed=1).weight_hh
    )


@pytest.mark.parametrize(
    ("kind", "torch_cls"), [("gru", nn.GRU), ("lstm", nn.LSTM), ("rnn_tanh", nn.RNN)]
)
def test_nets_match_torch_modules(kind, torch_cls):
    net = make_net(kind, 2, 4, 1, seed=0).double()
    module = torch_cls(2, 4, batch_first=True).double()
    with torch.no_grad():
        module.weight_ih_l0.copy_(net.weight_ih)
        module.weight_hh_l0.copy_(net.weight_hh)
        module.bias_ih_l0.copy_(getattr(net, "bias_ih", getattr(net, "bias", None)))
        module.bias_hh_l0.copy_(getattr(net, "bias_hh", torch.zeros(module.bias_hh_l0.shape)))
    x = torch.randn(3, 9, 2, dtype=torch.float64)
    torch.testing.assert_close(net(x)[1][..., :4], module(x)[0], rtol=0, atol=1e-12)


def test_leaky_update_and_time_constants():
    net = make_net("leaky", 1, 3, 1, tau_init=4.0, nonlinearity="tanh").double()
    torch.testing.assert_close(net.time_constants, torch.full((3,), 4.0, dtype=torch.float64))
    with torch.no_grad():
        net.tau_raw.fill_(-30.0)  # softplus -> 0, so tau -> 1 (never below)
    assert (net.time_constants >= 1).all()
    h, x = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 1, dtype=torch.float64)
    tau = net.time_constants
    want = (1 - 1 / tau) * h + torch.tanh(
        h @ net.weight_hh.T + x @ net.weight_ih.T + net.bias
    ) / tau
    torch.testing.assert_close(net.step(h, x), want)


def test_ensemble_with_torch_func_matches_individual_nets():
    nets = [make_net("gru", 2, 4, 1, seed=s) for s in range(3)]
    params, buffers = stack_module_state(nets)
    x = torch.randn(5, 7, 2)

    def run(p, b):
        return functional_call(nets[0], (p, b), (x,))[0]

    batched = vmap(run)(params, buffers)
    for i, net in enumerate(nets):
        torch.testing.assert_close(batched[i], net(x)[0])


def test_unknown_kind_and_bad_sizes():
    with pytest.raises(ValueError, match="known kinds: .*gru"):
        make_net("transformer", 1, 2, 3)
    with pytest.raises(ValueError, match="hidden_size"):
        make_net("gru", 1, 0, 3)
    assert set(KINDS) <= set(known_nets())
    with pytest.raises(ValueError, match="input_size"):
        train(make_net("gru", 2, 4, 3), make_task("flipflop", bits=3), steps=1, progress=False)


def test_training_learns_flipflop_and_run_roundtrips(tmp_path):
    torch.manual_seed(0)
    task = make_task("flipflop", bits=1, steps=20)
    net = make_net("gru", 1, 6, 1, seed=0)
    result = train(
        net,
        task,
        steps=150,
        lr=2e-2,
        eval_every=25,
        eval_batch=128,
        progress=False,
        target_accuracy=0.98,
    )
    assert result.final_accuracy >= 0.98, result.table()
    assert result.loss[-5:].mean() < 0.5 * result.loss[:5].mean()
    assert result.eval_steps[-1] == result.steps_run
    path = save_run(tmp_path / "run", net, task, result)
    with pytest.raises(FileExistsError):
        save_run(path, net, task, result)
    loaded_net, loaded_task, loaded_result = load_run(path)
    assert loaded_task.config == task.config
    x = task.sample(3, torch.Generator().manual_seed(1)).x
    torch.testing.assert_close(loaded_net(x)[0], net(x)[0], rtol=0, atol=0)
    assert torch.equal(loaded_result.loss, result.loss)
    assert "final test accuracy" in loaded_result.table()
    assert len(loaded_result.figure().data) == 3


class SplitProbe(Task):
    """Target 0 on the train and val splits, 1 on test: a net trained here reaches validation
    accuracy 1 quickly and test accuracy 0, so the result says which split each number read."""

    name, loss, input_size, output_size, tolerance = "split_probe", "mse", 1, 1, 0.1
    splits = ("train", "val", "test")

    def sample(self, batch, generator, *, split="train", length=None):
        x = torch.randn(batch, 4, 1, generator=generator)
        y = torch.full((batch, 4, 1), 1.0 if split == "test" else 0.0)
        return TaskBatch(x, y, torch.ones(batch, 4, dtype=torch.bool))


def test_early_stopping_reads_validation_and_test_is_only_reported():
    net = make_net("gru", 1, 4, 1, seed=0)
    result = train(net, SplitProbe(), steps=400, eval_every=5, target_accuracy=0.99, progress=False)
    assert result.stopped_early and result.steps_run < 400, result.table()
    assert result.validation_split == "val" and result.eval_accuracy[-1] >= 0.99
    assert result.eval_steps[-1] == result.steps_run
    assert result.final_accuracy == 0.0 and result.test_loss > 0.5  # test targets are 1


def test_no_early_stop_without_reaching_the_target():
    task = make_task("flipflop", bits=2, steps=10)
    net = make_net("gru", 2, 4, 2, seed=0)
    result = train(net, task, steps=6, eval_every=2, target_accuracy=1.0, progress=False)
    assert not result.stopped_early and result.steps_run == 6
    assert result.eval_steps.tolist() == [2, 4, 6] and result.validation_split == "test"
    assert result.eval_accuracy.max() < 1.0
