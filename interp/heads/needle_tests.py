"""The needle tests behind retrieval heads: run the grid, score copy-paste attention per head.

Split from :mod:`interp.heads.retrieval` (which re-exports these names): this is the computation,
that module the result and its settings. See there for the procedure (Wu et al. 2024).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from interp.heads.decoding import greedy_decode, responses
from interp.heads.haystack import build_prompts
from interp.heads.needles import Needle, load_needles, rouge1_recall, synthetic_needle

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel


def copy_paste_scores(
    argmax: torch.Tensor,
    generated: torch.Tensor,
    active: torch.Tensor,
    prompts: torch.Tensor,
    spans: torch.Tensor,
) -> torch.Tensor:
    """Per-test, per-head copy-paste score ``[B, L, H]`` = copies / span length.

    ``argmax [S, L, B, H]`` top-1 key per step; ``generated [B, S]`` token produced at each step;
    ``active [S, B]``; ``prompts [B, T]``; ``spans [B, 2]`` half-open answer spans in the prompt.
    """
    steps, layers, batch, heads = argmax.shape
    start, end = spans[:, 0].view(1, 1, batch, 1), spans[:, 1].view(1, 1, batch, 1)
    in_span = (argmax >= start) & (argmax < end)
    key = argmax.clamp(0, prompts.shape[1] - 1)
    rows = torch.arange(batch).view(1, 1, batch, 1).expand_as(key)
    attended_token = prompts[rows, key]  # [S, L, B, H]
    made = generated.T.reshape(steps, 1, batch, 1)
    copies = in_span & (attended_token == made) & active.view(steps, 1, batch, 1)
    length = (spans[:, 1] - spans[:, 0]).double().view(batch, 1, 1)
    return copies.sum(0).permute(1, 0, 2).double() / length


def default_needles(
    model: LanguageModel, synthetic: bool, n_needles: int, seed: int
) -> list[Needle]:
    if synthetic:
        return [synthetic_needle(model.tokenizer, seed=seed + i) for i in range(n_needles)]
    needles = load_needles()
    if n_needles > len(needles):
        raise ValueError(
            f"{len(needles)} needles ship with interp; asked for n_needles={n_needles}"
        )
    return needles[:n_needles]


def run_needle_tests(
    model: LanguageModel,
    needles: list[Needle],
    lengths: list[int],
    depths: list[float],
    *,
    record_heads: bool = True,
    max_new_tokens: int = 50,
    suppress_steps: int = 3,
    text: str | None = None,
    chat: bool | None = None,
    progress: bool = True,
    desc: str = "needle tests",
) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Recall ``[N, nL, nD]``, head scores ``[N, nL, nD, L, H]`` (zeros unless ``record_heads``) and
    responses; all depths of one (needle, length) run as one batch (a progress bar counts tests)."""
    recall = torch.zeros(len(needles), len(lengths), len(depths), dtype=torch.float64)
    heads = torch.zeros(
        len(needles), len(lengths), len(depths), model.n_layers, model.n_heads, dtype=torch.float64
    )
    texts: list = []
    bar = tqdm(
        total=len(needles) * len(lengths) * len(depths),
        desc=desc,
        unit="test",
        disable=not progress,
    )
    with bar:
        for n, needle in enumerate(needles):
            grid = build_prompts(model, needle, lengths, depths, text=text, chat=chat)
            texts.append([])
            for i, row in enumerate(grid):
                bar.set_postfix(needle=n + 1, length=lengths[i])
                prompts = torch.stack([p.tokens for p in row])
                trace = greedy_decode(
                    model,
                    prompts,
                    max_new_tokens=max_new_tokens,
                    suppress_steps=suppress_steps,
                    record_argmax=record_heads,
                )
                answers = responses(model, trace)
                texts[-1].append(answers)
                recall[n, i] = torch.tensor(
                    [rouge1_recall(needle.answer, a) for a in answers], dtype=torch.float64
                )
                if record_heads:
                    spans = torch.tensor([p.span for p in row], dtype=torch.long)
                    heads[n, i] = copy_paste_scores(
                        trace.argmax, trace.generated, trace.active, prompts, spans
                    )
                bar.update(len(row))
    return recall, heads, texts
