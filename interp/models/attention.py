"""The attention function interp registers in transformers' attention interface.

Every attention module of a wrapped model calls :func:`interp_attention`, which hands the
module's own post-rotary q/k (GQA un-repeated) to the probe attached to that module, then
computes the normal output with transformers' SDPA path, unchanged. The probe captures q/k/v,
the pattern (only when explicitly asked) and fused attention statistics, never a [T, T] matrix
unless the pattern itself was requested.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from interp._checks import Check

if TYPE_CHECKING:
    from interp.kernels.api import AttentionStats

ATTENTION_NAME = "interp"


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
        raise TypeError(
            f"attention_stats must be True, False, None or a StatsRequest, got {type(value).__name__}"
        )
    return value.to(device)


@dataclass
class RunPlan:
    """What the probes of one run record, and where they write."""

    capture: dict[int, set[str]] = field(default_factory=dict)
    stats: StatsRequest | None = None
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    stats_out: dict[int, object] = field(default_factory=dict)
    # the statistics' value checks (finite q/k, indices in range), read once when the run ends
    stats_checks: list[Check] = field(default_factory=list)


class AttentionProbe:
    """Attached to one attention module; active only while a run has a plan."""

    def __init__(self, layer: int) -> None:
        self.layer = layer
        self.plan: RunPlan | None = None

    def observe(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None,
        scaling: float | None,
    ) -> None:
        plan = self.plan
        if plan is None:
            return
        wanted = plan.capture.get(self.layer, set())
        prefix = f"blocks.{self.layer}.attn."
        for name, tensor in (("hook_q", query), ("hook_k", key), ("hook_v", value)):
            if name in wanted:
                plan.outputs[prefix + name] = tensor.detach().transpose(1, 2)
        scale = scaling if scaling is not None else 1.0 / math.sqrt(query.shape[-1])
        if "hook_pattern" in wanted:
            plan.outputs[prefix + "hook_pattern"] = _pattern(query, key, mask, scale)
        request = plan.stats
        if request is not None and (request.layers is None or self.layer in request.layers):
            plan.stats_out[self.layer] = layer_stats(
                request, query, key, scale, _key_padding(mask), plan.stats_checks
            )


def layer_stats(
    request: StatsRequest,
    query: torch.Tensor,
    key: torch.Tensor,
    scale: float,
    key_padding_mask: torch.Tensor | None,
    checks: list[Check],
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
    )
    stats = compute(problem, request.backend)
    checks.extend(problem.value_checks)
    return stats


def _key_padding(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Key validity ``[batch, keys]`` from a boolean causal 4-D mask: the last query row sees every
    real key, so its row is exactly the padding mask (None when the model needs no mask)."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        mask = mask > torch.finfo(mask.dtype).min / 2
    return mask[:, 0, -1, :]


def _pattern(
    query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """The explicit softmax pattern ``[batch, heads, queries, keys]`` (GQA keys repeated)."""
    groups = query.shape[1] // key.shape[1]
    keys = key.repeat_interleave(groups, dim=1) if groups > 1 else key
    logits = (query.float() @ keys.float().transpose(-1, -2)) * scale
    q_len, k_len = logits.shape[-2:]
    if mask is None:
        allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=logits.device).tril(
            k_len - q_len
        )
    else:
        allowed = mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2
    logits = logits.masked_fill(~allowed, float("-inf"))
    return torch.softmax(logits, dim=-1).nan_to_num(0.0).to(query.dtype)


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
    probe = getattr(module, "_interp_probe", None)
    if probe is not None:
        probe.observe(query, key, value, attention_mask, scaling)
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )


def register_attention_function() -> str:
    """Register :func:`interp_attention` (and SDPA's mask builder) under ``"interp"``."""
    AttentionInterface.register(ATTENTION_NAME, interp_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)
    return ATTENTION_NAME
