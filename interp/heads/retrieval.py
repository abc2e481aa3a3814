"""Retrieval heads (Wu et al. 2024): heads that copy-paste the needle while the model answers.

For each needle-in-a-haystack test (needle x context length x depth; see
:mod:`interp.heads.haystack`), the model decodes greedily with the KV cache
(:mod:`interp.heads.decoding`). At each step, a head *copy-pastes* when its top-1 attended key
lies in the needle's answer span **and** the prompt token there equals the token generated at
this step. A test's score for a head is ``copies / span_length`` (repeats count again, so it can
exceed 1). A test counts only when the answer was retrieved: ROUGE-1 recall of the answer in the
response ``> 0.5``. A head's retrieval score is its mean over counted tests; a retrieval head has
``score > 0.1``. Everything per step is one gather over ``[L, B, H]``: no loop over heads.

Grid. The reference sweeps 20 lengths up to 50k tokens x 10 depths x 3 needles; the defaults
here fit a 135M model on a few CPU cores: prompt lengths doubling from 256 up to ``max_length``
(default ``min(2048, the longest prompt the context leaves room to decode)``; 256, 512, 1024,
2048 for SmolLM2), 5 depths, 3 needles. Every setting (lengths, depths, needles, decoding) is
recorded in ``settings``, so a saved result says what produced it. ``synthetic=True`` swaps the
written needles for random-word codes and a "repeat it" question, for models too small to answer
questions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
import torch

from interp import __version__
from interp.heads.checks import check_model
from interp.heads.defaults import DEFAULT_DEPTHS, MAX_LENGTH, MAX_NEW_TOKENS, MIN_LENGTH, N_NEEDLES
from interp.heads.needle_tests import copy_paste_scores as copy_paste_scores  # re-exported
from interp.heads.needle_tests import default_needles, run_needle_tests
from interp.heads.needles import Needle
from interp.heads.scores import HeadScores
from interp.results import Result
from interp.viz import heatmap

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel

RETRIEVAL_THRESHOLD = 0.1
SUCCESS_RECALL = 0.5


def default_lengths(
    model: LanguageModel, max_length: int | None = None, *, max_new_tokens: int = MAX_NEW_TOKENS
) -> tuple[int, list[int]]:
    """``(max_length, lengths)``: the prompt-length grid when none is given.

    ``max_length`` defaults to ``min(2048, n_ctx - max_new_tokens + 1)`` (the longest prompt
    the context can still decode from); the grid doubles from 256 while below it and ends at it.
    """
    room = model.n_ctx - max_new_tokens + 1
    if room < 2:
        raise ValueError(
            f"{model.name}'s context of {model.n_ctx} tokens leaves no room for a prompt when "
            f"decoding {max_new_tokens} tokens; lower max_new_tokens below {model.n_ctx - 1}"
        )
    if max_length is None:
        max_length = min(MAX_LENGTH, room)
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}")
    if max_length > room:
        raise ValueError(
            f"max_length {max_length} leaves no room to decode {max_new_tokens} tokens within "
            f"{model.name}'s context of {model.n_ctx}; use max_length <= {room}"
        )
    lengths = []
    length = MIN_LENGTH
    while length < max_length:
        lengths.append(length)
        length *= 2
    return max_length, [*lengths, max_length]


@dataclasses.dataclass
class RetrievalGrid(Result):
    """Every needle test: recall, success and per-head copy-paste scores, by needle x length x depth.

    ``recall``/``success`` ``[N, n_lengths, n_depths]``; ``head_scores`` ``[N, n_lengths,
    n_depths, L, H]``; ``responses`` the decoded answers (same nesting); ``settings`` everything
    that produced the grid (lengths, depths, needles, decoding), passed on to :meth:`scores`.
    """

    recall: torch.Tensor
    success: torch.Tensor
    head_scores: torch.Tensor
    lengths: list[int]
    depths: list[float]
    questions: list[str]
    answers: list[str]
    responses: list
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: str = ""

    def scores(self, threshold: float = RETRIEVAL_THRESHOLD) -> HeadScores:
        """Mean copy-paste score over successful tests (NaN when no test succeeded) as HeadScores."""
        ok = self.success.bool().reshape(-1)
        per_test = self.head_scores.reshape(-1, *self.head_scores.shape[-2:]).double()
        n = int(ok.sum())
        if n:
            mean = per_test[ok].mean(0)
            fires = (per_test[ok] > 0).double().mean(0)
        else:
            mean = fires = torch.full(per_test.shape[1:], float("nan"), dtype=torch.float64)
        return HeadScores(
            scores={"retrieval": mean.float(), "fire_rate": fires.float()},
            primary="retrieval",
            thresholds={"retrieval": threshold},
            strict={"retrieval": True},
            extras={"success": self.success.float()},
            settings={**self.settings, "successful_tests": n, "tests": int(ok.numel())},
            model=self.model,
            title="retrieval heads",
        )

    def test_rows(self, k: int = 3) -> list[list[object]]:
        """One row per test: needle, length, depth, recall, retrieved, response, top-``k`` heads.

        The heads are the test's ``k`` best copy-paste scores above 0 (``L{l}H{h} score``).
        """
        n_heads = self.head_scores.shape[-1]
        rows = []
        for n, question in enumerate(self.questions):
            for i, length in enumerate(self.lengths):
                for j, depth in enumerate(self.depths):
                    flat = self.head_scores[n, i, j].reshape(-1)
                    values, index = flat.topk(min(k, flat.numel()))
                    heads = ", ".join(
                        f"L{h // n_heads}H{h % n_heads} {float(v):.2f}"
                        for v, h in zip(values.tolist(), index.tolist(), strict=True)
                        if v > 0
                    )
                    rows.append(
                        [
                            f"{n + 1}: {question}",
                            length,
                            depth,
                            float(self.recall[n, i, j]),
                            "yes" if bool(self.success[n, i, j]) else "no",
                            self.responses[n][i][j],
                            heads or "-",
                        ]
                    )
        return rows

    def success_rate(self) -> torch.Tensor:
        """``[n_lengths, n_depths]`` fraction of needles retrieved."""
        return self.success.float().mean(0)

    def retrieved(self) -> torch.Tensor:
        """``[n_lengths, n_depths]`` number of needles retrieved (of ``len(self.questions)``)."""
        return self.success.long().sum(0)

    def no_success_message(self) -> str | None:
        """One line saying that no test retrieved the needle and what to change, or None.

        Retrieval scores average over retrieved tests only, so without one every head's score is
        NaN: there is nothing to rank or classify, and the grid is what has to change.
        """
        if bool(self.success.any()):
            return None
        tests = self.success.numel()
        longest = max(self.lengths)
        shorter = sorted({max(2, n // 4) for n in self.lengths} | {256, 512} - {*self.lengths})
        shorter = [n for n in shorter if n < longest][:3] or [max(2, longest // 2)]
        other = [d for d in (0.0, 0.25, 0.5, 0.75, 1.0) if d not in self.depths][:3]
        return (
            f"no needle test was retrieved (0 of {tests} at lengths {self.lengths}, depths "
            f"{self.depths}; ROUGE-1 recall > {SUCCESS_RECALL} needed), so every retrieval score "
            f"is undefined (NaN); try shorter lengths (e.g. {','.join(map(str, shorter))}) or "
            f"other depths (e.g. {','.join(f'{d:g}' for d in other)})"
            + (
                ", or synthetic needles for a small model"
                if not self.settings.get("synthetic")
                else ""
            )
        )

    def table(self) -> str:
        """Retrieved needles per prompt length (rows) x depth (columns), as ``k/N`` counts."""
        counts, total = self.retrieved(), len(self.questions)
        lines = [
            f"needle tests — {self.model or 'model'}: {int(self.success.sum())} of {self.success.numel()} retrieved "
            f"(ROUGE-1 recall > {SUCCESS_RECALL})",
            f"needles retrieved (of {total}) by length (rows) x depth (columns)",
            f"{'length':>8}  " + "  ".join(f"{d:>6.2f}" for d in self.depths),
        ]
        for i, length in enumerate(self.lengths):
            cells = "  ".join(f"{f'{int(v)}/{total}':>6}" for v in counts[i])
            lines.append(f"{length:>8}  {cells}")
        message = self.no_success_message()
        if message is not None:
            lines.append(message)
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        return heatmap(
            self.success_rate(),
            title="needle retrieval success (fraction of needles)",
            x_label="depth",
            y_label="prompt length (tokens)",
            x_ticks=[f"{d:.2f}" for d in self.depths],
            y_ticks=[str(n) for n in self.lengths],
            hover="success rate",
            zmin=0.0,
            zmax=1.0,
        )


def grid_settings(
    model: LanguageModel,
    *,
    needles: list[Needle] | None,
    lengths: Sequence[int] | None,
    depths: Sequence[float],
    max_length: int | None,
    n_needles: int,
    synthetic: bool,
    seed: int,
    max_new_tokens: int,
) -> tuple[list[Needle], dict[str, Any]]:
    """Resolve the needles and the grid, and describe them: ``(needles, settings)``."""
    if lengths is None:
        max_length, lengths = default_lengths(model, max_length, max_new_tokens=max_new_tokens)
    elif max_length is not None:
        raise ValueError(
            "pass lengths (the explicit grid) or max_length (a doubling grid up to it), not both"
        )
    else:
        lengths = [int(n) for n in lengths]
        max_length = max(lengths) if lengths else None
        room = model.n_ctx - max_new_tokens + 1
        if lengths and (min(lengths) < 2 or max_length > room):
            raise ValueError(
                f"retrieval lengths must be prompt token counts in [2, {room}] (the context of "
                f"{model.n_ctx} tokens minus {max_new_tokens - 1} more decoding steps), got "
                f"{lengths}"
            )
    depths = [float(d) for d in depths]
    if not lengths or not depths:
        raise ValueError("lengths and depths must be non-empty")
    if needles is None and (not isinstance(n_needles, int) or n_needles < 1):
        raise ValueError(f"n_needles must be a positive integer, got {n_needles!r}")
    source = "user" if needles is not None else "synthetic" if synthetic else "shipped"
    needles = (
        list(needles) if needles is not None else default_needles(model, synthetic, n_needles, seed)
    )
    settings = {
        "lengths": lengths,
        "depths": depths,
        "max_length": max_length,
        "n_needles": len(needles),
        "needle_source": source,
        "needles": [dataclasses.asdict(n) for n in needles],
        "synthetic": synthetic,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
    }
    return needles, settings


def retrieval_grid(
    model: LanguageModel,
    *,
    needles: list[Needle] | None = None,
    lengths: Sequence[int] | None = None,
    depths: Sequence[float] = DEFAULT_DEPTHS,
    max_length: int | None = None,
    n_needles: int = N_NEEDLES,
    synthetic: bool = False,
    seed: int = 0,
    max_new_tokens: int = MAX_NEW_TOKENS,
    suppress_steps: int = 3,
    text: str | None = None,
    chat: bool | None = None,
    progress: bool = True,
) -> RetrievalGrid:
    """Run the needle grid and record every head's copy-paste score per test.

    ``lengths`` (prompt tokens) default to :func:`default_lengths` up to ``max_length``;
    ``needles`` default to the first ``n_needles`` shipped ones (or seeded synthetic codes with
    ``synthetic=True``). ``progress`` shows a bar over the tests.
    """
    check_model(model, "retrieval_grid")
    needles, settings = grid_settings(
        model,
        needles=needles,
        lengths=lengths,
        depths=depths,
        max_length=max_length,
        n_needles=n_needles,
        synthetic=synthetic,
        seed=seed,
        max_new_tokens=max_new_tokens,
    )
    lengths, depths = settings["lengths"], settings["depths"]
    recall, heads, texts = run_needle_tests(
        model,
        needles,
        lengths,
        depths,
        max_new_tokens=max_new_tokens,
        suppress_steps=suppress_steps,
        text=text,
        chat=chat,
        progress=progress,
    )
    use_chat = getattr(model.tokenizer, "chat_template", None) is not None if chat is None else chat
    return RetrievalGrid(
        recall=recall.float(),
        success=recall > SUCCESS_RECALL,
        head_scores=heads.float(),
        lengths=lengths,
        depths=depths,
        questions=[n.question for n in needles],
        answers=[n.answer for n in needles],
        responses=texts,
        settings={
            **settings,
            "suppress_steps": suppress_steps,
            "chat_template": bool(use_chat),
            "success_recall": SUCCESS_RECALL,
            "haystack": "shipped corpus (Python Language Reference prose)"
            if text is None
            else "user text",
            "interp_version": __version__,
        },
        model=model.name,
    )


def retrieval_scores(
    model: LanguageModel,
    *,
    threshold: float = RETRIEVAL_THRESHOLD,
    needles: list[Needle] | None = None,
    lengths: Sequence[int] | None = None,
    depths: Sequence[float] = DEFAULT_DEPTHS,
    max_length: int | None = None,
    n_needles: int = N_NEEDLES,
    synthetic: bool = False,
    seed: int = 0,
    max_new_tokens: int = MAX_NEW_TOKENS,
    suppress_steps: int = 3,
    text: str | None = None,
    chat: bool | None = None,
    progress: bool = True,
) -> HeadScores:
    """Retrieval score of every head: ``retrieval_grid(model, ...).scores(threshold)``.

    Every argument but ``threshold`` (a retrieval head scores ``> threshold``) is
    :func:`retrieval_grid`'s. When no test retrieves the needle, every score is NaN and
    ``scores.settings["successful_tests"]`` is 0; :meth:`RetrievalGrid.no_success_message` says
    what to change, so keep the grid (call :func:`retrieval_grid`) to see it.
    """
    grid = retrieval_grid(
        model,
        needles=needles,
        lengths=lengths,
        depths=depths,
        max_length=max_length,
        n_needles=n_needles,
        synthetic=synthetic,
        seed=seed,
        max_new_tokens=max_new_tokens,
        suppress_steps=suppress_steps,
        text=text,
        chat=chat,
        progress=progress,
    )
    return grid.scores(threshold)


def retrieval_report_sections(
    scores: HeadScores, grid: RetrievalGrid, report, masking=None
) -> None:
    """Add the retrieval section to an :class:`interp.viz.Report`: grid heatmap, per-test table,
    head tables and map, and the masking experiment when given."""
    report.heading("Retrieval heads")
    values = scores["retrieval"]
    found = scores.heads()
    total = scores.n_layers * scores.n_heads
    settings = grid.settings
    failure = grid.no_success_message()
    tests = f"{scores.settings.get('successful_tests')} of {scores.settings.get('tests')} tests"
    if failure is not None:
        report.text(f"No head was scored: {tests} retrieved the needle.")
    else:
        report.text(
            f"Retrieval head: mean copy-paste score over retrieved tests > "
            f"{scores.thresholds.get('retrieval', 0.1):g}. {len(found)} of {total} heads "
            f"({100 * len(found) / total:.1f}%); {tests} retrieved the needle. Median head score "
            f"{float(values.nanmedian()):.3f}; heads never firing: "
            f"{int((scores['fire_rate'] == 0).sum())}."
        )
    report.text(
        f"Grid: {len(grid.questions)} {settings.get('needle_source', '')} needle(s) x prompt lengths "
        f"{grid.lengths} x depths {grid.depths}; greedy decoding of up to "
        f"{settings.get('max_new_tokens')} tokens; a test is retrieved when ROUGE-1 recall > "
        f"{SUCCESS_RECALL}."
    )
    report.preformatted(grid.table())
    report.figure(grid.figure())
    if failure is not None:
        report.text(failure[0].upper() + failure[1:] + ".")
    report.heading("Every test", level=3)
    report.table(
        ["needle", "length", "depth", "recall", "retrieved", "response", "top heads (copy-paste)"],
        grid.test_rows(),
    )
    if failure is None:
        report.preformatted(scores.table(k=10))
        report.figure(scores.figure("retrieval"))
    if masking is not None:
        report.preformatted(masking.table())
        report.figure(masking.figure())
