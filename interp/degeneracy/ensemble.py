"""Train N networks of one architecture as one vectorized computation, and keep them together.

Each member has its own initialization seed and its own stream of training batches (data order);
everything else (task, architecture, optimizer settings) is shared. The members' parameters are
stacked along a leading model axis (``torch.func.stack_module_state``); the forward pass and
loss of all N models is a single ``vmap`` over ``functional_call`` and one backward pass through
that batched graph gives every model its own gradient. AdamW is elementwise, so one optimizer
over the stacked tensors is exactly N independent optimizers; gradient clipping is per model.

``vectorized=False`` trains the same members one at a time with ordinary module calls on the
same data; it is the reference the vectorized path is tested and benchmarked against.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm import tqdm

from interp import __version__
from interp.degeneracy.training import DataStream, activity, held_out, masked_loss
from interp.results import Result
from interp.rnn.nets import make_net
from interp.rnn.tasks import Task, TaskBatch, make_task

MIN_ACCURACY = 0.9  # a member below this held-out accuracy has not learned the task
DATA_SEED_OFFSET = 1 << 20  # default data seed of model i = seeds[i] + offset (disjoint from inits)


@dataclasses.dataclass
class Ensemble(Result):
    """N trained networks: stacked parameters ``[N, ...]`` plus everything that produced them.

    ``net`` and ``task`` are the ``make_net`` / ``make_task`` configs; ``losses [steps, N]`` the
    training loss of every member (task loss, penalties excluded); ``accuracy [N]`` on a held-out
    test batch (``settings["eval_seed"]``).
    """

    params: dict[str, Tensor]
    net: dict[str, Any]
    task: dict[str, Any]
    seeds: list[int]
    data_seeds: list[int]
    settings: dict[str, Any]
    losses: Tensor
    accuracy: Tensor
    version: str = __version__

    @property
    def n_models(self) -> int:
        return len(self.seeds)

    def make_task(self) -> Task:
        return make_task(**self.task)

    def module(self, index: int) -> nn.Module:
        """Member ``index`` as an ordinary module (a copy; editing it leaves the ensemble alone)."""
        if not 0 <= index < self.n_models:
            raise IndexError(f"model index {index} out of range for an ensemble of {self.n_models}")
        net = make_net(**self.net)
        net.load_state_dict({name: value[index].clone() for name, value in self.params.items()})
        return net

    @torch.no_grad()
    def run(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """All members on the same inputs ``x [B, T, I]`` -> ``(outputs [N, B, T, O], states [N, B, T, S])``."""
        template = _template(self.net)
        return vmap(lambda p, inputs: functional_call(template, p, (inputs,)), in_dims=(0, None))(
            self.params, x
        )

    def table(self, min_accuracy: float = MIN_ACCURACY) -> str:
        """One row per member; members below ``min_accuracy`` (default :data:`MIN_ACCURACY`,
        measure_degeneracy's threshold) are marked and counted."""
        below = [i for i, a in enumerate(self.accuracy.tolist()) if a < min_accuracy]
        lines = [
            f"Ensemble of {self.n_models} {self.net['kind']} nets (hidden {self.net['hidden_size']}) "
            f"on {self.task['name']}, {self.settings['steps']} steps; "
            f"{len(below)} below accuracy {min_accuracy:g}",
            f"{'model':>5} {'seed':>8} {'final loss':>11} {'accuracy':>9}",
        ]
        for i, seed in enumerate(self.seeds):
            lines.append(
                f"{i:>5} {seed:>8} {float(self.losses[-1, i]):>11.4g} {float(self.accuracy[i]):>9.3f}"
                + ("  < below threshold" if i in below else "")
            )
        return "\n".join(lines)

    def figure(self):
        from interp.viz import line_chart  # lazy: plotly is not needed to train

        series = {f"model {i}": self.losses[:, i] for i in range(self.n_models)}
        return line_chart(
            series,
            title=f"Training loss of {self.n_models} {self.net['kind']} nets on {self.task['name']}",
            x_label="step",
            y_label="loss",
        )


def _template(net_config: dict[str, Any]) -> nn.Module:
    """A parameterless copy of the architecture for ``functional_call`` (weights on 'meta')."""
    return make_net(**net_config).to("meta")


def _check_settings(
    n_models: int, seeds: list[int], data_seeds: list[int], steps: int, lr: float
) -> None:
    if n_models < 1:
        raise ValueError(f"n_models must be >= 1, got {n_models}")
    if len(seeds) != n_models or len(data_seeds) != n_models:
        raise ValueError(
            f"need one seed and one data seed per model ({n_models}); got {len(seeds)} and {len(data_seeds)}"
        )
    if len(set(seeds)) != n_models:
        raise ValueError(
            f"seeds must be distinct (identical seeds give identical members), got {seeds}"
        )
    if len(set(data_seeds)) != n_models:
        raise ValueError(
            "data_seeds must be distinct (a shared data seed gives members the same training "
            f"batches in the same order), got {data_seeds}"
        )
    if steps < 1 or lr <= 0:
        raise ValueError(f"steps must be >= 1 and lr > 0, got steps={steps}, lr={lr}")


def _clip_per_model(grads: dict[str, Tensor], max_norm: float) -> None:
    """In place: scale each model's gradient to norm <= max_norm (as torch.nn.utils.clip_grad_norm_)."""
    norms = torch.stack([g.flatten(1).square().sum(1) for g in grads.values()]).sum(0).sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads.values():
        g.mul_(scale.view(-1, *([1] * (g.ndim - 1))))


def train_ensemble(
    task: str | Task = "flipflop",
    net: str = "rnn_tanh",
    n_models: int = 8,
    seeds: list[int] | None = None,
    *,
    hidden_size: int = 32,
    steps: int = 500,
    batch_size: int = 32,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    activity_penalty: float = 0.0,
    grad_clip: float | None = 1.0,
    data_seeds: list[int] | None = None,
    eval_batch: int = 128,
    eval_seed: int = 0,
    task_options: dict[str, Any] | None = None,
    net_options: dict[str, Any] | None = None,
    vectorized: bool = True,
    progress: bool = True,
) -> Ensemble:
    """Train ``n_models`` networks of kind ``net`` on ``task``, all at once.

    ``seeds[i]`` sets model i's initial weights (default ``0..n_models-1``); ``data_seeds[i]`` its
    training batches (default ``seeds[i] + 2**20``); both lists must be free of duplicates. The
    loss is the task loss plus ``activity_penalty * mean(h²)`` over the states of the trial steps
    (padding after a variable-length trial's end excluded); ``weight_decay`` is AdamW's decay.
    ``vectorized=False`` trains the members one after another on the same data (reference path).
    """
    task_obj = make_task(task, **(task_options or {})) if isinstance(task, str) else task
    if not isinstance(task_obj, Task):
        raise TypeError(
            f"task must be a task name or an interp.rnn.tasks.Task, got {type(task).__name__}"
        )
    seeds = list(range(n_models)) if seeds is None else [int(s) for s in seeds]
    data_seeds = (
        [s + DATA_SEED_OFFSET for s in seeds]
        if data_seeds is None
        else [int(s) for s in data_seeds]
    )
    _check_settings(n_models, seeds, data_seeds, steps, lr)
    models = [
        make_net(
            net,
            task_obj.input_size,
            hidden_size,
            task_obj.output_size,
            seed=s,
            **(net_options or {}),
        )
        for s in seeds
    ]
    stream = DataStream(task_obj, data_seeds, batch_size)
    settings = {
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "activity_penalty": activity_penalty,
        "grad_clip": grad_clip,
        "eval_batch": eval_batch,
        "eval_seed": eval_seed,
        "vectorized": vectorized,
        "optimizer": "AdamW",
    }
    trainer = _train_vectorized if vectorized else _train_sequential
    params, losses = trainer(models, task_obj.loss, stream, settings, progress)
    ensemble = Ensemble(
        params=params,
        net=models[0].config,
        task=task_obj.config,
        seeds=seeds,
        data_seeds=data_seeds,
        settings=settings,
        losses=losses,
        accuracy=torch.zeros(n_models),
    )
    test = held_out(task_obj, eval_seed, eval_batch)
    outputs, _ = ensemble.run(test.x)
    ensemble.accuracy = torch.tensor([task_obj.accuracy(out, test) for out in outputs])
    return ensemble


def _objective(outputs: Tensor, states: Tensor, batch: TaskBatch, kind: str, penalty: float):
    task_loss = masked_loss(outputs, batch.y, batch.mask, kind)
    return task_loss + penalty * activity(states, batch.mask), task_loss


def _train_vectorized(models, kind, stream, settings, progress):
    template = copy.deepcopy(models[0]).to("meta")
    stacked, _ = stack_module_state(models)
    params = {name: value.detach().clone().requires_grad_(True) for name, value in stacked.items()}
    penalty = settings["activity_penalty"]

    def loss_one(p, x, y, mask):
        outputs, states = functional_call(template, p, (x,))
        return _objective(outputs, states, TaskBatch(x, y, mask), kind, penalty)

    # vmap the forward pass only and let ordinary autograd differentiate the batched graph: the
    # summed loss has independent per-model terms, so each model gets exactly its own gradient.
    # (vmap(grad(...)) gives the same numbers but pays functorch's per-op overhead twice.)
    forward = vmap(loss_one)
    optimizer = torch.optim.AdamW(
        list(params.values()), lr=settings["lr"], weight_decay=settings["weight_decay"]
    )
    losses = []
    bar = tqdm(range(settings["steps"]), desc="ensemble", disable=not progress)
    for step in bar:
        batch = stream.next()
        optimizer.zero_grad()
        total, task_loss = forward(params, batch.x, batch.y, batch.mask)
        total.sum().backward()
        if settings["grad_clip"] is not None:
            _clip_per_model(
                {name: value.grad for name, value in params.items()}, settings["grad_clip"]
            )
        optimizer.step()
        task_loss = task_loss.detach()
        losses.append(task_loss)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{float(task_loss.mean()):.4f}")
    return {name: value.detach() for name, value in params.items()}, torch.stack(losses)


def _train_sequential(models, kind, stream, settings, progress):
    optimizers = [
        torch.optim.AdamW(m.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
        for m in models
    ]
    penalty = settings["activity_penalty"]
    losses = []
    for _ in tqdm(range(settings["steps"]), desc="sequential", disable=not progress):
        batch = stream.next()
        row = []
        for i, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
            optimizer.zero_grad()
            outputs, states = model(batch.x[i])
            total, task_loss = _objective(
                outputs, states, TaskBatch(batch.x[i], batch.y[i], batch.mask[i]), kind, penalty
            )
            total.backward()
            if settings["grad_clip"] is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings["grad_clip"])
            optimizer.step()
            row.append(task_loss.detach())
        losses.append(torch.stack(row))
    params, _ = stack_module_state(models)
    return {name: value.detach() for name, value in params.items()}, torch.stack(losses)
