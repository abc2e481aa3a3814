"""DFA operations against hand-built automata and brute force; grammar DFAs against regexes."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch

from interp.rnn.automata import DFA
from interp.rnn.grammars import GRAMMARS, GrammarTask, grammar_dfa, grammar_task, strings_from_codes
from interp.rnn.strings import GRAMMAR_SPLITS, string_split
from interp.rnn.tasks import make_task, split_generator


def all_strings(alphabet, max_length):
    return [
        "".join(w) for n in range(max_length + 1) for w in itertools.product(alphabet, repeat=n)
    ]


def random_dfa(rng, n, k=2):
    return DFA(
        alphabet=[str(i) for i in range(k)],
        transitions=rng.integers(0, n, size=(n, k)),
        accepting=rng.random(n) < 0.5,
        start=int(rng.integers(0, n)),
    )


# Independent membership functions (Weiss et al. 2018's definitions, regex / counting).
_NOT_TOMITA3 = re.compile("((0|1)*0)*1(11)*(0(0|1)*1)*0(00)*(1(0|1)*)*")


def _parens(w):
    depth = 0
    for c in w:
        depth += 1 if c == "(" else -1
        if depth < 0 or depth > 5:
            return False
    return depth == 0


MEMBERSHIP = {
    "tomita1": lambda w: re.fullmatch("1*", w) is not None,
    "tomita2": lambda w: re.fullmatch("(10)*", w) is not None,
    "tomita3": lambda w: _NOT_TOMITA3.fullmatch(w) is None,
    "tomita4": lambda w: "000" not in w,
    "tomita5": lambda w: w.count("0") % 2 == 0 and w.count("1") % 2 == 0,
    "tomita6": lambda w: (w.count("0") - w.count("1")) % 3 == 0,
    "tomita7": lambda w: re.fullmatch("0*1*0*1*", w) is not None,
    "parens": _parens,
}


# ----------------------------------------------------------------------------- DFA


def ends_in_one_redundant() -> DFA:
    """'Strings ending in 1' with duplicated states, an unreachable state and two sinks' worth of
    redundancy: states 0/2 both mean 'last symbol not 1', 1/3 'last symbol 1', 4 unreachable."""
    table = {
        "a": {"0": "c", "1": "b"},
        "b": {"0": "a", "1": "d"},
        "c": {"0": "a", "1": "d"},
        "d": {"0": "c", "1": "b"},
        "u": {"0": "u", "1": "a"},
    }
    return DFA.from_table(["0", "1"], table, start="a", accepting={"b", "d"})


def test_minimize_redundant_dfa_gives_two_states_and_same_language():
    dfa = ends_in_one_redundant()
    minimal = dfa.minimize()
    assert minimal.n_states == 2
    words = all_strings("01", 8)
    expected = np.array([w.endswith("1") for w in words])
    np.testing.assert_array_equal(dfa.accepts_batch(words), expected)
    np.testing.assert_array_equal(minimal.accepts_batch(words), expected)
    # canonical numbering: start 0 (rejecting), '1' leads to state 1 (accepting)
    np.testing.assert_array_equal(minimal.transitions, [[0, 1], [0, 1]])
    np.testing.assert_array_equal(minimal.accepting, [False, True])


def test_minimize_merges_duplicate_sinks_and_drops_unreachable():
    table = {
        "s": {"0": "x", "1": "y"},
        "x": {"0": "x", "1": "x"},
        "y": {"0": "y", "1": "y"},
        "dead": {"0": "s", "1": "s"},
    }
    dfa = DFA.from_table(["0", "1"], table, start="s", accepting={"s"})
    assert dfa.reachable().tolist() == [True, True, True, False]
    minimal = dfa.minimize()
    assert minimal.n_states == 2
    assert minimal.sinks().tolist() == [False, True]


def brute_force_classes(dfa: DFA) -> int:
    """Number of Myhill-Nerode classes among reachable states: states are equivalent iff they agree
    on every suffix of length <= n - 1 (n = number of states)."""
    suffixes = all_strings(dfa.alphabet, max(dfa.n_states - 1, 0))
    signatures = set()
    for q in np.flatnonzero(dfa.reachable()):
        shifted = DFA(dfa.alphabet, dfa.transitions, dfa.accepting, start=int(q))
        signatures.add(tuple(shifted.accepts_batch(suffixes)))
    return len(signatures)


@pytest.mark.parametrize("seed", range(12))
def test_hopcroft_matches_brute_force_state_count_and_language(seed):
    rng = np.random.default_rng(seed)
    dfa = random_dfa(rng, n=int(rng.integers(2, 8)), k=int(rng.integers(2, 4)))
    minimal = dfa.minimize()
    assert minimal.n_states == brute_force_classes(dfa)
    words = all_strings(dfa.alphabet, 6)
    np.testing.assert_array_equal(minimal.accepts_batch(words), dfa.accepts_batch(words))


def brute_force_difference(a: DFA, b: DFA, max_length: int):
    for w in all_strings(a.alphabet, max_length):  # length order, then alphabet order
        if a.accepts(w) != b.accepts(w):
            return w
    return None


@pytest.mark.parametrize("seed", range(12))
def test_equivalence_counterexample_is_a_shortest_difference(seed):
    rng = np.random.default_rng(100 + seed)
    a, b = random_dfa(rng, 5), random_dfa(rng, 4)
    same, witness = a.equivalent(b)
    expected = brute_force_difference(a, b, 9)  # product has 20 states: a difference is shorter
    assert same == (expected is None)
    if expected is not None:
        assert len(witness) == len(expected)
        assert a.accepts(witness) != b.accepts(witness)


def test_equivalence_of_hand_built_pairs():
    no000 = grammar_dfa("tomita4")
    no0000 = DFA.from_table(
        ["0", "1"],
        {f"z{i}": {"0": f"z{i + 1}", "1": "z0"} for i in range(4)} | {"z4": {"0": "z4", "1": "z4"}},
        start="z0",
        accepting={"z0", "z1", "z2", "z3"},
    )
    assert no000.equivalent(no0000) == (False, "000")
    # tomita 4 with states relabelled z0->2, z1->0, z2->3, sink->1
    permuted = DFA(
        no000.alphabet,
        transitions=[[3, 2], [1, 1], [0, 2], [1, 2]],
        accepting=[True, False, True, True],
        start=2,
    )
    assert permuted.accepts("1001") and not permuted.accepts("1000")
    assert no000.equivalent(permuted) == (True, None)
    assert no000.equivalent(no000.minimize()) == (True, None)
    assert no000.equivalent(grammar_dfa("tomita1")) == (False, "0")


def test_dfa_rejects_bad_input():
    with pytest.raises(ValueError, match="one-character"):
        DFA(["ab"], [[0]], [True])
    with pytest.raises(ValueError, match="shape"):
        DFA(["0", "1"], [[0]], [True])
    with pytest.raises(ValueError, match="state ids"):
        DFA(["0"], [[3]], [True])
    with pytest.raises(ValueError, match="complete"):
        DFA.from_table(["0", "1"], {"a": {"0": "a"}}, start="a", accepting=[])
    with pytest.raises(ValueError, match="outside the alphabet"):
        grammar_dfa("tomita1").accepts("012")
    with pytest.raises(ValueError, match="alphabets differ"):
        grammar_dfa("tomita1").equivalent(grammar_dfa("parens"))


def test_dfa_views_and_round_trip(tmp_path):
    dfa = grammar_dfa("tomita7")
    graph = dfa.to_networkx()
    assert graph.number_of_nodes() == 5 and graph.number_of_edges() == 10
    assert [n for n, d in graph.nodes(data=True) if d["sink"]] == [4]
    text = dfa.table()
    assert "->*" in text and "(sink)" in text
    fig = dfa.figure()
    assert len(fig.data[-1].x) == 5
    dfa.save(tmp_path / "dfa")
    loaded = DFA.load(tmp_path / "dfa")
    assert loaded.equivalent(dfa) == (True, None)
    np.testing.assert_array_equal(loaded.transitions, dfa.transitions)


# ----------------------------------------------------------------------------- grammars


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("tomita1", 2),
        ("tomita2", 3),
        ("tomita3", 5),
        ("tomita4", 4),
        ("tomita5", 4),
        ("tomita6", 3),
        ("tomita7", 5),
        ("parens", 7),
    ],
)
def test_minimal_sizes(name, size):
    assert grammar_dfa(name).minimize().n_states == size


@pytest.mark.parametrize("name", list(GRAMMARS))
def test_grammar_dfas_match_independent_membership_up_to_length_10(name):
    dfa = grammar_dfa(name)
    words = all_strings(dfa.alphabet, 10)
    expected = np.array([MEMBERSHIP[name](w) for w in words])
    np.testing.assert_array_equal(dfa.accepts_batch(words), expected)


def test_task_batches_label_every_prefix_with_the_ground_truth():
    task = grammar_task("tomita3", train_length=9)
    codes, lengths, labels = task.sample_codes(64, torch.Generator().manual_seed(0))
    batch = task.batch_from_codes(codes, lengths)
    words = strings_from_codes(task.alphabet, codes, lengths)
    assert batch.x.shape == (64, codes.shape[1] + 1, 3)
    assert torch.all(batch.x[:, 0, 2] == 1) and torch.all(batch.x[:, 1:, 2] == 0)
    for b, w in enumerate(words):
        assert batch.mask[b].sum() == len(w) + 1
        assert labels[b] == MEMBERSHIP["tomita3"](w)
        for t in range(len(w) + 1):
            assert batch.y[b, t, 0] == MEMBERSHIP["tomita3"](w[:t])
            if t:
                assert batch.x[b, t, int(w[t - 1])] == 1


def test_last_label_mode_masks_only_the_final_step():
    task = grammar_task("tomita6", labels="last")
    batch = task.sample(16, torch.Generator().manual_seed(0))
    assert torch.all(batch.mask.sum(1) == 1)


@pytest.mark.parametrize("name", ["tomita1", "tomita2"])
def test_tiny_languages_are_balanced_per_length(name):
    task = grammar_task(name)
    generator = torch.Generator().manual_seed(1)
    for length in (4, 6):
        codes, lengths, _ = task.sample_codes(400, generator, split=None, length=length)
        words = strings_from_codes(task.alphabet, codes, lengths)
        positive = np.mean([MEMBERSHIP[name](w) for w in words])
        assert 0.4 < positive < 0.6
    # Tomita 2 has no positive string of odd length: everything is negative there
    if name == "tomita2":
        codes, lengths, _ = task.sample_codes(50, generator, split=None, length=5)
        assert not any(
            MEMBERSHIP[name](w) for w in strings_from_codes(task.alphabet, codes, lengths)
        )


def test_sampling_is_uniform_within_a_label():
    # the 7 strings of length 3 without '000' should appear equally often among positives
    task = grammar_task("tomita4")
    codes, lengths, labels = task.sample_codes(
        7000, torch.Generator().manual_seed(2), split=None, length=3
    )
    words = [
        w
        for w, lab in zip(
            strings_from_codes(task.alphabet, codes, lengths), labels.tolist(), strict=True
        )
        if lab
    ]
    counts = np.array([words.count(w) for w in sorted(set(words))])
    assert len(counts) == 7
    expected = len(words) / 7
    assert ((counts - expected) ** 2 / expected).sum() < 22.5  # chi-square, 6 dof, p ~ 0.001


def _words_of(task, batch) -> list[str]:
    """Decode a TaskBatch (begin-of-string, then one-hot symbols; mask = prefix steps)."""
    lengths = batch.mask.sum(1) - 1
    symbols = batch.x[:, 1:, : len(task.alphabet)].argmax(-1)
    return strings_from_codes(task.alphabet, symbols, lengths)


@pytest.mark.parametrize("name", ["tomita1", "tomita3", "parens"])
def test_grammar_splits_are_disjoint_string_sets(name):
    # the streams train() uses: 300 training batches, the validation and the test batch
    task = grammar_task(name)
    generator = split_generator(0, "train")
    train = {w for _ in range(300) for w in _words_of(task, task.sample(64, generator))}
    val = set(_words_of(task, task.sample(512, split_generator(0, "val"), split="val")))
    test = set(_words_of(task, task.sample(512, split_generator(0, "test"), split="test")))
    assert not train & test and not train & val and not val & test
    # the splits partition the strings up to the training length roughly 80 / 10 / 10
    total = 2 ** (task.train_length + 1) - 1
    assert 0.6 * total < len(train) and len(test) > 0.04 * total and len(val) > 0.04 * total


def test_sampling_within_a_split_is_uniform_over_its_members():
    task = grammar_task("tomita4")
    generator = torch.Generator().manual_seed(0)
    for length, split, n in ((6, "train", 6000), (12, "test", 4000)):  # enumerated / rejection
        words = all_strings("01", length)[-(2**length) :]
        side = string_split(
            np.array([[int(c) for c in w] for w in words]), np.full(len(words), length)
        )
        expected = {
            w
            for w, s in zip(words, side, strict=True)
            if MEMBERSHIP["tomita4"](w) and s == GRAMMAR_SPLITS.index(split)
        }
        codes, lengths, labels = task.sample_codes(n, generator, split=split, length=length)
        drawn = strings_from_codes(task.alphabet, codes, lengths)
        positives = [w for w, lab in zip(drawn, labels.tolist(), strict=True) if lab]
        assert all(MEMBERSHIP["tomita4"](w) for w in positives)
        assert set(positives) == expected, (length, split)
        if length == 6:
            counts = np.array([positives.count(w) for w in sorted(expected)])
            mean = len(positives) / len(expected)
            dof = len(expected) - 1
            assert ((counts - mean) ** 2 / mean).sum() < dof + 4 * np.sqrt(2 * dof)


def test_split_without_strings_of_a_length_is_refused():
    task = grammar_task("tomita4")
    split = GRAMMAR_SPLITS[int(string_split(np.zeros((1, 0)), np.zeros(1))[0])]  # where "" lies
    other = next(s for s in GRAMMAR_SPLITS if s != split)
    assert task.sample_codes(3, torch.Generator(), split=split, length=0)[1].tolist() == [0] * 3
    with pytest.raises(ValueError, match=f"no string of length 0 lies in the '{other}' split"):
        task.sample_codes(3, torch.Generator(), split=other, length=0)


def test_make_task_registry_and_config_round_trip():
    task = make_task("tomita5", train_length=7)
    assert isinstance(task, GrammarTask) and task.name == "tomita5"
    assert (task.input_size, task.output_size, task.loss) == (3, 1, "bce")
    rebuilt = make_task(**task.config)
    assert rebuilt.train_length == 7 and rebuilt.dfa.equivalent(task.dfa) == (True, None)
    assert make_task("parens").alphabet == ("(", ")")


def test_task_rejects_bad_options():
    with pytest.raises(ValueError, match="labels"):
        grammar_task("tomita1", labels="every")
    with pytest.raises(ValueError, match="split"):
        grammar_task("tomita1").sample(4, torch.Generator(), split="validation")
    with pytest.raises(ValueError, match="unknown grammar"):
        grammar_task("tomita8")
