"""Automata by queries: L* with the RNN as the teacher (``extract_automaton(method="lstar")``).

Angluin's L* (1987) learns the minimal DFA of a regular language from a teacher that answers
*membership* queries ("is w in the language?") and *equivalence* queries ("is this DFA the
language? if not, a string where it is wrong"). Weiss, Goldberg & Yahav (ICML 2018) make a trained
RNN the teacher: the RNN's decision answers membership (:class:`MembershipOracle`, batched and
cached), and equivalence is answered by exploring an abstraction of the RNN's state space that is
refined where it conflicts with the hypothesis (:class:`AbstractionOracle`). Angluin's sampling
oracle with PAC guarantees is the alternative (``equivalence="pac"``, :class:`PACOracle`).

Pieces: :mod:`interp.rnn.lstar_table` (observation table, learning loop),
:mod:`interp.rnn.lstar_oracles` (membership, sampling equivalence, limits),
:mod:`interp.rnn.lstar_abstraction` (partitioning and abstraction oracle). This module checks the
options and turns a run into the fields of :class:`~interp.rnn.extraction_result.Extraction`.

When a limit (states, membership or equivalence queries, time) stops a run, the result is the last
hypothesis proposed (or the table's hypothesis if none was proposed yet) with ``complete=False``
and ``stopped_by`` naming the limit. An L* hypothesis is minimal for its observation table, so the
raw and minimized automata coincide.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from interp.errors import InvalidArgumentError
from interp.rnn.grammars import SymbolEncoding
from interp.rnn.lstar_abstraction import AbstractionOracle
from interp.rnn.lstar_oracles import Budget, MembershipOracle, PACOracle
from interp.rnn.lstar_table import ObservationTable, learn
from interp.rnn.protocol import Recurrent

EQUIVALENCE_ORACLES = ("abstraction", "pac")


@dataclasses.dataclass(frozen=True)
class LStarOptions:
    """The options of an L* run, checked on construction (a one-line error for a bad value)."""

    equivalence: str = "abstraction"
    max_states: int | None = 200
    max_membership_queries: int | None = 200_000
    max_equivalence_queries: int | None = 200
    time_limit: float | None = 60.0
    epsilon: float = 0.01
    delta: float = 0.01

    def __post_init__(self) -> None:
        if self.equivalence not in EQUIVALENCE_ORACLES:
            raise InvalidArgumentError(
                f"equivalence must be one of {EQUIVALENCE_ORACLES}, got {self.equivalence!r}"
            )
        for name in ("max_states", "max_membership_queries", "max_equivalence_queries"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InvalidArgumentError(f"{name} must be a positive int or None, got {value!r}")
            if value is not None and value <= 0:
                raise InvalidArgumentError(f"{name} must be > 0 (or None: no limit), got {value}")
        if self.time_limit is not None and not (
            isinstance(self.time_limit, int | float) and self.time_limit > 0
        ):
            raise InvalidArgumentError(
                f"time_limit must be > 0 seconds (or None: no limit), got {self.time_limit!r}"
            )
        for name in ("epsilon", "delta"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < 1 and math.isfinite(value)):
                raise InvalidArgumentError(f"{name} must be in (0, 1), got {value!r}")

    def budget(self) -> Budget:
        return Budget(
            max_states=self.max_states,
            max_membership_queries=self.max_membership_queries,
            max_equivalence_queries=self.max_equivalence_queries,
            time_limit=self.time_limit,
        )


def run_lstar(
    model: Recurrent,
    encoding: SymbolEncoding,
    options: LStarOptions,
    generator: torch.Generator,
    *,
    max_length: int,
) -> dict[str, Any]:
    """Learn a DFA from ``model`` with L* and return the method's fields of an
    :class:`~interp.rnn.extraction_result.Extraction` (``raw``/``minimal`` DFAs, query counts,
    counterexamples, completion and the settings); ``max_length`` bounds the PAC oracle's
    strings."""
    budget = options.budget()
    membership = MembershipOracle(model, encoding, budget)
    table = ObservationTable(encoding.alphabet, membership, budget)
    if options.equivalence == "pac":
        oracle: AbstractionOracle | PACOracle = PACOracle(
            model,
            encoding,
            epsilon=options.epsilon,
            delta=options.delta,
            max_length=max_length,
            generator=generator,
            budget=budget,
        )
    else:
        oracle = AbstractionOracle(model, encoding, membership, budget)
    outcome = learn(table, oracle, budget)
    hypothesis = outcome.hypothesis
    minimal = hypothesis.minimize()
    settings: dict[str, Any] = {
        **dataclasses.asdict(options),
        "rnn_unrolls": membership.unrolls,
        "table_extensions": table.extensions,
        "table_prefixes": len(table.prefixes),
        "table_suffixes": len(table.suffixes),
        "hypothesis_sizes": outcome.hypothesis_sizes,
        "learn_seconds": budget.elapsed(),
    }
    if isinstance(oracle, PACOracle):
        settings["pac_sample_sizes"] = oracle.sample_sizes
        parts = 0
    else:
        settings.update(
            refinements=oracle.refinements,
            explorations=oracle.explorations,
            starting_examples=oracle.starting or [],
        )
        parts = oracle.parts
    return {
        "raw": hypothesis.canonical(),
        "minimal": minimal,
        "n_clusters": parts,
        "search_k": np.zeros(0, dtype=np.int64),
        "search_fidelity": np.zeros(0),
        "membership_queries": membership.queries,
        "equivalence_queries": outcome.equivalence_queries,
        "counterexamples": outcome.counterexamples,
        "complete": outcome.complete,
        "stopped_by": outcome.stopped_by,
        "settings": settings,
    }
