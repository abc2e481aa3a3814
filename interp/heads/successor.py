"""Successor heads (Gould et al. 2023, arXiv 2312.09230): heads whose OV circuit increments.

A successor head maps the token of an ordinal item ("Monday", "3", "March") to its successor
("Tuesday", "4", "April") through its OV circuit alone. The score is pure weight algebra, no
prompts:

    e(t)        effective embedding (``embedding=``):
                "mlp0"      MLP0(norm_mlp0(W_E[t]))   (the paper's choice; attention 0 ignored)
                "raw"       W_E[t]                    (times the model's embedding scale)
                "raw+mlp0"  W_E[t] + MLP0(norm_mlp0(W_E[t]))
    x_l(t)      = norm_attn_l(e(t)): layer l's attention-input norm applied by the model's own
                  module, exactly as the head would see a residual stream equal to e(t).
    o_lh(t)     = x_l(t) W_V[l, h] + b_V[l, h], then @ W_O[l, h]  (b_O is per layer, not per head:
                  left out).
    logits      = lin_final(o_lh(t)) @ W_U[:, task tokens]. ``lin_final`` is the final norm's
                  linear part: its gain (and, for LayerNorm, its mean-centering), without the
                  division by the RMS / standard deviation of o and without the LayerNorm bias
                  and b_U. The division is a positive factor per input token, so no argmax
                  changes; the biases are constants added to every head's output alike, not the
                  head's contribution. It is read off the model's own final-norm module.

Succession score of a head = the fraction of pairs ``(t, succ(t))``, over all pairs of all
surviving tasks, for which ``succ(t)`` is the argmax of the logits over the task's tokens (the
input token itself included among the candidates). Per-task fractions are kept as extras
``"succession/<task>"``. A successor head scores >= 0.4 (the threshold of a public
reimplementation; the paper's own cut-off is not stated).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch

from interp import __version__
from interp.errors import InputTypeError
from interp.heads.checks import check_model
from interp.heads.ordinal_tasks import OrdinalTask, ResolvedTask, resolve_tasks, union_tokens
from interp.heads.scores import HeadScores

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel

Embedding = Literal["mlp0", "raw", "raw+mlp0"]
EMBEDDINGS = ("mlp0", "raw", "raw+mlp0")
METRIC = "succession"


def _compute_dtype(lm: LanguageModel) -> torch.dtype:
    return torch.float64 if lm.dtype == torch.float64 else torch.float32


def effective_embedding(
    lm: LanguageModel, token_ids: torch.Tensor, embedding: Embedding = "mlp0"
) -> torch.Tensor:
    """Effective embeddings ``[n, d_model]`` of ``token_ids`` (see the module docstring)."""
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}")
    token_ids = torch.as_tensor(token_ids, dtype=torch.long).to(lm.device)
    raw = lm.W_E[token_ids] * lm.embedding_scale
    if embedding == "raw":
        return raw.to(_compute_dtype(lm))
    mlp0 = lm.mlp(0, lm.norm(0, "mlp", raw))
    out = mlp0 if embedding == "mlp0" else raw + mlp0
    return out.to(_compute_dtype(lm))


def final_norm_linear(lm: LanguageModel) -> torch.Tensor:
    """The final norm's linear part as a ``[d_model, d_model]`` matrix (row-vector convention).

    Read off the model's own module: ``(norm(c·I) - norm(0)) / c`` with ``c = sqrt(d_model)``, so
    every basis input has unit RMS and the division by the RMS/std is ~1 for all rows alike. For
    RMSNorm this is ``diag(gain)``; for LayerNorm the mean-centering times ``diag(gain)``.
    """
    c = lm.d_model**0.5
    eye = torch.eye(lm.d_model, device=lm.device) * c
    zero = torch.zeros(1, lm.d_model, device=lm.device)
    dtype = _compute_dtype(lm)
    return (lm.norm(None, "final", eye).to(dtype) - lm.norm(None, "final", zero).to(dtype)) / c


def ov_factors(
    lm: LanguageModel,
    resid: torch.Tensor,
    token_ids: torch.Tensor,
    *,
    layers: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The OV circuit in two factors: ``values [L', H, n, d_head]`` and ``w_ou [L', H, d_head, T]``.

    ``values = norm_attn_l(resid) W_V + b_V`` per head; ``w_ou = W_O · lin_final · W_U[:, ids]``;
    their product is :func:`ov_logits`. Keeping the factors lets callers form only the logit
    blocks they need (one ``[n_task, n_task]`` block per task instead of ``[T, T]``).

    Families with a norm after attention (Gemma-2/3's sandwich norm, OLMo-2's post-norm): the
    head's output is taken before that norm, ``W_V W_O`` alone, as TransformerLens does. The norm
    divides the sum of all heads' outputs by an input-dependent RMS, which no per-head linear map
    can carry, so the succession score is read off the pre-norm OV circuit.
    """
    layers = list(range(lm.n_layers) if layers is None else layers)
    if not layers or any(not 0 <= layer < lm.n_layers for layer in layers):
        raise ValueError(
            f"layers must be a non-empty list of layers in 0..{lm.n_layers - 1}, got {layers}"
        )
    if resid.dim() != 2 or resid.shape[1] != lm.d_model:
        raise ValueError(f"resid must be [n, {lm.d_model}], got shape {tuple(resid.shape)}")
    dtype = _compute_dtype(lm)
    index = torch.tensor(layers, device=lm.device)
    token_ids = torch.as_tensor(token_ids, dtype=torch.long, device=lm.device)
    # the norm modules differ per layer: applied one layer at a time, each on [n, d] only
    x = torch.stack([lm.norm(layer, "attn", resid).to(dtype) for layer in layers])  # [L, n, d]
    unembed = final_norm_linear(lm) @ lm.W_U[:, token_ids].to(dtype)  # [d, T]
    w_ou = torch.einsum("lhed,dt->lhet", lm.W_O[index].to(dtype), unembed)
    values = torch.einsum("lnd,lhde->lhne", x, lm.W_V[index].to(dtype))
    return values + lm.b_V[index].to(dtype)[:, :, None], w_ou


def ov_logits(
    lm: LanguageModel,
    resid: torch.Tensor,
    token_ids: torch.Tensor,
    *,
    layers: Sequence[int] | None = None,
) -> torch.Tensor:
    """OV-circuit logits ``[len(layers), n_heads, n, len(token_ids)]`` of residual vectors.

    ``resid [n, d_model]`` is fed, for each layer, through that layer's attention-input norm, each
    head's ``W_V`` (+ ``b_V``) and ``W_O``, the final norm's linear part and the unembedding
    columns of ``token_ids``; all heads of all layers in one einsum.
    """
    values, w_ou = ov_factors(lm, resid, token_ids, layers=layers)
    return torch.einsum("lhne,lhet->lhnt", values, w_ou)


def _task_hits(
    values: torch.Tensor, w_ou: torch.Tensor, task: ResolvedTask, positions: torch.Tensor
) -> torch.Tensor:
    """``[L, H, n_pairs]`` bools: is the successor the argmax among the task's tokens?"""
    positions = positions.to(values.device)
    block = torch.einsum("lhne,lhet->lhnt", values[:, :, positions], w_ou[..., positions])
    pairs = torch.tensor(task.pairs, dtype=torch.long, device=values.device)
    predicted = block.argmax(dim=-1)[..., pairs[:, 0]]
    return predicted == pairs[:, 1]


def successor_scores(
    model: LanguageModel,
    *,
    embedding: Embedding = "mlp0",
    tasks: Sequence[OrdinalTask] | None = None,
    threshold: float = 0.4,
) -> HeadScores:
    """Succession score of every head of ``model`` (a HookedLM), from its weights alone.

    ``tasks``: ordinal tasks (default: :data:`interp.heads.ordinal_tasks.DEFAULT_TASKS`, each
    with and without a leading space; those without a single-token pair are dropped and listed
    in ``settings["dropped_tasks"]``). Returns a :class:`HeadScores` with metric
    ``"succession"`` (mean over all pairs of all tasks), per-task extras ``"succession/<task>"``
    and ``thresholds={"succession": threshold}``.
    """
    check_model(model, "successor_scores")
    if not all(hasattr(model, name) for name in ("W_V", "W_O", "tokenizer", "norm")):
        raise InputTypeError(
            f"successor_scores reads the weights of a HookedLM (W_V, W_O, norm), which "
            f"{type(model).__name__} does not offer"
        )
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(
            f"threshold is a fraction of pairs: it must lie in [0, 1], got {threshold}"
        )
    kept, dropped = resolve_tasks(model.tokenizer, model.d_vocab, tasks)
    vocab, positions = union_tokens(kept)
    resid = effective_embedding(model, vocab, embedding)
    values, w_ou = ov_factors(model, resid, vocab)
    hits = [_task_hits(values, w_ou, task, pos) for task, pos in zip(kept, positions, strict=True)]
    per_task = {
        f"{METRIC}/{task.name}": h.double().mean(-1).cpu()
        for task, h in zip(kept, hits, strict=True)
    }
    overall = torch.cat(hits, dim=-1).double().mean(-1).cpu()
    settings = {
        "embedding": embedding,
        "threshold": float(threshold),
        "tasks": {
            t.name: {
                "items": list(t.items),
                "token_ids": list(t.token_ids),
                "pairs": len(t.pairs),
                "cyclic": t.task.cyclic,
            }
            for t in kept
        },
        "dropped_tasks": dropped,
        "total_pairs": sum(len(t.pairs) for t in kept),
        "score": "fraction of (t, succ t) pairs, pooled over all tasks, where succ t is the argmax of "
        "the head's OV logits among the task's tokens",
        "final_norm": "linear part (gain, centering); RMS/std division and biases dropped",
        "interp_version": __version__,
    }
    return HeadScores(
        scores={METRIC: overall},
        primary=METRIC,
        thresholds={METRIC: float(threshold)},
        extras=per_task,
        settings=settings,
        model=model.name,
        title="successor heads",
    )


def task_breakdown(scores: HeadScores, k: int = 10) -> tuple[list[str], list[list[object]]]:
    """Columns and rows of a per-task table for the top ``k`` heads (overall score first)."""
    names = [n for n in scores.extras if n.startswith(f"{METRIC}/")]
    columns = ["head", METRIC, *(n.split("/", 1)[1] for n in names)]
    rows = [
        [f"L{layer}H{head}", score, *(float(scores.extras[n][layer, head]) for n in names)]
        for layer, head, score in scores.top(k)
    ]
    return columns, rows


def successor_report_sections(scores: HeadScores, report, k: int = 10) -> None:
    """Add the successor-head sections (summary, heatmap, per-task table) to an interp.viz.Report."""
    settings = scores.settings
    found = scores.heads()
    report.heading("Successor heads")
    report.text(
        "Succession score (Gould et al. 2023): the fraction of ordinal pairs (t, succ t) for which a "
        "head's OV circuit, fed the effective embedding of t, ranks succ t first among the task's "
        f"tokens. Embedding: {settings.get('embedding')}. Successor head: score >= "
        f"{scores.thresholds.get(METRIC)}. Found {len(found)}: "
        + (", ".join(f"L{layer}H{head}" for layer, head in found) or "none")
        + "."
    )
    tasks = settings.get("tasks", {})
    report.text(
        "Tasks scored: "
        + ", ".join(f"{name} ({info['pairs']} pairs)" for name, info in tasks.items())
        + ". Dropped: "
        + (
            ", ".join(f"{name} ({why})" for name, why in settings.get("dropped_tasks", {}).items())
            or "none"
        )
        + "."
    )
    report.figure(scores.figure())
    report.table(*task_breakdown(scores, k))
