"""The SSM backend: Hugging Face Mamba, Falcon-Mamba and Mamba-2 LMs behind :class:`HookedLM`.

``run(capture=...)`` offers the residual names of the native backend (``hook_embed``,
``blocks.{l}.hook_resid_pre``/``hook_resid_post``, ``ln_final.hook_normalized``), the mixer's
contribution to the residual stream ``blocks.{l}.hook_mixer_out``, and hooks inside the mixer
(:data:`interp.models.ssm_sites.MIXER_HOOKS`): its normalized input ``mixer.hook_in``, the gate
``hook_gate``, the scan input ``hook_x``, the per-token ``hook_delta`` (Delta), ``hook_B``,
``hook_C``, the discretized ``hook_log_abar`` (log Abar = Delta A) and ``hook_bbar`` (Bbar =
Delta B), the state ``hook_state`` (h_t) and the scan output ``hook_y`` (``C_t . h_t + D u_t``,
before the gate). The last three per-layer families are ``[batch, pos, channels, state]``-sized:
like attention patterns they are taken only when named explicitly (a glob such as ``blocks.*``
skips them) and the run refuses more than :data:`~interp.models.hooked.PATTERN_LIMIT` values.

What the hooks see on each path. The residual hooks, ``hook_mixer_out`` and ``mixer.hook_in``
are module boundaries: the model's own values on every path. The other mixer hooks are
recomputed from the mixer's input and weights (:mod:`interp.models.ssm_sites`):

- torch reference path (the CPU, and a GPU without ``mamba_ssm``/``causal_conv1d``): Mamba and
  Falcon-Mamba scan with a sequential loop, Mamba-2 with the chunked SSD algorithm. ``hook_x``,
  ``hook_gate``, ``hook_B``, ``hook_C`` and ``hook_delta`` are bit for bit what transformers'
  scan function receives (tested by wrapping it); ``hook_state``/``hook_y`` come from interp's
  sequential recurrence, which equals the model's scan output to float32 rounding (both scans
  run in float32; a float64 model's scan still casts its input to float32 in transformers).
- CUDA kernels (``mamba_ssm``, ``causal_conv1d`` or kernels-hub replacements): the convolution
  and scan run in fused kernels; interp's recomputation still uses torch's convolution, so the
  recomputed hooks equal the model's to kernel rounding, not bit for bit, and the state is
  interp's recurrence. The fully fused training kernel (``mamba_inner_fn``, only in train mode)
  is never reached: models are wrapped in eval mode.

Mixer-internal hooks are capture-only (an edit there would not reach the model's scan).

Attention-only parts of the interface (per-head weights, attention statistics, head ablation,
``attn_output``/``mlp``) raise :class:`~interp.errors.UnsupportedModelError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, ExitStack

import torch
from torch import nn

from interp.errors import InvalidArgumentError, UnsupportedModelError
from interp.models.hooked import PATTERN_LIMIT, Forward, HookedLM
from interp.models.hooks import _WILDCARD, resolve_hook_names, split_layer_name
from interp.models.native_sites import HookSites
from interp.models.ssm_sites import (
    MIXER_HOOKS,
    RECOMPUTED,
    STATE_HOOKS,
    fixed_parameters,
    mixer_hooks,
)
from interp.models.weights import HeadWeights

# config.model_type -> mixer variant (Falcon-Mamba is Mamba with RMS norms on dt, B and C)
VARIANTS = {"mamba": "mamba", "falcon_mamba": "mamba", "mamba2": "mamba2"}
UNBOUNDED_CONTEXT = 2**31 - 1  # an SSM has no position limit


def is_ssm_model(model: object) -> bool:
    """Whether ``model`` is a Hugging Face model this backend wraps (Mamba or Mamba-2)."""
    return getattr(getattr(model, "config", None), "model_type", None) in VARIANTS


def ssm_backend(model: object) -> type[HookedLM] | None:
    """The wrapper class for ``model``: :class:`MambaLM` for Mamba / Falcon-Mamba / Mamba-2,
    :class:`~interp.models.ssm_hybrid.HybridLM` for Bamba / Jamba, None for anything else."""
    from interp.models.ssm_hybrid import HybridLM, is_hybrid_model

    if is_ssm_model(model):
        return MambaLM
    return HybridLM if is_hybrid_model(model) else None


def _no_attention(what: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"{what} needs attention heads; a state-space model (Mamba/Mamba-2) has none. Use the "
        "mixer hooks (blocks.{l}.mixer.hook_*) or interp.mixers for its sequence mixing"
    )


class MambaLM(HookedLM):
    """A Hugging Face ``MambaForCausalLM`` or ``Mamba2ForCausalLM``, wrapped in place."""

    backend = "ssm"

    def __init__(self, model: nn.Module, tokenizer: object, *, name: str | None = None) -> None:
        config = model.config
        if not is_ssm_model(model):
            raise UnsupportedModelError(
                f"the SSM backend wraps Mamba and Mamba-2 models, got model_type "
                f"{getattr(config, 'model_type', None)!r}"
            )
        self.variant = VARIANTS[config.model_type]
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.name = name or getattr(config, "_name_or_path", "") or config.model_type
        backbone = model.backbone
        self._layers = backbone.layers
        self.n_layers = config.num_hidden_layers
        self.n_heads = self.n_kv_heads = self.d_head = 0  # no attention heads
        self.d_model = config.hidden_size
        self.d_vocab = config.vocab_size
        self.n_ctx = UNBOUNDED_CONTEXT
        mixer = self._layers[0].mixer
        self.d_inner: int = mixer.intermediate_size
        self.d_state: int = mixer.ssm_state_size
        self.n_ssm_heads: int = getattr(mixer, "num_heads", 0)  # Mamba-2 heads (scalar A each)
        names = ["hook_embed"]
        for layer in range(self.n_layers):
            prefix = f"blocks.{layer}."
            hooks = ["hook_resid_pre", *MIXER_HOOKS, "hook_mixer_out", "hook_resid_post"]
            names += [prefix + h for h in hooks]
        self.hook_names = [*names, "ln_final.hook_normalized"]

    def __repr__(self) -> str:
        return (
            f"MambaLM({self.name!r}, variant={self.variant}, layers={self.n_layers}, "
            f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state})"
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ----------------------------------------------------------------- running
    def run(self, inputs, capture: str | Sequence[str] | None = None, attention_stats=None, **kw):
        """As :meth:`HookedLM.run`; globs skip the state-sized hooks (name them to get them)."""
        if attention_stats not in (None, False):
            raise _no_attention("attention_stats")
        if kw.get("past_key_values") is not None or kw.get("use_cache"):
            raise UnsupportedModelError(
                "decoding from a cache is not supported for SSMs in interp yet; run the full "
                "sequence instead"
            )
        return super().run(inputs, self._explicit(capture), None, **kw)

    def _explicit(self, capture: str | Sequence[str] | None) -> list[str] | None:
        if capture is None:
            return None
        items = [capture] if isinstance(capture, str) else list(capture)
        names: list[str] = []
        for item in items:
            found = resolve_hook_names(item, self.hook_names)
            if isinstance(item, str) and _WILDCARD.search(item):
                last = item.rsplit(".", 1)[-1]
                found = [n for n in found if _state_sized(n) is None or n.endswith(last)]
            names += found
        return list(dict.fromkeys(names))

    def _check_request(self, names, stats, tokens, past) -> None:
        super()._check_request(names, stats, tokens, past)
        batch, length = tokens.shape
        per_token = self.d_inner * self.d_state if self.variant == "mamba" else 0
        sizes = {
            "mixer.hook_state": batch * length * self.d_inner * self.d_state,
            "mixer.hook_log_abar": batch * length * per_token,
            "mixer.hook_bbar": batch * length * (per_token or self.n_ssm_heads * self.d_state),
        }
        size = sum(sizes.get(_state_sized(n) or "", 0) for n in names)
        if size > PATTERN_LIMIT:
            raise InvalidArgumentError(
                f"the requested SSM states/discretized parameters would hold {size:,} values "
                f"(batch {batch} x {length} tokens x {self.d_inner} channels x {self.d_state} "
                f"states per layer); the limit is {PATTERN_LIMIT:,}. Capture fewer layers or use "
                "a shorter input"
            )

    def _forward(self, request: Forward) -> tuple[torch.Tensor, object | None]:
        inner = [n for n in request.plan.edits if _is_recomputed(n)]
        if inner:
            raise InvalidArgumentError(
                f"{inner[0]} is recomputed by interp from the mixer input and cannot be edited; "
                "edit blocks.{l}.mixer.hook_in, hook_mixer_out or the residual stream"
            )
        keep = {"logits_to_keep": request.logits_to_keep} if request.logits_to_keep else {}
        with ExitStack() as stack:
            self._install(stack, request)
            output = self.model(
                input_ids=request.tokens,
                attention_mask=request.attention_mask,
                use_cache=False,
                **keep,
            )
        return output.logits, None

    def _install(self, stack: ExitStack, request: Forward) -> None:
        sites = HookSites(stack, request)
        backbone = self.model.backbone
        sites.output("hook_embed", backbone, "embeddings")
        sites.output("ln_final.hook_normalized", backbone, "norm_f")
        for _, block, prefix in sites.blocks(self._layers):
            self._mixer_hooks(stack, sites, request, block, "mixer", prefix)

    def _mixer_hooks(
        self, stack: ExitStack, sites, request: Forward, block, path: str, prefix: str
    ):
        """One SSM mixer's hooks: its output and input at the module boundary, and the
        recomputed internals (Δ, B, C, ... ) through a pre-hook when any is asked for."""
        sites.output(prefix + "hook_mixer_out", block, path)
        sites.input(prefix + "mixer.hook_in", block, path)
        wanted = {
            n[len(prefix) + len("mixer.") :]
            for n in request.names
            if n.startswith(prefix) and _is_recomputed(n)
        }
        if wanted:
            self._probe(stack, request, block.get_submodule(path), prefix, wanted)

    def _probe(self, stack: ExitStack, request: Forward, mixer, prefix: str, wanted: set) -> None:
        """A forward pre-hook on the mixer that stores the recomputed internals."""
        outputs, detach, mask = request.plan.outputs, request.plan.detach, request.attention_mask

        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            for key, value in mixer_hooks(module, hidden, mask, self.variant, wanted).items():
                outputs[prefix + "mixer." + key] = value.detach() if detach else value

        stack.enter_context(mixer.register_forward_pre_hook(hook, with_kwargs=True))

    # ----------------------------------------------------------------- what does not apply
    def _read_head_weights(self) -> HeadWeights:
        raise _no_attention("per-head attention weights (W_Q, W_K, W_V, W_O)")

    def _ablation(self, heads, method) -> AbstractContextManager[None]:
        raise _no_attention("ablate_heads")

    def ablate_heads(self, heads, method="uniform") -> AbstractContextManager[None]:
        raise _no_attention("ablate_heads")

    def attn_output(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        raise _no_attention("attn_output")

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        raise UnsupportedModelError(
            "a Mamba block has no MLP; the mixer is the whole sublayer (see lm.mixer)"
        )

    def attention_scale(self, layer: int) -> float:
        raise _no_attention("attention_scale")

    # ----------------------------------------------------------------- weights and modules
    @property
    def W_E(self) -> torch.Tensor:
        return self.model.backbone.embeddings.weight.detach()

    @property
    def embedding_scale(self) -> float:
        return 1.0

    @property
    def W_U(self) -> torch.Tensor:
        return self.model.lm_head.weight.detach().T

    @property
    def b_U(self) -> torch.Tensor:
        bias = self.model.lm_head.bias
        return (
            bias.detach()
            if bias is not None
            else torch.zeros(self.d_vocab, dtype=self.dtype, device=self.device)
        )

    def norm_weights(self) -> dict[str, torch.Tensor]:
        """RMSNorm scales: ``ln_mixer [layers, d_model]`` and ``ln_final [d_model]``."""
        return {
            "ln_mixer": torch.stack([b.norm.weight.detach() for b in self._layers]),
            "ln_final": self.model.backbone.norm_f.weight.detach(),
        }

    def norm(self, layer: int | None, kind: str, x: torch.Tensor) -> torch.Tensor:
        """The final norm (``kind="final"``) or layer ``layer``'s pre-mixer norm (``"mixer"``)."""
        if kind == "final":
            module = self.model.backbone.norm_f
        elif kind == "mixer":
            module = self._layers[self._layer_index(layer)].norm
        else:
            raise UnsupportedModelError(
                f"a Mamba block has one norm, before its mixer: kind 'mixer' or 'final', got {kind!r}"
            )
        x = self._as_residual(x, "norm")
        with torch.inference_mode():
            return module(x)

    def ssm_parameters(self, layer: int) -> dict[str, torch.Tensor]:
        """Layer ``layer``'s input-independent SSM parameters per scan channel: ``A [d_inner,
        d_state]`` (``-exp(A_log)``; Mamba-2's per-head scalar repeated over the head's channels
        and states) and the skip ``D [d_inner]``."""
        return fixed_parameters(self._layers[self._layer_index(layer)].mixer)

    def mixer(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """What layer ``layer``'s mixer adds to the residual from its normalized input ``x [batch,
        pos, d_model]`` (differentiable: no inference mode)."""
        return self._layers[self._layer_index(layer)].mixer(x)

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.norm(None, "final", x)
        with torch.inference_mode():
            return self.model.lm_head(normed)

    def decoder_layers(self) -> list[nn.Module]:
        """The Mamba blocks: ``block(hidden)`` returns the next residual stream."""
        return list(self._layers)

    def rotary_embedding(self, x: torch.Tensor, positions: torch.Tensor) -> None:
        return None

    def causal_mask(self, x: torch.Tensor, positions: torch.Tensor) -> None:
        return None


def _state_sized(name: str) -> str | None:
    suffix = split_layer_name(name)[1]
    return suffix if suffix in STATE_HOOKS else None


def _is_recomputed(name: str) -> bool:
    return split_layer_name(name)[1] in RECOMPUTED
