"""Head masking (Wu et al. 2024's causal test) of retrieval heads.

:func:`masking_experiment` compares needle accuracy with the top-K retrieval heads masked against
K random non-retrieval heads masked. Masking is ``HookedLM.ablate_heads(heads, "uniform")``: the
head's query is zeroed, so it attends uniformly (see :mod:`interp.models.interventions`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
import torch

from interp import __version__
from interp.heads.checks import check_model
from interp.heads.defaults import DEFAULT_DEPTHS, N_NEEDLES
from interp.heads.retrieval import SUCCESS_RECALL, default_needles, run_needle_tests
from interp.heads.scores import HeadScores
from interp.results import Result

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel


@dataclasses.dataclass
class MaskingResult(Result):
    """Needle recall ``[conditions, N, nL, nD]`` under each masking condition."""

    conditions: list[str]
    masked: list
    recall: torch.Tensor
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: str = ""

    def accuracy(self) -> torch.Tensor:
        """Fraction of tests retrieved (recall > 0.5) per condition."""
        return (self.recall > SUCCESS_RECALL).float().flatten(1).mean(1)

    def table(self) -> str:
        lines = [
            f"masking experiment — {self.model or 'model'}",
            f"{'condition':<28}{'retrieved':>10}{'mean recall':>13}  heads",
        ]
        for i, name in enumerate(self.conditions):
            heads = ", ".join(f"L{layer}H{head}" for layer, head in self.masked[i]) or "-"
            lines.append(
                f"{name:<28}{float(self.accuracy()[i]):>10.2f}{float(self.recall[i].mean()):>13.3f}  {heads}"
            )
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        fig = go.Figure(go.Bar(x=self.conditions, y=self.accuracy().numpy()))
        fig.update_layout(
            title="needle retrieval with heads masked (uniform attention)",
            yaxis_title="fraction of tests retrieved",
            yaxis_range=[0, 1],
            template="plotly_white",
        )
        return fig


def masking_conditions(
    scores: HeadScores, k: int, n_random: int, seed: int
) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """Condition names and masked heads: none, the top-``k`` retrieval heads, and ``n_random``
    seeded draws of ``k`` heads from the non-retrieval pool.

    The pool is every head with a measured score ``<= threshold`` *and* not among the top ``k``
    (when fewer than ``k`` heads pass the threshold, the top ``k`` holds some non-retrieval heads;
    they must not be drawn as "random" ones too).
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not isinstance(n_random, int) or n_random < 0:
        raise ValueError(f"n_random must be a non-negative integer, got {n_random!r}")
    values = scores["retrieval"].reshape(-1)
    if bool(torch.isnan(values).all()):
        raise ValueError(
            "every retrieval score is NaN: no needle test was retrieved, so there are no retrieval "
            "heads to mask; run a grid the model can answer (longer max_new_tokens, shorter "
            "lengths, synthetic=True for small models) before the masking experiment"
        )
    top = [(layer, head) for layer, head, _ in scores.top(k, "retrieval")]
    cut = scores.thresholds.get("retrieval", 0.1)
    eligible = ~(values > cut) & ~torch.isnan(values)
    eligible[[layer * scores.n_heads + head for layer, head in top]] = False
    pool = torch.nonzero(eligible).flatten()
    if len(pool) < k:
        raise ValueError(
            f"only {len(pool)} non-retrieval heads outside the top {k}; choose k <= {len(pool)}"
        )
    generator = torch.Generator().manual_seed(seed)
    randoms = [
        pool[torch.randperm(len(pool), generator=generator)[:k]].tolist() for _ in range(n_random)
    ]
    names = ["none", f"top {k} retrieval"] + [
        f"random {k} non-retrieval #{i + 1}" for i in range(n_random)
    ]
    masked = [[], top] + [[(i // scores.n_heads, i % scores.n_heads) for i in r] for r in randoms]
    return names, masked


def masking_experiment(
    model: LanguageModel,
    scores: HeadScores,
    *,
    k: int = 10,
    n_random: int = 2,
    seed: int = 0,
    lengths: Sequence[int] = (512,),
    depths: Sequence[float] = DEFAULT_DEPTHS,
    n_needles: int = N_NEEDLES,
    synthetic: bool = False,
    max_new_tokens: int = 30,
    progress: bool = True,
) -> MaskingResult:
    """Needle accuracy with nothing masked, the top-``k`` retrieval heads masked, and ``n_random``
    sets of ``k`` random non-retrieval heads masked (see :func:`masking_conditions`); a progress
    bar per condition when ``progress``. The grid is the scan's needles and depths at one length
    (512) and 30 decode steps by default: 1 + ``n_random`` + 1 conditions re-run every test, and
    an answer is retrieved or not within its first few tokens."""
    check_model(model, "masking_experiment")
    if (scores.n_layers, scores.n_heads) != (model.n_layers, model.n_heads):
        raise ValueError(
            f"scores are [{scores.n_layers}, {scores.n_heads}] but {model.name} has "
            f"{model.n_layers} layers x {model.n_heads} heads"
        )
    conditions, masked = masking_conditions(scores, k, n_random, seed)
    needles = default_needles(model, synthetic, n_needles, seed)
    recalls = []
    for name, heads in zip(conditions, masked, strict=True):
        with model.ablate_heads(heads, method="uniform"):
            recall, _, _ = run_needle_tests(
                model,
                needles,
                list(lengths),
                list(depths),
                record_heads=False,
                max_new_tokens=max_new_tokens,
                progress=progress,
                desc=f"masking: {name}",
            )
        recalls.append(recall)
    return MaskingResult(
        conditions=conditions,
        masked=[[list(h) for h in m] for m in masked],
        recall=torch.stack(recalls).float(),
        settings={
            "k": k,
            "n_random": n_random,
            "seed": seed,
            "lengths": list(lengths),
            "depths": list(depths),
            "n_needles": n_needles,
            "synthetic": synthetic,
            "max_new_tokens": max_new_tokens,
            "pool": "heads with retrieval score <= threshold, outside the top k",
            "interp_version": __version__,
        },
        model=model.name,
    )
