"""Tasks that RNNs are trained on, each a seeded sampler of (inputs, targets, mask) batches.

Every task has ``name``, ``input_size``, ``output_size``, ``loss`` ("mse", "bce" or "ce") and
``sample(batch, generator, split=..., length=...) -> TaskBatch``; ``accuracy(outputs, batch)``
scores a network's outputs on a batch. ``config`` rebuilds the task via :func:`make_task`.
Randomness comes only from the ``torch.Generator`` passed in; :func:`split_generator` gives the
train and test splits disjoint seed streams.

Tasks (the first four follow Huang et al. 2024, parity / DMS follow Khajehabdollahi et al. 2023):

- ``flipflop``: K-bit flip-flop (Sussillo & Barak 2013; FixedPointFinder's example): each input
  channel carries ±1 pulses (probability ``p_pulse`` per bit per step, always a pulse at step 0);
  each output must hold the sign of its channel's last pulse.
- ``parity``: parity of the last N bits; ``dms``: is the bit N steps back equal to the last bit.
  Lengths drawn from [N+2, 4N+2); the answer is read at the last step only.
- ``sine``: a constant input sets the frequency ω in [0.1, 0.6] rad/step; output sin(ω t).
- ``delayed_discrimination``: two stimuli f1, f2 separated by a delay; after a go cue answer
  sign(f1 - f2).
- ``path_integration``: 2-D velocity in, integrated position (in a reflecting box) out.
- ``tomita1``..``tomita7``, ``parens``: registered by :mod:`interp.rnn.grammars` (lazy import).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

SPLITS = ("train", "test")
LOSSES = ("mse", "bce", "ce")


@dataclasses.dataclass
class TaskBatch:
    """One batch: ``x [B, T, I]`` float, ``y [B, T, O]`` float (``ce``: ``[B, T]`` long class ids),
    ``mask [B, T]`` bool (the steps that count in loss and accuracy)."""

    x: Tensor
    y: Tensor
    mask: Tensor

    def to(self, device: torch.device | str) -> TaskBatch:
        return TaskBatch(self.x.to(device), self.y.to(device), self.mask.to(device))


STREAMS = (*SPLITS, "val")  # seed streams: one per split, plus early stopping's validation draws


def split_generator(seed: int, split: str = "train") -> torch.Generator:
    """A generator for ``split`` (one of :data:`STREAMS`) whose stream is disjoint from the other
    streams' for the same seed. ``"val"`` is the validation stream early stopping draws from (for
    tasks without a held-out ``val`` split it samples ``"test"``'s distribution)."""
    if split not in STREAMS:
        raise ValueError(f"split must be one of {STREAMS}, got {split!r}")
    state = np.random.SeedSequence([int(seed), STREAMS.index(split)]).generate_state(1, np.uint64)[
        0
    ]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _masked_mean(hits: Tensor, mask: Tensor) -> float:
    if hits.ndim == 3:
        mask = mask.unsqueeze(-1).expand_as(hits)
    count = int(mask.sum())
    return float(hits[mask].float().sum() / count) if count else float("nan")


class Task:
    """Base class. Subclasses set ``name``, ``input_size``, ``output_size``, ``loss`` and ``sample``."""

    name: str = "task"
    input_size: int
    output_size: int
    loss: str = "mse"
    tolerance: float = 0.1

    def __init__(self, **config: Any) -> None:
        self._config = dict(config)

    @property
    def config(self) -> dict[str, Any]:
        """``{"name": ..., **kwargs}``: ``make_task(**config)`` rebuilds this task."""
        return {"name": self.name, **self._config}

    def sample(
        self,
        batch: int,
        generator: torch.Generator,
        *,
        split: str = "train",
        length: int | None = None,
    ) -> TaskBatch:
        raise NotImplementedError

    def accuracy(self, outputs: Tensor, batch: TaskBatch) -> float:
        """Fraction of masked steps answered correctly.

        ``ce``: argmax equals the class; ``bce``: logit sign equals the label; ``mse``: every output
        channel within ``tolerance`` of its target (tasks override with sign agreement etc.).
        """
        outputs = outputs.detach()
        if self.loss == "ce":
            return _masked_mean(outputs.argmax(-1) == batch.y, batch.mask)
        if self.loss == "bce":
            return _masked_mean((outputs > 0) == (batch.y > 0.5), batch.mask)
        return _masked_mean(((outputs - batch.y).abs() < self.tolerance).all(-1), batch.mask)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        return f"{type(self).__name__}({args})"


def _check_batch(batch: int) -> None:
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")


def _amplitude_config(amplitude: float) -> dict[str, float]:
    """Validate an ``amplitude`` option; it enters ``config`` only when not the default 1.

    (So configs of default tasks, and runs saved before the option existed, stay unchanged.)
    """
    if isinstance(amplitude, bool) or not isinstance(amplitude, (int, float)):
        raise ValueError(f"amplitude must be a number, got {amplitude!r}")
    if not math.isfinite(amplitude) or amplitude <= 0:
        raise ValueError(f"amplitude must be finite and > 0, got {amplitude!r}")
    return {} if amplitude == 1.0 else {"amplitude": float(amplitude)}


class FlipFlop(Task):
    """K-bit flip-flop: output k holds the sign of the last ±1 pulse on input k.

    A step counts as correct when every output is within ``tolerance`` (0.5) of its ±1 target.
    ``amplitude`` scales the input pulses to ±amplitude (targets stay ±1): trained at 1, other
    amplitudes probe out-of-distribution behaviour.
    """

    name = "flipflop"
    loss = "mse"
    tolerance = 0.5

    def __init__(
        self, bits: int = 3, steps: int = 64, p_pulse: float = 0.5, amplitude: float = 1.0
    ) -> None:
        if bits < 1 or steps < 1 or not 0 < p_pulse <= 1:
            raise ValueError(
                f"flipflop needs bits >= 1, steps >= 1, 0 < p_pulse <= 1; got {bits}, {steps}, {p_pulse}"
            )
        super().__init__(bits=bits, steps=steps, p_pulse=p_pulse, **_amplitude_config(amplitude))
        self.bits, self.steps, self.p_pulse, self.amplitude = bits, steps, p_pulse, amplitude
        self.input_size = self.output_size = bits

    def sample(self, batch, generator, *, split="train", length=None):
        _check_batch(batch)
        _check_split(split)
        steps = length or self.steps
        pulses = torch.rand(batch, steps, self.bits, generator=generator) < self.p_pulse
        pulses[:, 0] = True
        signs = torch.randint(0, 2, (batch, steps, self.bits), generator=generator) * 2.0 - 1.0
        x = torch.where(pulses, signs, torch.zeros(()))
        # target: sign of the most recent pulse = value at the index of the last pulse so far
        index = torch.arange(steps).view(1, steps, 1) * pulses
        last = index.cummax(dim=1).values
        y = x.gather(1, last)
        return TaskBatch(x * self.amplitude, y, torch.ones(batch, steps, dtype=torch.bool))


class _BitMemory(Task):
    """Shared sampler of the parity and DMS tasks: ±1 bits, variable length, answer at the end."""

    loss = "ce"
    input_size = 1
    output_size = 2

    def __init__(self, n: int = 2) -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"{self.name} needs n >= 1, got {n!r}")
        super().__init__(n=n)
        self.n = n
        self.lengths = (n + 2, 4 * n + 2)  # [low, high)

    def _answer(self, bits: Tensor, last: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, batch, generator, *, split="train", length=None):
        _check_batch(batch)
        _check_split(split)
        if length is None:
            lengths = torch.randint(*self.lengths, (batch,), generator=generator)
        else:
            if length < self.n + 1:
                raise ValueError(
                    f"{self.name} with n={self.n} needs length >= {self.n + 1}, got {length}"
                )
            lengths = torch.full((batch,), length)
        steps = int(lengths.max())
        bits = torch.randint(0, 2, (batch, steps), generator=generator)
        valid = torch.arange(steps).view(1, -1) < lengths.view(-1, 1)
        x = ((bits * 2.0 - 1.0) * valid).unsqueeze(-1)
        last = lengths - 1
        mask = torch.zeros(batch, steps, dtype=torch.bool)
        mask[torch.arange(batch), last] = True
        y = torch.zeros(batch, steps, dtype=torch.long)
        y[torch.arange(batch), last] = self._answer(bits, last)
        return TaskBatch(x, y, mask)


class Parity(_BitMemory):
    """N-parity: class 1 iff the last N bits hold an odd number of ones."""

    name = "parity"

    def _answer(self, bits, last):
        window = last.view(-1, 1) - torch.arange(self.n).view(1, -1)
        return bits.gather(1, window).sum(1) % 2


class DelayedMatch(_BitMemory):
    """N-delayed match-to-sample: class 1 iff the bit N steps before the last equals the last bit."""

    name = "dms"

    def _answer(self, bits, last):
        rows = torch.arange(bits.shape[0])
        return (bits[rows, last - self.n] == bits[rows, last]).long()


class SineWave(Task):
    """Sine generation: a constant input ``0.25 + (ω - ω_min)/(ω_max - ω_min)`` asks for sin(ω t).

    Train uses ``frequencies`` evenly spaced ω; test draws ω anywhere in the range (interpolation).
    ``amplitude`` scales the target wave to ``amplitude * sin(ω t)`` (the input is unchanged).
    """

    name = "sine"
    loss = "mse"
    input_size = 1
    output_size = 1

    def __init__(
        self,
        steps: int = 64,
        frequencies: int = 51,
        omega_min: float = 0.1,
        omega_max: float = 0.6,
        amplitude: float = 1.0,
    ) -> None:
        if steps < 1 or frequencies < 2 or not 0 < omega_min < omega_max:
            raise ValueError(
                "sine needs steps >= 1, frequencies >= 2 and 0 < omega_min < omega_max"
            )
        super().__init__(
            steps=steps,
            frequencies=frequencies,
            omega_min=omega_min,
            omega_max=omega_max,
            **_amplitude_config(amplitude),
        )
        self.amplitude = amplitude
        self.steps, self.frequencies, self.omega_min, self.omega_max = (
            steps,
            frequencies,
            omega_min,
            omega_max,
        )

    def sample(self, batch, generator, *, split="train", length=None):
        _check_batch(batch)
        _check_split(split)
        steps = length or self.steps
        span = self.omega_max - self.omega_min
        if split == "train":
            grid = torch.randint(0, self.frequencies, (batch,), generator=generator)
            omega = self.omega_min + span * grid / (self.frequencies - 1)
        else:
            omega = self.omega_min + span * torch.rand(batch, generator=generator)
        u = 0.25 + (omega - self.omega_min) / span
        x = u.view(-1, 1, 1).expand(batch, steps, 1).clone()
        y = self.amplitude * torch.sin(omega.view(-1, 1, 1) * torch.arange(steps).view(1, -1, 1))
        return TaskBatch(x, y, torch.ones(batch, steps, dtype=torch.bool))


def trial_delays(
    task: Task, batch: int, generator: torch.Generator, length: int | None
) -> tuple[int, torch.Tensor]:
    """Delayed-discrimination timing: the fixed steps (fixation, two stimuli, response) and one
    delay per trial, drawn from ``[task.delay_min, task.delay_max]``, or the delay that makes
    every trial ``length`` steps long."""
    fixed = task.fixation + 2 * task.stimulus + task.response
    if length is None:
        delay = torch.randint(task.delay_min, task.delay_max + 1, (batch,), generator=generator)
        return fixed, delay
    if length < fixed:
        raise ValueError(f"{task.name} needs length >= {fixed}, got {length}")
    return fixed, torch.full((batch,), length - fixed)


class DelayedDiscrimination(Task):
    """Romo's vibrotactile task: after f1, a delay, then f2, answer +1 if f1 > f2 else -1 when cued.

    Inputs: [stimulus amplitude f/34 Hz, go cue]. Periods (steps): fixation, f1 ``stimulus``,
    delay drawn from [delay_min, delay_max], f2 ``stimulus``, response. f1 ~ U[10, 34] Hz and
    f2 = f1 ± U[2, 8] Hz (kept in range). Only response steps count. ``amplitude`` scales the
    stimulus channel (the answer sign(f1 - f2) and the go cue are unchanged).
    """

    name = "delayed_discrimination"
    loss = "mse"
    input_size = 2
    output_size = 1
    fixation = 5
    stimulus = 5
    response = 5

    def __init__(self, delay_min: int = 10, delay_max: int = 20, amplitude: float = 1.0) -> None:
        if not 0 <= delay_min <= delay_max:
            raise ValueError(f"need 0 <= delay_min <= delay_max, got {delay_min}, {delay_max}")
        super().__init__(delay_min=delay_min, delay_max=delay_max, **_amplitude_config(amplitude))
        self.delay_min, self.delay_max, self.amplitude = delay_min, delay_max, amplitude

    def sample(self, batch, generator, *, split="train", length=None):
        _check_batch(batch)
        _check_split(split)
        fixed, delay = trial_delays(self, batch, generator, length)
        steps = fixed + int(delay.max())
        f1 = 10 + 24 * torch.rand(batch, generator=generator)
        gap = (2 + 6 * torch.rand(batch, generator=generator)) * torch.where(
            torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0
        )
        gap = torch.where((f1 + gap < 10) | (f1 + gap > 34), -gap, gap)
        f2 = f1 + gap
        t = torch.arange(steps).view(1, -1)
        start1 = self.fixation
        start2 = (start1 + self.stimulus + delay).view(-1, 1)
        go = start2 + self.stimulus
        in1 = (t >= start1) & (t < start1 + self.stimulus)
        in2 = (t >= start2) & (t < go)
        respond = (t >= go) & (t < go + self.response)
        stimulus = (in1 * f1.view(-1, 1) / 34 + in2 * f2.view(-1, 1) / 34) * self.amplitude
        x = torch.stack([stimulus, respond.float()], dim=-1)
        y = (respond * torch.sign(f1 - f2).view(-1, 1)).unsqueeze(-1)
        return TaskBatch(x, y, respond)

    def accuracy(self, outputs, batch):
        return _masked_mean(torch.sign(outputs.detach()) == batch.y, batch.mask)


class PathIntegration(Task):
    """2-D path integration: input the step's displacement, output the position (start at 0).

    Velocity follows an AR(1) process (``smoothness``, ``speed``); the walker reflects off the walls
    of the box [-1, 1]², and the input is the realised displacement, so the target is exactly the
    running sum of the inputs. Correct = position error (L2) below ``tolerance``.
    """

    name = "path_integration"
    loss = "mse"
    input_size = 2
    output_size = 2

    def __init__(
        self, steps: int = 50, speed: float = 0.1, smoothness: float = 0.8, tolerance: float = 0.1
    ) -> None:
        if steps < 1 or speed <= 0 or not 0 <= smoothness < 1 or tolerance <= 0:
            raise ValueError(
                "path_integration needs steps >= 1, speed > 0, 0 <= smoothness < 1, tolerance > 0"
            )
        super().__init__(steps=steps, speed=speed, smoothness=smoothness, tolerance=tolerance)
        self.steps, self.speed, self.smoothness, self.tolerance = (
            steps,
            speed,
            smoothness,
            tolerance,
        )

    def sample(self, batch, generator, *, split="train", length=None):
        _check_batch(batch)
        _check_split(split)
        steps = length or self.steps
        noise = torch.randn(batch, steps, 2, generator=generator) * self.speed
        a = self.smoothness
        velocity = noise[:, 0]
        position = torch.zeros(batch, 2)
        xs, ys = [], []
        for t in range(steps):
            if t:
                velocity = a * velocity + math.sqrt(1 - a * a) * noise[:, t]
            new = position + velocity
            over, under = new > 1, new < -1
            new = torch.where(over, 2 - new, torch.where(under, -2 - new, new))
            velocity = torch.where(over | under, -velocity, velocity)
            xs.append(new - position)
            ys.append(new)
            position = new
        return TaskBatch(
            torch.stack(xs, 1), torch.stack(ys, 1), torch.ones(batch, steps, dtype=torch.bool)
        )

    def accuracy(self, outputs, batch):
        return _masked_mean((outputs.detach() - batch.y).norm(dim=-1) < self.tolerance, batch.mask)


_TASKS: dict[str, Callable[..., Task]] = {
    task.name: task
    for task in (FlipFlop, Parity, DelayedMatch, SineWave, DelayedDiscrimination, PathIntegration)
}
# Registered by interp.rnn.grammars when imported (it calls register_task for each).
_LAZY = {
    **{f"tomita{i}": "interp.rnn.grammars" for i in range(1, 8)},
    "parens": "interp.rnn.grammars",
    "hmm": "interp.rnn.hmm",
    "nparity": "interp.rnn.timescales_tasks",
    "ndms": "interp.rnn.timescales_tasks",
}


def register_task(name: str, factory: Callable[..., Task]) -> None:
    """Make ``make_task(name, **kwargs)`` call ``factory(**kwargs)``; the task's ``name`` must match."""
    _TASKS[name] = factory


def known_tasks() -> list[str]:
    return sorted(set(_TASKS) | set(_LAZY))


def make_task(name: str, **kwargs: Any) -> Task:
    """Build a task by name (``make_task("flipflop", bits=3)``); ``make_task(**task.config)`` rebuilds one."""
    if name not in _TASKS and name in _LAZY:
        try:
            importlib.import_module(_LAZY[name])
        except ModuleNotFoundError as error:
            raise ValueError(
                f"task {name!r} needs {_LAZY[name]}, which is not available: {error}"
            ) from error
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(known_tasks())}")
    try:
        return _TASKS[name](**kwargs)
    except TypeError as error:
        raise TypeError(f"bad options for task {name!r}: {error}") from error
