"""Extraction: from hand-built RNNs whose states are a known DFA's states, from trained nets, and the
state-regularized cell."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from interp.rnn.automata import DFA
from interp.rnn.extraction import extract_automaton
from interp.rnn.extraction_quantize import build_dfa
from interp.rnn.extraction_result import Extraction
from interp.rnn.grammar_training import train_grammar_net
from interp.rnn.grammars import grammar_dfa, grammar_task
from interp.rnn.nets import make_net
from interp.rnn.protocol import unroll
from interp.rnn.state_regularized import StateRegularizedNet


class SecondOrderDFA:
    """A second-order RNN (Giles et al. 1992) whose weights implement ``dfa``:
    ``h'_j = sigmoid(gain * (sum_{i,a} W[j, i, a] h_i x_a - 1/2))`` with ``W[j, i, a] = 1`` iff
    ``delta(i, a) = j``, so ``h`` stays (nearly) one-hot on the DFA state. Readout: +1 on accepting
    states, -1 elsewhere. With ``bos`` an extra input symbol resets to the start state. ``noise``
    perturbs the weights so states are clouds, not points."""

    def __init__(self, dfa: DFA, *, bos: bool, noise: float = 0.0, seed: int = 0) -> None:
        n, k = dfa.n_states, len(dfa.alphabet)
        weights = torch.zeros(n, n, k + int(bos), dtype=torch.float64)
        for i in range(n):
            for a in range(k):
                weights[dfa.transitions[i, a], i, a] = 1.0
            if bos:
                weights[dfa.start, i, k] = 1.0
        generator = torch.Generator().manual_seed(seed)
        self.weights = weights + noise * torch.randn(
            weights.shape, generator=generator, dtype=torch.float64
        )
        self.dfa = dfa
        self.sign = torch.tensor(dfa.accepting, dtype=torch.float64) * 2 - 1

    def initial_state(self, batch):
        h = torch.zeros(batch, self.dfa.n_states, dtype=torch.float64)
        h[:, self.dfa.start] = 1.0
        return h

    def step(self, h, x):
        return torch.sigmoid(
            12 * (torch.einsum("jia,bi,ba->bj", self.weights, h, x.double()) - 0.5)
        )

    def readout(self, h):
        return (h @ self.sign)[..., None]


@pytest.mark.parametrize("name", ["tomita3", "tomita5", "parens"])
def test_extraction_from_hand_built_rnn_recovers_the_dfa(name):
    task = grammar_task(name, train_length=8)
    rnn = SecondOrderDFA(task.dfa, bos=True, noise=0.05)
    result = extract_automaton(rnn, task, n_strings=300, n_test_per_length=40)
    assert result.equivalent is True and result.counterexample is None
    assert result.n_states == task.dfa.minimize().n_states
    assert result.fidelity == 1.0 and result.accuracy == 1.0
    assert result.settings["transition_conflict_rate"] == 0.0
    # the net's states are noisy one-hot codes of the DFA's states (all reachable and distinct),
    # so fewer clusters must merge two states: the smallest k that reaches the target is their count
    assert result.n_clusters == task.dfa.n_states == task.dfa.minimize().n_states


def test_extraction_with_plain_alphabet_and_explicit_target():
    dfa = grammar_dfa("tomita6")
    result = extract_automaton(
        SecondOrderDFA(dfa, bos=False), ["0", "1"], target=dfa, n_strings=200
    )
    assert result.equivalent is True and result.n_states == 3


def test_wrong_target_gives_a_shortest_counterexample():
    rnn = SecondOrderDFA(grammar_dfa("tomita4"), bos=False)
    result = extract_automaton(rnn, ["0", "1"], target=grammar_dfa("tomita1"), n_strings=200)
    assert result.equivalent is False and result.counterexample == "0"
    assert result.fidelity == 1.0 and result.accuracy < 1.0


def test_too_few_clusters_is_not_equivalent():
    task = grammar_task("tomita4", train_length=8)
    result = extract_automaton(
        SecondOrderDFA(task.dfa, bos=True), task, n_clusters=2, n_strings=200
    )
    assert result.n_clusters == 2 and result.equivalent is False
    assert result.settings["transition_conflict_rate"] > 0


def test_build_dfa_majority_and_conflict_rate():
    # two strings "00" and "01"; cluster 0 -0-> 1 twice, 1 -0-> 0 once and 1 -1-> 1 once
    ids = np.array([[0, 1, 0], [0, 1, 1]])
    codes = np.array([[0, 0], [0, 1]])
    accept = np.array([[True, False, True], [True, False, True]])
    dfa, stats = build_dfa(
        ids, accept, codes, np.array([2, 2]), 2, ["0", "1"],
        fill_transition=lambda c, a: np.zeros(len(c), dtype=int),
        fill_accepting=lambda c: np.zeros(len(c), dtype=bool),
    )  # fmt: skip
    # (0, '1') is never observed, so fill_transition gives 0
    np.testing.assert_array_equal(dfa.transitions, [[1, 0], [0, 1]])
    assert stats["unobserved_transitions"] == 1 and stats["transition_conflict_rate"] == 0.0
    # cluster 0 holds 3 accepting states; cluster 1 holds 2 rejecting + 1 accepting -> 1/6 minority
    np.testing.assert_array_equal(dfa.accepting, [True, False])
    assert stats["label_conflict_rate"] == pytest.approx(1 / 6)
    ids_conflict = np.array([[0, 1, 0], [0, 0, 1]])
    _, stats = build_dfa(
        ids_conflict, accept, codes, np.array([2, 2]), 2, ["0", "1"],
        fill_transition=lambda c, a: np.zeros(len(c), dtype=int),
        fill_accepting=lambda c: np.zeros(len(c), dtype=bool),
    )  # fmt: skip
    assert stats["transition_conflict_rate"] == pytest.approx(1 / 4)  # (0,'0') -> 1 once, 0 once


def test_extraction_result_round_trip_table_figure(tmp_path):
    task = grammar_task("tomita2", train_length=6)
    result = extract_automaton(
        SecondOrderDFA(task.dfa, bos=True), task, n_strings=200, n_test_per_length=20
    )
    result.save(tmp_path / "ex")
    loaded = Extraction.load(tmp_path / "ex")
    assert loaded.dfa.equivalent(result.dfa) == (True, None)
    assert loaded.target.equivalent(task.dfa) == (True, None)
    np.testing.assert_array_equal(loaded.fidelity_by_length, result.fidelity_by_length)
    assert loaded.settings == result.settings
    assert "equivalent to the ground truth: yes" in loaded.table()
    assert len(loaded.figure().data) >= 4


def test_extraction_rejects_bad_input():
    task = grammar_task("tomita1")
    rnn = SecondOrderDFA(task.dfa, bos=True)
    with pytest.raises(ValueError, match="method"):
        extract_automaton(rnn, task, method="grid")
    with pytest.raises(TypeError, match="one-character"):
        extract_automaton(rnn, "01")
    with pytest.raises(TypeError, match="not a recurrent model"):
        extract_automaton(object(), task)
    with pytest.raises(TypeError, match="state-regularized"):
        extract_automaton(rnn, task, method="centroids")
    with pytest.raises(ValueError, match="single output logit"):
        extract_automaton(make_net("gru", 3, 4, 2), task)


def test_trained_gru_on_tomita4_extracts_the_true_automaton():
    torch.set_num_threads(1)
    net, task, result = train_grammar_net("tomita4", hidden_size=8, curriculum=(4, 8), seed=0)
    assert result.final_accuracy > 0.99
    extraction = extract_automaton(net, task, n_strings=400, n_test_per_length=50)
    assert extraction.equivalent is True and extraction.n_states == 4


def test_state_regularized_cell_equations():
    net = make_net("state_regularized", 3, 5, 1, seed=0, n_centroids=4, temperature=0.7)
    assert isinstance(net, StateRegularizedNet) and net.config["n_centroids"] == 4
    h, x = torch.randn(6, 5), torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2])]
    update = torch.nn.GRUCell(3, 5)
    with torch.no_grad():
        update.weight_ih.copy_(net.weight_ih), update.weight_hh.copy_(net.weight_hh)
        update.bias_ih.copy_(net.bias_ih), update.bias_hh.copy_(net.bias_hh)
        alpha_ref = torch.softmax(update(x, h) @ net.centroids.T / 0.7, dim=-1)
        h_next, alpha = net.step_with_attention(h, x)
    torch.testing.assert_close(alpha, alpha_ref)
    torch.testing.assert_close(h_next, alpha_ref @ net.centroids)
    torch.testing.assert_close(net.step(h, x), h_next)
    hard = make_net("state_regularized", 3, 5, 1, seed=0, n_centroids=4, straight_through=True)
    with torch.no_grad():
        states = hard.step(h, x)
    # straight-through: every state is exactly one centroid
    assert torch.cdist(states, hard.centroids).min(dim=1).values.max() < 1e-6
    with pytest.raises(ValueError, match="temperature"):
        make_net("state_regularized", 3, 5, 1, temperature=0.0)


def test_state_regularized_centroid_extraction_on_tomita1():
    torch.set_num_threads(1)
    net, task, result = train_grammar_net(
        "tomita1", kind="state_regularized", hidden_size=8, curriculum=(4, 8), seed=0,
        n_centroids=6, temperature=1.0, straight_through=True,
    )  # fmt: skip
    assert result.final_accuracy > 0.99
    extraction = extract_automaton(
        net, task, method="centroids", n_strings=200, n_test_per_length=20
    )
    assert extraction.equivalent is True and extraction.fidelity == 1.0
    # the hard cell's state is always a centroid, so the net *is* an automaton over centroids: the
    # raw centroid DFA (before minimization) must decide every string exactly as the net does
    words = ["".join(w) for n in range(9) for w in itertools.product("01", repeat=n)]
    codes, lengths = extraction.raw_dfa.encode(words)
    x = task.encoding.one_hot(torch.as_tensor(codes))
    with torch.no_grad():
        logits = net.readout(unroll(net, x))[torch.arange(len(words)), torch.as_tensor(lengths), 0]
    np.testing.assert_array_equal(extraction.raw_dfa.accepts_batch(words), (logits > 0).numpy())
