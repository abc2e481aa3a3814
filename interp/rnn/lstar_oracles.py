"""The teacher side of L*: the RNN answers membership queries, a sampler answers equivalence.

**Membership queries** (Angluin 1987): "is ``w`` in the language?" is answered by the RNN's own
decision after reading ``w`` (``readout(h) > 0`` on its single accept logit). Queries come in
batches: a whole extension of the observation table is one padded, batched unroll of the RNN
(:meth:`MembershipOracle.ask`), never one Python-level forward per string, and every answer is
cached, so a string is run at most once.

**Sampling equivalence** (Angluin 1987, section 5: "approximately correct" identification): the
``i``-th equivalence query draws

    m_i = ceil((1 / ε) (ln(1 / δ) + i ln 2))

strings from a fixed distribution (here: length uniform in ``0..max_length``, symbols uniform) and
returns a shortest one on which the hypothesis and the RNN disagree; if none disagrees the
hypothesis is accepted. Since the failure probabilities ``δ / 2^i`` sum to at most δ, the final
hypothesis has error at most ε under that distribution with probability at least 1 - δ.

Both oracles share a :class:`Budget` (the limits on states, queries and time); running out raises
:class:`LimitReached`, which the learner turns into an *incomplete* result rather than an error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from interp.rnn.automata import DFA
from interp.rnn.grammars import SymbolEncoding
from interp.rnn.protocol import Recurrent


class LimitReached(Exception):  # noqa: N818 - a signal to stop, not an error
    """Raised inside the learner when a limit of :class:`Budget` stops it (``limit`` names it)."""

    def __init__(self, limit: str) -> None:
        super().__init__(limit)
        self.limit = limit


class Budget:
    """The limits of one L* run; ``None`` means no limit. Every limit must be positive."""

    def __init__(
        self,
        *,
        max_states: int | None,
        max_membership_queries: int | None,
        max_equivalence_queries: int | None,
        time_limit: float | None,
    ) -> None:
        self.max_states = max_states
        self.max_membership_queries = max_membership_queries
        self.max_equivalence_queries = max_equivalence_queries
        self.time_limit = time_limit
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def check_time(self) -> None:
        if self.time_limit is not None and self.elapsed() > self.time_limit:
            raise LimitReached("time_limit")

    def check_states(self, n_states: int) -> None:
        if self.max_states is not None and n_states > self.max_states:
            raise LimitReached("max_states")

    def check_membership(self, total: int) -> None:
        if self.max_membership_queries is not None and total > self.max_membership_queries:
            raise LimitReached("max_membership_queries")

    def check_equivalence(self, asked: int) -> None:
        if self.max_equivalence_queries is not None and asked > self.max_equivalence_queries:
            raise LimitReached("max_equivalence_queries")


def accepts(logits: Tensor) -> Tensor:
    """The RNN's decision from its single accept logit: ``> 0`` accepts."""
    return logits[..., 0] > 0


def start_states(model: Recurrent, encoding: SymbolEncoding, batch: int) -> Tensor:
    """The state that stands for the empty string: ``initial_state`` after the begin-of-string
    input when the encoding has one."""
    h = model.initial_state(batch)
    bos = encoding.bos_input(batch)
    return model.step(h, bos.to(h.dtype)) if bos is not None else h


def symbol_inputs(encoding: SymbolEncoding, codes: Tensor, dtype: torch.dtype) -> Tensor:
    """One-hot inputs ``[..., input_size]`` for symbol ids (no begin-of-string)."""
    return torch.nn.functional.one_hot(codes.long(), encoding.input_size).to(dtype)


def run_strings(model: Recurrent, encoding: SymbolEncoding, words: Sequence[str]) -> np.ndarray:
    """The RNN's accept decision on every word: one batched, padded unroll (bool ``[N]``)."""
    index = {s: i for i, s in enumerate(encoding.alphabet)}
    lengths = torch.tensor([len(w) for w in words], dtype=torch.long)
    width = int(lengths.max()) if len(words) else 0
    codes = torch.zeros(len(words), width, dtype=torch.long)
    for row, word in enumerate(words):
        if word:
            codes[row, : len(word)] = torch.tensor([index[c] for c in word])
    with torch.no_grad():
        h = start_states(model, encoding, len(words))
        final = h.clone()
        x = symbol_inputs(encoding, codes, h.dtype)
        for t in range(width):
            h = model.step(h, x[:, t])
            done = lengths == t + 1
            final[done] = h[done]
        return accepts(model.readout(final)).cpu().numpy()


class MembershipOracle:
    """Batched, cached membership queries answered by the RNN.

    ``queries`` counts the distinct strings the RNN was asked about (the membership-query count of
    the L* literature), ``unrolls`` the batched forward passes that answered them.
    """

    def __init__(self, model: Recurrent, encoding: SymbolEncoding, budget: Budget) -> None:
        self.model, self.encoding, self.budget = model, encoding, budget
        self.cache: dict[str, bool] = {}
        self.unrolls = 0

    @property
    def queries(self) -> int:
        return len(self.cache)

    def ask(self, words: Iterable[str]) -> list[bool]:
        """Answers for ``words`` (in order); the uncached ones are run in one batched unroll."""
        words = list(words)
        missing = list(dict.fromkeys(w for w in words if w not in self.cache))
        if missing:
            self.budget.check_membership(self.queries + len(missing))
            self.budget.check_time()
            answers = run_strings(self.model, self.encoding, missing)
            self.cache.update(zip(missing, answers.tolist(), strict=True))
            self.unrolls += 1
        return [self.cache[w] for w in words]


def pac_sample_size(i: int, epsilon: float, delta: float) -> int:
    """Angluin's sample count for the ``i``-th equivalence query (``i >= 1``):
    ``ceil((1/ε)(ln(1/δ) + i ln 2))``."""
    if i < 1:
        raise ValueError(f"equivalence queries are numbered from 1, got {i}")
    return math.ceil((math.log(1.0 / delta) + i * math.log(2.0)) / epsilon)


class PACOracle:
    """Equivalence by sampling (see the module docstring); ``sample_sizes`` records each ``m_i``."""

    def __init__(
        self,
        model: Recurrent,
        encoding: SymbolEncoding,
        *,
        epsilon: float,
        delta: float,
        max_length: int,
        generator: torch.Generator,
        budget: Budget,
    ) -> None:
        self.model, self.encoding = model, encoding
        self.epsilon, self.delta, self.max_length = epsilon, delta, max_length
        self.generator, self.budget = generator, budget
        self.sample_sizes: list[int] = []

    def _draw(self, count: int) -> list[str]:
        lengths = torch.randint(0, self.max_length + 1, (count,), generator=self.generator)
        codes = torch.randint(
            0, len(self.encoding.alphabet), (count, self.max_length), generator=self.generator
        )
        symbols = np.array(self.encoding.alphabet)
        return [
            "".join(symbols[row[:n]])
            for row, n in zip(codes.numpy(), lengths.tolist(), strict=True)
        ]

    def find_counterexample(self, hypothesis: DFA) -> str | None:
        """A shortest sampled string where ``hypothesis`` and the RNN disagree, or None."""
        self.budget.check_time()
        count = pac_sample_size(len(self.sample_sizes) + 1, self.epsilon, self.delta)
        self.sample_sizes.append(count)
        words = sorted(set(self._draw(count)), key=lambda w: (len(w), w))
        rnn = run_strings(self.model, self.encoding, words)
        wrong = np.flatnonzero(rnn != hypothesis.accepts_batch(words))
        return words[int(wrong[0])] if len(wrong) else None
