"""Splicing a module into a run at a hook point: an autoencoder (encode/decode) or a probe.

Definitions, for an activation ``x`` at ``hook``:

- an autoencoder (any object with ``encode`` and ``decode``, e.g. an SAE) gives features
  ``f = encode(x)`` and the reconstruction ``r = decode(f)``; the error is ``e = x - r``. With
  ``add_error=False`` the rest of the model sees ``decode(f')``; with ``add_error=True`` it sees
  ``x + decode(f') - decode(f)`` — ``x`` itself when the features are not edited (``f' = f``),
  so the run is exactly the clean one and edits of features act on top of the error (the
  "error term" of SAE circuit work). ``f' = feature_edit(f, ctx)`` (default: unchanged).
- a probe (a callable without ``decode``) reads ``x``; its outputs are recorded as the features
  and the activation is left as it was.

:func:`splice_module` runs ``inputs`` clean and spliced and reports the features, the reconstruction
error per position and the next-token loss of both runs; :func:`splice_edits` gives the
``edits`` mapping for your own ``lm.run`` / ``lm.generate`` calls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
import torch

from interp import __version__
from interp.errors import InputTypeError, InvalidArgumentError
from interp.models.protocol import Inputs, check_language_model
from interp.results import Result
from interp.viz import heatmap

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel

FeatureEdit = Callable[[torch.Tensor, Any], torch.Tensor]


@dataclasses.dataclass
class SpliceResult(Result):
    """A spliced run.

    Fields: ``features [batch, pos, n_features]`` (encode outputs, or the probe's); ``error_norm
    [batch, pos]`` ``|x - decode(encode(x))|`` (zeros for a probe) and ``relative_error`` (over
    ``|x|``); ``loss_clean`` / ``loss_spliced`` the mean next-token cross-entropy over real
    tokens; ``kl`` the mean KL(clean || spliced) of the next-token distributions;
    ``mask [batch, pos]`` the real tokens.
    """

    hook: str
    features: torch.Tensor
    error_norm: torch.Tensor
    relative_error: torch.Tensor
    mask: torch.Tensor
    loss_clean: float
    loss_spliced: float
    kl: float
    add_error: bool
    kind: str = "autoencoder"
    tokens: list[str] = dataclasses.field(default_factory=list)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: str = ""

    def table(self) -> str:
        real = self.mask.bool()
        active = (self.features[real] > 0).float().sum(-1).mean() if real.any() else 0.0
        return "\n".join(
            [
                f"splice — {self.model or 'model'} at {self.hook} ({self.kind}, error added back: "
                f"{self.add_error})",
                f"features {self.features.shape[-1]}, mean active per token {float(active):.1f}",
                f"relative reconstruction error {float(self.relative_error[real].mean()):.4f}",
                f"next-token loss clean {self.loss_clean:.4f}  spliced {self.loss_spliced:.4f}  "
                f"KL(clean||spliced) {self.kl:.5f}",
            ]
        )

    def figure(self, k: int = 32) -> go.Figure:
        """The first input's ``k`` most active features by position."""
        values = self.features[0]
        top = values.abs().amax(0).argsort(descending=True)[:k]
        return heatmap(
            values[:, top].T,
            title=f"spliced features at {self.hook} — {self.model}",
            x_label="position",
            y_label="feature",
            x_ticks=[f"{i}:{t}" for i, t in enumerate(self.tokens)] or None,
            y_ticks=[str(int(i)) for i in top],
            hover="activation",
        )


def _kind(module: object) -> str:
    if hasattr(module, "encode") and hasattr(module, "decode"):
        return "autoencoder"
    if callable(module):
        return "probe"
    raise InputTypeError(
        "splice takes an autoencoder (encode/decode methods) or a probe (a callable), got "
        f"{type(module).__name__}"
    )


def splice_edits(
    hook: str,
    module: object,
    *,
    add_error: bool = True,
    feature_edit: FeatureEdit | None = None,
    store: dict | None = None,
) -> dict:
    """``{hook: edit}`` splicing ``module`` (see the module docstring); the features of the last
    run go to ``store["features"]`` and ``store["error"]`` when a dict is given."""
    kind = _kind(module)

    def edit(x: torch.Tensor, ctx) -> torch.Tensor:
        flat = x.to(_dtype(module, x))
        features = module.encode(flat) if kind == "autoencoder" else module(flat)
        if store is not None:
            store["features"] = features
        if kind == "probe":
            return x
        recon = module.decode(features)
        if store is not None:
            store["error"] = flat - recon
        edited = feature_edit(features, ctx) if feature_edit is not None else features
        if add_error:
            if edited is features:
                return x
            return x + (module.decode(edited) - recon).to(x.dtype)
        return (recon if edited is features else module.decode(edited)).to(x.dtype)

    return {hook: edit}


def _dtype(module: object, x: torch.Tensor) -> torch.dtype:
    parameters = getattr(module, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    return first.dtype if first is not None else x.dtype


def _next_token_stats(clean: torch.Tensor, spliced: torch.Tensor, tokens, mask) -> tuple:
    """Mean next-token loss of both runs and KL(clean || spliced) over real positions."""
    targets = tokens[:, 1:].to(clean.device)
    keep = (mask[:, 1:] * mask[:, :-1]).bool().to(clean.device)
    logp_c = clean[:, :-1].double().log_softmax(-1)
    logp_s = spliced[:, :-1].double().log_softmax(-1)
    loss_c = -logp_c.gather(-1, targets[..., None])[..., 0][keep].mean()
    loss_s = -logp_s.gather(-1, targets[..., None])[..., 0][keep].mean()
    kl = (logp_c.exp() * (logp_c - logp_s)).sum(-1)[keep].mean()
    return float(loss_c), float(loss_s), float(kl)


def splice_module(
    lm: LanguageModel,
    inputs: Inputs,
    hook: str,
    module: object,
    *,
    add_error: bool = False,
    feature_edit: FeatureEdit | None = None,
) -> SpliceResult:
    """Run ``inputs`` clean and with ``module`` spliced at ``hook`` (see the module docstring)."""
    check_language_model(lm, "splice_module")
    if hook not in lm.hook_names:
        raise InvalidArgumentError(f"{hook!r} is not a hook of {lm.name}")
    kind = _kind(module)
    tokens = inputs if isinstance(inputs, torch.Tensor) else lm.to_tokens(inputs)
    clean, cache = lm.run(inputs, capture=hook)
    store: dict = {}
    edits = splice_edits(hook, module, add_error=add_error, feature_edit=feature_edit, store=store)
    spliced, _ = lm.run(inputs, edits=edits)
    x = cache[hook].double()
    mask = cache.attention_mask
    mask = torch.ones(tokens.shape, dtype=torch.long) if mask is None else mask.cpu()
    error = store["error"].double() if "error" in store else torch.zeros_like(x)
    norm = error.norm(dim=-1).cpu()
    loss_c, loss_s, kl = _next_token_stats(clean, spliced, tokens, mask)
    return SpliceResult(
        hook=hook,
        features=store["features"].detach().float().cpu(),
        error_norm=norm.float(),
        relative_error=(norm / x.norm(dim=-1).cpu().clamp_min(1e-30)).float(),
        mask=mask,
        loss_clean=loss_c,
        loss_spliced=loss_s,
        kl=kl,
        add_error=add_error,
        kind=kind,
        tokens=lm.to_str_tokens(inputs if isinstance(inputs, str) else tokens[0]),
        settings={
            "feature_edit": feature_edit is not None,
            "module": type(module).__name__,
            "interp_version": __version__,
        },
        model=lm.name,
    )
