"""L* extraction (``extract_automaton(method="lstar")``): planted automata recovered exactly with a
bounded number of queries, Angluin's PAC sample counts, batched membership queries, limits, bad
input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from interp.errors import InputTypeError, InvalidArgumentError
from interp.rnn.automata import DFA
from interp.rnn.extraction import extract_automaton
from interp.rnn.extraction_result import Extraction
from interp.rnn.grammars import GRAMMARS, SymbolEncoding, grammar_task
from interp.rnn.lstar_abstraction import Partitioning, separating_suffix
from interp.rnn.lstar_oracles import pac_sample_size
from interp.rnn.nets import make_net
from interp.rnn.tasks import make_task


class PlantedDFA:
    """A second-order RNN that *is* ``dfa``: the state is the one-hot vector of the DFA state and
    ``h'_j = sum_{i,a} W[j, i, a] h_i x_a`` with ``W[j, i, a] = 1`` iff ``delta(i, a) = j`` (exact,
    no squashing). Readout: +1 on accepting states, -1 elsewhere. With ``bos`` an extra input
    resets to the start state."""

    def __init__(self, dfa: DFA, *, bos: bool) -> None:
        n, k = dfa.n_states, len(dfa.alphabet)
        self.weights = torch.zeros(n, n, k + int(bos), dtype=torch.float64)
        for i in range(n):
            for a in range(k):
                self.weights[dfa.transitions[i, a], i, a] = 1.0
            if bos:
                self.weights[dfa.start, i, k] = 1.0
        self.dfa = dfa
        self.sign = torch.tensor(dfa.accepting, dtype=torch.float64) * 2 - 1

    def initial_state(self, batch):
        h = torch.zeros(batch, self.dfa.n_states, dtype=torch.float64)
        h[:, self.dfa.start] = 1.0
        return h

    def step(self, h, x):
        return torch.einsum("jia,bi,ba->bj", self.weights, h, x.double())

    def readout(self, h):
        return (h @ self.sign)[..., None]


class Counting:
    """Wraps a model and counts its batched unrolls (one ``initial_state`` call each) and the
    strings in them."""

    def __init__(self, model) -> None:
        self.model, self.unrolls, self.rows = model, 0, 0

    def initial_state(self, batch):
        self.unrolls += 1
        self.rows += batch
        return self.model.initial_state(batch)

    def step(self, h, x):
        return self.model.step(h, x)

    def readout(self, h):
        return self.model.readout(h)


PARITY = DFA(["0", "1"], [[0, 1], [1, 0]], [True, False], name="parity")


def _table_bound(n: int, k: int, longest: int) -> int:
    """Cells of an L* table with Maler-Pnueli counterexamples: |S ∪ S·Σ| <= n (k + 1) rows and
    |E| <= 1 + (n - 1)(m + 1) columns (each of <= n - 1 counterexamples adds <= m + 1 suffixes)."""
    return n * (k + 1) * (1 + (n - 1) * (longest + 1))


@pytest.mark.parametrize("name", sorted(GRAMMARS))
def test_planted_dfa_is_recovered_exactly_with_bounded_queries(name):
    task = grammar_task(name, train_length=8)
    n, k = task.dfa.minimize().n_states, 2
    result = extract_automaton(
        PlantedDFA(task.dfa, bos=True), task, method="lstar", n_strings=100, n_test_per_length=20
    )
    assert result.complete and result.stopped_by is None
    assert result.equivalent is True and result.counterexample is None
    assert result.n_states == n and result.fidelity == 1.0
    # every counterexample adds at least one state, so at most n - 1 of them: <= n queries
    assert result.equivalence_queries == len(result.counterexamples) + 1 <= n
    sizes = result.settings["hypothesis_sizes"]
    assert sizes == sorted(set(sizes)) and sizes[-1] == n
    # membership queries: the table's cells, the starting-example search (every string up to the
    # longer starting example) and two strings per refinement of the abstraction
    longest = max(map(len, result.counterexamples), default=0)
    searched = 2 ** (1 + len(result.settings["starting_examples"][-1])) - 1
    bound = _table_bound(n, k, longest) + searched + 2 * result.settings["refinements"]
    assert result.membership_queries <= bound


def test_planted_tomita3_exact_numbers():
    """Tomita 3 (5 states): '', '0' and '1' are all accepted, so the first hypothesis has one
    state; the starting examples hold the shortest rejected string, '10', the one counterexample
    needed; its suffixes separate all five states."""
    task = grammar_task("tomita3", train_length=8)
    result = extract_automaton(
        PlantedDFA(task.dfa, bos=True), task, method="lstar", n_strings=100, n_test_per_length=20
    )
    assert result.counterexamples == ["10"] and result.equivalence_queries == 2
    assert result.dfa.equivalent(task.dfa) == (True, None)
    assert result.settings["hypothesis_sizes"] == [1, 5]
    assert result.settings["starting_examples"] == ["", "10"]


@pytest.mark.parametrize("equivalence", ["abstraction", "pac"])
def test_planted_parity_without_begin_of_string(equivalence):
    result = extract_automaton(
        PlantedDFA(PARITY, bos=False), ["0", "1"], target=PARITY, method="lstar",
        equivalence=equivalence, n_strings=100, n_test_per_length=20,
    )  # fmt: skip
    assert result.equivalent is True and result.n_states == 2 and result.complete


def test_pac_sample_sizes_follow_angluins_formula():
    assert pac_sample_size(1, 0.1, 0.05) == 37  # ceil(10 (ln 20 + ln 2)) = ceil(36.89)
    assert pac_sample_size(3, 0.01, 0.01) == 669  # ceil(100 (ln 100 + 3 ln 2)) = ceil(668.46)
    task = grammar_task("tomita7", train_length=8)
    result = extract_automaton(
        PlantedDFA(task.dfa, bos=True), task, method="lstar", equivalence="pac",
        epsilon=0.05, delta=0.1, n_strings=100, n_test_per_length=20,
    )  # fmt: skip
    sizes = result.settings["pac_sample_sizes"]
    assert len(sizes) == result.equivalence_queries >= 2
    assert sizes == [
        math.ceil((math.log(1 / 0.1) + i * math.log(2)) / 0.05) for i in range(1, len(sizes) + 1)
    ]
    with pytest.raises(ValueError, match="numbered from 1"):
        pac_sample_size(0, 0.1, 0.1)


def test_membership_queries_are_batched_per_table_extension():
    task = grammar_task("parens", train_length=8)
    model = Counting(PlantedDFA(task.dfa, bos=True))
    result = extract_automaton(
        model, task, method="lstar", equivalence="pac", n_strings=100, n_test_per_length=20
    )
    unrolls = result.settings["rnn_unrolls"]
    # with the PAC oracle every membership unroll is one table extension
    assert unrolls == result.settings["table_extensions"]
    # extensions: the first fill, one per closing round (each adds >= 1 state) and one per
    # counterexample
    assert unrolls <= 1 + result.settings["table_prefixes"] + len(result.counterexamples)
    assert result.membership_queries >= 5 * unrolls  # many strings per unroll
    # every initial_state call: the input check, the membership unrolls, one run per PAC query,
    # the validation draw and the test draw; never one per string
    assert model.unrolls == 1 + unrolls + result.equivalence_queries + 2


def test_cached_strings_are_not_run_twice():
    from interp.rnn.lstar_oracles import Budget, MembershipOracle

    model = Counting(PlantedDFA(PARITY, bos=False))
    budget = Budget(
        max_states=None, max_membership_queries=None, max_equivalence_queries=None,
        time_limit=None,
    )  # fmt: skip
    oracle = MembershipOracle(model, SymbolEncoding(("0", "1"), bos=False), budget)
    assert oracle.ask(["", "1", "11", "1"]) == [True, False, True, False]
    assert oracle.ask(["11", "", "101"]) == [True, True, True]
    assert model.unrolls == 2 and model.rows == 3 + 1 and oracle.queries == 4


@pytest.mark.parametrize(
    ("limits", "stopped_by"),
    [
        ({"max_states": 3}, "max_states"),
        ({"max_equivalence_queries": 1}, "max_equivalence_queries"),
        ({"max_membership_queries": 10}, "max_membership_queries"),
        ({"time_limit": 1e-9}, "time_limit"),
    ],
)
def test_a_limit_stops_the_run_and_the_result_says_incomplete(limits, stopped_by, tmp_path):
    task = grammar_task("parens", train_length=8)  # 7 states
    result = extract_automaton(
        PlantedDFA(task.dfa, bos=True), task, method="lstar", n_strings=100,
        n_test_per_length=20, **limits,
    )  # fmt: skip
    assert result.complete is False and result.stopped_by == stopped_by
    assert result.equivalent is False and result.n_states < 7
    if "max_states" in limits:
        assert result.n_states <= 3
    if "max_membership_queries" in limits:
        assert result.membership_queries <= 10
    assert f"INCOMPLETE: the {stopped_by} limit stopped L*" in result.table()
    assert f"INCOMPLETE: stopped by {stopped_by}" in result.figure().layout.title.text
    result.save(tmp_path / "x")
    loaded = Extraction.load(tmp_path / "x")
    assert (loaded.complete, loaded.stopped_by) == (False, stopped_by)


def test_lstar_result_round_trip_keeps_queries_and_counterexamples(tmp_path):
    task = grammar_task("tomita4", train_length=8)
    result = extract_automaton(
        PlantedDFA(task.dfa, bos=True), task, method="lstar", n_strings=100, n_test_per_length=20
    )
    result.save(tmp_path / "lstar")
    loaded = Extraction.load(tmp_path / "lstar")
    assert loaded.counterexamples == result.counterexamples == ["000"]
    assert loaded.membership_queries == result.membership_queries > 0
    assert loaded.equivalence_queries == 2 and loaded.complete is True
    assert loaded.dfa.equivalent(task.dfa) == (True, None)
    text = loaded.table()
    assert "lstar, abstraction oracle" in text and "counterexamples: '000'" in text
    assert len(loaded.figure().data) >= 4
    summary = loaded.summary()
    assert summary["membership_queries"] == result.membership_queries
    assert summary["equivalence_queries"] == 2


def test_partitioning_first_split_is_a_grid_then_svm_splits():
    part = Partitioning(initial_split_depth=2)
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
    part.refine(0, a[None], b[None])
    corners = np.array(list(itertools.product([0.0, 1.0], repeat=3)))
    parts = part.assign(corners)
    # cut on dims 0 and 2 at 0.5: four patterns, so four parts; dim 1 is ignored
    assert part.n_parts == 4 and len(set(parts.tolist())) == 4
    assert parts[0] == parts[2]  # (0,0,0) and (0,1,0) differ on dim 1 only
    first = int(part.assign(a[None])[0])
    inside = np.array([[1.0, 0.1, 0.0], [1.0, 0.9, 0.0]])
    part.refine(first, inside[:1], inside[1:])
    split = part.assign(inside)
    assert part.n_parts == 5 and split[0] != split[1]


def test_first_split_uses_sign_patterns_when_the_conflicting_states_differ_in_sign():
    part = Partitioning(initial_split_depth=3)
    a, b = np.array([0.9, 0.95, 0.5]), np.array([-0.9, 0.85, 0.6])
    part.refine(0, a[None], b[None])
    # cut at 0 on every dimension: c has b's signs except on dim 1 (b and c both below the
    # midpoint 0.9 of a and b there, so a midpoint grid would not separate them)
    c, d = np.array([-0.5, -0.9, 0.7]), np.array([-0.2, 0.1, 0.99])
    parts = part.assign(np.stack([a, b, c, d]))
    assert parts[0] != parts[1] and parts[1] != parts[2] and parts[1] == parts[3]


def test_separating_suffix_is_shortest():
    dfa = grammar_task("tomita4").dfa  # z0 -0-> z1 -0-> z2 -0-> sink
    assert separating_suffix(dfa, 0, 2) == "0"  # z2 dies on one 0, z0 needs three
    assert separating_suffix(dfa, 0, 1) == "00"
    with pytest.raises(ValueError, match="equivalent"):
        separating_suffix(DFA(["0"], [[1], [0]], [True, True]), 0, 1)


# ----------------------------------------------------------------------------- bad input


def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and text
    return text


def test_alphabet_that_does_not_match_the_models_inputs():
    gru = make_net("gru", 3, 4, 1, seed=0)  # takes 3 inputs
    expected = "size 2, but the model takes inputs of size 3"
    with pytest.raises(InvalidArgumentError, match=expected) as e:
        extract_automaton(gru, ["0", "1"], method="lstar")
    _one_line(e)
    planted = PlantedDFA(PARITY, bos=False)  # no input_size attribute: found by a trial step
    with pytest.raises(InvalidArgumentError, match="rejects them") as e:
        extract_automaton(planted, ["a", "b", "c"], method="lstar")
    _one_line(e)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_states", 0), ("max_states", -3), ("max_membership_queries", 0),
        ("max_equivalence_queries", -1), ("time_limit", 0.0), ("time_limit", -5),
        ("epsilon", 0.0), ("epsilon", 1.5), ("delta", 0), ("equivalence", "exhaustive"),
    ],
)  # fmt: skip
def test_bad_lstar_options_are_refused_in_one_line(option, value):
    task = grammar_task("tomita1")
    model = Counting(PlantedDFA(task.dfa, bos=True))
    with pytest.raises(InvalidArgumentError, match=option) as e:
        extract_automaton(model, task, method="lstar", **{option: value})
    _one_line(e)
    assert model.unrolls <= 1  # refused before any query (the input check's one step at most)


def test_more_than_one_output_logit_is_refused():
    task = grammar_task("tomita2")
    with pytest.raises(InvalidArgumentError, match="single output logit.*has 2 outputs") as e:
        extract_automaton(make_net("gru", 3, 4, 2, seed=0), task, method="lstar")
    _one_line(e)


def test_a_non_grammar_task_is_refused():
    flipflop = make_task("flipflop")
    net = make_net("gru", flipflop.input_size, 8, flipflop.output_size, seed=0)
    for method in ("lstar", "kmeans"):
        with pytest.raises(InputTypeError, match="'flipflop'.*not a grammar task") as e:
            extract_automaton(net, flipflop, method=method)
        _one_line(e)
    with pytest.raises(InputTypeError, match="one-character"):
        extract_automaton(net, 12, method="lstar")
