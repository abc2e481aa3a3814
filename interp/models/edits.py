"""Edits: replace activations inside a run, by hook name.

``lm.run(inputs, edits={name_or_pattern: edit})`` (or ``with lm.edits({...}): ...`` for code that
calls ``run`` many times). An edit is either

- a function ``fn(tensor, ctx) -> tensor`` returning the replacement (same shape), where ``ctx``
  is an :class:`EditContext` (layer, hook name, the batch's padding mask, token positions), or
- a tensor, which replaces the activation; it broadcasts against it (``[pos, d]`` for every
  example, ``[batch, pos, d]`` per example, a scalar...).

Several edits reaching the same hook compose in the order given (context-manager edits first,
then the run's). A capture of an edited hook sees the edited value. Edits compose with attention
statistics: q/k edits change what the statistics see. Per-head hooks (``attn.hook_z``,
``attn.hook_q/k/v``, ``attn.hook_result``) are shown as ``[batch, pos, heads, d_head]`` (result:
``[..., heads, d_model]``), per-neuron hooks (``mlp.hook_post``) as ``[batch, pos, d_mlp]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from interp.errors import InputTypeError, InvalidArgumentError
from interp.models.hooks import resolve_hook_names, split_layer_name

EditFn = Callable[[torch.Tensor, "EditContext"], torch.Tensor]
Edit = EditFn | torch.Tensor
Edits = Mapping[str, Edit]
# Hooks whose value is computed from others or only observed: editing them changes nothing.
NOT_EDITABLE = ("hook_resid_mid", "attn.hook_pattern", "attn.hook_attn_scores")


@dataclass(frozen=True)
class EditContext:
    """What an edit function is told: the ``hook`` name, its ``layer`` (None for global hooks),
    the run's ``attention_mask`` ``[batch, keys]`` (1 = real token; None without padding) and the
    ``positions`` ``[batch, pos]`` of the tokens in this forward pass."""

    hook: str
    layer: int | None
    attention_mask: torch.Tensor | None
    positions: torch.Tensor


def resolve_edits(groups: list[Edits], available: list[str]) -> dict[str, list[Edit]]:
    """Expand each mapping's names and glob patterns; ``{hook: [edits in order]}``."""
    resolved: dict[str, list[Edit]] = {}
    for edits in groups:
        if not isinstance(edits, Mapping):
            raise InputTypeError(
                f"edits must be a mapping {{hook name or pattern: function or tensor}}, got "
                f"{type(edits).__name__}"
            )
        for pattern, edit in edits.items():
            if not (callable(edit) or isinstance(edit, torch.Tensor)):
                raise InputTypeError(
                    f"the edit for {pattern!r} must be a function fn(tensor, ctx) or a tensor, "
                    f"got {type(edit).__name__}"
                )
            for name in resolve_hook_names(pattern, available):
                if split_layer_name(name)[1] in NOT_EDITABLE:
                    raise InvalidArgumentError(
                        f"{name} cannot be edited (it is derived or observed only); edit "
                        "hook_resid_pre / hook_attn_out, or the q/k/v that make the pattern"
                    )
                resolved.setdefault(name, []).append(edit)
    return resolved


def apply_edits(edits: list[Edit], value: torch.Tensor, ctx: EditContext) -> torch.Tensor:
    """The activation after every edit in ``edits``, each checked to keep the shape."""
    for edit in edits:
        if isinstance(edit, torch.Tensor):
            try:
                new = edit.to(value.device, value.dtype).expand_as(value)
            except RuntimeError as error:
                raise InvalidArgumentError(
                    f"the tensor given for {ctx.hook} has shape {tuple(edit.shape)}, which does "
                    f"not broadcast to the activation's {tuple(value.shape)}"
                ) from error
        else:
            new = edit(value, ctx)
            if not isinstance(new, torch.Tensor) or new.shape != value.shape:
                got = tuple(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
                raise InvalidArgumentError(
                    f"the edit function for {ctx.hook} must return a tensor of the activation's "
                    f"shape {tuple(value.shape)}, got {got}"
                )
        value = new.to(value.dtype)
    return value
