"""The runs every patching analysis starts from: inputs checked and tokenized, the clean and
corrupted (or ablated) baselines, the metric checked on them, and the values patched in.

Activation patching (``ablation=None``) runs the *corrupted* inputs and patches in the *clean*
activations ("denoising"). An ablation runs the *clean* inputs and patches in zeros
(``"zero"``), the mean over a reference batch and its real positions (``"mean"``), or the
activations of other inputs at the same positions (``"resample"``: each example takes another
reference example's values, drawn with ``seed``; by default the clean batch itself, never an
example's own).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from interp.errors import InputTypeError, InvalidArgumentError
from interp.models.protocol import Inputs, check_language_model
from interp.patching.metrics import Metric, MetricContext, check_metric, evaluate
from interp.patching.sites import Grid

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel

ABLATIONS = ("zero", "mean", "resample")


@dataclass
class Baselines:
    """The patched runs' inputs (``tokens``, ``mask``), the metric per example on the clean
    and corrupted runs (NaN for an ablation, which has no corrupted run) and on the run being
    patched (``base``), the values patched in per hook, and the clean tokens as text."""

    tokens: torch.Tensor
    mask: torch.Tensor | None
    clean_metric: torch.Tensor
    corrupted_metric: torch.Tensor
    base_metric: torch.Tensor
    sources: dict[str, torch.Tensor]
    str_tokens: list[str]
    last_only: bool

    @property
    def n_examples(self) -> int:
        return self.tokens.shape[0]

    def context(self, repeats: int) -> MetricContext:
        """The metric's context for the inputs repeated ``repeats`` times along the batch."""
        return metric_context(self.tokens, self.mask, repeats)


def metric_context(
    tokens: torch.Tensor, mask: torch.Tensor | None, repeats: int = 1
) -> MetricContext:
    """The metric's context for ``tokens`` repeated ``repeats`` times along the batch."""
    n, length = tokens.shape
    if mask is None:
        last = torch.full((n,), length - 1, dtype=torch.long)
    else:
        last = (mask.bool() * (torch.arange(length) + 1)).argmax(-1)
    return MetricContext(
        examples=torch.arange(n).repeat(repeats),
        tokens=tokens.repeat(repeats, 1),
        attention_mask=mask.repeat(repeats, 1) if mask is not None else None,
        last_positions=last.repeat(repeats),
    )


def tokenize(
    lm: LanguageModel, inputs: Inputs, prepend_bos: bool, padding_side: str, who: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token ids ``[batch, pos]`` (CPU) and the padding mask (None when nothing is padded)."""
    if isinstance(inputs, torch.Tensor):
        if inputs.dtype.is_floating_point or inputs.dim() not in (1, 2):
            raise InputTypeError(f"{who} token ids must be an integer tensor [pos] or [batch, pos]")
        return inputs.long().reshape(-1, inputs.shape[-1]).cpu(), None
    if isinstance(inputs, str):
        inputs = [inputs]
    if (
        not isinstance(inputs, Sequence)
        or not inputs
        or not all(isinstance(t, str) for t in inputs)
    ):
        raise InputTypeError(
            f"{who} must be a text, a list of texts or token ids; got {type(inputs).__name__}"
        )
    tokens = lm.to_tokens(list(inputs), prepend_bos=prepend_bos, padding_side=padding_side)
    lengths = [lm.to_tokens(t, prepend_bos=prepend_bos).shape[1] for t in inputs]
    if len(set(lengths)) == 1:
        return tokens, None
    index = torch.arange(tokens.shape[1])
    width = torch.tensor(lengths)[:, None]
    real = index < width if padding_side == "right" else index >= tokens.shape[1] - width
    return tokens, real.long()


def baselines(
    lm: LanguageModel,
    clean: Inputs,
    corrupted: Inputs | None,
    metric: Metric,
    grids: list[Grid],
    *,
    ablation: str | None = None,
    reference: Inputs | None = None,
    seed: int = 0,
    prepend_bos: bool = True,
    padding_side: str = "right",
    run_corrupted: bool = True,
) -> Baselines:
    """Check everything, run the baselines, and collect the values to patch in.

    ``run_corrupted=False`` skips the corrupted forward pass (its metric is left NaN for the
    caller to fill: attribution patching gets it from its own forward + backward pass)."""
    check_language_model(lm, "patching")
    check_metric(metric)
    if ablation is not None and ablation not in ABLATIONS:
        raise InvalidArgumentError(
            f"unknown ablation {ablation!r}; accepted: {', '.join(ABLATIONS)} (or None to patch "
            "clean activations into the corrupted run)"
        )
    if ablation is None and corrupted is None:
        raise InvalidArgumentError("activation patching needs corrupted inputs (or an ablation=)")
    if ablation is not None and corrupted is not None:
        raise InvalidArgumentError(
            f"an ablation runs the clean inputs only; pass the inputs to {ablation}-ablate from as "
            "reference=, not corrupted="
        )
    tokens, mask = tokenize(lm, clean, prepend_bos, padding_side, "clean")
    if ablation is None:  # checked before any forward pass
        bad_tokens, bad_mask = tokenize(lm, corrupted, prepend_bos, padding_side, "corrupted")
        _same_shape(tokens, bad_tokens, mask, bad_mask)
    hooks = [g.hook.format(layer=layer) for g in grids for layer in g.layers]
    # runs on the CPU copy's device: the model moves them
    clean_logits, clean_cache = lm.run(tokens, capture=hooks, attention_mask=mask)
    n, length = tokens.shape
    ctx = metric_context(tokens, mask)
    clean_metric = evaluate(metric, clean_logits, ctx).detach().cpu()
    str_tokens = lm.to_str_tokens(tokens[0])
    last_only = bool(getattr(metric, "last_only", False)) and (
        mask is None or bool(mask[:, -1].all())
    )
    if ablation is None:
        bad_metric = torch.full((n,), float("nan"))
        if run_corrupted:
            bad_logits, _ = lm.run(bad_tokens, attention_mask=bad_mask)
            bad_metric = evaluate(metric, bad_logits, ctx).detach().cpu()
        sources = {h: clean_cache[h].detach() for h in hooks}
        return Baselines(
            bad_tokens, bad_mask, clean_metric, bad_metric, bad_metric, sources, str_tokens,
            last_only,
        )  # fmt: skip
    sources = _ablation_sources(
        lm, ablation, clean_cache, hooks, reference, mask, seed, prepend_bos, padding_side
    )
    nan = torch.full((n,), float("nan"))
    return Baselines(tokens, mask, clean_metric, nan, clean_metric, sources, str_tokens, last_only)


def _same_shape(tokens, bad_tokens, mask, bad_mask) -> None:
    if tokens.shape[0] != bad_tokens.shape[0]:
        raise InvalidArgumentError(
            f"clean has {tokens.shape[0]} inputs but corrupted has {bad_tokens.shape[0]}; "
            "give one corrupted input per clean input"
        )
    if tokens.shape[1] != bad_tokens.shape[1]:
        raise InvalidArgumentError(
            f"clean and corrupted must have the same number of tokens to patch positions: clean "
            f"has {tokens.shape[1]}, corrupted {bad_tokens.shape[1]}; rephrase so that they "
            "tokenize to the same length"
        )
    same_mask = (mask is None and bad_mask is None) or (
        mask is not None and bad_mask is not None and torch.equal(mask, bad_mask)
    )
    if not same_mask:
        raise InvalidArgumentError(
            "clean and corrupted inputs pad differently: each corrupted input must have as many "
            "tokens as its clean input"
        )


def _ablation_sources(
    lm: LanguageModel,
    ablation,
    clean_cache,
    hooks,
    reference,
    mask,
    seed,
    prepend_bos,
    padding_side,
) -> dict[str, torch.Tensor]:
    """Zeros, reference means, or other inputs' activations, ``[n, pos, ...]`` per hook."""
    first = clean_cache[hooks[0]]
    n, length = first.shape[:2]
    if ablation == "zero":
        return {
            h: torch.zeros((), dtype=clean_cache[h].dtype).expand_as(clean_cache[h]) for h in hooks
        }
    if reference is None:
        ref_cache, ref_mask = clean_cache, mask
    else:
        ref_tokens, ref_mask = tokenize(lm, reference, prepend_bos, padding_side, "reference")
        _, ref_cache = lm.run(ref_tokens, capture=hooks, attention_mask=ref_mask)
    if ablation == "mean":
        return {h: _mean(ref_cache[h].detach(), ref_mask).expand_as(clean_cache[h]) for h in hooks}
    ref_n, ref_length = ref_cache[hooks[0]].shape[:2]
    if ref_length != length:
        raise InvalidArgumentError(
            f"resample ablation takes values at the same positions: the reference inputs have "
            f"{ref_length} tokens, the clean ones {length}"
        )
    generator = torch.Generator().manual_seed(seed)
    if reference is None:
        if n < 2:
            raise InvalidArgumentError(
                "resample ablation from the clean batch needs at least 2 inputs; pass reference="
            )
        # a random other example for each: shift by 1..n-1
        choice = (torch.arange(n) + torch.randint(1, n, (n,), generator=generator)) % n
    else:
        choice = torch.randint(0, ref_n, (n,), generator=generator)
    return {h: ref_cache[h].detach()[choice.to(ref_cache[h].device)] for h in hooks}


def _mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over examples and real positions: ``[1, 1, ...]``."""
    if mask is None:
        return values.mean(dim=(0, 1), keepdim=True)
    weights = mask.to(values.device, values.dtype).reshape(*mask.shape, *[1] * (values.dim() - 2))
    return (values * weights).sum(dim=(0, 1), keepdim=True) / weights.sum()
