"""Equivalence queries answered by exploring an abstraction of the RNN (Weiss, Goldberg & Yahav,
ICML 2018, "Extracting automata from recurrent neural networks using queries and
counterexamples").

**Abstraction.** A *partitioning* ``p: R^d -> {1..n}`` of the hidden-state space defines the
abstracted RNN ``A^p_R``: its states are the parts, its start the part of the start state, the
transition of part ``p(h)`` on ``a`` is ``p(step(h, a))``, and a part's label is the RNN's decision.
Weiss et al. start with one part and refine it only where the hypothesis needs it: a part is split
in two by an SVM (RBF kernel, large C) trained on the states that conflict, so ``p`` is a tree of
binary classifiers whose leaves are the parts (:class:`Partitioning`). The first refinement is
aggressive, as in their implementation: the space is cut along the ``initial_split_depth``
coordinates where the two conflicting states differ most, into up to ``2^initial_split_depth``
parts (made as states land in them). If the two states differ in sign on one of these
coordinates, every coordinate is cut at 0 (the parts are sign patterns: the two-bin quantization
of saturating units, which also separates the other states that saturate differently);
otherwise (e.g. non-negative ReLU states) each is cut at the two states' midpoint. Either way the
two fall apart.

**Exploration** (one equivalence query, :class:`AbstractionOracle`). Breadth-first over words,
running the RNN and the hypothesis ``A`` in parallel (batched, one ``step`` per level). For each
word ``w`` with RNN state ``h`` and hypothesis state ``q = A(w)``:

1. if the RNN's decision at ``h`` differs from ``A``'s at ``q``, ``w`` is a counterexample;
2. if the part ``p(h)`` was not seen in this exploration, it is mapped to ``q`` and ``w`` is
   expanded by every symbol;
3. if it was seen mapped to ``q`` too, ``w`` is not expanded;
4. if it was seen mapped to ``q' != q`` (via ``w'``), take a shortest suffix ``s`` on which ``A``
   tells ``q`` and ``q'`` apart and ask the RNN about ``w·s`` and ``w'·s`` (membership queries).
   If the RNN also tells them apart, the abstraction is too coarse: split the part between the
   states mapped to ``q'`` and ``h`` and restart the exploration. Otherwise ``A`` is wrong on one
   of the two strings: that one is the counterexample.

The partitioning persists across equivalence queries. The exploration is finite (each part is
expanded once), and it ends with "equivalent" when the abstraction and the hypothesis agree
everywhere it reaches.

**Starting examples.** An abstraction with one part agrees with any one-state hypothesis (the
exploration stops after one symbol), so, as Weiss et al. do, every equivalence query first checks
the hypothesis on a few *starting examples*: here a shortest string the RNN accepts and a shortest
one it rejects (breadth-first over lengths, one batched run per length, up to
``STARTING_SEARCH_LENGTH``).
"""

from __future__ import annotations

import dataclasses
from collections import deque

import numpy as np
import torch
from sklearn.svm import SVC
from torch import Tensor

from interp.rnn.automata import DFA
from interp.rnn.grammars import SymbolEncoding
from interp.rnn.lstar_oracles import Budget, MembershipOracle, accepts, start_states, symbol_inputs
from interp.rnn.protocol import Recurrent


@dataclasses.dataclass
class _Split:
    """An internal node: a binary classifier on states; ``children[label]`` are node ids."""

    classifier: SVC | None
    normal: np.ndarray | None  # fallback hyperplane (perpendicular bisector of two states)
    offset: float
    children: tuple[int, int]

    def side(self, states: np.ndarray) -> np.ndarray:
        if self.classifier is not None:
            return self.classifier.predict(states).astype(np.int64)
        return (states @ self.normal > self.offset).astype(np.int64)


@dataclasses.dataclass
class _Grid:
    """The aggressive first split: one child per pattern of ``states[:, dims] > thresholds``,
    created when a state first lands in it (``children``: pattern code -> node id)."""

    dims: np.ndarray
    thresholds: np.ndarray
    children: dict[int, int]

    def codes(self, states: np.ndarray) -> np.ndarray:
        bits = states[:, self.dims] > self.thresholds
        return bits.astype(np.int64) @ (1 << np.arange(len(self.dims), dtype=np.int64))


class Partitioning:
    """A tree of splits over the state space (a grid at the root after the first refinement,
    binary SVM splits below); its leaves are the parts ``0..n-1``."""

    def __init__(self, svm_c: float = 1e4, initial_split_depth: int = 10) -> None:
        self.svm_c, self.initial_split_depth = svm_c, initial_split_depth
        self.nodes: list[_Split | _Grid | int] = [0]  # node id -> a split, or a leaf's part
        self.n_parts = 1

    def _new_leaf(self) -> int:
        self.nodes.append(self.n_parts)
        self.n_parts += 1
        return len(self.nodes) - 1

    def _route_grid(self, node: _Grid, states: np.ndarray, rows: np.ndarray) -> list:
        codes = node.codes(states[rows])
        routed = []
        for code in np.unique(codes).tolist():
            if code not in node.children:
                node.children[code] = self._new_leaf()
            routed.append((node.children[code], rows[codes == code]))
        return routed

    def assign(self, states: np.ndarray) -> np.ndarray:
        """Part of every state ``[N, d]`` (batched: one classifier call per node on its subset)."""
        parts = np.empty(len(states), dtype=np.int64)
        stack = [(0, np.arange(len(states)))]
        while stack:
            node_id, rows = stack.pop()
            node = self.nodes[node_id]
            if isinstance(node, int):
                parts[rows] = node
                continue
            if len(rows) == 0:
                continue
            if isinstance(node, _Grid):
                stack += self._route_grid(node, states, rows)
                continue
            side = node.side(states[rows])
            stack += [(node.children[0], rows[side == 0]), (node.children[1], rows[side == 1])]
        return parts

    def refine(self, part: int, keep: np.ndarray, split_off: np.ndarray) -> None:
        """Split ``part`` in two: ``keep`` states ``[n0, d]`` stay in ``part``, ``split_off``
        ``[n1, d]`` go to a new part. An SVM separates them; if it misclassifies one of them, the
        perpendicular bisector of ``keep[0]`` and ``split_off[-1]`` (the two conflicting states,
        which differ) is used instead, so the conflict itself is always resolved."""
        node_id = next(
            i for i, node in enumerate(self.nodes) if isinstance(node, int) and node == part
        )
        if self.n_parts == 1 and self.initial_split_depth > 0:
            self._grid(keep[0], split_off[-1])
            return
        x = np.concatenate([keep, split_off])
        y = np.r_[np.zeros(len(keep), dtype=np.int64), np.ones(len(split_off), dtype=np.int64)]
        classifier: SVC | None = SVC(C=self.svm_c, kernel="rbf", gamma="scale").fit(x, y)
        normal, offset = None, 0.0
        if (classifier.predict(x) != y).any():
            classifier = None
            a, b = keep[0], split_off[-1]
            normal, offset = b - a, float((b - a) @ (a + b) / 2)
        self.nodes += [part, self.n_parts]
        self.nodes[node_id] = _Split(
            classifier, normal, offset, (len(self.nodes) - 2, len(self.nodes) - 1)
        )
        self.n_parts += 1

    def _grid(self, a: np.ndarray, b: np.ndarray) -> None:
        """Replace the single part by a grid on the coordinates where ``a`` and ``b`` differ most
        (at most ``initial_split_depth``), cut at 0 if their signs differ on one of them, else
        at their midpoints; ``a`` keeps part 0."""
        gap = np.abs(a - b)
        dims = np.argsort(-gap, kind="stable")[: self.initial_split_depth]
        dims = dims[gap[dims] > 0]
        if len(dims) == 0:  # identical states cannot be told apart by any partition
            return
        signs_differ = bool((a[dims] * b[dims] < 0).any())
        cuts = np.zeros(len(dims)) if signs_differ else (a[dims] + b[dims]) / 2
        grid = _Grid(dims, cuts, {})
        self.nodes[0], self.n_parts = grid, 0
        self._route_grid(grid, np.stack([a, b]), np.arange(2))


def separating_suffix(dfa: DFA, p: int, q: int) -> str:
    """A shortest string that leads ``p`` and ``q`` to states with different acceptance
    (breadth-first over pairs); ``p`` and ``q`` must be inequivalent."""
    parent: dict[tuple[int, int], tuple[tuple[int, int], str] | None] = {(p, q): None}
    queue = deque([(p, q)])
    while queue:
        pair = queue.popleft()
        if dfa.accepting[pair[0]] != dfa.accepting[pair[1]]:
            symbols = []
            while parent[pair] is not None:
                pair, symbol = parent[pair]
                symbols.append(symbol)
            return "".join(reversed(symbols))
        for a, symbol in enumerate(dfa.alphabet):
            nxt = (int(dfa.transitions[pair[0], a]), int(dfa.transitions[pair[1], a]))
            if nxt not in parent:
                parent[nxt] = (pair, symbol)
                queue.append(nxt)
    raise ValueError(f"states {p} and {q} of the hypothesis are equivalent")


class _Refined(Exception):  # noqa: N818 - control flow: restart the exploration
    pass


STARTING_SEARCH_LENGTH = 12
_STARTING_SEARCH_STRINGS = 8192


def starting_examples(membership: MembershipOracle, alphabet: list[str]) -> list[str]:
    """A shortest accepted and a shortest rejected string (those that exist within
    ``STARTING_SEARCH_LENGTH`` symbols or the first ``_STARTING_SEARCH_STRINGS`` strings)."""
    found: dict[bool, str] = {}
    level, searched = [""], 0
    for _ in range(STARTING_SEARCH_LENGTH + 1):
        for word, label in zip(level, membership.ask(level), strict=True):
            found.setdefault(label, word)
        searched += len(level)
        if len(found) == 2 or searched + len(level) * len(alphabet) > _STARTING_SEARCH_STRINGS:
            break
        level = [w + a for w in level for a in alphabet]
    return sorted(found.values(), key=lambda w: (len(w), w))


class AbstractionOracle:
    """Weiss et al.'s equivalence oracle over a refinable partitioning (module docstring).

    ``refinements`` counts the splits made; ``parts`` is the current number of parts.
    """

    def __init__(
        self,
        model: Recurrent,
        encoding: SymbolEncoding,
        membership: MembershipOracle,
        budget: Budget,
        *,
        svm_c: float = 1e4,
        initial_split_depth: int = 10,
    ) -> None:
        self.model, self.encoding = model, encoding
        self.membership, self.budget = membership, budget
        self.partitioning = Partitioning(svm_c, initial_split_depth)
        self.refinements = 0
        self.explorations = 0
        self.starting: list[str] | None = None

    @property
    def parts(self) -> int:
        return self.partitioning.n_parts

    def find_counterexample(self, hypothesis: DFA) -> str | None:
        """Check the starting examples, then explore (restarting after every refinement) until a
        counterexample or agreement."""
        if self.starting is None:
            self.starting = starting_examples(self.membership, list(self.encoding.alphabet))
        labels = self.membership.ask(self.starting)
        for word, label in zip(self.starting, labels, strict=True):
            if hypothesis.accepts(word) != label:
                return word
        while True:
            try:
                return self._explore(hypothesis)
            except _Refined:
                continue

    def _explore(self, hypothesis: DFA) -> str | None:
        self.explorations += 1
        with torch.no_grad():
            states = start_states(self.model, self.encoding, 1)
        words, hyp = [""], np.array([hypothesis.start])
        seen: dict[int, tuple[int, str]] = {}  # part -> (hypothesis state, first word)
        members: dict[int, list[tuple[int, np.ndarray]]] = {}  # part -> [(hyp state, h)]
        while words:
            self.budget.check_time()
            with torch.no_grad():
                decided = accepts(self.model.readout(states)).cpu().numpy()
            points = states.detach().double().cpu().numpy()
            parts = self.partitioning.assign(points)
            expand = []
            for i, word in enumerate(words):
                q, part = int(hyp[i]), int(parts[i])
                if decided[i] != hypothesis.accepting[q]:
                    return word
                members.setdefault(part, []).append((q, points[i]))
                if part not in seen:
                    seen[part] = (q, word)
                    expand.append(i)
                elif seen[part][0] != q:
                    return self._conflict(hypothesis, part, seen[part], (q, word), members)
            states, words, hyp = self._expand(hypothesis, states, words, hyp, expand)
        return None

    def _expand(
        self, hypothesis: DFA, states: Tensor, words: list[str], hyp: np.ndarray, rows: list[int]
    ) -> tuple[Tensor, list[str], np.ndarray]:
        """Every word in ``rows`` extended by every symbol: one batched ``step``."""
        k = len(self.encoding.alphabet)
        index = torch.tensor(rows, dtype=torch.long).repeat_interleave(k)
        symbols = torch.arange(k).repeat(len(rows))
        with torch.no_grad():
            nxt = self.model.step(
                states[index], symbol_inputs(self.encoding, symbols, states.dtype)
            )
        alphabet = self.encoding.alphabet
        new_words = [words[i] + alphabet[a] for i in rows for a in range(k)]
        new_hyp = hypothesis.transitions[hyp[index.numpy()], symbols.numpy()]
        return nxt, new_words, new_hyp

    def _conflict(
        self,
        hypothesis: DFA,
        part: int,
        first: tuple[int, str],
        second: tuple[int, str],
        members: dict[int, list[tuple[int, np.ndarray]]],
    ) -> str:
        (q1, w1), (q2, w2) = first, second
        suffix = separating_suffix(hypothesis, q1, q2)
        rnn1, rnn2 = self.membership.ask([w1 + suffix, w2 + suffix])
        if rnn1 != rnn2:  # the RNN separates them too: the abstraction is too coarse
            keep = np.array([h for q, h in members[part] if q == q1])
            split_off = np.array([h for q, h in members[part] if q == q2])
            self.partitioning.refine(part, keep, split_off)
            self.refinements += 1
            raise _Refined
        # the RNN treats w1·s and w2·s alike, the hypothesis does not: it is wrong on one of them
        return w1 + suffix if hypothesis.accepts(w1 + suffix) != rnn1 else w2 + suffix
