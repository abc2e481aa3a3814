"""Patching metrics: ``metric(logits, ctx) -> [rows]``, one value per row of a run.

A patched run stacks many variants of the same inputs along the batch axis, so a metric is told
which input example each row is (``ctx.examples``) and where each row's last real token is
(``ctx.at_last(logits)``). :func:`logit_diff` is the usual one: the logit of the right answer
minus the logit of the wrong one at the last real position (Wang et al. 2022's IOI metric).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from interp.errors import InputTypeError, InvalidArgumentError
from interp.patching.answers import Token, token_ids

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel


@dataclass(frozen=True)
class MetricContext:
    """What a metric is told about the rows of a run.

    ``examples [rows]``: the input example each row is a (patched) copy of; ``tokens [rows,
    pos]`` and ``attention_mask [rows, pos]`` (None without padding) of the rows;
    ``last_positions [rows]``: each row's last real position in the padded input.
    """

    examples: torch.Tensor
    tokens: torch.Tensor
    attention_mask: torch.Tensor | None
    last_positions: torch.Tensor

    def at_last(self, x: torch.Tensor) -> torch.Tensor:
        """``x [rows, pos', ...]`` at each row's last real position: ``[rows, ...]``. Works on
        logits of the final ``pos'`` positions only (``logits_to_keep``) as on full ones."""
        offset = self.tokens.shape[1] - x.shape[1]
        rows = torch.arange(x.shape[0], device=x.device)
        return x[rows, (self.last_positions - offset).to(x.device)]


Metric = Callable[[torch.Tensor, MetricContext], torch.Tensor]


def logit_diff(
    lm: LanguageModel, answer: Token | Sequence[Token], wrong: Token | Sequence[Token]
) -> Metric:
    """The metric ``logit[answer] - logit[wrong]`` at each input's last real token.

    ``answer`` / ``wrong``: a token id or one-token text (``" Mary"``), or one per input example.
    The metric reads only the last position, so patching asks the model for the last position's
    logits only (``metric.last_only``) when no input is right-padded.
    """
    answer_ids = _ids(lm, answer, "answer")
    wrong_ids = _ids(lm, wrong, "wrong answer")

    def metric(logits: torch.Tensor, ctx: MetricContext) -> torch.Tensor:
        last = ctx.at_last(logits)
        last = last if last.dtype == torch.float64 else last.float()
        n = int(ctx.examples.max()) + 1
        right = _per_example(answer_ids, n, "answer").to(last.device)[ctx.examples]
        other = _per_example(wrong_ids, n, "wrong answer").to(last.device)[ctx.examples]
        rows = torch.arange(last.shape[0], device=last.device)
        return last[rows, right] - last[rows, other]

    metric.__name__ = "logit_diff"
    metric.last_only = True  # type: ignore[attr-defined]
    return metric


def _ids(lm: LanguageModel, tokens: Token | Sequence[Token], what: str) -> torch.Tensor:
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.reshape(-1).tolist()
    if isinstance(tokens, int | str):
        return token_ids(lm, tokens, 1, what)
    items = list(tokens)
    return token_ids(lm, items, len(items), what)


def _per_example(ids: torch.Tensor, n: int, what: str) -> torch.Tensor:
    if len(ids) == 1:
        return ids.expand(n)
    if len(ids) != n:
        raise InvalidArgumentError(
            f"{what} has {len(ids)} tokens for {n} inputs; give one, or one per input"
        )
    return ids


def evaluate(metric: Metric, logits: torch.Tensor, ctx: MetricContext) -> torch.Tensor:
    """``metric(logits, ctx)`` checked to be a ``[rows]`` tensor; float32 (float64 kept)."""
    value = metric(logits, ctx)
    rows = ctx.examples.shape[0]
    if not isinstance(value, torch.Tensor) or value.shape != (rows,):
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise InvalidArgumentError(
            f"the metric must return one value per row, a tensor of shape ({rows},), got {got}; "
            "reduce over everything but the batch axis (e.g. ctx.at_last(logits)[:, id])"
        )
    return value if value.dtype == torch.float64 else value.float()


def check_metric(metric: object) -> Metric:
    if not callable(metric):
        raise InputTypeError(
            f"metric must be a function metric(logits, ctx) -> [batch], e.g. "
            f"interp.patching.logit_diff(lm, ' Mary', ' John'); got {type(metric).__name__}"
        )
    return metric  # type: ignore[return-value]


def metric_name(metric: Metric) -> str:
    return getattr(metric, "__name__", type(metric).__name__)
