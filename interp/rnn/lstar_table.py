"""Angluin's L*: the observation table and the learning loop.

**Observation table** (Angluin 1987). A prefix-closed set ``S`` of access strings, a suffix-closed
set ``E`` of experiments and the membership function ``T(w)`` on ``(S ∪ S·Σ)·E``. The *row* of a
string ``s`` is ``row(s) = (T(s·e))_{e ∈ E}``. The table is *closed* when every ``row(s·a)``
(``s ∈ S``, ``a ∈ Σ``) equals some ``row(s')`` with ``s' ∈ S``, and *consistent* when equal rows in
``S`` stay equal after any symbol. A closed, consistent table defines the hypothesis DFA whose
states are the distinct rows of ``S``, with start ``row(ε)``, ``δ(row(s), a) = row(s·a)`` and
``row(s)`` accepting iff ``T(s) = 1``: the smallest DFA consistent with the table.

**Counterexamples** are handled as Maler & Pnueli (1995) do: every suffix of a counterexample is
added to ``E`` instead of its prefixes to ``S``. Rows of ``S`` then stay pairwise distinct (a string
enters ``S`` only with a new row), so the table is consistent by construction and only closedness
needs checking; each counterexample adds at least one state. With a minimal target of ``n`` states
over ``k`` symbols, ``|S| <= n``, at most ``n - 1`` counterexamples are needed (so ``<= n``
equivalence queries), and the table holds at most ``n (k + 1) (1 + (n - 1)(m + 1))`` cells, ``m``
the longest counterexample: a bound on the membership queries.

**Batching.** Every extension of the table (new experiments, new access strings, the first fill)
collects all the strings it needs and asks them in one :meth:`MembershipOracle.ask`, i.e. one
batched unroll of the RNN; ``extensions`` counts them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from interp.rnn.automata import DFA
from interp.rnn.lstar_oracles import Budget, LimitReached, MembershipOracle


class EquivalenceOracle(Protocol):
    """Answers an equivalence query: a counterexample string, or None if none was found."""

    def find_counterexample(self, hypothesis: DFA) -> str | None: ...


class ObservationTable:
    """``S``, ``E`` and the rows of ``S ∪ S·Σ`` (the cells live in the oracle's cache)."""

    def __init__(self, alphabet: Sequence[str], oracle: MembershipOracle, budget: Budget) -> None:
        self.alphabet = list(alphabet)
        self.oracle, self.budget = oracle, budget
        self.prefixes: list[str] = [""]  # S, in the order added (ε first)
        self.suffixes: list[str] = [""]  # E
        self.extensions = 0

    def start(self) -> None:
        """The first fill: ``ε`` and every symbol, against the experiment ``ε``."""
        self._fill(self.prefixes, self.suffixes)

    def _candidates(self, prefixes: Sequence[str]) -> list[str]:
        """``prefixes`` and their one-symbol extensions."""
        return [*prefixes, *(p + a for p in prefixes for a in self.alphabet)]

    def _fill(self, prefixes: Sequence[str], suffixes: Sequence[str]) -> None:
        """Ask every cell of ``(prefixes ∪ prefixes·Σ) × suffixes`` in one batch."""
        self.budget.check_time()
        words = [p + e for p in self._candidates(prefixes) for e in suffixes]
        if any(w not in self.oracle.cache for w in words):
            self.extensions += 1
        self.oracle.ask(words)

    def row(self, string: str) -> tuple[bool, ...]:
        cache = self.oracle.cache
        return tuple(cache[string + e] for e in self.suffixes)

    def _state_rows(self) -> dict[tuple[bool, ...], int]:
        return {self.row(s): i for i, s in enumerate(self.prefixes)}

    def close(self) -> None:
        """Add to ``S`` a representative of every row of ``S·Σ`` missing from ``S`` (shortest,
        then alphabetical, first), one batched extension per round, until the table is closed."""
        while True:
            known = self._state_rows()
            new: dict[tuple[bool, ...], str] = {}
            for s in self.prefixes:
                for a in self.alphabet:
                    row = self.row(s + a)
                    if row not in known and row not in new:
                        new[row] = s + a
            if not new:
                return
            self.budget.check_states(len(self.prefixes) + len(new))
            added = sorted(new.values(), key=lambda w: (len(w), w))
            self.prefixes += added
            self._fill(added, self.suffixes)

    def add_counterexample(self, counterexample: str) -> None:
        """Add every suffix of ``counterexample`` missing from ``E`` (one batched extension)."""
        known = set(self.suffixes)
        new = [
            counterexample[i:]
            for i in range(len(counterexample) + 1)
            if counterexample[i:] not in known
        ]
        if new:
            self.suffixes += new
            self._fill(self.prefixes, new)

    def hypothesis(self) -> DFA:
        """The DFA of the table. A closed table gives Angluin's hypothesis; for a table that a
        limit left unclosed, a row of ``S·Σ`` missing from ``S`` goes to the nearest row of ``S``
        (fewest differing cells, earliest in ``S`` on ties)."""
        rows = self._state_rows()
        matrix = np.array(list(rows), dtype=bool).reshape(len(rows), len(self.suffixes))
        transitions = np.empty((len(self.prefixes), len(self.alphabet)), dtype=np.int64)
        for i, s in enumerate(self.prefixes):
            for a, symbol in enumerate(self.alphabet):
                row = self.row(s + symbol)
                target = rows.get(row)
                if target is None:
                    target = int(np.argmin((matrix != np.array(row)).sum(axis=1)))
                transitions[i, a] = target
        accepting = np.array([self.oracle.cache[s] for s in self.prefixes])
        return DFA(self.alphabet, transitions, accepting, start=0, name="lstar")


@dataclasses.dataclass
class LearnOutcome:
    """What :func:`learn` ends with: the hypothesis, whether the teacher accepted it (``complete``)
    or which limit stopped the run, the counterexamples in order, and the hypothesis sizes."""

    hypothesis: DFA
    complete: bool
    stopped_by: str | None
    counterexamples: list[str]
    hypothesis_sizes: list[int]
    equivalence_queries: int


def learn(table: ObservationTable, equivalence: EquivalenceOracle, budget: Budget) -> LearnOutcome:
    """Angluin's loop: close the table, propose its hypothesis, refine on each counterexample.

    When a limit stops the run, the outcome holds the last hypothesis proposed (or, if none was
    proposed yet, the hypothesis of the table as it stands) and names the limit.
    """
    counterexamples: list[str] = []
    sizes: list[int] = []
    asked = 0
    hypothesis: DFA | None = None
    try:
        table.start()
        table.close()
        while True:
            hypothesis = table.hypothesis()
            sizes.append(hypothesis.n_states)
            budget.check_equivalence(asked + 1)
            asked += 1
            counterexample = equivalence.find_counterexample(hypothesis)
            if counterexample is None:
                return LearnOutcome(hypothesis, True, None, counterexamples, sizes, asked)
            counterexamples.append(counterexample)
            table.add_counterexample(counterexample)
            table.close()
    except LimitReached as stop:
        if hypothesis is None and len(table.oracle.cache) == 0:  # stopped before the first fill
            hypothesis = DFA(table.alphabet, [[0] * len(table.alphabet)], [False], name="lstar")
            sizes.append(1)
        elif hypothesis is None:
            hypothesis = table.hypothesis()
            sizes.append(hypothesis.n_states)
        return LearnOutcome(hypothesis, False, stop.limit, counterexamples, sizes, asked)
