"""Hidden Markov models and the ``hmm`` task: emission sequences an RNN learns to emulate.

Torre et al. 2025 (arXiv 2510.25674) train a noise-driven RNN to produce the output sequences of
an HMM with transition matrix ``T`` (``T[i, j] = P(s_{t+1} = j | s_t = i)``), emission matrix
``E`` (``E[i, o] = P(o_t = o | s_t = i)``) and initial distribution ``π``. The named HMMs:

- ``linear2`` .. ``linear5``: a chain of S states, stay probability 0.95, move 0.05 (split evenly
  between the two neighbours of an inner state, all to the one neighbour of an end state); 3
  outputs. The paper does not print the chains' emission matrices; ours (an assumption): the
  first state emits ``[.9, .1, 0]``, the last ``[0, .1, .9]``, inner states ``[.05, .9, .05]``.
- ``cyclic4``: the cyclic 4-state HMM of the paper, matrices in :data:`CYCLIC4`.
- ``full3`` .. ``full5``: fully connected, stay 0.95, move 0.05 split evenly over the others;
  state ``s`` emits output ``s mod 3`` with probability 0.9, the other two 0.05 each (ours).

Exact statistics under the stationary distribution ``p`` (``p T = p``): output frequencies
``f = p E``; the output transition matrix
``P(o' | o) = Σ_ij p_i E_io T_ij E_jo' / f_o``; the volatility (switch rate)
``1 − Σ_o f_o P(o | o)``. :func:`output_statistics` measures the same three from sequences.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import Tensor

from interp.errors import InvalidArgumentError, UnknownNameError
from interp.rnn.tasks import Task, TaskBatch, _check_batch, _check_split, register_task

STAY, MOVE = 0.95, 0.05
CYCLIC4 = {
    "transition": [
        [0.95, 0.025, 0.0, 0.025],
        [0.025, 0.95, 0.025, 0.0],
        [0.0, 0.025, 0.95, 0.025],
        [0.025, 0.0, 0.025, 0.95],
    ],
    "emission": [[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.0, 0.1, 0.9], [0.0, 0.9, 0.1]],
}
_ATOL = 1e-6


def _matrix(value: Any, label: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(f"{label} must be a numeric matrix, got {value!r}") from error
    if not np.all(np.isfinite(array)):
        raise InvalidArgumentError(f"{label} must be finite, got {array.tolist()}")
    if np.any(array < 0):
        raise InvalidArgumentError(f"{label} must be non-negative (probabilities)")
    return array


def _check_rows(array: np.ndarray, label: str) -> None:
    sums = array.sum(-1)
    bad = np.flatnonzero(np.abs(sums - 1) > _ATOL)
    if bad.size:
        raise InvalidArgumentError(
            f"{label} must be row-stochastic (each row sums to 1): row {int(bad[0])} sums to "
            f"{float(sums[bad[0]]):.6g}"
        )


@dataclasses.dataclass(frozen=True, eq=False)
class HMM:
    """An HMM ``(T [S, S], E [S, O], π [S])``; ``π`` defaults to the stationary distribution."""

    transition: np.ndarray
    emission: np.ndarray
    initial: np.ndarray | None = None
    name: str = "custom"

    def __post_init__(self) -> None:
        t = _matrix(self.transition, "T (transition matrix)")
        e = _matrix(self.emission, "E (emission matrix)")
        if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] < 1:
            raise InvalidArgumentError(f"T must be a square [S, S] matrix, got shape {t.shape}")
        if e.ndim != 2 or e.shape[0] != t.shape[0] or e.shape[1] < 2:
            raise InvalidArgumentError(
                f"E must be [S={t.shape[0]}, O>=2] (rows: states, columns: outputs), got shape {e.shape}"
            )
        _check_rows(t, "T")
        _check_rows(e, "E")
        object.__setattr__(self, "transition", t)
        object.__setattr__(self, "emission", e)
        pi = stationary_distribution(t) if self.initial is None else _matrix(self.initial, "π")
        if pi.shape != (t.shape[0],):
            raise InvalidArgumentError(f"π must have shape [{t.shape[0]}], got {pi.shape}")
        _check_rows(pi[None], "π")
        object.__setattr__(self, "initial", pi)

    @property
    def n_states(self) -> int:
        return self.transition.shape[0]

    @property
    def n_outputs(self) -> int:
        return self.emission.shape[1]

    @property
    def config(self) -> dict[str, Any]:
        return {
            "transition": self.transition.tolist(),
            "emission": self.emission.tolist(),
            "initial": self.initial.tolist(),
            "name": self.name,
        }

    def stationary(self) -> np.ndarray:
        """The stationary state distribution ``p`` with ``p T = p``."""
        return stationary_distribution(self.transition)

    def exact_statistics(self) -> dict[str, np.ndarray | float]:
        """Stationary output frequencies, output transition matrix and volatility (exact)."""
        p, t, e = self.stationary(), self.transition, self.emission
        freq = p @ e
        joint = (p[:, None] * e).T @ t @ e  # [O, O]: P(o_t = a, o_{t+1} = b)
        with np.errstate(invalid="ignore", divide="ignore"):
            trans = np.where(freq[:, None] > 0, joint / freq[:, None], 0.0)
        return {
            "frequencies": freq,
            "transitions": trans,
            "volatility": float(1 - np.trace(joint)),
        }

    def sample(self, batch: int, steps: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(states [B, T], outputs [B, T])`` (long), by inverse-CDF sampling, batched over B."""
        cum_t = torch.as_tensor(np.cumsum(self.transition, -1))
        cum_e = torch.as_tensor(np.cumsum(self.emission, -1))
        cum_pi = torch.as_tensor(np.cumsum(self.initial))
        u_state = torch.rand(batch, steps, generator=generator, dtype=torch.float64)
        u_out = torch.rand(batch, steps, generator=generator, dtype=torch.float64)
        states = torch.empty(batch, steps, dtype=torch.long)
        s = _draw(cum_pi.expand(batch, -1), u_state[:, 0])
        for t in range(steps):
            if t:
                s = _draw(cum_t[s], u_state[:, t])
            states[:, t] = s
        outputs = _draw(cum_e[states.reshape(-1)], u_out.reshape(-1)).view(batch, steps)
        return states, outputs


def _draw(cumulative: Tensor, u: Tensor) -> Tensor:
    """Row-wise inverse CDF: the first index whose cumulative probability exceeds ``u``."""
    index = torch.searchsorted(
        cumulative.contiguous(), u.unsqueeze(-1).contiguous(), right=True
    ).squeeze(-1)
    return index.clamp(max=cumulative.shape[-1] - 1)


def stationary_distribution(transition: np.ndarray) -> np.ndarray:
    """Solve ``p (T − I) = 0`` with ``Σ p = 1`` (least squares; unique for an irreducible chain)."""
    t = np.asarray(transition, dtype=np.float64)
    n = t.shape[0]
    system = np.vstack([t.T - np.eye(n), np.ones((1, n))])
    rhs = np.zeros(n + 1)
    rhs[-1] = 1.0
    p, *_ = np.linalg.lstsq(system, rhs, rcond=None)
    p = np.clip(p, 0, None)
    return p / p.sum()


def _linear(states: int) -> HMM:
    t = np.zeros((states, states))
    for i in range(states):
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < states]
        t[i, i] = STAY
        for j in neighbours:
            t[i, j] = MOVE / len(neighbours)
    e = np.tile([0.05, 0.9, 0.05], (states, 1))
    e[0], e[-1] = [0.9, 0.1, 0.0], [0.0, 0.1, 0.9]
    return HMM(t, e, name=f"linear{states}")


def _full(states: int) -> HMM:
    t = np.full((states, states), MOVE / (states - 1))
    np.fill_diagonal(t, STAY)
    e = np.full((states, 3), 0.05)
    e[np.arange(states), np.arange(states) % 3] = 0.9
    return HMM(t, e, name=f"full{states}")


def named_hmms() -> list[str]:
    return [*(f"linear{s}" for s in range(2, 6)), "cyclic4", *(f"full{s}" for s in range(3, 6))]


def make_hmm(
    name: str | None = None,
    *,
    transition: Any = None,
    emission: Any = None,
    initial: Any = None,
) -> HMM:
    """A named HMM (see the module docstring) or a user-given ``(T, E, π)``."""
    if name is None or name == "custom":
        if transition is None or emission is None:
            raise InvalidArgumentError(
                f"give an HMM name ({', '.join(named_hmms())}) or both transition= and emission="
            )
        return HMM(transition, emission, initial)
    if transition is not None or emission is not None:
        raise InvalidArgumentError("give either an HMM name or transition=/emission=, not both")
    if name == "cyclic4":
        hmm = HMM(CYCLIC4["transition"], CYCLIC4["emission"], name="cyclic4")
    elif name.startswith("linear") and name[6:] in {"2", "3", "4", "5"}:
        hmm = _linear(int(name[6:]))
    elif name.startswith("full") and name[4:] in {"3", "4", "5"}:
        hmm = _full(int(name[4:]))
    else:
        raise UnknownNameError(f"unknown HMM {name!r}; known: {', '.join(named_hmms())}, custom")
    if initial is not None:
        hmm = HMM(hmm.transition, hmm.emission, initial, name=hmm.name)
    return hmm


def output_statistics(outputs: Tensor, n_outputs: int) -> dict[str, np.ndarray | float]:
    """Empirical output frequencies, output transition matrix ``P(o_{t+1} | o_t)`` and volatility.

    ``outputs``: ``[B, T]`` long symbols (argmax or sampled). Transitions are counted within each
    sequence (``T - 1`` pairs per row); a symbol never seen leaves its row of zeros.
    """
    outputs = torch.as_tensor(outputs).long()
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        raise InvalidArgumentError(f"outputs must be [batch, time>=2], got {tuple(outputs.shape)}")
    freq = torch.bincount(outputs.reshape(-1), minlength=n_outputs).double()
    freq = freq / freq.sum()
    pairs = outputs[:, :-1] * n_outputs + outputs[:, 1:]
    joint = torch.bincount(pairs.reshape(-1), minlength=n_outputs**2).double()
    joint = (joint / joint.sum()).view(n_outputs, n_outputs)
    rows = joint.sum(1, keepdim=True)
    trans = torch.where(rows > 0, joint / rows.clamp(min=1e-300), torch.zeros(()))
    return {
        "frequencies": freq.numpy(),
        "transitions": trans.numpy(),
        "volatility": float(1 - torch.trace(joint)),
    }


def statistic_distances(a: dict, b: dict) -> dict[str, float]:
    """Distances between two sets of output statistics: total variation of the frequencies, the
    absolute volatility difference, and the largest absolute difference of transition entries."""
    return {
        "frequencies_tv": float(0.5 * np.abs(a["frequencies"] - b["frequencies"]).sum()),
        "volatility_abs": float(abs(a["volatility"] - b["volatility"])),
        "transitions_max_abs": float(np.abs(a["transitions"] - b["transitions"]).max()),
    }


class HMMTask(Task):
    """``make_task("hmm", hmm="cyclic4", steps=100, noise_size=100)``: learn to emit like an HMM.

    ``x`` is the network's only input, Gaussian noise ``N(0, 1)`` of ``noise_size`` channels;
    ``y`` holds one-hot HMM emissions ``[B, T, O]`` (targets of a distribution-matching loss, not
    of a per-step one). ``accuracy`` is ``1 − TV`` between the output frequencies of the net's
    argmax outputs and of the batch's emissions (a coarse fit score; see :mod:`interp.rnn.hmm`
    for the full statistics).
    """

    name = "hmm"
    loss = "sinkhorn"

    def __init__(
        self,
        hmm: str | None = "cyclic4",
        *,
        steps: int = 100,
        noise_size: int = 100,
        transition: Any = None,
        emission: Any = None,
        initial: Any = None,
    ) -> None:
        for label, value in (("steps", steps), ("noise_size", noise_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"hmm task needs {label} >= 1, got {value!r}")
        if transition is not None or emission is not None:
            hmm = None if hmm in (None, "cyclic4", "custom") else hmm
        self.hmm = make_hmm(hmm, transition=transition, emission=emission, initial=initial)
        config: dict[str, Any] = {"steps": steps, "noise_size": noise_size}
        if self.hmm.name == "custom":
            config.update(
                hmm="custom",
                transition=self.hmm.transition.tolist(),
                emission=self.hmm.emission.tolist(),
                initial=self.hmm.initial.tolist(),
            )
        else:
            config["hmm"] = self.hmm.name
            if initial is not None:
                config["initial"] = self.hmm.initial.tolist()
        super().__init__(**config)
        self.steps, self.noise_size = steps, noise_size
        self.input_size, self.output_size = noise_size, self.hmm.n_outputs

    def noise(self, batch: int, steps: int, generator: torch.Generator) -> Tensor:
        return torch.randn(batch, steps, self.noise_size, generator=generator)

    def sample(self, batch, generator, *, split="train", length=None):
        _check_batch(batch)
        _check_split(split)
        steps = length or self.steps
        _, outputs = self.hmm.sample(batch, steps, generator)
        y = torch.nn.functional.one_hot(outputs, self.output_size).float()
        x = self.noise(batch, steps, generator)
        return TaskBatch(x, y, torch.ones(batch, steps, dtype=torch.bool))

    def accuracy(self, outputs, batch):
        counts = torch.bincount(outputs.detach().argmax(-1).reshape(-1), minlength=self.output_size)
        target = batch.y.reshape(-1, self.output_size).sum(0)
        return float(1 - 0.5 * (counts / counts.sum() - target / target.sum()).abs().sum())


register_task("hmm", HMMTask)
