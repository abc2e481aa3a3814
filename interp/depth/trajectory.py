"""Trajectory diagnostics of Jacobs et al. 2025: how token states move through depth.

- Angular convergence: cos(x_l, x_L) between a token's state at layer l and its final state,
  averaged over samples (CLS token, and every patch / text token). Trajectories that converge
  in angle approach 1 well before the last layer.
- Effective rank of the per-layer updates Δ_l = x_l - x_{l-1} of the patch / text tokens (all of
  them, of all samples, stacked as rows; at most 4096 rows, sampled): exp of the entropy of the
  normalized singular values (Roy & Vetterli 2007). The paper reports late-depth updates
  collapsing to low rank. Prefix tokens (CLS, registers, a language model's BOS) are left out:
  a BOS attention sink's huge updates would otherwise dominate the spectrum.
- Relative update size ||Δ_l|| / ||x_{l-1}|| (mean over the same tokens).
- With class labels, class separation of the CLS token per layer: mean cosine between CLS states
  of same-class samples minus that of different-class samples (class-dependent basins).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from interp import __version__
from interp.depth.similarity import as_states
from interp.results import Result

MAX_ROWS = 4096


def effective_rank(matrices: torch.Tensor) -> torch.Tensor:
    """exp(H(p)) with p = σ / Σσ, batched over leading dims of [..., rows, cols]."""
    sigma = torch.linalg.svdvals(matrices.double())
    p = sigma / sigma.sum(dim=-1, keepdim=True).clamp_min(1e-300)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(dim=-1)
    return entropy.exp()


@dataclasses.dataclass
class Trajectories(Result):
    """Per-layer trajectory diagnostics (layer 0 = embedding output; updates start at layer 1)."""

    cos_to_final_cls: torch.Tensor
    cos_to_final_tokens: torch.Tensor
    update_effective_rank: torch.Tensor
    update_relative_norm: torch.Tensor
    class_separation: torch.Tensor
    dim: int
    n_samples: int
    source: str
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    version: str = __version__

    def table(self) -> str:
        has_sep = len(self.class_separation) > 0
        lines = [
            f"Trajectories of {self.source} ({self.n_samples} samples, dim {self.dim}); "
            "tok0 = CLS / BOS, rest = patch / text tokens",
            f"{'layer':>5} {'cos→fin tok0':>13} {'cos→fin rest':>13} {'update erank':>12} {'|Δ|/|x|':>8}"
            + (f" {'class sep':>9}" if has_sep else ""),
        ]
        for layer in range(len(self.cos_to_final_cls)):
            rank = f"{float(self.update_effective_rank[layer - 1]):12.2f}" if layer else " " * 12
            norm = f"{float(self.update_relative_norm[layer - 1]):8.3f}" if layer else " " * 8
            sep = f" {float(self.class_separation[layer]):9.3f}" if has_sep else ""
            lines.append(
                f"{layer:>5} {float(self.cos_to_final_cls[layer]):13.3f} "
                f"{float(self.cos_to_final_tokens[layer]):13.3f} {rank} {norm}{sep}"
            )
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        layers = list(range(len(self.cos_to_final_cls)))
        fig = make_subplots(
            rows=1,
            cols=3,
            subplot_titles=(
                "cos to final state",
                "effective rank of update Δ_l",
                "class separation (CLS)",
            ),
        )
        for name, values in (
            ("CLS / BOS", self.cos_to_final_cls),
            ("other tokens", self.cos_to_final_tokens),
        ):
            fig.add_trace(
                go.Scatter(x=layers, y=values.tolist(), mode="lines+markers", name=name), 1, 1
            )
        fig.add_trace(
            go.Scatter(
                x=layers[1:],
                y=self.update_effective_rank.tolist(),
                mode="lines+markers",
                name="erank",
            ),
            1,
            2,
        )
        if len(self.class_separation):
            fig.add_trace(
                go.Scatter(
                    x=layers,
                    y=self.class_separation.tolist(),
                    mode="lines+markers",
                    name="separation",
                ),
                1,
                3,
            )
        for col in (1, 2, 3):
            fig.update_xaxes(title_text="layer", row=1, col=col)
        fig.update_layout(title=f"Trajectories of {self.source}", template="plotly_white")
        return fig


def trajectories_from_states(
    states: Any,
    *,
    labels: torch.Tensor | None = None,
    n_prefix: int = 1,
    source: str = "representations",
    seed: int = 0,
) -> Trajectories:
    """Diagnostics of per-token states [L+1, N, T, D] (see module docstring)."""
    states = as_states(states)
    if states.ndim != 4:
        raise ValueError(
            f"trajectories need per-token states [layers, samples, tokens, dim], got {tuple(states.shape)}"
        )
    n_layers, n, n_tokens, dim = states.shape
    unit = torch.nn.functional.normalize(states, dim=-1)
    cos_final = (unit * unit[-1:]).sum(-1)  # [L+1, N, T]
    body = states[:, :, n_prefix:] if n_tokens > n_prefix else states
    delta = body[1:] - body[:-1]
    updates = delta.reshape(n_layers - 1, -1, dim)
    if updates.shape[1] > MAX_ROWS:
        generator = torch.Generator().manual_seed(seed)
        updates = updates[:, torch.randperm(updates.shape[1], generator=generator)[:MAX_ROWS]]
    relative = delta.norm(dim=-1) / body[:-1].norm(dim=-1).clamp_min(1e-12)
    separation = torch.empty(0)
    if labels is not None:
        labels = torch.as_tensor(labels)
        if labels.shape != (n,):
            raise ValueError(
                f"labels must have shape [{n}] (one per sample), got {tuple(labels.shape)}"
            )
        same = labels[:, None] == labels[None, :]
        off_diagonal = ~torch.eye(n, dtype=torch.bool)
        cls = unit[:, :, 0]
        gram = cls @ cls.transpose(1, 2)  # [L+1, N, N]
        within = (gram * (same & off_diagonal)).sum((1, 2)) / (same & off_diagonal).sum().clamp_min(
            1
        )
        between = (gram * ~same).sum((1, 2)) / (~same).sum().clamp_min(1)
        separation = within - between
    return Trajectories(
        cos_to_final_cls=cos_final[:, :, 0].mean(1),
        cos_to_final_tokens=cos_final[:, :, n_prefix:].mean((1, 2))
        if n_tokens > n_prefix
        else cos_final.mean((1, 2)),
        update_effective_rank=effective_rank(updates).float(),
        update_relative_norm=relative.mean((1, 2)),
        class_separation=separation,
        dim=dim,
        n_samples=n,
        source=source,
        settings={"n_prefix": n_prefix, "max_rows": MAX_ROWS, "seed": seed},
    )


def trajectory_diagnostics(
    model: Any, inputs: Any = None, *, labels: torch.Tensor | None = None, batch_size: int = 256
) -> Trajectories:
    """Trajectory diagnostics of a model on ``inputs`` (or of precomputed states with inputs=None)."""
    if inputs is None:
        return trajectories_from_states(model, labels=labels)
    from interp.depth.views import model_states

    states, n_prefix, name, _ = model_states(model, inputs, batch_size=batch_size)
    return trajectories_from_states(states, labels=labels, n_prefix=n_prefix, source=name)
