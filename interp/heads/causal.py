"""Causal validation of the head finders: does removing the found heads break their behaviour?

:func:`causal_check` ablates the top-``k`` heads of a :class:`HeadScores` (ranked by its primary
metric) and, for comparison, ``draws`` seeded sets of ``k`` random heads from the pool of heads
that are neither in the top ``k`` nor classified by the scores' thresholds, and measures the
behaviour each kind of head exists for:

- induction (primary ``prefix_matching``): the mean next-token loss (nats) on the repeated half
  of ``[BOS] r r`` (``r``: ``seq_len`` distinct random mid-vocabulary tokens, ``n_examples``
  sequences; the loss on positions predicting the second copy). Higher = worse.
- successor (primary ``succession``): accuracy on the ordinal increment tasks of
  :mod:`interp.heads.ordinal_tasks` — the prompt is ``[BOS]`` and five consecutive single-token
  items, each followed by a comma (``" Monday, Tuesday, Wednesday, Thursday, Friday,"``), the
  answer the next item (``" Saturday"``); correct when it is the argmax over the whole
  vocabulary (:func:`increment_prompts`).
- retrieval (primary ``retrieval``): needle accuracy, the existing
  :func:`interp.heads.masking.masking_experiment` (uniform-attention masking, Wu et al. 2024).

Ablation for induction and successor is ``lm.ablate_heads(heads, method)`` (default ``"zero"``:
the head writes nothing; ``"uniform"``: it attends uniformly). The result reports the behaviour
with nothing ablated, with the top heads ablated and with each random draw ablated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import torch

from interp import __version__
from interp.errors import InvalidArgumentError
from interp.heads.checks import check_model
from interp.heads.induction import repeated_random_tokens
from interp.heads.ordinal_tasks import OrdinalTask, resolve_tasks
from interp.heads.scores import HeadScores
from interp.results import Result

KINDS = {"prefix_matching": "induction", "succession": "successor", "retrieval": "retrieval"}
BEHAVIOUR = {
    "induction": "loss on the repeated half (nats)",
    "successor": "ordinal increment accuracy",
    "retrieval": "needle accuracy",
}


@dataclasses.dataclass
class CausalCheck(Result):
    """The behaviour ``baseline`` (nothing ablated), ``top`` (top-``k`` heads ablated) and
    ``random [draws]`` (each random set ablated); ``top_heads`` / ``random_heads`` the ablated
    ``[layer, head]`` pairs; ``behaviour`` names the measure and ``higher_is_better`` its
    direction."""

    kind: str
    behaviour: str
    higher_is_better: bool
    baseline: float
    top: float
    random: torch.Tensor
    top_heads: list
    random_heads: list
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: str = ""

    @property
    def top_change(self) -> float:
        """Change of the behaviour with the top heads ablated (ablated minus baseline)."""
        return self.top - self.baseline

    @property
    def random_change(self) -> torch.Tensor:
        """Change per random draw (ablated minus baseline)."""
        return self.random - self.baseline

    def table(self) -> str:
        k = len(self.top_heads)
        spread = float(self.random.std()) if len(self.random) > 1 else 0.0
        lines = [
            f"causal check of {self.kind} heads — {self.model or 'model'} ({self.behaviour})",
            f"{'condition':<26}{'value':>10}{'change':>10}  heads",
            f"{'none ablated':<26}{self.baseline:>10.4f}{0.0:>10.4f}  -",
            f"{f'top {k} ablated':<26}{self.top:>10.4f}{self.top_change:>+10.4f}  "
            + ", ".join(f"L{layer}H{head}" for layer, head in self.top_heads),
        ]
        for i, heads in enumerate(self.random_heads):
            lines.append(
                f"{f'random {k} #{i + 1}':<26}{float(self.random[i]):>10.4f}"
                f"{float(self.random_change[i]):>+10.4f}  "
                + ", ".join(f"L{layer}H{head}" for layer, head in heads)
            )
        lines.append(
            f"random mean {float(self.random.mean()):.4f} ± {spread:.4f} (std over "
            f"{len(self.random)} draws)"
        )
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        names = ["none", f"top {len(self.top_heads)}"]
        names += [f"random #{i + 1}" for i in range(len(self.random))]
        values = [self.baseline, self.top, *self.random.tolist()]
        fig = go.Figure(go.Bar(x=names, y=values))
        fig.update_layout(
            title=f"causal check of {self.kind} heads — {self.model}",
            yaxis_title=self.behaviour,
            template="plotly_white",
        )
        return fig


def ablation_sets(
    scores: HeadScores, k: int, draws: int, seed: int
) -> tuple[list[tuple[int, int]], list[list[tuple[int, int]]]]:
    """The top-``k`` heads by the primary metric and ``draws`` seeded random sets of ``k`` heads
    from the pool: heads outside the top ``k`` that the thresholds do not classify."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidArgumentError(f"k must be a positive integer, got {k!r}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise InvalidArgumentError(f"draws must be a positive integer, got {draws!r}")
    top = [(layer, head) for layer, head, _ in scores.top(k)]
    if len(top) < k:
        raise InvalidArgumentError(
            f"only {len(top)} heads have a finite score; choose k <= {len(top)}"
        )
    eligible = (
        ~scores.classify()
        if scores.thresholds
        else torch.ones_like(scores[scores.primary], dtype=torch.bool)
    )
    eligible = eligible.reshape(-1).clone()
    eligible[[layer * scores.n_heads + head for layer, head in top]] = False
    pool = torch.nonzero(eligible).flatten()
    if len(pool) < k:
        raise InvalidArgumentError(
            f"only {len(pool)} heads outside the top {k} and unclassified; choose k <= {len(pool)}"
        )
    generator = torch.Generator().manual_seed(seed)
    randoms = [
        pool[torch.randperm(len(pool), generator=generator)[:k]].tolist() for _ in range(draws)
    ]
    return top, [[(i // scores.n_heads, i % scores.n_heads) for i in r] for r in randoms]


def repeated_half_loss(lm, tokens: torch.Tensor, seq_len: int) -> float:
    """Mean next-token loss (nats) on the positions that predict the second copy of ``r``."""
    logits, _ = lm.run(tokens, prepend_bos=False)
    logp = logits[:, :-1].double().log_softmax(-1)
    nll = -logp.gather(-1, tokens[:, 1:, None].to(logp.device))[..., 0]
    return float(nll[:, seq_len:].mean())  # position j predicts token j + 1; copy 2 = 1+seq_len..


def increment_prompts(
    lm,
    tasks: Sequence[OrdinalTask] | None,
    per_task: int,
    *,
    n_items: int = 5,
    separator: str = ",",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``([n, 1 + n_items * (1 + len(sep))] prompts, [n] answers)``: ``[BOS]`` then ``n_items``
    consecutive single-token items of a task, each followed by the ``separator``'s tokens (``" one,
    two, three, four, five,"``), the answer the next item (``" six"``); at most ``per_task``
    prompts per task, evenly spread. With the default tasks only the variants whose items start
    with a space take part (the form an item has after ``", "``)."""
    if lm.bos_token_id is None:
        raise InvalidArgumentError(
            f"{lm.name} has no BOS token; the increment prompts start with it"
        )
    resolved, _ = resolve_tasks(lm.tokenizer, lm.d_vocab, tasks)
    if tasks is None:
        resolved = [t for t in resolved if all(item.startswith(" ") for item in t.items)]
    sep = lm.tokenizer.encode(separator, add_special_tokens=False) if separator else []
    prompts, answers = [], []
    for task in resolved:
        following = dict(task.pairs)
        chains = []
        for start in range(len(task.token_ids)):
            chain = [start]
            while (
                len(chain) <= n_items
                and chain[-1] in following
                and following[chain[-1]] not in chain
            ):
                chain.append(following[chain[-1]])
            if len(chain) == n_items + 1:
                chains.append([task.token_ids[i] for i in chain])
        step = max(1, len(chains) // per_task) if chains else 1
        for chain in chains[::step][:per_task]:
            prompts.append([lm.bos_token_id, *(t for item in chain[:-1] for t in (item, *sep))])
            answers.append(chain[-1])
    if not prompts:
        raise InvalidArgumentError(
            f"no task has {n_items + 1} consecutive single-token items to prompt with"
        )
    return torch.tensor(prompts), torch.tensor(answers)


def increment_accuracy(lm, prompts: torch.Tensor, answers: torch.Tensor) -> float:
    """Fraction of prompts whose next-token argmax (whole vocabulary) is the answer."""
    logits, _ = lm.run(prompts, prepend_bos=False)
    return float((logits[:, -1].argmax(-1).cpu() == answers).double().mean())


def causal_check(
    lm,
    scores: HeadScores,
    k: int = 10,
    *,
    draws: int = 3,
    seed: int = 0,
    kind: str | None = None,
    method: str = "zero",
    seq_len: int = 50,
    n_examples: int = 20,
    tasks: Sequence[OrdinalTask] | None = None,
    per_task: int = 20,
    n_items: int = 5,
    separator: str = ",",
    **retrieval: Any,
) -> CausalCheck:
    """Ablate the top-``k`` heads of ``scores`` vs ``draws`` random sets of ``k`` heads and measure
    the kind's behaviour (see the module docstring). ``kind`` defaults to the one the primary
    metric names; ``retrieval`` options go to :func:`masking_experiment` (lengths, depths, ...)."""
    check_model(lm, "causal_check")
    kind = kind or KINDS.get(scores.primary)
    if kind not in BEHAVIOUR:
        raise InvalidArgumentError(
            f"cannot tell the kind of heads from primary metric {scores.primary!r}; pass "
            f"kind= one of {', '.join(BEHAVIOUR)}"
        )
    if (scores.n_layers, scores.n_heads) != (lm.n_layers, lm.n_heads):
        raise InvalidArgumentError(
            f"scores are [{scores.n_layers}, {scores.n_heads}] but {lm.name} has "
            f"{lm.n_layers} layers x {lm.n_heads} heads"
        )
    if kind == "retrieval":
        return _retrieval(lm, scores, k, draws, seed, retrieval)
    top, randoms = ablation_sets(scores, k, draws, seed)
    if kind == "induction":
        tokens = repeated_random_tokens(
            lm, seq_len=seq_len, repeats=2, n_examples=n_examples, seed=seed
        )
        measure = lambda: repeated_half_loss(lm, tokens, seq_len)  # noqa: E731
        settings = {"seq_len": seq_len, "n_examples": n_examples}
    else:
        prompts, answers = increment_prompts(
            lm, tasks, per_task, n_items=n_items, separator=separator
        )
        measure = lambda: increment_accuracy(lm, prompts, answers)  # noqa: E731
        settings = {"prompts": len(prompts), "per_task": per_task, "n_items": n_items}
        settings |= {"separator": separator}
    values = []
    for heads in [[], top, *randoms]:
        with lm.ablate_heads(heads, method=method):
            values.append(measure())
    return CausalCheck(
        kind=kind,
        behaviour=BEHAVIOUR[kind],
        higher_is_better=kind != "induction",
        baseline=values[0],
        top=values[1],
        random=torch.tensor(values[2:], dtype=torch.float64),
        top_heads=[list(h) for h in top],
        random_heads=[[list(h) for h in r] for r in randoms],
        settings=settings
        | {"k": k, "draws": draws, "seed": seed, "method": method}
        | {"pool": "heads outside the top k not classified by the thresholds"}
        | {"interp_version": __version__},
        model=lm.name,
    )


def _retrieval(lm, scores: HeadScores, k: int, draws: int, seed: int, options: dict) -> CausalCheck:
    """The retrieval branch: :func:`masking_experiment`'s needle accuracy as a CausalCheck."""
    from interp.heads.masking import masking_experiment

    masked = masking_experiment(lm, scores, k=k, n_random=draws, seed=seed, **options)
    accuracy = masked.accuracy().double()
    return CausalCheck(
        kind="retrieval",
        behaviour=BEHAVIOUR["retrieval"],
        higher_is_better=True,
        baseline=float(accuracy[0]),
        top=float(accuracy[1]),
        random=accuracy[2:],
        top_heads=masked.masked[1],
        random_heads=masked.masked[2:],
        settings=dict(masked.settings) | {"method": "uniform"},
        model=lm.name,
    )
