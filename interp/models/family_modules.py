"""Module accessors read through a family row: norms, the MLP, the attention output and the
unembedding of a Hugging Face causal LM, for every backend that holds one (the native backend
wraps it, a TransformerLens bridge wraps it too).

A class using :class:`FamilyModules` provides ``family``, ``_hf_root`` (the causal-LM module),
``_blocks`` (its decoder layers), ``device``, ``dtype``, ``d_model`` and ``n_layers``; every
result comes back on ``device``.
"""

from __future__ import annotations

import torch
from torch import nn

from interp.errors import InvalidArgumentError
from interp.models.families import Family, get_submodule, scalar
from interp.models.hf_compat import first
from interp.models.protocol import NormKind
from interp.models.weights import onloaded


class FamilyModules:
    """``norm``, ``norm_weights``, ``mlp``, ``attn_output`` and ``unembed`` from the row's paths."""

    family: Family
    d_model: int
    n_heads: int
    d_head: int

    @property
    def _hf_root(self) -> nn.Module:
        raise NotImplementedError

    @property
    def _blocks(self) -> nn.ModuleList:
        raise NotImplementedError

    def _norm_module(self, layer: int | None, kind: NormKind) -> nn.Module | None:
        if kind == "final":
            return get_submodule(self._hf_root, self.family.ln_final)
        if kind not in ("attn", "mlp"):
            raise ValueError(f"norm kind must be 'attn', 'mlp' or 'final', got {kind!r}")
        path = self.family.ln_attn if kind == "attn" else self.family.ln_mlp
        block = self._blocks[self._layer_index(layer)]
        return get_submodule(block, path) if path is not None else None

    def norm_weights(self) -> dict[str, torch.Tensor]:
        """Effective norm scales ``g`` (the norm computes ``normalize(x) * g (+ b)``):
        ``ln_attn``/``ln_mlp`` ``[layers, d_model]`` and ``ln_final`` ``[d_model]``.

        This is the factor applied, not always the stored parameter: Gemma stores ``w`` and
        scales by ``1 + w`` (``Family.norm_offset``). Ones where a norm has no weight (OLMo's
        parameter-free LayerNorm) or a sublayer reads the raw residual (OLMo-2).
        """

        def scale(module: nn.Module | None) -> torch.Tensor:
            if module is None or getattr(module, "weight", None) is None:
                return torch.ones(self.d_model, dtype=self.dtype, device=self.device)
            with onloaded(module):
                return module.weight.detach().to(self.device) + self.family.norm_offset

        layers = range(self.n_layers)
        return {
            "ln_attn": torch.stack([scale(self._norm_module(i, "attn")) for i in layers]),
            "ln_mlp": torch.stack([scale(self._norm_module(i, "mlp")) for i in layers]),
            "ln_final": scale(self._norm_module(None, "final")),
        }

    def norm(self, layer: int | None, kind: NormKind, x: torch.Tensor) -> torch.Tensor:
        """Apply the model's own norm: ``"attn"``/``"mlp"`` of ``layer``, or ``"final"``
        (identity where the sublayer reads the raw residual, as in OLMo-2)."""
        module = self._norm_module(layer, kind)
        x = self._as_residual(x, "norm")
        with torch.inference_mode():
            return module(x).to(self.device) if module is not None else x

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """What layer ``layer``'s MLP adds to the residual stream, from its normalized input ``x
        [..., d_model]`` (apply ``norm(layer, "mlp", ...)`` first): the MLP (MoE layers run the
        router and the experts), then the family's output norm (Gemma-2/3, OLMo-2) and residual
        multiplier (Granite)."""
        block = self._blocks[self._layer_index(layer)]
        x = self._as_residual(x, "mlp")
        with torch.inference_mode():
            if self.family.mlp_fn is not None:
                out = self.family.mlp_fn(block, x)
            else:
                out = first(get_submodule(block, self.family.mlp)(x))
            return self._sublayer_output(block, self.family.mlp_out_norm, out).to(self.device)

    def attn_output(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """What layer ``layer``'s attention adds to the residual stream, from its per-head ``z
        [..., heads, d_head]``: the output projection, then the family's output norm (Gemma-2/3,
        OLMo-2) and residual multiplier (Granite)."""
        block = self._blocks[self._layer_index(layer)]
        if not isinstance(z, torch.Tensor) or z.shape[-2:] != (self.n_heads, self.d_head):
            raise InvalidArgumentError(
                f"attn_output takes z [..., heads={self.n_heads}, d_head={self.d_head}], got "
                f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}"
            )
        with torch.inference_mode():
            flat = z.to(self.device, self.dtype).flatten(-2)
            out = get_submodule(block, self.family.o_proj)(flat)
            return self._sublayer_output(block, self.family.attn_out_norm, out).to(self.device)

    def _sublayer_output(self, block: nn.Module, out_norm: str | None, out: torch.Tensor):
        """A sublayer's output as added to the residual: output norm, residual multiplier."""
        if out_norm is not None:
            out = get_submodule(block, out_norm)(out)
        multiplier = scalar(self.family.residual_multiplier, self._hf_root.config)
        return out * multiplier if multiplier is not None else out

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm, unembedding, then the family's logit multiplier and final softcap:
        residual ``[..., d_model]`` -> logits ``[..., d_vocab]``."""
        normed = self.norm(None, "final", x)
        with torch.inference_mode():
            logits = get_submodule(self._hf_root, self.family.unembed)(normed)
            multiplier = scalar(self.family.logit_multiplier, self._hf_root.config)
            if multiplier is not None:
                logits = logits * multiplier
            cap = scalar(self.family.final_softcap, self._hf_root.config)
            if cap is not None:
                logits = torch.tanh(logits / cap) * cap
            return logits.to(self.device)
