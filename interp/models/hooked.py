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

import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn

from interp._checks import finite_flag, raise_first_failure
from interp.errors import (
    ContextLengthError,
    InputTypeError,
    InvalidArgumentError,
    NonFiniteError,
    UnknownHookError,
)
from interp.models.attention import RunPlan, StatsRequest, as_stats_request
from interp.models.hooks import ActivationCache, resolve_hook_names, split_layer_name
from interp.models.interventions import ABLATION_METHODS, AblationMethod, group_heads_by_layer
from interp.models.protocol import Inputs
from interp.models.weights import HeadWeights

PATTERN_LIMIT = 64 * 2**20  # values over all captured [B, H, T, T] patterns of one run
_TOKEN_DTYPES = (torch.long, torch.int, torch.int32, torch.int64, torch.int16, torch.uint8)


@dataclass
class Forward:
    """What a backend's forward pass is asked to do: ``tokens``/``attention_mask`` are on the
    model's device; every capture goes to ``plan.outputs`` under its hook name."""

    tokens: torch.Tensor
    attention_mask: torch.Tensor | None
    names: list[str]
    plan: RunPlan
    past_key_values: object | None = None
    use_cache: bool = False
    logits_to_keep: int = 0


class HookedLM(ABC):
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

    # ----------------------------------------------------------------- tokens
    @property
    def bos_token_id(self) -> int | None:
        bos = getattr(self.tokenizer, "bos_token_id", None)
        return bos if bos is not None else getattr(self.config, "bos_token_id", None)

    @property
    def eos_token_ids(self) -> list[int]:
        """The token ids that end a generation (tokenizer and config, deduplicated)."""
        ids: list[int] = []
        for value in (
            getattr(self.config, "eos_token_id", None),
            getattr(self.tokenizer, "eos_token_id", None),
        ):
            values = value if isinstance(value, list | tuple) else [value]
            ids += [int(v) for v in values if v is not None and int(v) not in ids]
        return ids

    def to_tokens(self, text: str | Sequence[str], *, prepend_bos: bool = True) -> torch.Tensor:
        """Token ids ``[batch, pos]``; a list of texts is right-padded (see ``attention_mask``)."""
        return self._encode(text, prepend_bos=prepend_bos)[0]

    def _encode(
        self, text: str | Sequence[str], *, prepend_bos: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        texts = [text] if isinstance(text, str) else text
        if (
            not isinstance(texts, Sequence)
            or not texts
            or not all(isinstance(t, str) for t in texts)
        ):
            raise InputTypeError(
                "inputs must be a string, a non-empty list of strings or a tensor of token ids "
                f"[pos] / [batch, pos]; got {type(text).__name__}"
            )
        ids = [self.tokenizer.encode(t, add_special_tokens=False) for t in texts]
        if prepend_bos:
            if self.bos_token_id is None:
                raise InvalidArgumentError(f"{self.name} has no BOS token; pass prepend_bos=False")
            ids = [[self.bos_token_id, *row] for row in ids]
        width = max(len(row) for row in ids)
        if width == 0:
            raise InvalidArgumentError("text is empty: nothing to tokenize")
        pad = getattr(self.tokenizer, "pad_token_id", None)
        pad = pad if pad is not None else 0
        tokens = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, values in enumerate(ids):
            tokens[row, : len(values)] = torch.tensor(values, dtype=torch.long)
            mask[row, : len(values)] = 1
        return tokens, mask

    def to_str_tokens(self, tokens: str | torch.Tensor, *, prepend_bos: bool = True) -> list[str]:
        """The token strings of one sequence (text or ids)."""
        if isinstance(tokens, str):
            tokens = self.to_tokens(tokens, prepend_bos=prepend_bos)
        if not isinstance(tokens, torch.Tensor) or not (tokens.dim() == 1 or tokens.shape[0] == 1):
            raise InputTypeError("to_str_tokens takes one sequence (a string or ids [pos])")
        return [self.tokenizer.decode([i]) for i in tokens.reshape(-1).tolist()]

    def to_string(self, tokens: torch.Tensor) -> str:
        return self.tokenizer.decode(tokens.reshape(-1).tolist())

    def _as_tokens(
        self, inputs: Inputs, attention_mask: torch.Tensor | None, prepend_bos: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if isinstance(inputs, torch.Tensor):
            if inputs.dtype not in _TOKEN_DTYPES:
                raise InputTypeError(f"token tensors must be integer ids, got {inputs.dtype}")
            tokens = inputs.long().reshape(1, -1) if inputs.dim() == 1 else inputs.long()
            if tokens.dim() != 2:
                raise InvalidArgumentError(
                    f"tokens must be [pos] or [batch, pos], got shape {tuple(inputs.shape)}"
                )
            if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.d_vocab):
                raise InvalidArgumentError(
                    f"token ids must lie in [0, {self.d_vocab}); got {tokens.min()}..{tokens.max()}"
                )
        else:
            tokens, mask = self._encode(inputs, prepend_bos=prepend_bos)
            attention_mask = (
                mask if attention_mask is None and not bool(mask.all()) else attention_mask
            )
        if tokens.shape[1] == 0:
            raise InvalidArgumentError("empty input: no tokens")
        if attention_mask is not None and attention_mask.shape[0] != tokens.shape[0]:
            raise InvalidArgumentError(
                f"attention_mask has {attention_mask.shape[0]} rows but the batch has "
                f"{tokens.shape[0]}"
            )
        return tokens, attention_mask

    def check_length(self, length: int) -> None:
        if length > self.n_ctx:
            raise ContextLengthError(
                f"input has {length} tokens but {self.name} has a context of {self.n_ctx} tokens; "
                "shorten the text or split it"
            )

    # ----------------------------------------------------------------- running
    @torch.inference_mode()
    def run(
        self,
        inputs: Inputs,
        capture: str | Sequence[str] | None = None,
        attention_stats: StatsRequest | bool | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        prepend_bos: bool = True,
        past_key_values: object | None = None,
        use_cache: bool = False,
        logits_to_keep: int = 0,
    ) -> tuple[torch.Tensor, ActivationCache]:
        """Forward pass capturing the requested hooks (names or glob patterns).

        ``attention_stats=True`` (or a :class:`StatsRequest`) adds, per layer, the fused
        per-query statistics (log-sum-exp, top-1 key, its probability, and probabilities on
        requested keys / key ranges) to ``cache.attention_stats`` without materializing the
        ``[T, T]`` pattern; sliding windows, logit softcapping and attention sinks are honoured.
        ``past_key_values``/``use_cache`` continue from a KV cache (decoding); the updated cache
        is returned as ``cache.past_key_values``. ``logits_to_keep=n > 0`` returns logits for the
        last ``n`` positions only, skipping the unembedding of the rest.
        """
        check_logits_to_keep(logits_to_keep)
        tokens, attention_mask = self._as_tokens(inputs, attention_mask, prepend_bos)
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        self.check_length(past + tokens.shape[1])
        self._check_parallel(capture)
        names = resolve_hook_names(capture, self.hook_names)
        stats = as_stats_request(attention_stats, self.device)
        self._check_request(names, stats, tokens, past)
        device = self.device
        mask = attention_mask.to(device) if attention_mask is not None else None
        plan = RunPlan(stats=stats, key_padding=mask.bool() if mask is not None else None)
        needed = _with_dependencies(names)
        for name in needed:
            layer, hook = split_layer_name(name)
            if layer is not None and hook in _PROBE_HOOKS:
                plan.capture.setdefault(layer, set()).add(hook.split(".")[1])
        logits, new_cache = self._forward(
            Forward(
                tokens=tokens.to(device),
                attention_mask=mask,
                names=needed,
                plan=plan,
                past_key_values=past_key_values,
                use_cache=use_cache,
                logits_to_keep=logits_to_keep,
            )
        )
        batch, length = tokens.shape
        cache = ActivationCache(
            {name: self._derived(name, plan.outputs, batch, length) for name in names}
        )
        cache.attention_stats = plan.stats_out
        cache.past_key_values = new_cache if use_cache else None
        _check_finite(logits, cache, plan.stats_checks)
        return logits, cache

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
        layers = sum(n.endswith("attn.hook_pattern") for n in names)
        size = layers * tokens.shape[0] * self.n_heads * tokens.shape[1] * keys
        if size > PATTERN_LIMIT:
            gigabytes = size * torch.finfo(self.dtype).bits / 8 / 1e9
            raise InvalidArgumentError(
                f"attn.hook_pattern on {layers} layer(s) would hold {size:,} values "
                f"(batch {tokens.shape[0]} x {self.n_heads} heads x {tokens.shape[1]} x {keys} "
                f"per layer, {gigabytes:.1f} GB); the limit is {PATTERN_LIMIT:,} values in all. "
                "Capture fewer layers, use a shorter input, or pass attention_stats=... for "
                "per-query statistics without the pattern"
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


# Hooks the attention probe captures (post-rotary q/k/v, the pattern).
_PROBE_HOOKS = ("attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_pattern")


def _with_dependencies(names: list[str]) -> list[str]:
    """``names`` plus what derived names are computed from (``hook_resid_mid`` = pre + attn_out)."""
    needed = list(names)
    for name in names:
        layer, suffix = split_layer_name(name)
        if suffix == "hook_resid_mid":
            needed += [f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.hook_attn_out"]
    return [n for n in dict.fromkeys(needed) if not n.endswith("hook_resid_mid")]


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
        error = f"non-finite values (NaN/inf) in activation {name!r}"
        checks.append((finite_flag(value), lambda error=error: NonFiniteError(error)))
    error = "non-finite values (NaN/inf) in the logits"
    checks.append((finite_flag(logits), lambda: NonFiniteError(error)))
    raise_first_failure(checks)
