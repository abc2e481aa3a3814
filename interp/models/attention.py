"""The attention function interp registers in transformers' attention interface.

Every attention module of a wrapped model calls :func:`interp_attention`, which hands the
module's own post-rotary q/k (GQA un-repeated, after any q/k norm) to the probe attached to that
module, then computes the normal output with the function the model itself would have used:
transformers' SDPA (registered as ``"interp"``) or the module's own eager function
(``"interp_eager"``, for models that run eager attention, which softcapping and sinks require).
The probe captures q/k/v, the pattern (only when explicitly asked) and fused attention statistics
(honouring the call's ``sliding_window``, ``softcap`` and ``s_aux`` sinks), never a [T, T] matrix
unless the pattern itself was requested. An ablation sets ``probe.zero_heads``: those heads'
queries are zeroed as the softmax sees them, so they attend uniformly.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask, sdpa_mask

from interp._checks import Check
from interp.errors import InputTypeError

if TYPE_CHECKING:
    from interp.kernels.api import AttentionStats

ATTENTION_NAME = "interp"
EAGER_ATTENTION_NAME = "interp_eager"


@dataclass
class StatsRequest:
    """What the fused attention statistics should compute in one run.

    ``targets`` ``[batch, queries, S]`` key indices per query (-1 = none) whose probabilities are
    returned; ``key_ranges`` ``[batch, R, 2]`` half-open key ranges whose mass is returned;
    ``layers`` restricts the layers (default: all); ``backend`` picks the kernel.
    """

    targets: torch.Tensor | None = None
    key_ranges: torch.Tensor | None = None
    layers: tuple[int, ...] | None = None
    backend: str = "auto"

    def to(self, device: torch.device | str) -> StatsRequest:
        """The same request with its index tensors on ``device`` (a run moves them to the model's
        device, as it moves the tokens)."""

        def move(t: object) -> object:
            return t.to(device) if isinstance(t, torch.Tensor) else t

        return dataclasses.replace(
            self, targets=move(self.targets), key_ranges=move(self.key_ranges)
        )


def as_stats_request(value: object, device: torch.device | str) -> StatsRequest | None:
    """What ``run(attention_stats=...)`` takes: ``True`` (every layer's lse, argmax and
    max_prob), a :class:`StatsRequest`, or ``None`` / ``False``; its tensors moved to ``device``."""
    if value is None or value is False:
        return None
    if value is True:
        return StatsRequest()
    if not isinstance(value, StatsRequest):
        raise InputTypeError(
            f"attention_stats must be True, False, None or a StatsRequest, got {type(value).__name__}"
        )
    return value.to(device)


@dataclass
class RunPlan:
    """What the probes of one run record, and where they write."""

    capture: dict[int, set[str]] = field(default_factory=dict)
    stats: StatsRequest | None = None
    # key validity [batch, keys] over cached + new keys (None: no padding)
    key_padding: torch.Tensor | None = None
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    stats_out: dict[int, object] = field(default_factory=dict)
    # the statistics' value checks (finite q/k, indices in range), read once when the run ends
    stats_checks: list[Check] = field(default_factory=list)
    # hook name -> edits (interp.models.edits); q/k/v edits are applied by the probe
    edits: dict[str, list] = field(default_factory=dict)
    context: Callable[[str], object] | None = None  # hook name -> EditContext
    detach: bool = True  # False when the run keeps the autograd graph


class AttentionProbe:
    """Attached to one attention module; records only while a run has a plan."""

    def __init__(self, layer: int) -> None:
        self.layer = layer
        self.plan: RunPlan | None = None
        self.zero_heads: list[int] = []  # set by ablations: queries zeroed before the softmax
        self.scale: float | None = None  # the factor on q·k of the last call

    def edit(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q/k/v after the run's edits (shown to them as ``[batch, pos, heads, d_head]``)."""
        plan = self.plan
        if plan is None or not plan.edits:
            return query, key, value
        from interp.models.edits import apply_edits

        prefix = f"blocks.{self.layer}.attn."
        edited = []
        for kind, tensor in (("hook_q", query), ("hook_k", key), ("hook_v", value)):
            edits = plan.edits.get(prefix + kind)
            if edits:
                ctx = plan.context(prefix + kind)
                tensor = apply_edits(edits, tensor.transpose(1, 2), ctx).transpose(1, 2)
            edited.append(tensor)
        return tuple(edited)

    def observe(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None,
        scaling: float | None,
        features: AttentionFeatures,
    ) -> None:
        scale = scaling if scaling is not None else 1.0 / math.sqrt(query.shape[-1])
        self.scale = float(scale)
        plan = self.plan
        if plan is None:
            return
        wanted = plan.capture.get(self.layer, set())
        prefix = f"blocks.{self.layer}.attn."
        keep = (lambda t: t.detach()) if plan.detach else (lambda t: t)
        for name, tensor in (("hook_q", query), ("hook_k", key), ("hook_v", value)):
            if name in wanted:
                plan.outputs[prefix + name] = keep(tensor).transpose(1, 2)
        if "hook_pattern" in wanted:
            plan.outputs[prefix + "hook_pattern"] = _pattern(query, key, mask, scale, features)
        if "hook_attn_scores" in wanted:
            plan.outputs[prefix + "hook_attn_scores"] = _scores(query, key, mask, scale, features)
        request = plan.stats
        if request is not None and (request.layers is None or self.layer in request.layers):
            padding = plan.key_padding
            if padding is not None and padding.device != query.device:  # a layer on another device
                request, padding = request.to(query.device), padding.to(query.device)
            plan.stats_out[self.layer] = layer_stats(
                request, query, key, scale, padding, plan.stats_checks, features
            )


@dataclass(frozen=True)
class AttentionFeatures:
    """What a layer's attention call adds to a plain causal softmax: a sliding ``window`` (a
    query at position i sees keys j with i - window < j <= i), logit ``softcap``
    (c * tanh(logits / c)) and learned ``sinks`` (one logit per head in the denominator)."""

    window: int | None = None
    softcap: float | None = None
    sinks: torch.Tensor | None = None

    @classmethod
    def of_call(cls, kwargs: dict) -> AttentionFeatures:
        sinks = kwargs.get("s_aux")
        return cls(
            window=kwargs.get("sliding_window"),
            softcap=kwargs.get("softcap"),
            sinks=sinks.detach() if isinstance(sinks, torch.Tensor) else None,
        )

    def as_kwargs(self) -> dict:
        """Keyword arguments for :func:`interp.kernels.attention_stats` (only those in use)."""
        values = {"window": self.window, "softcap": self.softcap, "sinks": self.sinks}
        return {k: v for k, v in values.items() if v is not None}


def layer_stats(
    request: StatsRequest,
    query: torch.Tensor,
    key: torch.Tensor,
    scale: float,
    key_padding_mask: torch.Tensor | None,
    checks: list[Check],
    features: AttentionFeatures = AttentionFeatures(),
) -> AttentionStats:
    """One layer's causal attention statistics inside a model run.

    On a GPU the value checks (finite q/k, indices in range) are appended to ``checks``, for the
    run to read once at its end; on the CPU they are read here, before the work.
    """
    from interp.kernels.api import compute, defers_checks, validate

    problem = validate(
        query.detach(),
        key.detach(),
        scale=scale,
        causal=True,
        key_padding_mask=key_padding_mask,
        targets=request.targets,
        key_ranges=request.key_ranges,
        defer_value_checks=defers_checks(query),
        **features.as_kwargs(),
    )
    stats = compute(problem, request.backend)
    checks.extend(problem.value_checks)
    return stats


def _scores(
    query: torch.Tensor,
    key: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    features: AttentionFeatures,
) -> torch.Tensor:
    """The attention scores before the softmax ``[batch, heads, queries, keys]``: scaled q·k,
    softcapped where the layer caps, -inf where the key is masked (causal, padding, window)."""
    groups = query.shape[1] // key.shape[1]
    keys = key.repeat_interleave(groups, dim=1) if groups > 1 else key
    logits = (query.float() @ keys.float().transpose(-1, -2)) * scale
    if features.softcap is not None:
        logits = features.softcap * torch.tanh(logits / features.softcap)
    q_len, k_len = logits.shape[-2:]
    if mask is None:
        allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=logits.device).tril(
            k_len - q_len
        )
    else:
        allowed = mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2
    return logits.masked_fill(~allowed, float("-inf")).to(query.dtype)


def _pattern(
    query: torch.Tensor,
    key: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    features: AttentionFeatures,
) -> torch.Tensor:
    """The explicit softmax pattern ``[batch, heads, queries, keys]`` (GQA keys repeated), with
    the call's softcap and sinks (the mask already carries causality, padding and windows)."""
    logits = _scores(query, key, mask, scale, features).float()
    if features.sinks is None:
        return torch.softmax(logits, dim=-1).nan_to_num(0.0).to(query.dtype)
    sinks = features.sinks.float().reshape(1, -1, 1, 1).expand(*logits.shape[:-1], 1)
    return torch.softmax(torch.cat([logits, sinks], dim=-1), dim=-1)[..., :-1].to(query.dtype)


def _observe_and_ablate(module: torch.nn.Module, query, key, value, mask, scaling, kwargs):
    probe = getattr(module, "_interp_probe", None)
    if probe is None:
        return query, key, value
    query, key, value = probe.edit(query, key, value)
    if probe.zero_heads:
        keep = torch.ones(query.shape[1], 1, 1, dtype=query.dtype, device=query.device)
        keep[probe.zero_heads] = 0
        query = query * keep
    probe.observe(query, key, value, mask, scaling, AttentionFeatures.of_call(kwargs))
    return query, key, value


def interp_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: observe through the module's probe, then run SDPA."""
    query, key, value = _observe_and_ablate(
        module, query, key, value, attention_mask, scaling, kwargs
    )
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )


def interp_eager_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers attention function: observe, then run the module's own eager attention
    (its modeling file's ``eager_attention_forward``: softcapping and sinks included)."""
    query, key, value = _observe_and_ablate(
        module, query, key, value, attention_mask, scaling, kwargs
    )
    eager = sys.modules[type(module).__module__].eager_attention_forward
    return eager(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )


def register_attention_function(eager: bool = False) -> str:
    """Register interp's attention functions (with SDPA's / eager's mask builders); return the
    name to set on a model: ``"interp_eager"`` when ``eager``, else ``"interp"``."""
    AttentionInterface.register(ATTENTION_NAME, interp_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)
    AttentionInterface.register(EAGER_ATTENTION_NAME, interp_eager_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(EAGER_ATTENTION_NAME, eager_mask)
    return EAGER_ATTENTION_NAME if eager else ATTENTION_NAME
