"""In-context-learning score (Olsson et al. 2022): loss late in a context minus loss early on.

``score = mean loss at token 500 - mean loss at token 50`` over 512-token contexts. Loss at token
``t`` is ``-log p(x_t | x_<t)`` with positions counted in the window as fed to the model (BOS at
0). After the induction-head phase change the score is about -0.4 nats at every model size.

Default texts: consecutive, non-overlapping windows of the shipped offline corpus
(:mod:`interp.heads.corpus`, prose paragraphs of the Python Language Reference), tokenized with
the model's own tokenizer; ``texts=`` replaces them (each must be at least ``late + 1`` tokens).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
import torch

from interp import __version__
from interp.heads.checks import check_model
from interp.heads.corpus import load_corpus
from interp.results import Result
from interp.viz import line_chart

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel


@dataclasses.dataclass
class InContextLearning(Result):
    """Per-position mean loss over the windows and the score ``loss[late] - loss[early]``."""

    loss: torch.Tensor  # [positions] mean loss at token t (index 0 = token 1)
    per_window: torch.Tensor  # [windows, positions]
    score: float
    early: int
    late: int
    band_score: float = float("nan")
    band: int = 0
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: str = ""

    def table(self) -> str:
        def at(t: int) -> float:
            return float(self.loss[t - 1])

        diff = self.per_window[:, self.late - 1] - self.per_window[:, self.early - 1]
        n = diff.numel()
        error = float(diff.double().std() / n**0.5) if n > 1 else float("nan")
        return "\n".join(
            [
                f"in-context learning — {self.model or 'model'} ({n} windows)",
                f"loss at token {self.early}: {at(self.early):.3f} nats",
                f"loss at token {self.late}: {at(self.late):.3f} nats",
                f"score (late - early): {self.score:+.3f} nats, standard error {error:.3f} "
                "(Olsson et al.: about -0.4 after induction heads form)",
                f"less noisy variant, tokens {self.late}±{self.band} minus {self.early}±{self.band}: "
                f"{self.band_score:+.3f} nats",
            ]
        )

    def figure(self) -> go.Figure:
        positions = list(range(1, self.loss.numel() + 1))
        fig = line_chart(
            {"mean loss": self.loss},
            x=positions,
            title=f"loss by token position — ICL score {self.score:+.3f}",
            x_label="token index",
            y_label="loss (nats)",
        )
        fig.update_xaxes(type="log")
        return fig


def corpus_windows(
    model: LanguageModel, *, context: int = 512, n_windows: int = 8, text: str | None = None
) -> torch.Tensor:
    """``[n_windows, context]`` token ids: BOS + consecutive slices of the corpus."""
    ids = model.tokenizer.encode(
        text if text is not None else load_corpus(), add_special_tokens=False
    )
    body = context - 1
    available = len(ids) // body
    if available < n_windows:
        raise ValueError(
            f"the text gives {available} windows of {context} tokens; asked for n_windows={n_windows}"
        )
    windows = torch.tensor(ids[: n_windows * body], dtype=torch.long).view(n_windows, body)
    bos = model.bos_token_id
    if bos is None:
        raise ValueError(
            f"{model.name} has no BOS token; pass texts= already holding full contexts"
        )
    return torch.cat([torch.full((n_windows, 1), bos, dtype=torch.long), windows], dim=1)


def in_context_learning_score(
    model: LanguageModel,
    texts: list[str] | None = None,
    *,
    context: int = 512,
    early: int = 50,
    late: int = 500,
    n_windows: int = 8,
    batch_size: int = 2,
    band: int = 10,
) -> InContextLearning:
    """Mean loss at token ``late`` minus mean loss at token ``early`` (negative = in-context learning).

    ``texts=None`` uses ``n_windows`` windows of the shipped corpus; otherwise each text is
    tokenized (BOS prepended) and truncated to ``context`` tokens. Batches of ``batch_size`` bound
    the ``[batch, context, vocab]`` logits in memory. With few windows the single-token score is
    noisy; ``band_score`` averages tokens ``late ± band`` minus ``early ± band`` as well.
    """
    check_model(model, "in_context_learning_score")
    if not 1 <= early < late < context:
        raise ValueError(
            f"need 1 <= early < late < context, got early={early}, late={late}, context={context}"
        )
    if not 0 <= band < early or late + band > context - 1:
        raise ValueError(
            f"band must satisfy 0 <= band < early and late + band <= context - 1, got {band}"
        )
    model.check_length(context)
    if texts is None:
        tokens = corpus_windows(model, context=context, n_windows=n_windows)
    else:
        if isinstance(texts, str) or not texts:
            raise TypeError("texts must be a non-empty list of strings")
        rows = [model.to_tokens(t)[0, :context] for t in texts]
        short = [i for i, r in enumerate(rows) if len(r) <= late]
        if short:
            raise ValueError(
                f"texts {short} have at most {late} tokens; each needs more than late={late}"
            )
        width = min(len(r) for r in rows)
        tokens = torch.stack([r[:width] for r in rows])
    losses = []
    for chunk in tokens.split(batch_size):
        logits = model(chunk, prepend_bos=False)
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2).float(), chunk[:, 1:].to(logits.device), reduction="none"
        )
        losses.append(loss.double().cpu())
    per_window = torch.cat(losses)
    mean = per_window.mean(0)
    return InContextLearning(
        loss=mean.float(),
        per_window=per_window.float(),
        score=float(mean[late - 1] - mean[early - 1]),
        early=early,
        late=late,
        band_score=float(
            mean[late - 1 - band : late + band].mean()
            - mean[early - 1 - band : early + band].mean()
        ),
        band=band,
        settings={
            "context": int(tokens.shape[1]),
            "windows": int(tokens.shape[0]),
            "texts": "shipped corpus (Python Language Reference prose)"
            if texts is None
            else "user texts",
            "interp_version": __version__,
        },
        model=model.name,
    )
