"""The family support table: every row of the family table, measured on a tiny random-init model.

For each family, :func:`measure_family` wraps :func:`interp.models.tiny.tiny_model` (a padded
batch of two texts) and compares with the same weights in Hugging Face's eager attention:
logits, post-rotary q/k rebuilding the eager attention weights in float64 (with the layer's
scale, window, softcap and sinks), the fused attention statistics (argmax, max probability),
and ``W_V`` against the captured values. :func:`support_markdown` renders the README table
(``python analyses/support_table.py`` regenerates it; a test keeps the README in step).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from interp.models.families import FAMILIES, Family
from interp.models.tiny import tiny_model, word_tokenizer

TEXTS = ["w5 w9 w14 w5 w9 w30 w31 w7 w8 w20 w21", "w3 w4 w5 w6 w7"]
TOLERANCE = 1e-5  # float32 on a tiny model; every column below passes at this bound or fails


@dataclass
class FamilySupport:
    """Measured differences (float) of one family against Hugging Face eager attention."""

    family: str
    logits: float
    pattern: float
    stats_argmax: float  # fraction of real query rows whose top key differs
    stats_max_prob: float
    values: float
    notes: str
    features: list[str]


def _features(family: Family, model: torch.nn.Module) -> list[str]:
    config = model.config
    found = []
    attention = [layer.get_submodule(family.attn) for layer in model.get_submodule(family.layers)]
    if any(getattr(a, "sliding_window", None) for a in attention) or (
        getattr(config, "sliding_window", None) and not hasattr(attention[0], "sliding_window")
    ):
        found.append("window")
    if getattr(config, "attn_logit_softcapping", None):
        found.append("softcap")
    if any(getattr(a, "sinks", None) is not None for a in attention):
        found.append("sinks")
    if family.router is not None:
        found.append("MoE")
    if family.parallel(config):
        found.append("parallel")
    return found


def measure_family(name: str) -> FamilySupport:
    """Wrap the tiny model of family ``name`` and measure it against HF's eager attention."""
    import interp

    tokenizer = word_tokenizer(96)
    family = FAMILIES[name]
    model = tiny_model(name, vocab_size=len(tokenizer))
    features = _features(family, model)
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    batch = tokenizer([f"<bos> {t}" for t in TEXTS], padding=True, return_tensors="pt")
    tokens, mask = batch["input_ids"], batch["attention_mask"]
    positions = (mask.cumsum(-1) - 1).clamp(0)
    with torch.no_grad():
        reference = eager(
            input_ids=tokens, attention_mask=mask, position_ids=positions, output_attentions=True
        )
    attention = [layer.get_submodule(family.attn) for layer in model.get_submodule(family.layers)]
    windows = [
        getattr(a, "sliding_window", getattr(model.config, "sliding_window", None))
        for a in attention
    ]
    sinks = [getattr(a, "sinks", None) for a in attention]
    lm = interp.load_model(model, tokenizer=tokenizer, device="cpu")
    capture = ["blocks.*.hook_resid_pre", "blocks.*.attn.hook_q", "blocks.*.attn.hook_k"]
    capture.append("blocks.*.attn.hook_v")
    logits, cache = lm.run(tokens, capture=capture, attention_mask=mask, attention_stats=True)
    real = mask.bool()
    rows = real[:, None, :]
    pattern = stats_max = values = argmax = 0.0
    groups = lm.n_heads // lm.n_kv_heads
    softcap = getattr(model.config, "attn_logit_softcapping", None)
    for layer in range(lm.n_layers):
        eager_weights = reference.attentions[layer].double()
        rebuilt = _rebuilt(
            cache, layer, lm.attention_scale(layer), windows[layer], softcap, sinks[layer], real
        )
        pattern = max(
            pattern,
            (rebuilt - eager_weights).abs()[rows[..., None].expand_as(rebuilt)].max().item(),
        )
        stats = cache.attention_stats[layer]
        top = eager_weights.max(-1)
        keep = rows.expand_as(stats.argmax)
        argmax = max(argmax, (stats.argmax != top.indices)[keep].float().mean().item())
        stats_max = max(stats_max, (stats.max_prob.double() - top.values)[keep].abs().max().item())
        x = lm.norm(layer, "attn", cache[f"blocks.{layer}.hook_resid_pre"])
        expected = torch.einsum("btd,hde->bthe", x, lm.W_V[layer]) + lm.b_V[layer]
        got = cache[f"blocks.{layer}.attn.hook_v"]
        values = max(values, (got - expected[:, :, ::groups]).abs()[real].max().item())
    return FamilySupport(
        family=name,
        logits=(logits - reference.logits).abs()[real].max().item(),
        pattern=pattern,
        stats_argmax=argmax,
        stats_max_prob=stats_max,
        values=values,
        notes=family.notes,
        features=features,
    )


def _rebuilt(cache, layer, scale, window, softcap, sinks, real) -> torch.Tensor:
    """The eager attention weights rebuilt in float64 from the captured post-rotary q/k."""
    q = cache[f"blocks.{layer}.attn.hook_q"].double().transpose(1, 2)
    k = cache[f"blocks.{layer}.attn.hook_k"].double().transpose(1, 2)
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    logits = q @ k.transpose(-1, -2) * scale
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    index = torch.arange(q.shape[2])
    allowed = index[None, :] <= index[:, None]
    if window is not None:
        allowed &= index[:, None] - index[None, :] < window
    logits = logits.masked_fill(~(allowed[None, None] & real[:, None, None, :]), -math.inf)
    if sinks is None:
        return torch.softmax(logits, -1)
    sink = sinks.double().reshape(1, -1, 1, 1).expand(*logits.shape[:-1], 1)
    return torch.softmax(torch.cat([logits, sink], -1), -1)[..., :-1]


def support_markdown(rows: list[FamilySupport], tl_status: Callable[[str], tuple[str, str]]) -> str:
    """The README table: a mark per check (pass at :data:`TOLERANCE`), the TransformerLens
    bridge's status (``interp.models.adapters_tl.tl_status``, asserted by
    ``tests/test_models_adapters_families.py``), features and notes."""

    def mark(value: float) -> str:
        return "yes" if value <= TOLERANCE else "NO"

    lines = [
        "| family | loads | logits = HF | q/k rebuild eager weights | attention stats "
        "| per-head W_V | TransformerLens bridge | features | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        stats = mark(max(row.stats_argmax, row.stats_max_prob))
        bridge = tl_status(row.family)[0]
        lines.append(
            f"| {row.family} | yes | {mark(row.logits)} | {mark(row.pattern)} | {stats} | "
            f"{mark(row.values)} | {bridge} | {', '.join(row.features) or '—'} | {row.notes} |"
        )
    return "\n".join(lines)
