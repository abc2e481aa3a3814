"""Train a recurrent net on a task (Adam, gradient clipping, early stop) and save / load the run.

A saved run is a folder::

    run/config.json          {"net": net.config, "task": task.config, "interp_version": ...}
    run/weights.safetensors  the net's state_dict
    run/train/               the TrainResult (loss and accuracy history, settings)

written atomically (:func:`interp.results.write_atomically`), so a crash never leaves half a run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm import tqdm

from interp import __version__
from interp.errors import TrainingDivergedError
from interp.results import Result, write_atomically
from interp.rnn.nets import RecurrentNet, make_net
from interp.rnn.tasks import Task, TaskBatch, make_task, split_generator


def task_loss(outputs: Tensor, batch: TaskBatch, loss: str) -> Tensor:
    """Mean loss over the masked steps: ``mse`` (averaged over channels), ``bce`` on logits, ``ce``."""
    mask = batch.mask
    if not mask.any():
        raise ValueError("the batch's mask selects no step, so there is nothing to train on")
    if loss == "mse":
        return ((outputs - batch.y) ** 2).mean(-1)[mask].mean()
    if loss == "bce":
        return (
            F.binary_cross_entropy_with_logits(outputs, batch.y.to(outputs.dtype), reduction="none")
            .mean(-1)[mask]
            .mean()
        )
    if loss == "ce":
        return F.cross_entropy(outputs[mask], batch.y[mask])
    raise ValueError(f"unknown loss {loss!r}; accepted: mse, bce, ce")


@dataclasses.dataclass
class TrainResult(Result):
    """Training history: per-step train loss, periodic validation loss/accuracy (what early
    stopping reads), the final test loss/accuracy (reported only), and the settings used."""

    net: dict
    task: dict
    loss: Tensor  # [steps_run] training loss per step
    eval_steps: Tensor  # [n_evals] step index after which each validation ran
    eval_loss: Tensor  # validation loss at eval_steps
    eval_accuracy: Tensor  # validation accuracy at eval_steps
    steps_run: int
    final_accuracy: float  # test accuracy of the final net
    stopped_early: bool
    seconds: float
    settings: dict
    test_loss: float = float("nan")
    validation_split: str = "test"  # runs saved before the val split scored "test" here
    version: str = __version__

    def table(self) -> str:
        lines = [
            f"task {self.task}  net {self.net}",
            f"steps run: {self.steps_run}  ({self.seconds:.1f} s){'  stopped early' if self.stopped_early else ''}",
            f"final test accuracy: {self.final_accuracy:.4f}  (test loss {self.test_loss:.5f})",
            "validation during training ("
            + (
                "the held-out val split"
                if self.validation_split == "val"
                else "a separate draw from the test distribution, not the test batch"
            )
            + "):",
            f"{'step':>8} {'val loss':>12} {'val acc':>10}",
        ]
        rows = zip(
            self.eval_steps.tolist(),
            self.eval_loss.tolist(),
            self.eval_accuracy.tolist(),
            strict=True,
        )
        lines += [f"{s:>8} {lo:>12.5f} {a:>10.4f}" for s, lo, a in rows]
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "validation accuracy"))
        steps = torch.arange(1, self.steps_run + 1).tolist()
        fig.add_trace(
            go.Scatter(x=steps, y=self.loss.tolist(), name="train loss", mode="lines"), 1, 1
        )
        fig.add_trace(
            go.Scatter(x=self.eval_steps.tolist(), y=self.eval_loss.tolist(), name="val loss"),
            1,
            1,
        )
        fig.add_trace(
            go.Scatter(
                x=self.eval_steps.tolist(), y=self.eval_accuracy.tolist(), name="val accuracy"
            ),
            1,
            2,
        )
        fig.update_yaxes(type="log", row=1, col=1)
        fig.update_xaxes(title_text="step")
        fig.update_layout(
            title=f"Training {self.net.get('kind')} on {self.task.get('name')}",
            template="plotly_white",
        )
        return fig


def _check_shapes(net: nn.Module, task: Task) -> None:
    for label in ("input_size", "output_size"):
        want, have = getattr(task, label), getattr(net, label, None)
        if have is not None and have != want:
            raise ValueError(f"net {label}={have} but task {task.name!r} has {label}={want}")


def validation_split(task: Task) -> str:
    """The split early stopping reads: ``"val"`` for tasks that hold one out (grammars: a disjoint
    set of strings), else ``"test"``'s distribution (drawn from the ``"val"`` seed stream of
    :func:`interp.rnn.tasks.split_generator`, so never the test batch itself)."""
    return "val" if "val" in getattr(task, "splits", ()) else "test"


def _fixed_batch(task: Task, size: int, generator: torch.Generator, split: str, like: Tensor):
    batch = task.sample(size, generator, split=split)
    return TaskBatch(
        batch.x.to(like.device, like.dtype), batch.y.to(like.device), batch.mask.to(like.device)
    )


DIVERGENCE_RATIO = 1e3


def check_divergence(
    loss: float, step: int, first: float | None, ratio: float | None, lr: float
) -> None:
    """Raise :class:`TrainingDivergedError` when ``loss`` is non-finite or above
    ``ratio × max(first, 1)`` (``first``: the first step's loss; no bound while it is None)."""
    bounded = first is not None and ratio is not None
    if math.isfinite(loss) and not (bounded and loss > ratio * max(first, 1.0)):
        return
    why = (
        "is not finite"
        if not math.isfinite(loss)
        else f"is above {ratio:g} x the first step's loss ({first:.3g})"
    )
    raise TrainingDivergedError(
        f"training diverged at step {step}: the loss {loss:.3g} {why}; nothing was saved. "
        f"Lower the learning rate (lr={lr:g}; try {lr / 100:.0e} or the default 1e-2)"
    )


def evaluate(net: nn.Module, task: Task, batch: TaskBatch) -> tuple[float, float]:
    """``(loss, accuracy)`` of ``net`` on ``batch`` without gradients."""
    with torch.no_grad():
        outputs, _ = net(batch.x)
        return float(task_loss(outputs, batch, task.loss)), task.accuracy(outputs, batch)


def train(
    net: nn.Module,
    task: Task,
    *,
    steps: int = 2000,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
    target_accuracy: float | None = None,
    eval_every: int = 100,
    eval_batch: int = 512,
    weight_decay: float = 0.0,
    activity_penalty: float = 0.0,
    grad_clip: float = 1.0,
    max_loss_ratio: float | None = DIVERGENCE_RATIO,
    progress: bool = True,
) -> TrainResult:
    """Train ``net`` (in place) on ``task`` with Adam and return the history.

    Each step draws a fresh batch from the task's train stream (``split_generator(seed, "train")``);
    every ``eval_every`` steps the net is scored on one fixed *validation* batch of ``eval_batch``
    sequences (:func:`validation_split`), and training stops early
    once validation accuracy >= ``target_accuracy``. The test batch (``split_generator(seed,
    "test")``) is scored once, at the end, for ``final_accuracy``: it never steers training.
    The loss is the task loss plus ``activity_penalty * mean(state²)``; ``weight_decay`` is Adam's
    L2 term; gradients are clipped to norm ``grad_clip``. ``net`` must return
    ``(outputs, states)`` from ``net(x)`` like :class:`~interp.rnn.nets.RecurrentNet`.

    Divergence stops training with :class:`~interp.errors.TrainingDivergedError` (nothing is
    returned, so nothing diverged gets saved): a non-finite loss, or a loss above
    ``max_loss_ratio × max(first step's loss, 1)`` (default 1,000 ×: an untrained net's loss is
    O(1) for every task here, and a healthy run never climbs three orders of magnitude above
    it; ``lr=1e6`` reaches 1e6-1e13 within two steps). ``max_loss_ratio=None`` checks
    finiteness only.
    """
    if steps < 1 or batch_size < 1 or eval_every < 1 or eval_batch < 1:
        raise ValueError("steps, batch_size, eval_every and eval_batch must be positive")
    if target_accuracy is not None and not 0 < target_accuracy <= 1:
        raise ValueError(f"target_accuracy must be in (0, 1], got {target_accuracy}")
    if max_loss_ratio is not None and not max_loss_ratio > 1:
        raise ValueError(f"max_loss_ratio must be > 1 (or None), got {max_loss_ratio}")
    _check_shapes(net, task)
    like = next(net.parameters())
    dtype, device = like.dtype, like.device
    train_gen = split_generator(seed, "train")
    val_split = validation_split(task)
    val_batch = _fixed_batch(task, eval_batch, split_generator(seed, "val"), val_split, like)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    losses: list[float] = []
    evals: list[tuple[int, float, float]] = []
    stopped = False
    start = time.perf_counter()
    bar = tqdm(range(1, steps + 1), disable=not progress, desc=f"train {task.name}", leave=False)
    for step in bar:
        batch = task.sample(batch_size, train_gen, split="train")
        batch = TaskBatch(batch.x.to(device, dtype), batch.y.to(device), batch.mask.to(device))
        outputs, states = net(batch.x)
        loss = task_loss(outputs, batch, task.loss)
        if activity_penalty:
            loss = loss + activity_penalty * states.pow(2).mean()
        first = losses[0] if losses else None
        check_divergence(loss.item(), step, first, max_loss_ratio, lr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
        optimizer.step()
        losses.append(loss.item())
        if step % eval_every == 0 or step == steps:
            val_loss, accuracy = evaluate(net, task, val_batch)
            evals.append((step, val_loss, accuracy))
            bar.set_postfix(loss=f"{losses[-1]:.4f}", acc=f"{accuracy:.3f}")
            if target_accuracy is not None and accuracy >= target_accuracy:
                stopped = step < steps
                break
    test_batch = _fixed_batch(task, eval_batch, split_generator(seed, "test"), "test", like)
    test_loss, test_accuracy = evaluate(net, task, test_batch)
    settings = {
        "max_loss_ratio": max_loss_ratio,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "target_accuracy": target_accuracy,
        "eval_every": eval_every,
        "eval_batch": eval_batch,
        "weight_decay": weight_decay,
        "activity_penalty": activity_penalty,
        "grad_clip": grad_clip,
    }
    return TrainResult(
        net=dict(getattr(net, "config", {"kind": type(net).__name__})),
        task=task.config,
        loss=torch.tensor(losses),
        eval_steps=torch.tensor([e[0] for e in evals]),
        eval_loss=torch.tensor([e[1] for e in evals]),
        eval_accuracy=torch.tensor([e[2] for e in evals]),
        steps_run=len(losses),
        final_accuracy=test_accuracy,
        stopped_early=stopped,
        seconds=time.perf_counter() - start,
        settings=settings,
        test_loss=test_loss,
        validation_split=val_split,
    )


class Run(NamedTuple):
    """A loaded run: the net (weights restored, eval mode), the task object, the training history."""

    net: RecurrentNet
    task: Task
    result: TrainResult


_CONFIG = "config.json"
_WEIGHTS = "weights.safetensors"
_TRAIN = "train"


def save_run(
    path: str | os.PathLike,
    net: nn.Module,
    task: Task,
    result: TrainResult,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``net`` (config + weights), ``task.config`` and ``result`` to the folder ``path``."""
    config = getattr(net, "config", None)
    if not isinstance(config, dict) or "kind" not in config:
        raise TypeError(
            "save_run needs a net with a `config` dict (an interp.rnn net from make_net)"
        )
    document: dict[str, Any] = {"net": config, "task": task.config, "interp_version": __version__}
    weights = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}

    def write(tmp: Path) -> None:
        tmp.mkdir()
        save_file(weights, str(tmp / _WEIGHTS))
        (tmp / _CONFIG).write_text(json.dumps(document, indent=2))
        result.save(tmp / _TRAIN)

    return write_atomically(path, write, overwrite=overwrite)


def load_run(path: str | os.PathLike) -> Run:
    """Read a run written by :func:`save_run`: ``net, task, result = load_run(path)``."""
    path = Path(path)
    if not (path / _CONFIG).exists():
        raise FileNotFoundError(
            f"{path} is not a saved run (no {_CONFIG}); create one with `interp train`"
        )
    document = json.loads((path / _CONFIG).read_text())
    net = make_net(**document["net"])
    net.load_state_dict(load_file(str(path / _WEIGHTS)))
    net.eval()
    task = make_task(**document["task"])
    return Run(net, task, TrainResult.load(path / _TRAIN))
