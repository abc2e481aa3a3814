"""Layer-by-layer dissimilarity of a deep network's representations (Jacobs et al. 2025).

The block-recurrent hypothesis (arXiv 2512.19941) starts from a depth-by-depth matrix: for every
pair of layers (i, j), how different are the representations they produce for the same inputs?
The paper uses, per layer, the CLS token and the mean of the patch tokens, and

    D[i, j] = mean over samples and over those two tokens of 1 - cos(a_i, a_j).

Linear CKA (Kornblith et al. 2019) is offered as the alternative: D[i, j] = 1 - CKA(A_i, A_j),
computed over samples (for ``tokens="cls+mean"`` separately for the CLS and mean tokens, then
averaged). Layers whose representations are close form the diagonal blocks that
:func:`interp.depth.segment_phases` cuts into phases.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from interp import __version__
from interp.results import Result
from interp.viz import heatmap

TOKEN_MODES = ("cls+mean", "cls", "mean", "last+mean", "all")
METRICS = ("cosine", "cka")


def summarize_tokens(states: torch.Tensor, tokens: str, n_prefix: int = 1) -> torch.Tensor:
    """Reduce per-token states [L+1, N, T, D] to token groups [L+1, G, S, D].

    ``n_prefix`` tokens (CLS and any registers) come before the patch / text tokens.

    - ``"cls+mean"``: G=2, the CLS token and the mean of the patch tokens (the paper's choice).
    - ``"cls"`` / ``"mean"``: one of the two.
    - ``"last+mean"``: for causal language models, the last token and the mean of the tokens
      after the prefix (a causal LM has no CLS; its last token has read the whole text).
    - ``"all"``: G=1, every token of every sample is one sample (S = N*T).
    """
    if tokens not in TOKEN_MODES:
        raise ValueError(f"tokens must be one of {TOKEN_MODES}, got {tokens!r}")
    if states.ndim != 4:
        raise ValueError(
            f"per-token states must have shape [layers, samples, tokens, dim], got {tuple(states.shape)}"
        )
    n_tokens = states.shape[2]
    if tokens == "all":
        return states.reshape(states.shape[0], 1, -1, states.shape[-1])
    if tokens != "cls" and n_tokens <= n_prefix:
        raise ValueError(
            f"tokens={tokens!r} needs tokens after the {n_prefix} prefix token(s); states have {n_tokens}"
        )
    mean = states[:, :, n_prefix:].mean(dim=2)
    groups = {
        "cls+mean": [states[:, :, 0], mean],
        "cls": [states[:, :, 0]],
        "mean": [mean],
        "last+mean": [states[:, :, -1], mean],
    }[tokens]
    return torch.stack(groups, dim=1)


def cosine_distance(groups: torch.Tensor) -> torch.Tensor:
    """D[i, j] = mean over groups and samples of 1 - cos(a_i, a_j); groups: [L, G, S, D]."""
    unit = torch.nn.functional.normalize(groups, dim=-1)
    flat = unit.reshape(unit.shape[0], -1, unit.shape[-1])  # [L, G*S, D]
    cos = torch.einsum("isd,jsd->ij", flat, flat) / flat.shape[1]
    return (1.0 - cos).clamp_min(0.0).fill_diagonal_(0.0)


def linear_cka(groups: torch.Tensor) -> torch.Tensor:
    """Linear CKA between every pair of layers, averaged over token groups; groups: [L, G, S, D].

    CKA(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) with column-centred X, Y
    (samples in rows). Computed as <K_i, K_j> / (||K_i|| ||K_j||) over Gram matrices K = Xc Xc^T
    or over the stacked feature covariance [L*D, L*D], whichever is smaller (same value).
    """
    centred = groups - groups.mean(dim=2, keepdim=True)
    n_layers, n_groups, n_samples, dim = centred.shape
    if n_samples < 2:
        raise ValueError("linear CKA needs at least 2 samples")
    per_group = centred.transpose(0, 1)  # [G, L, S, D]
    if n_samples * n_samples <= n_layers * dim * dim:
        grams = per_group @ per_group.transpose(-1, -2)  # [G, L, S, S]
        inner = torch.einsum("gist,gjst->gij", grams, grams)
    else:
        stacked = per_group.permute(0, 2, 1, 3).reshape(n_groups, n_samples, n_layers * dim)
        cov = (stacked.transpose(1, 2) @ stacked).reshape(n_groups, n_layers, dim, n_layers, dim)
        inner = cov.pow(2).sum(dim=(2, 4))
    norms = inner.diagonal(dim1=-2, dim2=-1).clamp_min(1e-30).sqrt()
    cka = inner / (norms[:, :, None] * norms[:, None, :])
    return cka.mean(dim=0)


@dataclasses.dataclass
class LayerSimilarity(Result):
    """Depth-by-depth dissimilarity matrix of a network's per-layer representations.

    ``matrix[i, j]`` is 0 for identical representations and grows with dissimilarity (1 - cos or
    1 - CKA). ``layers`` labels the rows: for a model, 0 is the embedding output and l the output
    of block l.
    """

    matrix: torch.Tensor
    layers: list[int]
    metric: str
    tokens: str
    n_samples: int
    source: str
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    version: str = __version__

    def table(self) -> str:
        labels = [str(layer) for layer in self.layers]
        width = max(4, *(len(label) for label in labels))
        lines = [
            f"Layer dissimilarity ({self.metric}, tokens={self.tokens}, {self.n_samples} samples) "
            f"of {self.source}",
            " " * width + " ".join(label.rjust(5) for label in labels),
        ]
        for label, row in zip(labels, self.matrix.tolist(), strict=True):
            lines.append(label.rjust(width) + " ".join(f"{value:5.2f}" for value in row))
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        ticks = [str(layer) for layer in self.layers]
        name = "1 - cos" if self.metric == "cosine" else "1 - CKA"
        return heatmap(
            self.matrix,
            title=f"Layer dissimilarity ({name}, {self.tokens}) of {self.source}",
            x_label="layer",
            y_label="layer",
            x_ticks=ticks,
            y_ticks=ticks,
            hover=name,
            zmin=0.0,
        )


def as_states(representations: Any) -> torch.Tensor:
    """Stack user-supplied per-layer representations into a float tensor [L, N, (T,) D]."""
    if isinstance(representations, Sequence) and not isinstance(representations, str):
        if len(representations) < 2:
            raise ValueError("need representations of at least 2 layers")
        shapes = {tuple(np.shape(r)) for r in representations}
        if len(shapes) != 1:
            raise ValueError(
                f"every layer's representation must have the same shape, got {sorted(shapes)}"
            )
        representations = torch.stack([torch.as_tensor(r) for r in representations])
    if isinstance(representations, np.ndarray):
        representations = torch.from_numpy(representations)
    if not isinstance(representations, torch.Tensor):
        raise TypeError(
            "representations must be a tensor/array [layers, samples, (tokens,) dim] or a list of "
            f"per-layer [samples, (tokens,) dim] tensors, got {type(representations).__name__}"
        )
    if representations.ndim not in (3, 4):
        raise ValueError(
            "representations must have shape [layers, samples, dim] or [layers, samples, tokens, dim], "
            f"got {tuple(representations.shape)}"
        )
    states = representations.detach().float()
    if not torch.isfinite(states).all():
        raise ValueError("representations contain NaN or inf values")
    return states


def similarity_from_states(
    states: torch.Tensor,
    *,
    tokens: str = "cls+mean",
    metric: str = "cosine",
    n_prefix: int = 1,
    first_layer: int = 0,
    source: str = "representations",
    settings: dict[str, Any] | None = None,
) -> LayerSimilarity:
    """The dissimilarity matrix of already-computed states [L, N, D] or [L, N, T, D]."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    states = as_states(states)
    groups = states[:, None] if states.ndim == 3 else summarize_tokens(states, tokens, n_prefix)
    token_mode = "given" if states.ndim == 3 else tokens
    matrix = (
        cosine_distance(groups) if metric == "cosine" else 1.0 - linear_cka(groups.double()).float()
    )
    matrix = ((matrix + matrix.T) / 2).clamp_min(0.0).fill_diagonal_(0.0)
    return LayerSimilarity(
        matrix=matrix,
        layers=list(range(first_layer, first_layer + states.shape[0])),
        metric=metric,
        tokens=token_mode,
        n_samples=int(states.shape[1]),
        source=source,
        settings=dict(settings or {}),
    )


def layer_similarity(
    model: Any,
    inputs: Any = None,
    *,
    tokens: str | None = None,
    metric: str = "cosine",
    batch_size: int = 256,
    first_layer: int = 0,
) -> LayerSimilarity:
    """Dissimilarity matrix [L+1, L+1] of a model's per-layer representations.

    ``model``: a DigitsViT, a Hugging Face ViT / DINOv2, a :class:`~interp.depth.views.DepthView`
    of any module, or a HookedLM (``inputs`` = texts or token ids); or, with ``inputs=None``,
    precomputed representations [L, N, D] / [L, N, T, D] (or a list of per-layer tensors), whose
    first row is labelled ``first_layer``. ``tokens`` defaults to ``"cls+mean"`` (vision, as in
    the paper) and ``"last+mean"`` for language models; ``metric`` is ``"cosine"`` (the paper's
    1 - cos) or ``"cka"`` (1 - linear CKA).
    """
    from interp.depth.views import model_states

    if inputs is None:
        return similarity_from_states(
            model, tokens=tokens or "cls+mean", metric=metric, first_layer=first_layer
        )
    states, n_prefix, name, default_tokens = model_states(model, inputs, batch_size=batch_size)
    return similarity_from_states(
        states,
        tokens=tokens or default_tokens,
        metric=metric,
        n_prefix=n_prefix,
        source=name,
        settings={"batch_size": batch_size},
    )
