"""Raptor for causal language models: k weight-tied decoder layers applied recurrently.

The teacher is a :class:`~interp.models.hooked.HookedLM`'s residual stream: ``resid_pre`` of block
0 (the embedding), then every block's ``resid_post``. Each surrogate block is a copy of its phase's
middle decoder layer (the original's own class, e.g. ``LlamaDecoderLayer``), split into its two
branches and scaled by the same layer-index conditioning as the vision blocks
(:mod:`interp.depth.raptor`)::

    x <- x + t1 ⊙ Attn(input_layernorm x);   x <- x + t2 ⊙ MLP(post_attention_layernorm x);   x <- t3 ⊙ x

The attention branch is called the way ``LlamaModel.forward`` (transformers 5.x) calls its layers:
rotary ``position_embeddings`` from a copy of the model's own rotary module at positions
0..T-1, and the causal mask from ``transformers.masking_utils.create_causal_mask`` with the model's
config (``None`` for SDPA's built-in causal path when there is no padding). Supported: the
Llama-style families of the HookedLM table (llama, mistral, qwen2, gemma) with full attention in
every layer; token windows without padding (:func:`interp.depth.views.corpus_windows`).

Loss. The embedded SmolLM2-135M's residual stream is far from isotropic: BOS carries a massive
activation (norm ~2.5e4 from layer 12 on, against 50-850 for text tokens, which also grow ~20x with
depth), and in text tokens a handful of channels (507, 247, 308, ...) hold 60-85% of the squared
norm. A plain MSE, or one relative to each token's norm, is then almost all BOS or those few
channels; a first version of the latter matched them and left the rest (top-1 agreement with the
original below 1% on held-out text, against 6-7% with the loss below, same budget of 200 steps).
So the loss standardizes per layer and channel: the squared
error of channel c at layer l is divided by the teacher's mean square of that channel at that
layer (over the training windows' text tokens), averaged over layers, windows, text tokens and
channels. BOS is left out of the loss (its state is the same in every window and is free to
become whatever attention sink serves the text tokens best); its state still feeds the text
tokens through attention. ``layer_error`` reports the same standardized error per layer.
Training stages, forcing schedule and optimizer are those of
:func:`interp.depth.raptor.train_raptor`.

Evaluation on held-out windows (:func:`next_token_metrics`): the surrogate's last state goes
through the model's final norm and unembedding; top-1 next-token agreement with the original,
and the cross-entropy of the original, the surrogate and the untrained surrogate (each phase's
middle layer repeated), at every position but the last. ``recovery`` is the share of the gap
between a uniform guess (ln V nats) and the original's loss that the surrogate closes (negative
when the surrogate does worse than guessing). The embedding alone through the final norm and
unembedding is no baseline for a model with tied embeddings: it predicts the current token with
enormous confidence (SmolLM2: ~110 nats per token).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from interp.depth.phases import Phases
from interp.depth.raptor import (
    Raptor,
    RaptorFit,
    check_steps,
    phase_spans,
    rollout,
    train_raptor,
)
from interp.depth.views import language_model_states
from interp.errors import InvalidArgumentError, UnsupportedModelError
from interp.models.protocol import LanguageModel


class LanguageRaptor(Raptor):
    """Raptor over a language model's decoder layers, with the model's rotary embedding and mask,
    all read through the :class:`~interp.models.protocol.LanguageModel` protocol (so it runs on
    every backend that exposes ``decoder_layers()``: native, nnsight, TransformerLens)."""

    def __init__(self, lm: LanguageModel, spans: list[tuple[int, int]]) -> None:
        layers = lm.decoder_layers()
        sliding = [
            i for i, layer in enumerate(layers) if _attention_type(layer) != "full_attention"
        ]
        if sliding:
            raise InvalidArgumentError(
                f"layers {sliding} of {lm.name} use sliding-window attention; Raptor for language "
                "models needs full causal attention in every layer"
            )
        probe = torch.zeros(1, 2, lm.d_model, device=lm.device, dtype=lm.dtype)
        if lm.rotary_embedding(probe, torch.arange(2, device=lm.device)[None]) is None:
            raise UnsupportedModelError(
                f"Raptor for language models re-runs rotary decoder layers; {lm.name} has no "
                "rotary embedding"
            )
        super().__init__(layers, spans, lm.d_model)
        self.lm = lm
        for module in self.modules():  # the copies must not report into the model's runs
            module.__dict__.pop("_interp_probe", None)

    def context(self, x0: torch.Tensor) -> dict[str, Any]:
        positions = torch.arange(x0.shape[1], device=x0.device)[None]
        return {
            "position_embeddings": self.lm.rotary_embedding(x0, positions),
            "attention_mask": self.lm.causal_mask(x0, positions),
            "position_ids": positions,
        }


def _attention_type(layer: torch.nn.Module) -> str:
    return str(getattr(layer, "attention_type", "full_attention"))


def channel_scale(states: torch.Tensor) -> torch.Tensor:
    """Mean square [L, D] of every block output's channels over the text tokens of [L+1, N, T, D]."""
    return states[1:, :, 1:].pow(2).mean(dim=(1, 2)).clamp_min(1e-12)


def standardized_error(
    pred: torch.Tensor, target: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Per layer: mean over samples, text tokens (BOS, position 0, left out) and channels of
    (pred - target)² / scale, for block outputs [L, N, T, D] and scale [L, D]."""
    error = (pred[:, :, 1:] - target[:, :, 1:]).pow(2) / scale[:, None, None, :]
    return error.mean(dim=(1, 2, 3))


def _windows(lm: LanguageModel, tokens: Any, what: str) -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.is_floating_point():
        raise TypeError(
            f"{what} must be token windows [N, T] of integer ids without padding, e.g. "
            f"interp.depth.views.corpus_windows(model, n, length); got {type(tokens).__name__}"
            + (f" of shape {tuple(tokens.shape)}" if isinstance(tokens, torch.Tensor) else "")
        )
    if tokens.shape[1] < 2:
        raise ValueError(f"{what} need at least 2 tokens per window to score next tokens")
    lm.check_length(tokens.shape[1])
    return tokens.long()


def next_token_metrics(
    lm: LanguageModel,
    tokens: torch.Tensor,
    teacher: torch.Tensor,
    surrogate: torch.Tensor,
    untrained: torch.Tensor,
    chunk: int = 8,
) -> dict[str, float]:
    """Next-token scores of final states [N, T, D] through the model's final norm and unembedding.

    ``teacher``: the original's last states [N, T, D]; ``surrogate`` / ``untrained``: the trained
    / untrained surrogate's. Positions 0..T-2 predict tokens 1..T-1. Returns ``agreement`` (top-1
    match with the original), ``agreement_init`` (untrained surrogate), the mean cross-entropy
    (nats per token) ``loss_original``, ``loss_surrogate``, ``loss_init``, and ``loss_uniform``
    = ln V.
    """
    sums = dict.fromkeys(("agreement", "agreement_init", "original", "surrogate", "init"), 0.0)
    for begin in range(0, tokens.shape[0], chunk):
        window = slice(begin, begin + chunk)
        target = tokens[window, 1:].reshape(-1).to(lm.device)
        logits = {
            name: lm.unembed(states[window])[:, :-1].reshape(target.shape[0], -1).float()
            for name, states in (
                ("original", teacher),
                ("surrogate", surrogate),
                ("init", untrained),
            )
        }
        top = logits["original"].argmax(-1)
        sums["agreement"] += float((logits["surrogate"].argmax(-1) == top).sum())
        sums["agreement_init"] += float((logits["init"].argmax(-1) == top).sum())
        for name, values in logits.items():
            sums[name] += float(F.cross_entropy(values, target, reduction="sum"))
    count = tokens.shape[0] * (tokens.shape[1] - 1)
    return {
        "agreement": sums["agreement"] / count,
        "agreement_init": sums["agreement_init"] / count,
        **{f"loss_{name}": sums[name] / count for name in ("original", "surrogate", "init")},
        "loss_uniform": math.log(lm.d_vocab),
    }


def fit_language_raptor(
    lm: LanguageModel,
    tokens: torch.Tensor,
    phases: Phases | list,
    *,
    eval_inputs: torch.Tensor | None = None,
    phase_steps: int = 150,
    end_to_end_steps: int = 150,
    batch_size: int = 8,
    lr: float = 3e-4,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> RaptorFit:
    """Fit a Raptor surrogate of a HookedLM's residual stream on token windows [N, T].

    ``eval_inputs``: held-out windows for the evaluation (default: the training windows, which
    measures fit, not generalization). See the module docstring for the loss and the scores.
    """
    check_steps(phase_steps, end_to_end_steps)
    tokens = _windows(lm, tokens, "inputs")
    held_out = _windows(lm, eval_inputs, "eval_inputs") if eval_inputs is not None else tokens
    spans = phase_spans(phases, lm.n_layers)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    teacher = language_model_states(lm, tokens)
    reference = language_model_states(lm, held_out) if eval_inputs is not None else teacher
    raptor = LanguageRaptor(lm, spans).to(device=teacher.device, dtype=torch.float32)
    untrained = rollout(raptor, reference[0], chunk=batch_size)[-1]
    scale = channel_scale(teacher)
    curve = train_raptor(
        raptor,
        teacher,
        lambda pred, target: standardized_error(pred, target, scale).mean(),
        phase_steps=phase_steps,
        end_to_end_steps=end_to_end_steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        generator=generator,
    )
    states = rollout(raptor, reference[0], chunk=batch_size)
    scores = next_token_metrics(lm, held_out, reference[-1], states[-1], untrained)
    gap = scores["loss_uniform"] - scores["loss_original"]
    layers = lm.decoder_layers()
    return RaptorFit(
        spans=[list(span) for span in spans],
        layer_error=standardized_error(states, reference[1:], scale).cpu(),
        loss_curve=torch.tensor(curve),
        surrogate_state={k: v.detach().cpu().clone() for k, v in raptor.state_dict().items()},
        teacher_accuracy=None,
        surrogate_accuracy=None,
        retrained_accuracy=None,
        recovery=(scores["loss_uniform"] - scores["loss_surrogate"]) / gap if gap > 0 else None,
        n_params_original=sum(p.numel() for layer in layers for p in layer.parameters()),
        n_params_surrogate=sum(p.numel() for p in raptor.parameters()),
        source=str(lm.name),
        next_token=scores,
        settings={
            "kind": "language",
            "dim": lm.d_model,
            "phase_steps": phase_steps,
            "end_to_end_steps": end_to_end_steps,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "seed": seed,
            "n_train": int(tokens.shape[0]),
            "n_eval": int(held_out.shape[0]),
            "window": int(tokens.shape[1]),
            "held_out": eval_inputs is not None,
            "init": "copy of each phase's middle decoder layer",
            "depth_input": "t = l / L",
            "loss": "MSE standardized per layer and channel (teacher mean square), BOS left out",
            "forcing_decay": "linear 1 -> 0 over the first 25% of phase steps",
        },
    )
