"""Interaction operators of a wrapped model's layers, and the per-layer mixer analysis.

:func:`interaction_operators` reads a layer's ``W_ij(X)`` for a given input through the model
interface only (``run(capture=...)`` and the public weights): the attention pattern and the
per-head ``W_V``/``W_O`` of an attention layer, or a Mamba layer's per-token ``Delta``, ``B``,
``C`` with its ``A`` and ``D`` (``lm.ssm_parameters``). A :class:`LinearSSM` is accepted too.
:func:`analyze_mixers` gives every layer's interaction rank, spectrum and gradient-path profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import plotly.graph_objects as go
import torch

from interp.errors import InputTypeError, InvalidArgumentError, UnsupportedModelError
from interp.mixers.operators import (
    AttentionOperators,
    LinearSSM,
    LTIOperators,
    Operators,
    SelectiveOperators,
)
from interp.mixers.paths import layer_gradient_paths, paths_figure
from interp.mixers.rank import DEFAULT_RTOL, interaction_rank, spectrum_figure
from interp.results import Result


def mixer_kind(lm: object, layer: int | None = None) -> str:
    """``"selective"`` for an SSM language model, ``"attention"`` for one with attention heads,
    a hybrid's ``layer_kinds[layer]``; :class:`UnsupportedModelError` for anything else."""
    kinds = getattr(lm, "layer_kinds", None)
    if kinds is not None and layer is not None:
        return kinds[layer]
    if hasattr(lm, "ssm_parameters"):
        return "selective"
    names = getattr(lm, "hook_names", None) or []
    if getattr(lm, "n_heads", 0) and any(n.endswith("attn.hook_pattern") for n in names):
        return "attention"
    raise UnsupportedModelError(
        f"{getattr(lm, 'name', type(lm).__name__)} has no attention or SSM layers; interaction "
        "operators need a transformer or a Mamba/Mamba-2 model (or an interp.mixers.LinearSSM)"
    )


def check_layer(lm: object, layer: object) -> int:
    """``layer`` as an index into ``lm``'s layers, or an :class:`InvalidArgumentError`."""
    n = getattr(lm, "n_layers", None)
    if n is None:
        mixer_kind(lm)  # raises for a model without sequence-mixing layers
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n:
        raise InvalidArgumentError(
            f"layer {layer!r} is out of range: {lm.name} has {n} layers (0..{n - 1})"
        )
    return layer


def interaction_operators(
    lm_or_layer: object, inputs: object, layer: int | None = None
) -> Operators:
    """The effective ``W_ij(X)`` of one layer on the first sequence of ``inputs``.

    ``lm_or_layer``: a wrapped LM (attention or Mamba; ``layer`` required), a Hugging Face
    Mamba / Falcon-Mamba / Mamba-2 mixer module (``inputs``: its input ``[T, d]``), or a
    :class:`LinearSSM` (``inputs``: the sequence length, or a ``[T, d_in]`` input).
    """
    if isinstance(lm_or_layer, LinearSSM):
        length = inputs if isinstance(inputs, int) else getattr(inputs, "shape", [None])[0]
        if not isinstance(length, int) or length < 1:
            raise InvalidArgumentError("inputs must be a length or a [T, d_in] tensor for an SSM")
        return LTIOperators(lm_or_layer, length)
    if isinstance(lm_or_layer, torch.nn.Module) and hasattr(lm_or_layer, "A_log"):
        return _mixer_operators(lm_or_layer, inputs)
    if not hasattr(lm_or_layer, "run"):
        raise InputTypeError(
            f"interaction_operators takes a wrapped model (interp.load_model) or a LinearSSM, got "
            f"{type(lm_or_layer).__name__}"
        )
    lm = lm_or_layer
    mixer_kind(lm)
    layer = check_layer(lm, layer)
    kind = mixer_kind(lm, layer)
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 2:
        inputs = inputs[:1]
    prefix = f"blocks.{layer}."
    if kind == "attention":
        _, cache = lm.run(inputs, capture=prefix + "attn.hook_pattern")
        pattern = cache[prefix + "attn.hook_pattern"][0]
        if hasattr(lm, "attention_ov"):  # a hybrid: per-layer weights
            W_V, W_O = lm.attention_ov(layer)
        else:
            W_V, W_O = lm.W_V[layer], lm.W_O[layer]
        return AttentionOperators(pattern, W_V, W_O, layer)
    names = [prefix + f"mixer.hook_{k}" for k in ("delta", "B", "C")]
    _, cache = lm.run(inputs, capture=names)
    delta, B, C = (cache[n][0] for n in names)
    heads = getattr(lm, "n_ssm_heads", 0) or None
    return _selective(delta, B, C, lm.ssm_parameters(layer), layer, heads)


def _selective(delta, B, C, fixed: dict, layer: int | None, heads: int | None):
    """Per-channel operators from a mixer's per-token ``delta``, ``B``, ``C`` (one sequence)."""
    channels, states = fixed["A"].shape
    if delta.shape[-1] != channels:  # Mamba-2: one step per head, B/C per group of heads
        delta = delta.repeat_interleave(channels // delta.shape[-1], dim=-1)
        per_group = channels // B.shape[1]
        B, C = (m.repeat_interleave(per_group, dim=1) for m in (B, C))
    else:
        B, C = (m[:, None, :].expand(-1, channels, states) for m in (B, C))
    return SelectiveOperators(delta, fixed["A"], B, C, fixed["D"], layer, heads=heads)


def _mixer_operators(mixer: torch.nn.Module, hidden: object) -> SelectiveOperators:
    """A Hugging Face Mamba / Falcon-Mamba / Mamba-2 mixer module on its input ``hidden``."""
    from interp.models.ssm_sites import fixed_parameters, mixer_hooks, variant_of

    if not isinstance(hidden, torch.Tensor) or hidden.dim() not in (2, 3):
        raise InvalidArgumentError("a mixer module takes its input hidden [T, d] or [1, T, d]")
    hidden = hidden if hidden.dim() == 3 else hidden[None]
    variant = variant_of(mixer)
    with torch.no_grad():
        hooks = mixer_hooks(mixer, hidden[:1], None, variant, {"hook_delta", "hook_B", "hook_C"})
    heads = mixer.num_heads if variant == "mamba2" else None
    return _selective(
        *(hooks[f"hook_{k}"][0] for k in ("delta", "B", "C")),
        fixed_parameters(mixer),
        getattr(mixer, "layer_idx", None),
        heads,
    )


@dataclass
class MixerAnalysis(Result):
    """Per layer: the interaction rank at ``rtol``, the full spectrum, the structural bound and
    the gradient-path profile (mean ``||dy_i/dx_j||`` at distance ``d``) with its decay ``rho``."""

    layers: list[int]
    kinds: list[str]
    ranks: list[int]
    bounds: list[int]
    spectra: dict[str, torch.Tensor]
    profiles: dict[str, torch.Tensor]
    rhos: list[float]
    rtol: float
    settings: dict = field(default_factory=dict)

    def table(self) -> str:
        lines = [f"layer  kind        rank  bound  rho    (rank at rtol {self.rtol:g})"]
        for i, layer in enumerate(self.layers):
            lines.append(
                f"{layer:<6d} {self.kinds[i]:<10s} {self.ranks[i]:>5d} {self.bounds[i]:>6d}  "
                f"{self.rhos[i]:.3g}"
            )
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        return spectrum_figure(
            {
                f"layer {k} ({self.kinds[self.layers.index(int(k))]})": v
                for k, v in self.spectra.items()
            },
            self.rtol,
        )

    def paths_figure(self) -> go.Figure:
        return paths_figure({f"layer {k}": v for k, v in self.profiles.items()})


def analyze_mixers(
    lm: object,
    inputs: object,
    layers: Sequence[int] | None = None,
    *,
    rtol: float = DEFAULT_RTOL,
    paths: bool = True,
) -> MixerAnalysis:
    """Interaction rank, spectrum and (``paths=True``) gradient paths of each layer in ``layers``
    (default: all) of a wrapped LM, on the first sequence of ``inputs``."""
    mixer_kind(lm)
    layers = list(range(lm.n_layers)) if layers is None else [check_layer(lm, i) for i in layers]
    ranks, bounds, rhos, spectra, profiles = [], [], [], {}, {}
    for layer in layers:
        result = interaction_rank(interaction_operators(lm, inputs, layer), rtol)
        ranks.append(result.rank)
        bounds.append(result.bound)
        spectra[str(layer)] = result.singular_values
        if paths:
            gradient = layer_gradient_paths(lm, inputs, layer)
            profiles[str(layer)] = gradient.profile
            rhos.append(gradient.rho)
        else:
            rhos.append(float("nan"))
    return MixerAnalysis(
        layers=layers,
        kinds=[mixer_kind(lm, layer) for layer in layers],
        ranks=ranks,
        bounds=bounds,
        spectra=spectra,
        profiles=profiles,
        rhos=rhos,
        rtol=rtol,
        settings={"model": lm.name},
    )
