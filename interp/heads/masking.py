"""Head masking (Wu et al. 2024's causal test) of retrieval heads.

:func:`masking_experiment` compares needle accuracy with the top-K retrieval heads masked against
K random non-retrieval heads masked. Masking is ``HookedLM.ablate_heads(heads, "uniform")``: the
head's query is zeroed, so it attends uniformly (see :mod:`interp.models.interventions`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import torch

from interp import __version__
from interp.heads.retrieval import DEFAULT_DEPTHS, SUCCESS_RECALL, default_needles, run_needle_tests
from interp.heads.scores import HeadScores
from interp.results import Result


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


def masking_experiment(
    model,
    scores: HeadScores,
    *,
    k: int = 10,
    n_random: int = 2,
    seed: int = 0,
    lengths: Sequence[int] = (512,),
    depths: Sequence[float] = DEFAULT_DEPTHS,
    n_needles: int = 3,
    synthetic: bool = False,
    max_new_tokens: int = 30,
) -> MaskingResult:
    """Needle accuracy with nothing masked, the top-``k`` retrieval heads masked, and ``n_random``
    sets of ``k`` random heads drawn (seeded) from heads with retrieval score <= threshold."""
    top = [(layer, head) for layer, head, _ in scores.top(k, "retrieval")]
    values = scores["retrieval"].reshape(-1)
    cut = scores.thresholds.get("retrieval", 0.1)
    pool = torch.nonzero(~(values > cut)).flatten()  # NaN counts as non-retrieval
    if len(pool) < k:
        raise ValueError(f"only {len(pool)} non-retrieval heads; k={k} is too many")
    generator = torch.Generator().manual_seed(seed)
    randoms = [
        pool[torch.randperm(len(pool), generator=generator)[:k]].tolist() for _ in range(n_random)
    ]
    conditions = ["none", f"top {k} retrieval"] + [
        f"random {k} non-retrieval #{i + 1}" for i in range(n_random)
    ]
    masked = [[], top] + [[(i // model.n_heads, i % model.n_heads) for i in r] for r in randoms]
    needles = default_needles(model, synthetic, n_needles, seed)
    recalls = []
    for heads in masked:
        with model.ablate_heads(heads, method="uniform"):
            recall, _, _ = run_needle_tests(
                model,
                needles,
                list(lengths),
                list(depths),
                record_heads=False,
                max_new_tokens=max_new_tokens,
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
            "interp_version": __version__,
        },
        model=model.name,
    )
