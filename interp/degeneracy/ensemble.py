"""Train N networks of one architecture as one vectorized computation, and keep them together.

Each member has its own initialization seed and its own stream of training batches (data order);
everything else (task, architecture, optimizer settings) is shared. The members' parameters are
stacked along a leading model axis (``torch.func.stack_module_state``); the forward pass and
loss of all N models is a single ``vmap`` over ``functional_call`` and one backward pass through
that batched graph gives every model its own gradient. AdamW is elementwise, so one optimizer
over the stacked tensors is exactly N independent optimizers; gradient clipping is per model.

Early stopping (Huang et al. 2024 train every net to a task-loss threshold, so nets are compared at
matched loss): with ``loss_threshold`` set, member ``i`` stops at the first step where its training
loss has been below the threshold for ``patience`` consecutive steps. From then on its parameters
are frozen: the batched Adam step is taken for all members and the stopped members' parameters are
then restored (masking the *update*; masking only the gradient would not do, since Adam's moments
keep moving a parameter whose gradient is zero). ``stop_step[i]`` is that step (−1: never reached
the threshold; such members are excluded by the degeneracy metrics and counted), ``final_loss[i]``
the training loss there (or at the last step). ``weight_change[name][i]`` is the relative change
``‖W_T − W_0‖ / ‖W_0‖`` of each parameter, the lazy (≪ 1) vs over-driven (≫ 1) diagnostic.

A learning-rate plateau schedule (``lr_plateau``, Huang et al.'s ReduceLROnPlateau) lowers each
member's learning rate on its own loss: the batched Adam step is rescaled per member (the update
of Adam with learning rate ``s·lr`` is ``s`` times the update with ``lr``), the same mechanism
that freezes stopped members (``s = 0``).

Net kinds with an ``lr_scale`` (the μP net of :mod:`interp.degeneracy.mup`: ``γ``) train with the
learning rate ``lr × lr_scale`` (``η = γ η0``; ``settings["effective_lr"]``).

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
from interp.degeneracy import mup as _mup  # noqa: F401  (registers the mup_leaky net kind)
from interp.degeneracy import paper_tasks as _paper_tasks  # noqa: F401  (registers paper tasks)
from interp.degeneracy.stopping import Plateau, Stopper, relative_change
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
    stop_step: Tensor = dataclasses.field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    final_loss: Tensor = dataclasses.field(default_factory=lambda: torch.zeros(0))
    weight_change: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    version: str = __version__

    @property
    def n_models(self) -> int:
        return len(self.seeds)

    def make_task(self) -> Task:
        return make_task(**self.task)

    @property
    def converged(self) -> list[int]:
        """Members that reached the loss threshold (all of them when training had none)."""
        if self.settings.get("loss_threshold") is None or len(self.stop_step) == 0:
            return list(range(self.n_models))
        return [i for i, s in enumerate(self.stop_step.tolist()) if s >= 0]

    def subset(self, indices: list[int]) -> Ensemble:
        """A new ensemble of the members ``indices`` (in that order), every per-member field sliced."""
        if not indices or any(not 0 <= i < self.n_models for i in indices):
            raise IndexError(f"indices must be a non-empty list in [0, {self.n_models}): {indices}")
        index = torch.tensor(indices, dtype=torch.long)

        def pick(t: Tensor, dim: int = 0) -> Tensor:
            return t.index_select(dim, index) if t.numel() else t

        return dataclasses.replace(
            self,
            params={k: v[index] for k, v in self.params.items()},
            seeds=[self.seeds[i] for i in indices],
            data_seeds=[self.data_seeds[i] for i in indices],
            losses=pick(self.losses, 1),
            accuracy=pick(self.accuracy),
            stop_step=pick(self.stop_step),
            final_loss=pick(self.final_loss),
            weight_change={k: pick(v) for k, v in self.weight_change.items()},
        )

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
        measure_degeneracy's threshold) are marked and counted; with early stopping also each
        member's stopping step, and the members that never reached the loss threshold."""
        below = [i for i, a in enumerate(self.accuracy.tolist()) if a < min_accuracy]
        threshold = self.settings.get("loss_threshold")
        stopping = threshold is not None and len(self.stop_step) == self.n_models
        head = (
            f"Ensemble of {self.n_models} {self.net['kind']} nets (hidden {self.net['hidden_size']}) "
            f"on {self.task['name']}, {self.settings['steps']} steps; "
            f"{len(below)} below accuracy {min_accuracy:g}"
        )
        if stopping:
            missed = self.n_models - len(self.converged)
            head += f"; {missed} never reached loss {threshold:g} (excluded from metrics)"
        lines = [
            head,
            f"{'model':>5} {'seed':>8} {'final loss':>11} {'accuracy':>9}"
            + (f" {'stop step':>9}" if stopping else "")
            + (f" {'dW_h/W_h':>9}" if "weight_hh" in self.weight_change else ""),
        ]
        final = self.final_loss if len(self.final_loss) == self.n_models else self.losses[-1]
        for i, seed in enumerate(self.seeds):
            row = f"{i:>5} {seed:>8} {float(final[i]):>11.4g} {float(self.accuracy[i]):>9.3f}"
            if stopping:
                row += f" {int(self.stop_step[i]):>9}"
            if "weight_hh" in self.weight_change:
                row += f" {float(self.weight_change['weight_hh'][i]):>9.3g}"
            lines.append(row + ("  < below threshold" if i in below else ""))
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
    n_models: int,
    seeds: list[int],
    data_seeds: list[int],
    steps: int,
    lr: float,
    loss_threshold: float | None,
    patience: int,
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
    if loss_threshold is not None and not loss_threshold > 0:
        raise ValueError(f"loss_threshold must be > 0 or None, got {loss_threshold}")
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")


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
    loss_threshold: float | None = None,
    patience: int = 3,
    lr_plateau: dict[str, Any] | None = None,
    vectorized: bool = True,
    progress: bool = True,
) -> Ensemble:
    """Train ``n_models`` networks of kind ``net`` on ``task``, all at once.

    ``seeds[i]`` sets model i's initial weights (default ``0..n_models-1``); ``data_seeds[i]`` its
    training batches (default ``seeds[i] + 2**20``); both lists must be free of duplicates. The
    loss is the task loss plus ``activity_penalty * mean(h²)`` over the states of the trial steps
    (padding after a variable-length trial's end excluded); ``weight_decay`` is AdamW's decay.
    ``loss_threshold`` / ``patience``: per-member early stopping (see the module docstring);
    ``steps`` is then the maximum. ``lr_plateau`` (e.g. ``{"factor": 0.5, "patience": 40,
    "window": 50}``) lowers each member's learning rate on its own loss plateaus (see
    :class:`interp.degeneracy.stopping.Plateau`). ``vectorized=False`` trains the members one after another on
    the same data (reference path).
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
    _check_settings(n_models, seeds, data_seeds, steps, lr, loss_threshold, patience)
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
    initial = {name: p.detach().clone() for name, p in stack_module_state(models)[0].items()}
    settings = {
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "effective_lr": lr * float(getattr(models[0], "lr_scale", 1.0)),
        "loss_threshold": loss_threshold,
        "patience": patience,
        "lr_plateau": lr_plateau,
        "weight_decay": weight_decay,
        "activity_penalty": activity_penalty,
        "grad_clip": grad_clip,
        "eval_batch": eval_batch,
        "eval_seed": eval_seed,
        "vectorized": vectorized,
        "optimizer": "AdamW",
    }
    trainer = _train_vectorized if vectorized else _train_sequential
    stopper = Stopper(n_models, loss_threshold, patience)
    plateau = None if lr_plateau is None else Plateau(n_models, **lr_plateau)
    params, losses = trainer(models, task_obj.loss, stream, settings, (stopper, plateau), progress)
    ensemble = Ensemble(
        params=params,
        net=models[0].config,
        task=task_obj.config,
        seeds=seeds,
        data_seeds=data_seeds,
        settings=settings,
        losses=losses,
        accuracy=torch.zeros(n_models),
        stop_step=stopper.stop_step.clone(),
        final_loss=stopper.final_loss(losses),
        weight_change={name: relative_change(params[name], initial[name]) for name in params},
    )
    test = held_out(task_obj, eval_seed, eval_batch)
    outputs, _ = ensemble.run(test.x)
    ensemble.accuracy = torch.tensor([task_obj.accuracy(out, test) for out in outputs])
    return ensemble


def _objective(outputs: Tensor, states: Tensor, batch: TaskBatch, kind: str, penalty: float):
    task_loss = masked_loss(outputs, batch.y, batch.mask, kind)
    return task_loss + penalty * activity(states, batch.mask), task_loss


def _update_scale(active: Tensor, plateau: Plateau | None) -> Tensor | None:
    """Each member's multiplier of this step's update (0: stopped), or None when all are 1."""
    scale = active.double() if plateau is None else active.double() * plateau.scale
    return None if bool((scale == 1).all()) else scale


def _train_vectorized(models, kind, stream, settings, schedule, progress):
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
        list(params.values()), lr=settings["effective_lr"], weight_decay=settings["weight_decay"]
    )
    stopper, plateau = schedule
    losses = []
    bar = tqdm(range(settings["steps"]), desc="ensemble", disable=not progress)
    for step in bar:
        batch = stream.next()
        optimizer.zero_grad()
        total, task_loss = forward(params, batch.x, batch.y, batch.mask)
        task_loss = task_loss.detach()
        losses.append(task_loss)
        active = stopper.update(step, task_loss)  # who still trains after this step's check
        if not active.any():
            break
        if plateau is not None:
            plateau.update(step, task_loss)
        total.sum().backward()
        if settings["grad_clip"] is not None:
            _clip_per_model(
                {name: value.grad for name, value in params.items()}, settings["grad_clip"]
            )
        scale = _update_scale(active, plateau)
        before = None if scale is None else {n: v.detach().clone() for n, v in params.items()}
        optimizer.step()
        if before is not None:
            # scale the update itself: 0 freezes a stopped member (its parameters are restored
            # exactly), a plateau factor s gives the step of learning rate s·lr (Adam's and
            # AdamW's decoupled-decay updates are both proportional to the learning rate)
            with torch.no_grad():
                for name, value in params.items():
                    s = scale.to(value.dtype).view(-1, *([1] * (value.ndim - 1)))
                    stepped = before[name] + s * (value - before[name])
                    stepped = torch.where(s == 1, value, stepped)
                    value.copy_(torch.where(s == 0, before[name], stepped))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{float(task_loss.mean()):.4f}", active=int(active.sum()))
    return {name: value.detach() for name, value in params.items()}, torch.stack(losses)


def _train_sequential(models, kind, stream, settings, schedule, progress):
    stopper, plateau = schedule
    optimizers = [
        torch.optim.AdamW(
            m.parameters(), lr=settings["effective_lr"], weight_decay=settings["weight_decay"]
        )
        for m in models
    ]
    penalty = settings["activity_penalty"]
    losses = []
    for step in tqdm(range(settings["steps"]), desc="sequential", disable=not progress):
        batch = stream.next()
        row, totals = [], []
        for i, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
            optimizer.zero_grad()
            outputs, states = model(batch.x[i])
            total, task_loss = _objective(
                outputs, states, TaskBatch(batch.x[i], batch.y[i], batch.mask[i]), kind, penalty
            )
            totals.append(total)
            row.append(task_loss.detach())
        losses.append(torch.stack(row))
        active = stopper.update(step, losses[-1])
        if not active.any():
            break
        if plateau is not None:
            plateau.update(step, losses[-1])
        for i, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
            if not active[i]:
                continue  # a stopped member takes no more steps
            if plateau is not None:
                for group in optimizer.param_groups:
                    group["lr"] = settings["effective_lr"] * float(plateau.scale[i])
            totals[i].backward()
            if settings["grad_clip"] is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings["grad_clip"])
            optimizer.step()
    params, _ = stack_module_state(models)
    return {name: value.detach() for name, value in params.items()}, torch.stack(losses)
