"""The logit lens: every layer's residual stream read out as if it were the last.

Definition. Row 0 is the embedding (``blocks.0.hook_resid_pre``), row ``l + 1`` is
``blocks.{l}.hook_resid_post``; each goes through ``lm.unembed`` (the final norm, the
unembedding, the family's logit multiplier and final softcap), then a softmax over the
vocabulary. The last row is therefore the model's own output distribution. For each row and
position the result keeps the top-``k`` tokens with their probabilities and logits, and the
probability of any chosen ``targets``; the full ``[layers, positions, vocab]`` tensor is never
kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
import torch

from interp import __version__
from interp.errors import InputTypeError
from interp.models.protocol import check_language_model
from interp.patching.answers import Token, token_id
from interp.results import Result

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel


@dataclasses.dataclass
class LogitLens(Result):
    """Logit lens of one text.

    Fields: ``rows`` names each row (``embed``, ``L0``, ...), ``tokens`` the string tokens;
    ``top_ids`` / ``top_probs`` / ``top_logits`` ``[rows, positions, k]``; ``target_ids`` and
    ``target_probs [rows, positions, targets]`` (empty without targets); ``top_strings``
    ``[rows][positions]`` the decoded top-1 tokens.
    """

    rows: list[str]
    tokens: list[str]
    top_ids: torch.Tensor
    top_probs: torch.Tensor
    top_logits: torch.Tensor
    target_ids: list[int]
    target_probs: torch.Tensor
    top_strings: list[list[str]]
    target_strings: list[str] = dataclasses.field(default_factory=list)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: str = ""

    def table(self, position: int = -1) -> str:
        token = self.tokens[position] if self.tokens else str(position)
        lines = [
            f"logit lens — {self.model or 'model'}, position {position} ({token!r})",
            f"{'layer':<8}{'top token':<18}{'prob':>8}"
            + "".join(f"{'p(' + t.strip() + ')':>14}" for t in self.target_strings),
        ]
        for i, row in enumerate(self.rows):
            top = self.top_strings[i][position]
            line = f"{row:<8}{top!r:<18}{float(self.top_probs[i, position, 0]):>8.3f}"
            line += "".join(f"{float(p):>14.4f}" for p in self.target_probs[i, position])
            lines.append(line)
        return "\n".join(lines)

    def figure(self, target: int | None = None) -> go.Figure:
        """Layer x position heatmap: the top-1 probability, labelled with the top token, or the
        probability of target number ``target``."""
        if target is None:
            z, what = self.top_probs[..., 0], "top-1 probability"
        else:
            z, what = self.target_probs[..., target], f"p({self.target_strings[target]!r})"
        ticks = [f"{i}:{t}" for i, t in enumerate(self.tokens)]
        fig = go.Figure(
            go.Heatmap(
                z=z.numpy(),
                x=ticks,
                y=self.rows,
                text=self.top_strings,
                texttemplate="%{text}",
                colorscale="Blues",
                zmin=0,
                zmax=1,
                hovertemplate="layer %{y}<br>position %{x}<br>top %{text}<br>"
                + what
                + " %{z:.3f}<extra></extra>",
            )
        )
        fig.update_layout(
            title=f"logit lens ({what}) — {self.model}",
            xaxis_title="position",
            yaxis_title="layer",
            yaxis={"autorange": "reversed", "type": "category"},
            xaxis={"type": "category"},
            template="plotly_white",
            # a readable row per layer: the cells carry their top token as text
            height=max(450, 22 * len(fig.data[0].y) + 200),
        )
        return fig


def lens_logits(lm: LanguageModel, residual: torch.Tensor) -> torch.Tensor:
    """``lm.unembed`` of residuals ``[..., d_model]``: the lens logits ``[..., d_vocab]``."""
    return lm.unembed(residual)


def logit_lens(
    lm: LanguageModel, text: str | torch.Tensor, targets: Sequence[Token] = (), *, k: int = 5
) -> LogitLens:
    """The logit lens of ``text`` (one text or ``[1, pos]`` token ids; see the module
    docstring): top-``k`` tokens per layer and position and the probability of ``targets``."""
    check_language_model(lm, "logit_lens")
    if isinstance(text, torch.Tensor):
        if text.dim() != 2 or text.shape[0] != 1:
            raise InputTypeError(
                f"logit_lens takes one text or [1, pos] ids, got {tuple(text.shape)}"
            )
    elif not isinstance(text, str):
        raise InputTypeError(f"logit_lens takes one text, got {type(text).__name__}")
    targets = [
        token_id(lm, t, "target")
        for t in ([targets] if isinstance(targets, str | int) else targets)
    ]
    names = ["blocks.0.hook_resid_pre", "blocks.*.hook_resid_post"]
    _, cache = lm.run(text, capture=names)
    residuals = [cache["blocks.0.hook_resid_pre"][0]]
    residuals += [cache[f"blocks.{layer}.hook_resid_post"][0] for layer in range(lm.n_layers)]
    tops, probs_of, logits_of = [], [], []
    index = torch.tensor(targets, dtype=torch.long)
    for residual in residuals:  # one layer at a time: [pos, vocab] is the largest tensor held
        logits = lens_logits(lm, residual).float()
        probs = logits.softmax(-1)
        top = probs.topk(min(k, lm.d_vocab), dim=-1)
        tops.append((top.indices.cpu(), top.values.cpu()))
        logits_of.append(logits.gather(-1, top.indices).cpu())
        probs_of.append(probs[:, index.to(probs.device)].cpu())
    top_ids = torch.stack([t[0] for t in tops])
    strings = [[lm.tokenizer.decode([int(i)]) for i in row[:, 0]] for row in top_ids]
    return LogitLens(
        rows=["embed", *(f"L{layer}" for layer in range(lm.n_layers))],
        tokens=lm.to_str_tokens(text),
        top_ids=top_ids,
        top_probs=torch.stack([t[1] for t in tops]),
        top_logits=torch.stack(logits_of),
        target_ids=targets,
        target_probs=torch.stack(probs_of),
        top_strings=strings,
        target_strings=[lm.tokenizer.decode([t]) for t in targets],
        settings={"k": k, "readout": "lm.unembed (final norm, unembedding, multiplier, softcap)"}
        | {"interp_version": __version__},
        model=lm.name,
    )
