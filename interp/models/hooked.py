"""HookedLM: the one model interface, with backends beneath it.

:class:`HookedLM` implements everything that does not depend on where the model comes from:
tokenizing, checking a request (hook names, context length, pattern sizes, statistics layers),
building the run plan, assembling the :class:`ActivationCache`, deriving names that are sums of
others (``hook_resid_mid``, ``attn.hook_z`` split into heads) and the finiteness checks, read in
one device transfer at the end of the run. A backend implements only its forward pass
(:meth:`HookedLM._forward`) and module accessors (weights, norms, MLP, decoder layers). Backends:
:class:`interp.models.native.NativeLM` (a Hugging Face model wrapped in place),
:class:`interp.models.adapters_tl.TransformerLensLM` and
:class:`interp.models.adapters_nnsight.NNsightLM`. Names follow TransformerLens
(``blocks.{l}.hook_resid_post``, ...).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn

from interp._checks import finite_flag, raise_first_failure
from interp.errors import (
    InputTypeError,
    InvalidArgumentError,
    NonFiniteError,
    UnknownHookError,
)
from interp.models.attention import RunPlan, StatsRequest, as_stats_request
from interp.models.edits import EditContext, Edits, resolve_edits
from interp.models.generation import Generation, generate
from interp.models.hooks import ActivationCache, resolve_hook_names, split_layer_name
from interp.models.interventions import ABLATION_METHODS, AblationMethod, group_heads_by_layer
from interp.models.protocol import Inputs
from interp.models.tokens import PaddingSide, Tokenizing
from interp.models.weights import HeadWeights

PATTERN_LIMIT = 64 * 2**20  # values over all captured [B, H, T, T] patterns of one run


@dataclass
class Forward:
    """What a backend's forward pass is asked to do: ``tokens``/``attention_mask`` are on the
    model's device; every capture goes to ``plan.outputs`` under its hook name and every edit in
    ``plan.edits`` replaces its hook's value (the backend passes ``position_ids(...)`` when there
    is a mask, so that left padding is exact)."""

    tokens: torch.Tensor
    attention_mask: torch.Tensor | None
    names: list[str]
    plan: RunPlan
    past_key_values: object | None = None
    use_cache: bool = False
    logits_to_keep: int = 0

    def position_ids(self) -> torch.Tensor | None:
        """``[batch, pos]`` positions of the new tokens counted over real tokens only (None
        without a mask: the model's own ``arange`` is then right)."""
        if self.attention_mask is None:
            return None
        positions = (self.attention_mask.long().cumsum(-1) - 1).clamp_min(0)
        return positions[:, -self.tokens.shape[1] :]

    def context(self, name: str) -> EditContext:
        """What an edit of ``name`` is told about this run."""
        positions = self.position_ids()
        if positions is None:
            past = self.past_key_values.get_seq_length() if self.past_key_values is not None else 0
            length = self.tokens.shape[1]
            positions = torch.arange(past, past + length, device=self.tokens.device)
            positions = positions.expand(self.tokens.shape[0], -1)
        return EditContext(name, split_layer_name(name)[0], self.attention_mask, positions)


class HookedLM(Tokenizing, ABC):
    """A causal LM with TransformerLens-style hooks, per-head weights and attention statistics.

    Build it with :func:`interp.load_model`. ``run`` returns ``(logits, cache)``; the cache is an
    :class:`ActivationCache` holding only the requested hooks. Subclasses set the sizes in their
    ``__init__`` and implement :meth:`_forward` and the module accessors.
    """

    backend: str = ""
    name: str
    tokenizer: object
    config: object
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    d_vocab: int
    n_ctx: int
    hook_names: list[str]
    parallel: bool = False  # attention and MLP both read the block input: no hook_resid_mid

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, layers={self.n_layers}, heads={self.n_heads}, "
            f"kv_heads={self.n_kv_heads}, d_model={self.d_model})"
        )

    # ----------------------------------------------------------------- backend
    @abstractmethod
    def _forward(self, request: Forward) -> tuple[torch.Tensor, object | None]:
        """Run the model on ``request``; return the logits and (with ``use_cache``) the cache."""

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype: ...

    @abstractmethod
    def _read_head_weights(self) -> HeadWeights: ...

    @abstractmethod
    def _ablation(
        self, heads: dict[int, list[int]], method: AblationMethod
    ) -> AbstractContextManager[None]: ...

    # ----------------------------------------------------------------- running
    def run(
        self,
        inputs: Inputs,
        capture: str | Sequence[str] | None = None,
        attention_stats: StatsRequest | bool | None = None,
        *,
        edits: Edits | None = None,
        grad: bool = False,
        attention_mask: torch.Tensor | None = None,
        prepend_bos: bool = True,
        padding_side: PaddingSide = "right",
        past_key_values: object | None = None,
        use_cache: bool = False,
        logits_to_keep: int = 0,
    ) -> tuple[torch.Tensor, ActivationCache]:
        """Forward pass capturing the requested hooks (names or glob patterns).

        ``attention_stats=True`` (or a :class:`StatsRequest`) adds, per layer, the fused
        per-query statistics (log-sum-exp, top-1 key, its probability, and probabilities on
        requested keys / key ranges) to ``cache.attention_stats`` without materializing the
        ``[T, T]`` pattern; sliding windows, logit softcapping and attention sinks are honoured.
        ``edits={hook or pattern: fn(tensor, ctx) or tensor}`` replaces activations during the
        run (see :mod:`interp.models.edits`; captures see the edited values). ``grad=True`` keeps
        the autograd graph: captures are not detached, so a metric of the logits can be
        back-propagated to them (off by default: inference mode). A list of texts of different
        lengths is padded on ``padding_side``; the mask is ``cache.attention_mask`` and each
        row's last real position ``cache.last_positions`` (``cache.at_last(logits)``). Position
        ids follow the mask, so a left-padded row computes what it would alone.
        ``past_key_values``/``use_cache`` continue from a KV cache (decoding); the updated cache
        is ``cache.past_key_values``. ``logits_to_keep=n > 0`` returns logits for the last ``n``
        positions only, skipping the unembedding of the rest. Captures, statistics and logits come
        back on ``lm.device`` (the input embedding's device), also for a model split across
        devices.
        """
        check_logits_to_keep(logits_to_keep)
        with torch.inference_mode(not grad), torch.set_grad_enabled(grad):
            tokens, attention_mask = self._as_tokens(
                inputs, attention_mask, prepend_bos, padding_side
            )
            past = past_key_values.get_seq_length() if past_key_values is not None else 0
            self.check_length(past + tokens.shape[1])
            self._check_parallel(capture)
            names = resolve_hook_names(capture, self.hook_names)
            edit_map = resolve_edits(
                [*self._edit_stack, *([edits] if edits else [])], self.hook_names
            )
            stats = as_stats_request(attention_stats, self.device)
            self._check_request(names, stats, tokens, past)
            request = self._request(tokens, attention_mask, names, edit_map, stats, grad)
            request.past_key_values, request.use_cache = past_key_values, use_cache
            request.logits_to_keep = logits_to_keep
            logits, new_cache = self._forward(request)
            batch, length = tokens.shape
            # One device: layers split across devices hand back captures and statistics where
            # they ran; all of it (and the logits) comes back on self.device, the embedding's.
            device = self.device
            logits = logits.to(device)
            outputs = {name: value.to(device) for name, value in request.plan.outputs.items()}
            cache = ActivationCache(
                {name: self._derived(name, outputs, batch, length) for name in names}
            )
            cache.attention_stats = {
                layer: _stats_to(stats, device) for layer, stats in request.plan.stats_out.items()
            }
            cache.past_key_values = new_cache if use_cache else None
            cache.attention_mask = attention_mask
            cache.last_positions = last_positions(attention_mask, batch, length)
            _check_finite(logits, cache, request.plan.stats_checks)
        return logits, cache

    def _request(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None,
        names: list[str],
        edit_map: dict[str, list],
        stats: StatsRequest | None,
        grad: bool,
    ) -> Forward:
        """The backend's forward request: inputs on the model's device, the probes' plan (what
        the attention function captures and edits), and the position ids the mask implies."""
        device = self.device
        mask = attention_mask.to(device) if attention_mask is not None else None
        plan = RunPlan(
            stats=stats,
            key_padding=mask.bool() if mask is not None else None,
            edits=edit_map,
            detach=not grad,
        )
        for name in _with_dependencies([*names, *edit_map]):
            layer, hook = split_layer_name(name)
            if layer is not None and hook in _PROBE_HOOKS:
                plan.capture.setdefault(layer, set()).add(hook.split(".")[1])
        request = Forward(
            tokens=tokens.to(device),
            attention_mask=mask,
            names=_with_dependencies(names),
            plan=plan,
        )
        plan.context = request.context
        return request

    def edits(self, edits: Edits) -> AbstractContextManager[None]:
        """Context manager: every ``run`` inside the block applies ``edits`` (before the run's
        own ``edits=``). Checked on entry against the model's hook names."""
        resolve_edits([edits], self.hook_names)
        return _pushed(self._edit_stack, edits)

    @functools.cached_property
    def _edit_stack(self) -> list[Edits]:
        return []

    def generate(self, inputs: Inputs, max_new_tokens: int = 20, **kwargs) -> Generation:
        """Continue ``inputs`` token by token with the KV cache; see
        :func:`interp.models.generation.generate` for the options (greedy or sampled, edits
        and captures at every step)."""
        return generate(self, inputs, max_new_tokens=max_new_tokens, **kwargs)

    def _derived(
        self, name: str, outputs: dict[str, torch.Tensor], batch: int, length: int
    ) -> torch.Tensor:
        """A requested activation from what the backend captured: sums (``hook_resid_mid``),
        head splits (``attn.hook_z``) and ``[batch * pos, d]`` outputs of layers that flatten
        their input (OPT's MLP) back to ``[batch, pos, d]``."""
        layer, suffix = split_layer_name(name)
        if suffix == "hook_resid_mid":
            prefix = f"blocks.{layer}."
            return outputs[prefix + "hook_resid_pre"] + outputs[prefix + "hook_attn_out"]
        value = outputs[name]
        if value.dim() == 2 and value.shape[0] == batch * length and suffix.startswith("hook_"):
            value = value.reshape(batch, length, -1)
        if suffix == "attn.hook_z" and value.shape[-1] == self.n_heads * self.d_head:
            return value.reshape(*value.shape[:-1], self.n_heads, self.d_head)
        return value

    def forward(self, inputs: Inputs, **kwargs) -> torch.Tensor:
        """Logits only (no capture)."""
        return self.run(inputs, **kwargs)[0]

    __call__ = forward

    def ablate_heads(
        self, heads: Sequence[tuple[int, int]], method: AblationMethod = "uniform"
    ) -> AbstractContextManager[None]:
        """Context manager: inside it the ``(layer, head)`` pairs are ablated.

        ``method="uniform"`` zeroes the heads' queries as the softmax sees them (after q norms
        and rotary), so each attends uniformly over the keys it may see (Wu et al. 2024's
        masking); ``"zero"`` zeroes their outputs before ``W_O``. Hooks are removed on exit.
        """
        if method not in ABLATION_METHODS:
            raise InvalidArgumentError(
                f"unknown ablation method {method!r}; accepted: {', '.join(ABLATION_METHODS)}"
            )
        return self._ablation(group_heads_by_layer(self, heads), method)

    def _check_parallel(self, capture: object) -> None:
        """Name the reason when a parallel block is asked for ``hook_resid_mid`` explicitly."""
        items = [capture] if isinstance(capture, str) else capture
        if (
            self.parallel
            and isinstance(items, Sequence)
            and any(isinstance(n, str) and n.endswith("hook_resid_mid") for n in items)
        ):
            raise UnknownHookError(
                f"{self.name} runs attention and MLP in parallel: hook_resid_mid does not exist"
            )

    def _check_request(
        self, names: list[str], stats: StatsRequest | None, tokens: torch.Tensor, past: int
    ) -> None:
        keys = past + tokens.shape[1]
        batch, length = tokens.shape
        per_layer = {  # values one layer's capture holds
            "attn.hook_pattern": batch * self.n_heads * length * keys,
            "attn.hook_attn_scores": batch * self.n_heads * length * keys,
            "attn.hook_result": batch * length * self.n_heads * self.d_model,
        }
        sizes = [per_layer.get(split_layer_name(n)[1], 0) for n in names]
        size = sum(sizes)
        if size > PATTERN_LIMIT:
            gigabytes = size * torch.finfo(self.dtype).bits / 8 / 1e9
            big = sorted({n.split(".", 2)[-1] for n, v in zip(names, sizes, strict=True) if v})
            raise InvalidArgumentError(
                f"{', '.join(big)} on {sum(v > 0 for v in sizes)} layer(s) would hold "
                f"{size:,} values ({gigabytes:.1f} GB; a pattern is batch {batch} x "
                f"{self.n_heads} heads x {length} x {keys} per layer); the limit is "
                f"{PATTERN_LIMIT:,} values in all. Capture fewer layers, use a shorter input, "
                "or pass attention_stats=... for per-query statistics without the pattern"
            )
        if stats is not None and stats.layers is not None:
            bad = [layer for layer in stats.layers if not 0 <= layer < self.n_layers]
            if bad:
                raise InvalidArgumentError(
                    f"StatsRequest.layers must lie in 0..{self.n_layers - 1} for {self.name}; "
                    f"got {list(stats.layers)} (out of range: {bad})"
                )

    # ----------------------------------------------------------------- weights
    @functools.cached_property
    def _head_weights(self) -> HeadWeights:
        return self._read_head_weights()

    @property
    def W_Q(self) -> torch.Tensor:
        return self._head_weights.W_Q

    @property
    def W_K(self) -> torch.Tensor:
        return self._head_weights.W_K

    @property
    def W_V(self) -> torch.Tensor:
        return self._head_weights.W_V

    @property
    def W_O(self) -> torch.Tensor:
        return self._head_weights.W_O

    @property
    def b_Q(self) -> torch.Tensor:
        return self._head_weights.b_Q

    @property
    def b_K(self) -> torch.Tensor:
        return self._head_weights.b_K

    @property
    def b_V(self) -> torch.Tensor:
        return self._head_weights.b_V

    @property
    def b_O(self) -> torch.Tensor:
        return self._head_weights.b_O

    def _layer_index(self, layer: int | None) -> int:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self.n_layers:
            raise IndexError(f"layer must be in 0..{self.n_layers - 1}, got {layer!r}")
        return layer

    def _as_residual(self, x: object, who: str) -> torch.Tensor:
        """Check a residual-stream input ``[..., d_model]`` and move it to the model."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise InputTypeError(
                f"{who} takes a float tensor [..., d_model={self.d_model}], got "
                f"{type(x).__name__ if not isinstance(x, torch.Tensor) else x.dtype}"
            )
        if x.shape[-1:] != (self.d_model,):
            raise InvalidArgumentError(
                f"{who} takes [..., d_model={self.d_model}], got shape {tuple(x.shape)}"
            )
        if not bool(finite_flag(x)):
            raise NonFiniteError(f"non-finite values (NaN/inf) in the input of {who}")
        return x.to(self.device, self.dtype)

    def decoder_layers(self) -> list[nn.Module]:
        """The model's decoder layers as modules that map ``(hidden, **context)`` to hidden."""
        raise NotImplementedError(f"the {self.backend} backend exposes no decoder layers")


# Hooks the attention probe captures or edits (post-rotary q/k/v, scores and pattern).
_PROBE_HOOKS = (
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_pattern",
    "attn.hook_attn_scores",
)


def last_positions(mask: torch.Tensor | None, batch: int, length: int) -> torch.Tensor:
    """Each row's last real position ``[batch]`` (the last 1 of the mask; ``length - 1``
    without one), for right and left padding alike."""
    if mask is None:
        return torch.full((batch,), length - 1, dtype=torch.long)
    index = torch.arange(mask.shape[1], device=mask.device)
    return (mask.bool() * (index + 1)).argmax(-1).cpu() - (mask.shape[1] - length)


@contextlib.contextmanager
def _pushed(stack: list, item: object):
    stack.append(item)
    try:
        yield
    finally:
        stack.remove(item)


def _with_dependencies(names: list[str]) -> list[str]:
    """``names`` plus what derived names are computed from (``hook_resid_mid`` = pre + attn_out)."""
    needed = list(names)
    for name in names:
        layer, suffix = split_layer_name(name)
        if suffix == "hook_resid_mid":
            needed += [f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.hook_attn_out"]
    return [n for n in dict.fromkeys(needed) if not n.endswith("hook_resid_mid")]


def _stats_to(stats: object, device: torch.device) -> object:
    """One layer's :class:`AttentionStats` with its tensors on ``device``."""
    moved = {
        f.name: getattr(stats, f.name).to(device)
        for f in dataclasses.fields(stats)
        if isinstance(getattr(stats, f.name), torch.Tensor)
    }
    return dataclasses.replace(stats, **moved)


def check_logits_to_keep(logits_to_keep: object) -> None:
    """``run(logits_to_keep=...)`` takes 0 (every position) or a positive count."""
    if (
        isinstance(logits_to_keep, bool)
        or not isinstance(logits_to_keep, int)
        or logits_to_keep < 0
    ):
        raise InvalidArgumentError(
            f"logits_to_keep must be 0 (logits at every position) or a positive number of final "
            f"positions, got {logits_to_keep!r}"
        )


def _check_finite(logits: torch.Tensor, cache: ActivationCache, stats_checks=()) -> None:
    """Raise for bad attention-statistics inputs, then for non-finite activations or logits; every
    flag is read in one device transfer at the end of the run, not once per layer."""
    checks = list(stats_checks)
    for name, value in cache.items():
        if name.endswith("attn.hook_attn_scores"):  # masked keys hold -inf by design
            error = f"NaN values in activation {name!r}"
            checks.append((~torch.isnan(value).any(), lambda error=error: NonFiniteError(error)))
            continue
        error = f"non-finite values (NaN/inf) in activation {name!r}"
        checks.append((finite_flag(value), lambda error=error: NonFiniteError(error)))
    error = "non-finite values (NaN/inf) in the logits"
    checks.append((finite_flag(logits), lambda: NonFiniteError(error)))
    raise_first_failure(checks)
