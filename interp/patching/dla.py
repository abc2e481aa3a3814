"""Direct logit attribution (DLA): how much each head, MLP, embedding and bias writes directly
onto an answer's logit (or a logit difference), through the final norm and the unembedding.

Definitions. The last residual ``x = blocks.{L-1}.hook_resid_post`` is a sum of what every part
wrote: the token embedding (and learned position embedding), per layer each head's output
``A_l(z_h) - A_l(0)`` (``A_l = lm.attn_output``: ``W_O``, output norm, residual multiplier, on
``z`` with every other head zeroed), the attention bias ``A_l(0)`` (``b_O``) and the MLP's output
``hook_mlp_out`` (its own biases included). The final norm is ``n(x) = g * P x / s(x) + b`` (``P``
subtracts the mean for LayerNorm and is the identity for RMSNorm; ``s`` is the per-position scale,
root mean square plus epsilon, computed from the *full* residual). ``s`` is not linear in
``x``, so DLA freezes it at the value of the run: each component ``c`` contributes
``(g * P c / s(x)) . u`` with ``u = W_U[:, answer] - W_U[:, wrong]`` (or ``W_U[:, answer]``), and
the norm's bias and the unembedding bias give ``(b . u) + b_U[answer] - b_U[wrong]``. Because the
scale is frozen at the run's own residual, the components sum *exactly* (to float roundoff) to the
norm-frozen logit difference, which is the unembedding's logit difference of the run itself.

Logit multipliers and final softcaps. The decomposed quantity is the unembedding's output
``n(x) @ W_U + b_U``, before the family's logit multiplier and final softcap. Granite
(``1 / logits_scaling``) and Cohere (``logit_scale``) multiply every logit by a constant ``m``:
the model's logit difference is ``m`` times the total and every component scales by the same
``m`` (ranking and signs unchanged). Gemma-2/3 apply ``c * tanh(logit / c)``, which is
nonlinear: the components decompose the pre-softcap logit difference. ``logit_diff`` records the
model's own (post-multiplier, post-softcap) difference beside ``total`` for comparison.

Families with an attention output norm (Gemma-2/3 sandwich norms, OLMo-2) make ``A_l``
nonlinear: per-head terms are then each head's output normalized alone, and a per-layer
``attn rest`` term (``hook_attn_out`` minus the heads and bias; zero where ``A_l`` is affine)
keeps the sum exact. A final ``rest`` term (the residual minus every hooked part; zero to
roundoff) shows nothing was missed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
import torch

from interp import __version__
from interp.errors import InvalidArgumentError
from interp.models.protocol import Inputs, check_language_model
from interp.patching.answers import Token, chosen_positions, gather_positions, token_ids
from interp.results import Result
from interp.viz import heatmap

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel

KINDS = ("embed", "pos_embed", "head", "attn_bias", "attn_rest", "mlp", "bias", "rest")


@dataclasses.dataclass
class DLAResult(Result):
    """Direct logit attribution.

    Fields: ``labels`` / ``kinds`` / ``layers`` / ``heads`` describe each component (kind in
    :data:`KINDS`; layer and head -1 where they do not apply); ``values [components, batch, P]``
    their contributions at the chosen ``positions [batch, P]``; ``total [batch, P]`` the
    norm-frozen, pre-multiplier logit difference they sum to; ``logit_diff [batch, P]`` the
    model's own logit difference (after its logit multiplier / softcap); ``tokens`` the input's
    string tokens (first row), ``answer`` / ``wrong`` the token ids per row (wrong -1: none).
    """

    labels: list[str]
    kinds: list[str]
    layers: list[int]
    heads: list[int]
    values: torch.Tensor
    total: torch.Tensor
    logit_diff: torch.Tensor
    positions: torch.Tensor
    answer: list[int]
    wrong: list[int]
    tokens: list[str] = dataclasses.field(default_factory=list)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: str = ""

    def _mean(self, position: int = -1) -> torch.Tensor:
        return self.values[:, :, position].mean(1)

    def head_map(self, position: int = -1) -> torch.Tensor:
        """Per-head contributions ``[layers, heads]`` at one chosen position, batch mean."""
        n_layers = max(self.layers) + 1
        n_heads = max(self.heads) + 1
        out = torch.zeros(n_layers, n_heads)
        mean = self._mean(position)
        for i, kind in enumerate(self.kinds):
            if kind == "head":
                out[self.layers[i], self.heads[i]] = mean[i]
        return out

    def layer_map(self, position: int = -1) -> torch.Tensor:
        """Per-layer ``[layers, 2]`` (attention incl. bias and rest, MLP) at one position."""
        out = torch.zeros(max(self.layers) + 1, 2)
        mean = self._mean(position)
        for i, kind in enumerate(self.kinds):
            if kind in ("head", "attn_bias", "attn_rest"):
                out[self.layers[i], 0] += mean[i]
            elif kind == "mlp":
                out[self.layers[i], 1] += mean[i]
        return out

    def table(self, k: int = 12) -> str:
        mean = self._mean()
        order = mean.abs().argsort(descending=True)[:k].tolist()
        what = "logit" if all(w < 0 for w in self.wrong) else "logit difference"
        lines = [
            f"direct logit attribution — {self.model or 'model'} ({what}, batch mean, last "
            "chosen position)",
            f"total (norm-frozen, pre-multiplier) {float(self.total[:, -1].mean()):+.4f}   "
            f"model's own {float(self.logit_diff[:, -1].mean()):+.4f}",
            f"{'component':<18}{'contribution':>14}",
        ]
        lines += [f"{self.labels[i]:<18}{float(mean[i]):>+14.4f}" for i in order]
        return "\n".join(lines)

    def figure(self, kind: str = "heads") -> go.Figure:
        """``"heads"``: layer x head heatmap; ``"layers"``: layer x (attention, MLP)."""
        if kind not in ("heads", "layers"):
            raise InvalidArgumentError(f"kind must be 'heads' or 'layers', got {kind!r}")
        values = self.head_map() if kind == "heads" else self.layer_map()
        limit = float(values.abs().max()) or 1.0
        return heatmap(
            values,
            title=f"direct logit attribution per {kind[:-1]} — {self.model}",
            x_label="head" if kind == "heads" else "sublayer",
            y_label="layer",
            x_ticks=None if kind == "heads" else ["attention", "MLP"],
            colorscale="RdBu",
            hover="contribution",
            zmin=-limit,
            zmax=limit,
        )


def final_norm_parts(
    lm: LanguageModel, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, bool, torch.Tensor]:
    """The final norm at ``x [..., d]`` as ``(g, b, centers, s)``: ``n(x) = g * P x / s + b``.

    Read through the protocol: ``b = n(0)``; LayerNorm maps a constant vector to ``b`` (it
    subtracts the mean), RMSNorm does not; ``s = |g * P x| / |n(x) - b|`` per position.
    """
    d = lm.d_model
    zero = torch.zeros(1, d, device=lm.device, dtype=lm.dtype)
    b = lm.norm(None, "final", zero)[0].double()
    g = lm.norm_weights()["ln_final"].double().to(b.device)
    ones = lm.norm(None, "final", zero + 1)[0].double()
    centers = bool((ones - b).abs().max() <= 1e-4 * max(float(g.abs().max()), 1e-12))
    normed = lm.norm(None, "final", x.to(lm.dtype)).double()
    px = _center(x.double(), centers)
    s = (g * px).norm(dim=-1) / (normed - b).norm(dim=-1).clamp_min(1e-30)
    return g, b, centers, s


def _center(x: torch.Tensor, centers: bool) -> torch.Tensor:
    return x - x.mean(-1, keepdim=True) if centers else x


def _capture_names(lm) -> list[str]:
    names = [
        "hook_embed",
        "blocks.*.attn.hook_z",
        "blocks.*.hook_attn_out",
        "blocks.*.hook_mlp_out",
    ]
    if "hook_pos_embed" in lm.hook_names:
        names.append("hook_pos_embed")
    return [*names, f"blocks.{lm.n_layers - 1}.hook_resid_post"]


def _components(lm: LanguageModel, cache, positions: torch.Tensor):
    """``(labels, kinds, layers, heads, stacked [components, batch, P, d])`` of the residual."""
    at = lambda name: gather_positions(cache[name], positions).double()  # noqa: E731
    parts = [("embed", "embed", -1, -1, at("hook_embed"))]
    if "hook_pos_embed" in cache:
        parts.append(("pos_embed", "pos_embed", -1, -1, at("hook_pos_embed")))
    eye = torch.eye(lm.n_heads, device=lm.device, dtype=lm.dtype)
    for layer in range(lm.n_layers):
        z = gather_positions(cache[f"blocks.{layer}.attn.hook_z"], positions)
        alone = z[..., None, :, :] * eye[:, :, None].to(z.device)  # [b, P, head kept, H, dh]
        base = lm.attn_output(layer, torch.zeros_like(z[:1, :1])).double()[0, 0]
        per_head = lm.attn_output(layer, alone).double() - base
        attn = at(f"blocks.{layer}.hook_attn_out")
        for head in range(lm.n_heads):
            parts.append((f"L{layer}H{head}", "head", layer, head, per_head[..., head, :]))
        parts.append((f"L{layer} attn bias", "attn_bias", layer, -1, base.expand_as(attn)))
        rest = attn - per_head.sum(-2) - base
        parts.append((f"L{layer} attn rest", "attn_rest", layer, -1, rest))
        parts.append((f"L{layer} mlp", "mlp", layer, -1, at(f"blocks.{layer}.hook_mlp_out")))
    x = at(f"blocks.{lm.n_layers - 1}.hook_resid_post")
    rest = x - sum(p[-1] for p in parts)
    parts.append(("rest", "rest", -1, -1, rest))
    labels, kinds, layers, heads, values = zip(*parts, strict=True)
    return list(labels), list(kinds), list(layers), list(heads), torch.stack(values), x


def direct_logit_attribution(
    lm: LanguageModel,
    inputs: Inputs,
    answer: Token | Sequence[Token],
    wrong: Token | Sequence[Token] | None = None,
    *,
    positions: int | Sequence[int] | None = None,
    padding_side: str = "left",
) -> DLAResult:
    """DLA of ``answer``'s logit (minus ``wrong``'s when given) at ``positions`` (default: each
    input's last real token; ints count over the padded row). ``answer``/``wrong``: a token id or
    one-token text, or one per input. See the module docstring for the definitions and for
    families with logit multipliers, softcaps or attention output norms."""
    check_language_model(lm, "direct_logit_attribution")
    logits, cache = lm.run(inputs, capture=_capture_names(lm), padding_side=padding_side)
    batch, length = logits.shape[:2]
    good = token_ids(lm, answer, batch, "answer")
    bad = token_ids(lm, wrong, batch, "wrong") if wrong is not None else None
    where = chosen_positions(positions, cache.last_positions, length)
    labels, kinds, layers, heads, stacked, x = _components(lm, cache, where)
    g, b, centers, s = final_norm_parts(lm, x)
    W_U, b_U = lm.W_U.double(), lm.b_U.double()
    u = W_U[:, good.to(W_U.device)].T  # [batch, d]
    bias = b_U[good.to(W_U.device)]
    if bad is not None:
        u = u - W_U[:, bad.to(W_U.device)].T
        bias = bias - b_U[bad.to(W_U.device)]
    direction = (g * u)[:, None, :]  # [batch, 1, d]
    values = (_center(stacked, centers) * direction).sum(-1) / s  # [components, batch, P]
    unembed_bias = (b * u).sum(-1)[:, None] + bias[:, None]
    values = torch.cat([values, unembed_bias.expand(1, -1, where.shape[1])])
    labels, kinds = [*labels, "unembed bias"], [*kinds, "bias"]
    layers, heads = [*layers, -1], [*heads, -1]
    chosen = gather_positions(logits, where).double()
    own = chosen.gather(-1, good.to(chosen.device)[:, None, None].expand(-1, where.shape[1], 1))
    if bad is not None:
        own = own - chosen.gather(
            -1, bad.to(chosen.device)[:, None, None].expand(-1, where.shape[1], 1)
        )
    return DLAResult(
        labels=labels,
        kinds=kinds,
        layers=layers,
        heads=heads,
        values=values.float().cpu(),
        total=values.sum(0).float().cpu(),
        logit_diff=own[..., 0].float().cpu(),
        positions=where.cpu(),
        answer=good.tolist(),
        wrong=bad.tolist() if bad is not None else [-1] * batch,
        tokens=lm.to_str_tokens(inputs if isinstance(inputs, str) else inputs[0])
        if not isinstance(inputs, torch.Tensor)
        else [],
        settings={
            "final_norm": "LayerNorm (centering)" if centers else "RMSNorm",
            "scale": "frozen from the run",
            "decomposed": "unembedding logits before logit multiplier and final softcap",
            "padding_side": padding_side,
            "interp_version": __version__,
        },
        model=lm.name,
    )
