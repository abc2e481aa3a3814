"""HookedLM: one uniform, hook-instrumented view of a causal language model.

The native backend wraps a Hugging Face model in place: forward hooks capture residual-stream,
attention-output and MLP-output activations; the registered ``"interp"`` attention function
exposes each layer's post-rotary q/k/v and computes fused attention statistics. Only what a run
asks for is captured. Names follow TransformerLens (``blocks.{l}.hook_resid_post``, ...).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from contextlib import AbstractContextManager, ExitStack
from typing import Literal

import torch
from torch import nn

from interp._checks import Check, finite_flag, raise_first_failure
from interp.models.architectures import Architecture, architecture_for, get_submodule
from interp.models.attention import (
    AttentionProbe,
    RunPlan,
    StatsRequest,
    as_stats_request,
    register_attention_function,
)
from interp.models.hf_compat import cache_argument, first, returned_cache
from interp.models.hooks import (
    ActivationCache,
    all_hook_names,
    resolve_hook_names,
    split_layer_name,
)
from interp.models.interventions import AblationMethod, ablate_heads
from interp.models.weights import HeadWeights, read_head_weights

Inputs = str | Sequence[str] | torch.Tensor
NormKind = Literal["attn", "mlp", "final"]
PATTERN_LIMIT = 64 * 2**20  # values over all captured [B, H, T, T] patterns of one run


class HookedLM:
    """A causal LM with TransformerLens-style hooks, per-head weights and attention statistics.

    Build it with :func:`interp.load_model`. ``run`` returns ``(logits, cache)``; the cache is
    an :class:`ActivationCache` holding only the requested hooks.
    """

    def __init__(self, model: nn.Module, tokenizer: object, *, name: str | None = None) -> None:
        self.arch: Architecture = architecture_for(model)
        self.model = model.eval()
        self.tokenizer = tokenizer
        config = model.config
        self.config = config
        self.name = name or getattr(config, "_name_or_path", "") or config.model_type
        self.n_layers: int = config.num_hidden_layers
        self.n_heads: int = config.num_attention_heads
        self.n_kv_heads: int = getattr(config, "num_key_value_heads", None) or self.n_heads
        self.d_model: int = config.hidden_size
        self.d_head: int = getattr(config, "head_dim", None) or self.d_model // self.n_heads
        self.d_vocab: int = config.vocab_size
        self.n_ctx: int = getattr(config, "max_position_embeddings", None) or config.n_positions
        self.hook_names = all_hook_names(self.n_layers)
        self._layers = get_submodule(model, self.arch.layers)
        model.set_attn_implementation(register_attention_function())
        self._probes = []
        for index, layer in enumerate(self._layers):
            attention = get_submodule(layer, self.arch.attn)
            # Re-use a probe an earlier wrapper of the same model installed: replacing it would
            # leave that wrapper's runs looking at probes the model no longer calls.
            probe = getattr(attention, "_interp_probe", None) or AttentionProbe(index)
            attention._interp_probe = probe
            self._probes.append(probe)

    def __repr__(self) -> str:
        return (
            f"HookedLM({self.name!r}, family={self.arch.family}, layers={self.n_layers}, "
            f"heads={self.n_heads}, kv_heads={self.n_kv_heads}, d_model={self.d_model})"
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def bos_token_id(self) -> int | None:
        bos = getattr(self.tokenizer, "bos_token_id", None)
        return bos if bos is not None else getattr(self.config, "bos_token_id", None)

    # ----------------------------------------------------------------- tokens
    def to_tokens(self, text: str | Sequence[str], *, prepend_bos: bool = True) -> torch.Tensor:
        """Token ids ``[batch, pos]``; a list of texts is right-padded (see ``attention_mask``)."""
        return self._encode(text, prepend_bos=prepend_bos)[0]

    def _encode(
        self, text: str | Sequence[str], *, prepend_bos: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        texts = [text] if isinstance(text, str) else list(text)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise TypeError("text must be a string or a non-empty list of strings")
        ids = [self.tokenizer.encode(t, add_special_tokens=False) for t in texts]
        if prepend_bos:
            if self.bos_token_id is None:
                raise ValueError(f"{self.name} has no BOS token; pass prepend_bos=False")
            ids = [[self.bos_token_id, *row] for row in ids]
        width = max(len(row) for row in ids)
        if width == 0:
            raise ValueError("text is empty: nothing to tokenize")
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
        ids = tokens.reshape(-1).tolist() if tokens.dim() == 1 or tokens.shape[0] == 1 else None
        if ids is None:
            raise ValueError("to_str_tokens takes one sequence; got a batch")
        return [self.tokenizer.decode([i]) for i in ids]

    def to_string(self, tokens: torch.Tensor) -> str:
        return self.tokenizer.decode(tokens.reshape(-1).tolist())

    def _as_tokens(
        self, inputs: Inputs, attention_mask: torch.Tensor | None, prepend_bos: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if isinstance(inputs, torch.Tensor):
            if inputs.dtype not in (torch.long, torch.int, torch.int32, torch.int64):
                raise TypeError(f"token tensors must be integer ids, got {inputs.dtype}")
            tokens = inputs.long().reshape(1, -1) if inputs.dim() == 1 else inputs.long()
            if tokens.dim() != 2:
                raise ValueError(
                    f"tokens must be [pos] or [batch, pos], got shape {tuple(inputs.shape)}"
                )
            if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.d_vocab):
                raise ValueError(
                    f"token ids must lie in [0, {self.d_vocab}); got {tokens.min()}..{tokens.max()}"
                )
        else:
            tokens, mask = self._encode(inputs, prepend_bos=prepend_bos)
            attention_mask = (
                mask if attention_mask is None and not bool(mask.all()) else attention_mask
            )
        if tokens.shape[1] == 0:
            raise ValueError("empty input: no tokens")
        return tokens, attention_mask

    def check_length(self, length: int) -> None:
        if length > self.n_ctx:
            raise ValueError(
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
        ``[T, T]`` pattern. ``past_key_values``/``use_cache`` continue from a KV cache (decoding);
        the updated cache is returned as ``cache.past_key_values``. ``logits_to_keep=n > 0``
        returns logits for the last ``n`` positions only, skipping the unembedding of the rest
        (a 2k-token prefill otherwise spends ~60 GFLOP and 400 MB on logits nobody reads).
        """
        check_logits_to_keep(logits_to_keep)
        tokens, attention_mask = self._as_tokens(inputs, attention_mask, prepend_bos)
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        self.check_length(past + tokens.shape[1])
        names = resolve_hook_names(capture, self.hook_names)
        stats = as_stats_request(attention_stats, self.device)
        self._check_request(names, stats, tokens, past)
        plan = RunPlan(stats=stats)
        for name in names:
            layer, hook = split_layer_name(name)
            if layer is not None and hook.startswith("attn.hook_") and hook != "attn.hook_z":
                plan.capture.setdefault(layer, set()).add(hook.split(".")[1])
        device = self.device
        kv_cache = {} if past_key_values is None else {cache_argument(self.model): past_key_values}
        with ExitStack() as stack:
            self._install(stack, names, plan)
            output = self.model(
                input_ids=tokens.to(device),
                attention_mask=attention_mask.to(device) if attention_mask is not None else None,
                use_cache=use_cache,
                **kv_cache,
                **({"logits_to_keep": logits_to_keep} if logits_to_keep else {}),
            )
        cache = ActivationCache({name: plan.outputs[name] for name in names})
        cache.attention_stats = plan.stats_out
        cache.past_key_values = returned_cache(output) if use_cache else None
        _check_finite(output.logits, cache, plan.stats_checks)
        return output.logits, cache

    def forward(self, inputs: Inputs, **kwargs) -> torch.Tensor:
        """Logits only (no capture)."""
        return self.run(inputs, **kwargs)[0]

    __call__ = forward

    def ablate_heads(
        self, heads: Sequence[tuple[int, int]], method: AblationMethod = "uniform"
    ) -> AbstractContextManager[None]:
        """Context manager: inside it the ``(layer, head)`` pairs are ablated.

        ``method="uniform"`` zeroes the heads' queries (uniform attention, Wu et al. 2024's
        masking); ``"zero"`` zeroes their outputs before ``W_O``. Hooks are removed on exit.
        """
        return ablate_heads(self, heads, method)

    def _check_request(
        self, names: list[str], stats: StatsRequest | None, tokens: torch.Tensor, past: int
    ) -> None:
        if self.arch.parallel_residual(self.config) and any(
            n.endswith("hook_resid_mid") for n in names
        ):
            raise KeyError(
                f"{self.name} runs attention and MLP in parallel: hook_resid_mid does not exist"
            )
        keys = past + tokens.shape[1]
        layers = sum(n.endswith("attn.hook_pattern") for n in names)
        size = layers * tokens.shape[0] * self.n_heads * tokens.shape[1] * keys
        if size > PATTERN_LIMIT:
            gigabytes = size * torch.finfo(self.dtype).bits / 8 / 1e9
            raise ValueError(
                f"attn.hook_pattern on {layers} layer(s) would hold {size:,} values "
                f"(batch {tokens.shape[0]} x {self.n_heads} heads x {tokens.shape[1]} x {keys} "
                f"per layer, {gigabytes:.1f} GB); the limit is {PATTERN_LIMIT:,} values in all. "
                "Capture fewer layers, use a shorter input, or pass attention_stats=... for "
                "per-query statistics without the pattern"
            )
        if stats is not None and stats.layers is not None:
            bad = [layer for layer in stats.layers if not 0 <= layer < self.n_layers]
            if bad:
                raise ValueError(
                    f"StatsRequest.layers must lie in 0..{self.n_layers - 1} for {self.name}; "
                    f"got {list(stats.layers)} (out of range: {bad})"
                )
        window = getattr(self.config, "sliding_window", None)
        if stats is not None and window is not None and keys > window:
            raise ValueError(
                f"attention statistics ignore sliding windows; keep inputs within {window} tokens"
            )

    def _install(self, stack: ExitStack, names: list[str], plan: RunPlan) -> None:
        """Register exactly the hooks the plan needs; ExitStack removes them afterwards."""
        outputs = plan.outputs

        def store(name: str, value: torch.Tensor) -> None:
            outputs[name] = value.detach()

        def hook(module: nn.Module, fn, *, pre: bool = False) -> None:
            handle = (
                module.register_forward_pre_hook(fn, with_kwargs=True)
                if pre
                else module.register_forward_hook(fn)
            )
            stack.callback(handle.remove)

        for probe in self._probes:
            probe.plan = plan
            stack.callback(setattr, probe, "plan", None)
        wanted = set(names)
        if "hook_embed" in wanted:
            hook(get_submodule(self.model, self.arch.embed), lambda m, i, o: store("hook_embed", o))
        if "ln_final.hook_normalized" in wanted:
            hook(
                get_submodule(self.model, self.arch.ln_final),
                lambda m, i, o: store("ln_final.hook_normalized", o),
            )
        by_layer: dict[int, set[str]] = {}
        for name in names:
            layer, suffix = split_layer_name(name)
            if layer is not None:
                by_layer.setdefault(layer, set()).add(suffix)
        for layer, suffixes in by_layer.items():
            self._install_layer(layer, suffixes, hook, store, outputs)

    def _install_layer(self, layer: int, suffixes: set[str], hook, store, outputs) -> None:
        block = self._layers[layer]
        prefix = f"blocks.{layer}."
        need_pre = suffixes & {"hook_resid_pre", "hook_resid_mid"}
        need_attn = suffixes & {"hook_attn_out", "hook_resid_mid"}
        if need_pre:

            def pre(module, args, kwargs):
                value = args[0] if args else kwargs["hidden_states"]
                store(prefix + "hook_resid_pre", value)

            hook(block, pre, pre=True)
        if need_attn:
            hook(
                get_submodule(block, self.arch.attn),
                lambda m, i, o: store(prefix + "hook_attn_out", first(o)),
            )
        if "hook_mlp_out" in suffixes:
            hook(
                get_submodule(block, self.arch.mlp),
                lambda m, i, o: store(prefix + "hook_mlp_out", first(o)),
            )
        if "hook_resid_post" in suffixes:
            hook(block, lambda m, i, o: store(prefix + "hook_resid_post", first(o)))
        if "hook_resid_mid" in suffixes:

            def mid(module, inputs, output):
                outputs[prefix + "hook_resid_mid"] = (
                    outputs[prefix + "hook_resid_pre"] + outputs[prefix + "hook_attn_out"]
                )

            hook(get_submodule(block, self.arch.attn), mid)
        if "attn.hook_z" in suffixes:

            def z(module, args, kwargs):
                value = args[0] if args else kwargs["input"]
                store(
                    prefix + "attn.hook_z",
                    value.reshape(*value.shape[:-1], self.n_heads, self.d_head),
                )

            hook(get_submodule(block, self.arch.o_proj), z, pre=True)

    # ----------------------------------------------------------------- weights
    @functools.cached_property
    def _head_weights(self) -> HeadWeights:
        return read_head_weights(self.model, self.arch, self.n_heads, self.n_kv_heads, self.d_head)

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

    @property
    def W_E(self) -> torch.Tensor:
        """Token embedding ``[d_vocab, d_model]`` (raw weights; see ``embedding_scale``)."""
        return get_submodule(self.model, self.arch.embed).weight.detach()

    @property
    def embedding_scale(self) -> float:
        """Factor the model multiplies token embeddings by (sqrt(d_model) for Gemma, else 1)."""
        return math.sqrt(self.d_model) if self.arch.family == "gemma" else 1.0

    @property
    def W_U(self) -> torch.Tensor:
        """Unembedding ``[d_model, d_vocab]``."""
        return get_submodule(self.model, self.arch.unembed).weight.detach().T

    @property
    def b_U(self) -> torch.Tensor:
        bias = getattr(get_submodule(self.model, self.arch.unembed), "bias", None)
        return (
            bias.detach()
            if bias is not None
            else torch.zeros(self.d_vocab, dtype=self.dtype, device=self.device)
        )

    def norm_weights(self) -> dict[str, torch.Tensor]:
        """Effective norm scales ``g`` (the norm computes ``normalize(x) * g (+ b)``):
        ``ln_attn``/``ln_mlp`` ``[layers, d_model]`` and ``ln_final`` ``[d_model]``.

        This is the factor applied, not always the stored parameter: Gemma stores ``w`` and
        scales by ``1 + w`` (``Architecture.norm_offset``), so ``g = 1 + w`` there.
        """
        attn = [get_submodule(layer, self.arch.ln_attn).weight.detach() for layer in self._layers]
        mlp = [get_submodule(layer, self.arch.ln_mlp).weight.detach() for layer in self._layers]
        final = get_submodule(self.model, self.arch.ln_final).weight.detach()
        offset = self.arch.norm_offset
        return {
            "ln_attn": torch.stack(attn) + offset,
            "ln_mlp": torch.stack(mlp) + offset,
            "ln_final": final + offset,
        }

    def norm(self, layer: int | None, kind: NormKind, x: torch.Tensor) -> torch.Tensor:
        """Apply the model's own norm: ``"attn"``/``"mlp"`` of ``layer``, or ``"final"``."""
        if kind == "final":
            module = get_submodule(self.model, self.arch.ln_final)
        elif kind in ("attn", "mlp"):
            module = get_submodule(
                self._layer(layer), self.arch.ln_attn if kind == "attn" else self.arch.ln_mlp
            )
        else:
            raise ValueError(f"norm kind must be 'attn', 'mlp' or 'final', got {kind!r}")
        with torch.inference_mode():
            return module(x.to(self.device, self.dtype))

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Apply layer ``layer``'s MLP (without its norm) to ``x [..., d_model]``."""
        with torch.inference_mode():
            return get_submodule(self._layer(layer), self.arch.mlp)(x.to(self.device, self.dtype))

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm then unembedding: residual ``[..., d_model]`` -> logits ``[..., d_vocab]``."""
        with torch.inference_mode():
            return get_submodule(self.model, self.arch.unembed)(self.norm(None, "final", x))

    def _layer(self, layer: int | None) -> nn.Module:
        if layer is None or not 0 <= layer < self.n_layers:
            raise IndexError(f"layer must be in 0..{self.n_layers - 1}, got {layer}")
        return self._layers[layer]


def check_logits_to_keep(logits_to_keep: object) -> None:
    """``run(logits_to_keep=...)`` takes 0 (every position) or a positive count."""
    if (
        isinstance(logits_to_keep, bool)
        or not isinstance(logits_to_keep, int)
        or logits_to_keep < 0
    ):
        raise ValueError(
            f"logits_to_keep must be 0 (logits at every position) or a positive number of final "
            f"positions, got {logits_to_keep!r}"
        )


def _check_finite(
    logits: torch.Tensor, cache: ActivationCache, stats_checks: Sequence[Check] = ()
) -> None:
    """Raise for bad attention-statistics inputs, then for non-finite activations or logits; every
    flag is read in one device transfer at the end of the run, not once per layer."""
    checks = list(stats_checks)
    for name, value in cache.items():
        error = f"non-finite values (NaN/inf) in activation {name!r}"
        checks.append((finite_flag(value), lambda error=error: FloatingPointError(error)))
    error = "non-finite values (NaN/inf) in the logits"
    checks.append((finite_flag(logits), lambda: FloatingPointError(error)))
    raise_first_failure(checks)
