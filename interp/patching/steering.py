"""Steering: add a vector to the residual stream at chosen layers and positions.

Definitions. A steering vector ``v [d_model]`` is added, times ``scale``, to
``blocks.{l}.{hook}`` (default ``hook_resid_pre``, the input of block ``l``) for each chosen
layer, at every position or only at chosen token positions (counted over real tokens, so the same
positions work for padded batches and for each step of ``lm.generate``). The mean-difference
vector of two prompt sets is ``mean(act(positive)) - mean(act(negative))`` of that hook, each
prompt read at its last real token (``position="last"``) or averaged over its real tokens
(``"mean"``). :func:`steering_edits` returns the ``edits`` mapping for ``lm.run`` /
``lm.generate`` / ``with lm.edits(...)``; :func:`steer` sweeps layers and scales and measures a
logit difference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import plotly.graph_objects as go
import torch

from interp import __version__
from interp.errors import InvalidArgumentError
from interp.models.protocol import Inputs, check_language_model
from interp.patching.answers import Token, token_ids
from interp.results import Result
from interp.viz import heatmap

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel


@dataclasses.dataclass
class SteeringResult(Result):
    """``values [layers, scales]``: the batch-mean metric (answer logit minus wrong logit at each
    input's last token) with the vector added at that layer (all positions) times that scale;
    ``baseline``: the metric without steering."""

    layers: list[int]
    scales: list[float]
    values: torch.Tensor
    baseline: float
    hook: str = "hook_resid_pre"
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: str = ""

    def table(self) -> str:
        head = "".join(f"{f'x{s:g}':>10}" for s in self.scales)
        lines = [
            f"steering — {self.model or 'model'} ({self.hook}; metric without steering "
            f"{self.baseline:+.4f})",
            f"{'layer':<8}{head}",
        ]
        for i, layer in enumerate(self.layers):
            lines.append(f"{layer:<8}" + "".join(f"{float(v):>+10.4f}" for v in self.values[i]))
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        return heatmap(
            self.values,
            title=f"steering: metric by layer and scale — {self.model}",
            x_label="scale",
            y_label="layer",
            x_ticks=[f"{s:g}" for s in self.scales],
            y_ticks=[str(layer) for layer in self.layers],
            colorscale="RdBu",
            hover="metric",
        )


def _hook(lm: LanguageModel, layer: int, hook: str) -> str:
    name = f"blocks.{layer}.{hook}"
    if name not in lm.hook_names:
        raise InvalidArgumentError(
            f"{name} is not a hook of {lm.name}; steer hook_resid_pre, hook_resid_post, "
            f"hook_attn_out or hook_mlp_out of layers 0..{lm.n_layers - 1}"
        )
    return name


def mean_difference(
    lm: LanguageModel,
    positive: Inputs,
    negative: Inputs,
    layer: int,
    *,
    hook: str = "hook_resid_pre",
    position: Literal["last", "mean"] = "last",
) -> torch.Tensor:
    """``mean(act(positive)) - mean(act(negative))`` at ``blocks.{layer}.{hook}``: ``[d_model]``
    (see the module docstring for ``position``)."""
    check_language_model(lm, "mean_difference")
    if position not in ("last", "mean"):
        raise InvalidArgumentError(f"position must be 'last' or 'mean', got {position!r}")
    name = _hook(lm, layer, hook)

    def mean(texts: Inputs) -> torch.Tensor:
        _, cache = lm.run(texts, capture=name, padding_side="right")
        acts = cache[name].double()
        if position == "last":
            return cache.at_last(acts).mean(0)
        mask = cache.attention_mask
        mask = torch.ones(acts.shape[:2]) if mask is None else mask
        mask = mask.to(acts.device, acts.dtype)[..., None]
        return ((acts * mask).sum(1) / mask.sum(1)).mean(0)

    return (mean(positive) - mean(negative)).to(lm.dtype)


def steering_edits(
    vector: torch.Tensor,
    layers: int | Sequence[int],
    *,
    scale: float = 1.0,
    positions: int | Sequence[int] | None = None,
    hook: str = "hook_resid_pre",
) -> dict:
    """``{blocks.{l}.{hook}: add scale * vector}`` for ``lm.run(edits=...)`` / ``lm.generate``.

    ``positions``: None adds at every position (every generated token too); ints add only at
    those token positions (0 = the first real token, BOS included)."""
    if not isinstance(vector, torch.Tensor) or vector.dim() != 1:
        raise InvalidArgumentError(
            f"a steering vector is a 1-d tensor [d_model], got "
            f"{tuple(vector.shape) if isinstance(vector, torch.Tensor) else type(vector).__name__}"
        )
    chosen = (
        None
        if positions is None
        else torch.tensor(
            [positions] if isinstance(positions, int) else list(positions), dtype=torch.long
        )
    )

    def add(x: torch.Tensor, ctx) -> torch.Tensor:
        shift = scale * vector.to(x.device, x.dtype)
        if chosen is None:
            return x + shift
        where = torch.isin(ctx.positions, chosen.to(ctx.positions.device))
        return x + where[..., None].to(x.dtype) * shift

    layers = [layers] if isinstance(layers, int) else list(layers)
    return {f"blocks.{layer}.{hook}": add for layer in layers}


def steer(
    lm: LanguageModel,
    inputs: Inputs,
    vector: torch.Tensor,
    answer: Token | Sequence[Token],
    wrong: Token | Sequence[Token] | None = None,
    *,
    layers: Sequence[int] | None = None,
    scales: Sequence[float] = (-4.0, -2.0, 0.0, 2.0, 4.0),
    hook: str = "hook_resid_pre",
) -> SteeringResult:
    """Sweep ``layers`` (default all) x ``scales``: the logit of ``answer`` (minus ``wrong``'s)
    at each input's last token with ``scale * vector`` added at that layer's ``hook``."""
    check_language_model(lm, "steer")
    layers = list(range(lm.n_layers)) if layers is None else list(layers)
    for layer in layers:
        _hook(lm, layer, hook)
    logits, cache = lm.run(inputs, padding_side="left")
    batch = logits.shape[0]
    good = token_ids(lm, answer, batch, "answer")
    bad = token_ids(lm, wrong, batch, "wrong") if wrong is not None else None

    def metric(logits: torch.Tensor) -> float:
        last = logits[:, -1].double().cpu()  # left padding: the last column is real everywhere
        value = last.gather(-1, good[:, None])
        if bad is not None:
            value = value - last.gather(-1, bad[:, None])
        return float(value.mean())

    values = torch.zeros(len(layers), len(scales))
    for i, layer in enumerate(layers):
        for j, scale in enumerate(scales):
            edits = steering_edits(vector, layer, scale=float(scale), hook=hook)
            values[i, j] = metric(lm.run(inputs, edits=edits, padding_side="left")[0])
    return SteeringResult(
        layers=layers,
        scales=[float(s) for s in scales],
        values=values,
        baseline=metric(logits),
        hook=hook,
        settings={
            "vector_norm": float(vector.double().norm()),
            "answer": good.tolist(),
            "wrong": bad.tolist() if bad is not None else None,
            "interp_version": __version__,
        },
        model=lm.name,
    )
