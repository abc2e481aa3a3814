"""The noise-driven ReLU RNN of Torre et al. 2025 and its Sinkhorn training objective.

The net (kind ``noise_rnn``): ``h_t = ReLU(W_hh h_{t−1} + W_in u_t)`` with no bias, driven only by
Gaussian noise ``u_t ~ N(0, I)`` of ``input_size`` channels, a linear readout without bias
``logits_t = W_out h_t``, and outputs sampled with a hard Gumbel-softmax (``τ = 1``: the forward
value is the one-hot ``argmax(logits + g)``, ``g ~ Gumbel(0, 1)``, and the gradient is that of
the soft sample, straight through). Weights start as ``nn.RNN``'s (``U(−1/√H, 1/√H)``) and the
readout as ``nn.Linear``'s; ``h_0 = 0``.

Training (:func:`train_hmm`, the reference code's setup): a fixed set of HMM sequences; each
step draws a batch of them and a batch of RNN sequences (fresh noise and Gumbel draws) and
minimises the Sinkhorn divergence between the two point clouds of flattened one-hot sequences
(``[B, T·O]`` each), ``geomloss.SamplesLoss("sinkhorn", p=2, blur=0.2)``; Adam (lr 1e-3),
gradient-norm clip 0.9.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm import tqdm

from interp import __version__
from interp.errors import (
    DamagedFileError,
    InvalidArgumentError,
    MissingDependencyError,
    TrainingDivergedError,
)
from interp.outputs import write_atomically
from interp.results import Result
from interp.rnn.hmm import HMMTask, output_statistics, statistic_distances
from interp.rnn.nets import RecurrentNet, register_net
from interp.rnn.tasks import make_task

BACKENDS = ("tensorized", "online", "multiscale")
# What "the RNN matches its HMM" means here (ours; the paper reports distances, not thresholds).
FIT_TOLERANCES = {"frequencies_tv": 0.05, "volatility_abs": 0.02, "transitions_max_abs": 0.1}


class NoiseRNN(RecurrentNet):
    """``h ← ReLU(W_hh h + W_in u)`` (no bias), linear readout without bias; input = noise."""

    kind = "noise_rnn"

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__(input_size, hidden_size, output_size)
        self.out = nn.Linear(hidden_size, output_size, bias=False)
        bound = 1 / math.sqrt(hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size).uniform_(-bound, bound))

    def preactivation(self, h: Tensor, u: Tensor) -> Tensor:
        """``W_hh h + W_in u`` (what the ReLU sees)."""
        return F.linear(h, self.weight_hh) + F.linear(u, self.weight_ih)

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        return torch.relu(self.preactivation(h, x))

    def generate(
        self, batch: int, steps: int, generator: torch.Generator, *, tau: float = 1.0
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Run on fresh noise: ``(states [B, T, H], logits [B, T, O], samples [B, T, O])``.

        ``samples`` are hard Gumbel-softmax one-hots with straight-through gradients.
        """
        weight = self.weight_hh
        noise = torch.randn(
            batch, steps, self.input_size, generator=generator, dtype=weight.dtype
        ).to(weight.device)
        logits_states = self(noise)
        logits, states = logits_states
        return states, logits, gumbel_hard(logits, generator, tau=tau)


register_net("noise_rnn", NoiseRNN)


def gumbel_hard(logits: Tensor, generator: torch.Generator, *, tau: float = 1.0) -> Tensor:
    """Hard Gumbel-softmax (``F.gumbel_softmax(hard=True)``) with noise from ``generator``."""
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).to(logits.device)
    gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1 - 1e-7)))
    soft = torch.softmax((logits + gumbel) / tau, dim=-1)
    hard = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def sinkhorn_loss(blur: float = 0.2, backend: str = "tensorized"):
    """``geomloss.SamplesLoss("sinkhorn", p=2, blur=blur, backend=backend)``.

    ``backend``: "tensorized" (plain torch, the CPU default) or "online" / "multiscale", which
    need pykeops (a GPU option).
    """
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if importlib.util.find_spec("geomloss") is None:
        raise MissingDependencyError(
            "the HMM objective needs geomloss: pip install geomloss (add pykeops for --backend online)"
        )
    if backend != "tensorized" and importlib.util.find_spec("pykeops") is None:
        raise MissingDependencyError(
            f"geomloss backend {backend!r} needs pykeops: pip install pykeops (or use tensorized)"
        )
    from geomloss import SamplesLoss

    return SamplesLoss("sinkhorn", p=2, blur=blur, backend=backend)


@dataclasses.dataclass
class HMMTrainResult(Result):
    """Training history of a noise RNN on an HMM, with the fit of its output statistics.

    ``fit`` holds, for the RNN's emitted (Gumbel-sampled) symbols and the HMM's exact stationary values, the output
    frequencies, the output transition matrix and the volatility, plus their distances
    (:func:`~interp.rnn.hmm.statistic_distances`).
    """

    net: dict
    task: dict
    loss: Tensor  # [steps] Sinkhorn divergence per step
    fit: dict
    seconds: float
    settings: dict
    version: str = __version__

    def table(self) -> str:
        d = self.fit["distances"]
        rnn, hmm = self.fit["rnn"], self.fit["hmm"]
        return "\n".join(
            [
                f"noise RNN {self.net} on {self.task.get('hmm')}: {len(self.loss)} steps, "
                f"{self.seconds:.1f} s, final loss {float(self.loss[-1]):.4f}",
                f"output frequencies  RNN {np.round(rnn['frequencies'], 3).tolist()}  "
                f"HMM {np.round(hmm['frequencies'], 3).tolist()}  TV {d['frequencies_tv']:.4f}",
                f"volatility          RNN {rnn['volatility']:.4f}  HMM {hmm['volatility']:.4f}  "
                f"|diff| {d['volatility_abs']:.4f}",
                f"output transitions  max |diff| {d['transitions_max_abs']:.4f}",
                f"within tolerances {self.fit['tolerances']}: {self.fit['within_tolerance']}",
            ]
        )

    def figure(self) -> go.Figure:
        fig = go.Figure(go.Scatter(y=self.loss.numpy(), mode="lines", name="Sinkhorn"))
        fig.update_layout(
            title="Sinkhorn divergence during training",
            xaxis_title="step",
            yaxis_title="loss",
            yaxis_type="log",
            template="plotly_white",
        )
        return fig


def fit_statistics(
    net: NoiseRNN, task: HMMTask, *, batch: int = 512, steps: int | None = None, seed: int = 1
) -> dict:
    """Output statistics of the net's emitted symbols (its hard Gumbel-softmax samples) on fresh
    noise vs the HMM's exact ones."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        _, _, samples = net.generate(batch, steps or task.steps, generator)
    rnn = output_statistics(samples.argmax(-1).cpu(), task.output_size)
    hmm = task.hmm.exact_statistics()
    distances = statistic_distances(rnn, hmm)
    return {
        "rnn": _plain(rnn),
        "hmm": _plain(hmm),
        "distances": distances,
        "tolerances": dict(FIT_TOLERANCES),
        "within_tolerance": all(distances[k] <= v for k, v in FIT_TOLERANCES.items()),
    }


def _plain(stats: dict) -> dict:
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in stats.items()}


def _sequences(samples: Tensor) -> Tensor:
    return samples.reshape(samples.shape[0], -1)


def train_hmm(
    net: NoiseRNN,
    task: HMMTask,
    *,
    steps: int = 1000,
    batch_size: int = 4096,
    n_sequences: int = 30000,
    lr: float = 1e-3,
    clip: float = 0.9,
    blur: float = 0.2,
    backend: str = "tensorized",
    seed: int = 0,
    progress: bool = True,
) -> HMMTrainResult:
    """Fit ``net`` to ``task``'s HMM by the Sinkhorn divergence between output sequences.

    Draws ``n_sequences`` HMM sequences once (the reference code's 30,000 of length 100), then
    each step compares ``batch_size`` of them with ``batch_size`` fresh RNN sequences.
    Raises :class:`~interp.errors.TrainingDivergedError` on a non-finite loss.
    """
    if not isinstance(task, HMMTask):
        raise InvalidArgumentError(f"train_hmm needs an HMMTask, got {type(task).__name__}")
    if net.input_size != task.input_size or net.output_size != task.output_size:
        raise InvalidArgumentError(
            f"net sizes (in {net.input_size}, out {net.output_size}) do not match the task "
            f"(noise {task.input_size}, outputs {task.output_size})"
        )
    for label, value in (
        ("steps", steps),
        ("batch_size", batch_size),
        ("n_sequences", n_sequences),
    ):
        if value < 1:
            raise InvalidArgumentError(f"{label} must be >= 1, got {value}")
    loss_fn = sinkhorn_loss(blur, backend)
    generator = torch.Generator().manual_seed(seed)
    _, data = task.hmm.sample(n_sequences, task.steps, generator)
    dtype = net.weight_hh.dtype
    data = F.one_hot(data, task.output_size).to(dtype)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    start = time.perf_counter()
    bar = tqdm(range(steps), disable=not progress, desc=f"train noise RNN on {task.hmm.name}")
    for _ in bar:
        index = torch.randint(0, n_sequences, (min(batch_size, n_sequences),), generator=generator)
        _, _, samples = net.generate(len(index), task.steps, generator)
        loss = loss_fn(_sequences(samples), _sequences(data[index]))
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"the Sinkhorn loss became {float(loss.detach())} at step {len(losses)}; lower lr or blur"
            )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    settings = {
        "steps": steps,
        "batch_size": batch_size,
        "n_sequences": n_sequences,
        "lr": lr,
        "clip": clip,
        "blur": blur,
        "backend": backend,
        "seed": seed,
        "optimizer": "Adam",
    }
    return HMMTrainResult(
        net=net.config,
        task=task.config,
        loss=torch.tensor(losses),
        fit=fit_statistics(net, task),
        seconds=time.perf_counter() - start,
        settings=settings,
    )


_CONFIG, _WEIGHTS, _TRAIN = "config.json", "weights.safetensors", "train"


def save_hmm_run(
    path: str | os.PathLike,
    net: NoiseRNN,
    task: HMMTask,
    result: HMMTrainResult,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``config.json`` (net + task), ``weights.safetensors`` and ``train/`` atomically."""

    def write(tmp: Path) -> None:
        tmp.mkdir()
        document = {"net": net.config, "task": task.config, "interp_version": __version__}
        (tmp / _CONFIG).write_text(json.dumps(document, indent=2))
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        save_file(state, str(tmp / _WEIGHTS))
        result.save(tmp / _TRAIN)

    return write_atomically(path, write, overwrite=overwrite)


def load_hmm_run(path: str | os.PathLike) -> tuple[NoiseRNN, HMMTask, HMMTrainResult]:
    """Read a run written by :func:`save_hmm_run` (net in eval mode)."""
    path = Path(path)
    if not (path / _CONFIG).exists():
        raise FileNotFoundError(f"{path} is not a noise-RNN run (no {_CONFIG} inside)")
    try:
        document = json.loads((path / _CONFIG).read_text())
        config = dict(document["net"])
        task = make_task(**document["task"])
        net = NoiseRNN(config["input_size"], config["hidden_size"], config["output_size"])
        net.load_state_dict(load_file(str(path / _WEIGHTS)))
    except (json.JSONDecodeError, KeyError, RuntimeError, OSError) as error:
        raise DamagedFileError(f"{path}: cannot read the noise-RNN run ({error})") from error
    return net.eval(), task, HMMTrainResult.load(path / _TRAIN)
