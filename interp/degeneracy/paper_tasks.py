"""Task variants with the ranges of Huang et al. (arXiv 2410.03972): ``delayed_discrimination_paper``.

Flip-flop needs no variant: :class:`interp.rnn.tasks.FlipFlop`'s ``p_pulse`` is the paper's switch
probability (the chance of a ±1 pulse per bit per step; the mean hold is ``1 / p_pulse`` steps).

``delayed_discrimination_paper`` (registered with :func:`interp.rnn.tasks.register_task`):
fixation (5 steps), f1 (5), a delay drawn from ``[delay_min, delay_max]`` (paper: 5–20), f2 (5),
response (5). ``f1, f2 ~ U[f_min, f_max]`` independently (paper: [2, 10]); the stimulus channel
carries ``f / f_max``, a second channel is the go cue. Output 0 is ``sign(f1 − f2)`` during the
response; with ``aux=True`` output 1 is the auxiliary ``|f2 − f1| / (f_max − f_min)`` (the paper's
extra output that raises task complexity). Only response steps count. ``sample(length=L)`` fixes
every trial's delay to ``L − 20`` steps; :func:`ood_task` builds the paper's out-of-distribution
version (delays doubled).
"""

from __future__ import annotations

import torch

from interp.rnn.tasks import (
    Task,
    TaskBatch,
    _check_batch,
    _check_split,
    make_task,
    register_task,
    trial_delays,
)

NAME = "delayed_discrimination_paper"


class PaperDelayedDiscrimination(Task):
    """Delayed discrimination with f1, f2 ∈ [f_min, f_max], delays [delay_min, delay_max], aux output."""

    name = NAME
    loss = "mse"
    input_size = 2
    fixation = stimulus = response = 5

    def __init__(
        self,
        delay_min: int = 5,
        delay_max: int = 20,
        f_min: float = 2.0,
        f_max: float = 10.0,
        aux: bool = False,
    ) -> None:
        if not 0 <= delay_min <= delay_max:
            raise ValueError(f"need 0 <= delay_min <= delay_max, got {delay_min}, {delay_max}")
        if not 0 < f_min < f_max:
            raise ValueError(f"need 0 < f_min < f_max, got {f_min}, {f_max}")
        super().__init__(
            delay_min=delay_min, delay_max=delay_max, f_min=f_min, f_max=f_max, aux=bool(aux)
        )
        self.delay_min, self.delay_max = delay_min, delay_max
        self.f_min, self.f_max, self.aux = float(f_min), float(f_max), bool(aux)
        self.output_size = 2 if aux else 1

    def sample(self, batch, generator, *, split="train", length=None):
        _check_batch(batch)
        _check_split(split)
        fixed, delay = trial_delays(self, batch, generator, length)
        span = self.f_max - self.f_min
        f1 = self.f_min + span * torch.rand(batch, generator=generator)
        f2 = self.f_min + span * torch.rand(batch, generator=generator)
        steps = fixed + int(delay.max())
        t = torch.arange(steps).view(1, -1)
        start2 = (self.fixation + self.stimulus + delay).view(-1, 1)
        go = start2 + self.stimulus
        in1 = (t >= self.fixation) & (t < self.fixation + self.stimulus)
        in2 = (t >= start2) & (t < go)
        respond = (t >= go) & (t < go + self.response)
        stimulus = (in1 * f1.view(-1, 1) + in2 * f2.view(-1, 1)) / self.f_max
        x = torch.stack([stimulus, respond.float()], dim=-1)
        targets = [respond * torch.sign(f1 - f2).view(-1, 1)]
        if self.aux:
            targets.append(respond * ((f2 - f1).abs() / span).view(-1, 1))
        return TaskBatch(x, torch.stack(targets, dim=-1), respond)

    def accuracy(self, outputs, batch):
        """Fraction of response steps whose output 0 has the sign of ``f1 − f2``."""
        hits = torch.sign(outputs.detach()[..., 0]) == batch.y[..., 0]
        return float(hits[batch.mask].float().mean()) if batch.mask.any() else float("nan")


register_task(NAME, PaperDelayedDiscrimination)


def ood_task(task: Task) -> tuple[Task, int | None]:
    """The paper's out-of-distribution version of ``task``: ``(task', length)``.

    Delayed discrimination (either variant): the same task with its delays doubled (``length``
    None, delays drawn from ``[2 delay_min, 2 delay_max]``). Every other task: the same task with
    trials twice as long (``length = 2 × steps``).
    """
    config = dict(task.config)
    if "delay_min" in config:
        config["delay_min"], config["delay_max"] = 2 * config["delay_min"], 2 * config["delay_max"]
        return make_task(**config), None
    steps = config.get("steps")
    if steps is None:
        raise ValueError(f"task {task.name!r} has no steps or delay option to double")
    return task, 2 * int(steps)
