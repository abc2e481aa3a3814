"""Hook names (TransformerLens conventions), name resolution, and the activation cache."""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable

import torch

from interp.errors import InputTypeError, UnknownHookError, UnknownNameError

LAYER_HOOKS = (
    "hook_resid_pre",
    "hook_resid_mid",
    "hook_resid_post",
    "hook_attn_out",
    "hook_mlp_out",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_z",
    "attn.hook_pattern",
    "attn.hook_attn_scores",
    "attn.hook_result",
)
MLP_HOOKS = ("mlp.hook_pre", "mlp.hook_post")  # layers whose MLP has an in/out projection
GLOBAL_HOOKS = ("hook_embed", "hook_pos_embed", "ln_final.hook_normalized")
ROUTER_HOOK = "mlp.hook_router_logits"  # MoE layers only
# Hooks a glob reaches only when its last segment names them literally: an attention pattern is
# [batch, heads, T, T] per layer, so ``blocks.*`` or ``blocks.*.attn.*`` must not pull it in.
EXPLICIT_ONLY = ("hook_pattern", "hook_attn_scores", "hook_result")
_WILDCARD = re.compile(r"[*?\[]")
_LAYER_NAME = re.compile(r"^blocks\.(\d+)\.(.+)$")


def all_hook_names(
    n_layers: int,
    *,
    positions: bool = False,
    router_layers: Iterable[int] = (),
    mlp_layers: Iterable[int] = (),
    parallel: bool = False,
    per_head: bool = True,
) -> list[str]:
    """Every hook name a model with ``n_layers`` blocks offers, in forward order.

    ``positions``: the model adds learned absolute position embeddings (``hook_pos_embed``);
    ``router_layers``: the MoE layers, which offer ``mlp.hook_router_logits``; ``parallel``:
    attention and MLP both read the block input, so there is no ``hook_resid_mid``;
    ``mlp_layers``: the layers offering the neuron hooks ``mlp.hook_pre``/``mlp.hook_post``;
    ``per_head``: the backend offers ``attn.hook_result`` and ``attn.hook_attn_scores``.
    """
    routed, neurons = set(router_layers), set(mlp_layers)
    names = ["hook_embed", *(["hook_pos_embed"] if positions else [])]
    hooks = [h for h in LAYER_HOOKS if not (parallel and h == "hook_resid_mid")]
    if not per_head:
        hooks = [h for h in hooks if h not in ("attn.hook_result", "attn.hook_attn_scores")]
    for layer in range(n_layers):
        names += [f"blocks.{layer}.{hook}" for hook in hooks]
        if layer in neurons:
            names += [f"blocks.{layer}.{hook}" for hook in MLP_HOOKS]
        if layer in routed:
            names.append(f"blocks.{layer}.{ROUTER_HOOK}")
    names.append("ln_final.hook_normalized")
    return names


def resolve_hook_names(requested: str | Iterable[str] | None, available: list[str]) -> list[str]:
    """Expand exact names and glob patterns (``blocks.*.hook_resid_post``) against ``available``.

    In a pattern ``*`` matches within one dot-separated segment and ``**`` across segments, so
    ``blocks.*.hook_resid_post`` never reaches into ``blocks.0.attn.*`` and ``rnn.**`` takes
    everything under ``rnn``. Hooks in :data:`EXPLICIT_ONLY` (the attention pattern) are matched
    only by a pattern whose last segment spells them out (``blocks.*.attn.hook_pattern``), never by
    ``blocks.**`` or ``blocks.*.attn.*``.

    Unknown names raise ``KeyError`` with the closest valid names; a pattern that matches nothing
    raises too, so a typo never silently captures nothing.
    """
    if requested is None:
        return []
    if not isinstance(requested, str | Iterable):
        raise InputTypeError(
            f"capture takes a hook name, a glob pattern or a list of them, got "
            f"{type(requested).__name__}"
        )
    items = [requested] if isinstance(requested, str) else list(requested)
    known = set(available)
    chosen: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InputTypeError(
                f"hook names must be strings or glob patterns, got {type(item).__name__}"
            )
        if _WILDCARD.search(item):
            pattern = glob_to_regex(item)
            matches = [name for name in available if pattern.fullmatch(name)]
            kept = [name for name in matches if _glob_may_take(item, name)]
            if not kept:
                hint = (
                    f"{', '.join(EXPLICIT_ONLY)} is captured only when named explicitly, "
                    f"e.g. 'blocks.*.attn.hook_pattern'"
                    if matches
                    else _suggest(item, available)
                )
                raise UnknownHookError(f"hook pattern {item!r} matches no hook; {hint}")
            chosen += kept
        elif item in known:
            chosen.append(item)
        else:
            raise UnknownHookError(f"unknown hook name {item!r}; {_suggest(item, available)}")
    return list(dict.fromkeys(chosen))


def _glob_may_take(pattern: str, name: str) -> bool:
    """False for an :data:`EXPLICIT_ONLY` hook unless the pattern's last segment is its name."""
    last = name.rsplit(".", 1)[-1]
    return last not in EXPLICIT_ONLY or pattern.rsplit(".", 1)[-1] == last


def glob_to_regex(pattern: str) -> re.Pattern:
    """Compile a dot-aware glob: ``**`` any text, ``*`` any text without dots, ``?`` one
    non-dot character, ``[...]`` a character class."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append(r"[^.]*")
        elif char == "?":
            out.append(r"[^.]")
        elif char == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out))


def _suggest(name: str, available: list[str]) -> str:
    layer, hook = split_layer_name(name)
    layers = {split_layer_name(a)[0] for a in available if split_layer_name(a)[1] == hook}
    layers.discard(None)
    if layer is not None and layers and layer not in layers:
        return f"the model has blocks {min(layers)}..{max(layers)}, not {layer}"
    close = difflib.get_close_matches(name, available, n=3, cutoff=0.6)
    if close:
        return "did you mean " + ", ".join(repr(c) for c in close) + "?"
    kinds = ", ".join(("blocks.{l}." + h) for h in LAYER_HOOKS)
    globals_ = [g for g in GLOBAL_HOOKS if g in available]
    return f"valid names are {', '.join(globals_)} and {kinds}"


def split_layer_name(name: str) -> tuple[int | None, str]:
    """``"blocks.3.attn.hook_z"`` -> ``(3, "attn.hook_z")``; global names -> ``(None, name)``."""
    match = _LAYER_NAME.match(name)
    if match is None:
        return None, name
    return int(match.group(1)), match.group(2)


class ActivationCache(dict):
    """Captured activations keyed by hook name, plus attention statistics when requested.

    ``attention_stats`` maps a layer index to that layer's
    :class:`interp.kernels.AttentionStats`; ``stats(field)`` stacks one field over layers.
    ``attention_mask`` is the run's padding mask ``[batch, pos]`` (1 = real token; None when
    nothing was padded) and ``last_positions`` each sequence's last real position ``[batch]``;
    ``at_last(x)`` picks those positions from any ``[batch, pos, ...]`` tensor (the logits of a
    ragged batch included).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.attention_stats: dict[int, object] = {}
        self.past_key_values: object | None = None
        self.attention_mask: torch.Tensor | None = None
        self.last_positions: torch.Tensor | None = None

    def at_last(self, x: torch.Tensor) -> torch.Tensor:
        """``x [batch, pos, ...]`` at each sequence's last real position: ``[batch, ...]``."""
        if self.last_positions is None:
            raise UnknownNameError("this cache records no positions (it was not made by a run)")
        rows = torch.arange(x.shape[0], device=x.device)
        return x[rows, self.last_positions.to(x.device)]

    def __missing__(self, key: object) -> torch.Tensor:
        captured = ", ".join(sorted(self)) or "nothing"
        raise UnknownHookError(
            f"{key!r} was not captured in this run (captured: {captured}); pass it to "
            "run(capture=...)"
        )

    def stack(self, hook: str) -> torch.Tensor:
        """Stack ``blocks.{l}.<hook>`` over the captured layers: ``[layers, ...]``."""
        layers = sorted(
            (layer, name)
            for name in self
            for layer, suffix in [split_layer_name(name)]
            if layer is not None and suffix == hook
        )
        if not layers:
            raise UnknownHookError(
                f"no captured activations for blocks.*.{hook}; captured: {sorted(self)}"
            )
        return torch.stack([self[name] for _, name in layers])

    def stats(self, field: str) -> torch.Tensor:
        """One attention-statistics field stacked over layers: ``[layers, batch, heads, ...]``."""
        if not self.attention_stats:
            raise UnknownNameError(
                "no attention statistics were requested in this run; pass attention_stats=True"
            )
        first = next(iter(self.attention_stats.values()))
        fields = [f.name for f in dataclasses.fields(first)]
        if field not in fields:
            raise UnknownNameError(
                f"unknown attention statistic {field!r}; the fields are {', '.join(fields)}"
            )
        values = [
            getattr(self.attention_stats[layer], field) for layer in sorted(self.attention_stats)
        ]
        if values[0] is None:
            raise UnknownNameError(
                f"attention statistic {field!r} was not requested in this run (pass targets / "
                "key_ranges in a StatsRequest)"
            )
        return torch.stack(values)
