"""Curricula over N for N-parity / N-DMS (Khajehabdollahi et al. 2023).

Starting from ``N = start_n`` (2):

- ``single``: one head trained on the current N; when solved, the same head moves to N + 1.
- ``multi``: heads for every N from ``start_n`` to the current N (one readout each); when solved
  a head for N + 1 is added.
- ``sliding``: heads for the last ``window`` values of N (each N keeps its own readout); when
  solved the window slides to N + 1.

Solved (the paper): on ``eval_batches`` test batches (50) the mean accuracy over the current
heads is > ``threshold`` (98%) *and* the newest head's accuracy is > ``threshold``. An epoch is
``steps_per_epoch`` (600) steps of SGD with Nesterov momentum 0.1, lr 0.05, gradient-norm clip
2.0, batch 256; the loss is the sum of the heads' cross-entropies. ``τ`` is clamped to ≥ 1 after
every step. The training budget is the number of epochs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import plotly.graph_objects as go
import torch
from torch import Tensor, nn
from tqdm import tqdm

from interp import __version__
from interp.errors import InvalidArgumentError, TrainingDivergedError, UnknownNameError
from interp.results import Result
from interp.rnn.tasks import TaskBatch, make_task, split_generator
from interp.rnn.timescales_net import TimescaleRNN
from interp.rnn.timescales_tasks import NBitTask

CURRICULA = ("single", "multi", "sliding")


def stage_heads(curriculum: str, n: int, *, start_n: int = 2, window: int = 3) -> list[int]:
    """The N of every head trained at stage ``n``."""
    if curriculum == "single":
        return [n]
    if curriculum == "multi":
        return list(range(start_n, n + 1))
    if curriculum == "sliding":
        return list(range(max(start_n, n - window + 1), n + 1))
    raise UnknownNameError(f"unknown curriculum {curriculum!r}; known: {', '.join(CURRICULA)}")


def readout_slots(curriculum: str, heads: list[int], start_n: int = 2) -> list[int]:
    """Which readout (pair of logits) answers each head: one shared for ``single``, else one per N."""
    return [0] if curriculum == "single" else [n - start_n for n in heads]


def head_outputs(outputs: Tensor, slots: list[int]) -> Tensor:
    """The logits of the given readout slots, concatenated: ``[..., 2·len(slots)]``."""
    return torch.cat([outputs[..., 2 * s : 2 * s + 2] for s in slots], dim=-1)


@dataclasses.dataclass
class CurriculumResult(Result):
    """History of a curriculum: the N trained at each epoch, accuracies, τ when each N was solved."""

    task: str
    curriculum: str
    net: dict
    epoch_n: Tensor  # [E] the N trained during each epoch
    epoch_loss: Tensor  # [E] mean training loss
    epoch_accuracy: Tensor  # [E] mean test accuracy over the heads
    newest_accuracy: Tensor  # [E] test accuracy of the newest head
    solved: dict  # str(N) -> epoch (1-based) at which N was solved
    tau_by_n: dict  # str(N) -> [H] time constants when N was solved
    max_n: int  # the largest N solved (start_n - 1 if none)
    seconds: float
    settings: dict
    version: str = __version__

    def table(self) -> str:
        lines = [
            f"{self.curriculum}-head curriculum on {self.task}: {len(self.epoch_n)} epochs, "
            f"{self.seconds:.0f} s; largest N solved: {self.max_n}",
            f"{'N':>4} {'solved at epoch':>16} {'mean τ':>8} {'median τ':>9} {'max τ':>7}",
        ]
        for n, epoch in self.solved.items():
            tau = self.tau_by_n[n].double()
            lines.append(
                f"{n:>4} {epoch:>16} {float(tau.mean()):>8.3f} {float(tau.median()):>9.3f} "
                f"{float(tau.max()):>7.3f}"
            )
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        epochs = list(range(1, len(self.epoch_n) + 1))
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=epochs, y=self.epoch_n.tolist(), name="N", yaxis="y2"))
        fig.add_trace(go.Scatter(x=epochs, y=self.epoch_accuracy.tolist(), name="mean accuracy"))
        fig.add_trace(go.Scatter(x=epochs, y=self.newest_accuracy.tolist(), name="newest head"))
        fig.update_layout(
            title=f"{self.curriculum} curriculum on {self.task}",
            xaxis_title="epoch",
            yaxis={"title": "test accuracy", "range": [0.4, 1.02]},
            yaxis2={"title": "N", "overlaying": "y", "side": "right"},
            template="plotly_white",
        )
        return fig


def _initial(net: nn.Module, batch: int, generator: torch.Generator) -> Tensor | None:
    if isinstance(net, TimescaleRNN):
        return 0.1 * torch.rand(batch, net.hidden_size, generator=generator)
    return None


def _check(net: nn.Module, curriculum: str, start_n: int, max_n: int, window: int) -> None:
    if curriculum not in CURRICULA:
        raise UnknownNameError(f"unknown curriculum {curriculum!r}; known: {', '.join(CURRICULA)}")
    if start_n < 1 or max_n < start_n or window < 1:
        raise InvalidArgumentError(
            f"need 1 <= start_n <= max_n and window >= 1; got N from {start_n} to {max_n}, window {window}"
        )
    slots = 1 if curriculum == "single" else max_n - start_n + 1
    if net.output_size < 2 * slots:
        raise InvalidArgumentError(
            f"the {curriculum} curriculum up to N={max_n} needs {2 * slots} outputs (2 per head), "
            f"the net has {net.output_size}"
        )


def evaluate_heads(
    net: nn.Module, task: NBitTask, slots: list[int], batches: list[TaskBatch]
) -> Tensor:
    """Accuracy of each head over fixed test batches, ``[heads]``."""
    with torch.no_grad():
        accs = [task.head_accuracies(head_outputs(net(b.x)[0], slots), b) for b in batches]
    return torch.stack(accs).mean(0)


def train_curriculum(
    net: nn.Module,
    task: str = "nparity",
    curriculum: str = "multi",
    *,
    epochs: int = 20,
    steps_per_epoch: int = 600,
    batch_size: int = 256,
    lr: float = 0.05,
    momentum: float = 0.1,
    clip: float = 2.0,
    eval_batches: int = 50,
    threshold: float = 0.98,
    start_n: int = 2,
    max_n: int | None = None,
    window: int = 3,
    seed: int = 0,
    progress: bool = True,
    on_solved: Callable[[int, nn.Module], None] | None = None,
) -> CurriculumResult:
    """Train ``net`` (output size ≥ 2 per readout slot) through a curriculum; see module doc.

    ``max_n`` (default: as many heads as the net has readouts) ends the curriculum once solved.
    ``on_solved(n, net)`` is called each time N is solved (e.g. to measure τ_net there).
    """
    if task not in ("nparity", "ndms"):
        raise UnknownNameError(f"unknown timescales task {task!r}; known: nparity, ndms")
    max_n = max_n if max_n is not None else start_n + net.output_size // 2 - 1
    _check(net, curriculum, start_n, max_n, window)
    if epochs < 1 or steps_per_epoch < 1 or eval_batches < 1 or batch_size < 1:
        raise InvalidArgumentError("epochs, steps_per_epoch, eval_batches, batch_size must be >= 1")
    train_gen, test_gen = split_generator(seed, "train"), split_generator(seed, "test")
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, nesterov=True)
    n, history, solved, taus = start_n, [], {}, {}
    start = time.perf_counter()
    bar = tqdm(range(1, epochs + 1), disable=not progress, desc=f"{curriculum} {task}")
    for epoch in bar:
        heads = stage_heads(curriculum, n, start_n=start_n, window=window)
        slots = readout_slots(curriculum, heads, start_n)
        stage = make_task(task, n=heads)
        losses = []
        for _ in range(steps_per_epoch):
            batch = stage.sample(batch_size, train_gen)
            outputs, _ = net(batch.x, _initial(net, batch_size, train_gen))
            loss = stage.loss_value(head_outputs(outputs, slots), batch)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"loss became {float(loss)} at epoch {epoch}, N={n}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), clip)
            optimizer.step()
            if isinstance(net, TimescaleRNN):
                net.clamp_()
            losses.append(float(loss.detach()))
        tests = [stage.sample(batch_size, test_gen, split="test") for _ in range(eval_batches)]
        accuracy = evaluate_heads(net, stage, slots, tests)
        history.append((n, sum(losses) / len(losses), float(accuracy.mean()), float(accuracy[-1])))
        bar.set_postfix(N=n, acc=f"{float(accuracy.mean()):.3f}")
        if float(accuracy.mean()) > threshold and float(accuracy[-1]) > threshold:
            solved[str(n)] = epoch
            if isinstance(net, TimescaleRNN):
                taus[str(n)] = net.time_constants.detach().clone()
            if on_solved is not None:
                on_solved(n, net)
            if n >= max_n:
                break
            n += 1
    settings = {
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size,
        "lr": lr,
        "momentum": momentum,
        "nesterov": True,
        "clip": clip,
        "eval_batches": eval_batches,
        "threshold": threshold,
        "start_n": start_n,
        "max_n": max_n,
        "window": window,
        "seed": seed,
    }
    return CurriculumResult(
        task=task,
        curriculum=curriculum,
        net=dict(getattr(net, "config", {"kind": type(net).__name__})),
        epoch_n=torch.tensor([h[0] for h in history]),
        epoch_loss=torch.tensor([h[1] for h in history]),
        epoch_accuracy=torch.tensor([h[2] for h in history]),
        newest_accuracy=torch.tensor([h[3] for h in history]),
        solved=solved,
        tau_by_n=taus,
        max_n=max((int(k) for k in solved), default=start_n - 1),
        seconds=time.perf_counter() - start,
        settings=settings,
    )
