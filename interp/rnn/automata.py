"""Deterministic finite automata: the ground truth for grammar tasks and the output of extraction.

A :class:`DFA` is complete (every state has a transition on every symbol) and stored as arrays:
``transitions[q, a]`` is the state reached from ``q`` on the ``a``-th symbol of ``alphabet``,
``accepting[q]`` says whether ``q`` accepts, ``start`` is the initial state. Keeping it as arrays
lets whole batches of strings run through it with one fancy-indexing step per position, lets it save
as a :class:`~interp.results.Result`, and makes equality of minimal DFAs a plain array comparison
(:meth:`DFA.minimize` numbers states canonically, in breadth-first order from the start).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Sequence

import networkx as nx
import numpy as np
import plotly.graph_objects as go

from interp import __version__
from interp.results import Result


@dataclasses.dataclass
class DFA(Result):
    """A complete DFA over a finite alphabet of one-character symbols.

    Args:
        alphabet: the symbols, each a one-character string (``("0", "1")``, ``("(", ")")``).
        transitions: int array ``[n_states, n_symbols]``; ``transitions[q, a]`` is the next state.
        accepting: bool array ``[n_states]``.
        start: the initial state.
        name: a label used in tables and figures.
    """

    alphabet: list[str]
    transitions: np.ndarray
    accepting: np.ndarray
    start: int = 0
    name: str = "dfa"
    version: str = __version__

    def __post_init__(self) -> None:
        self.alphabet = list(self.alphabet)
        self.transitions = np.asarray(self.transitions, dtype=np.int64)
        self.accepting = np.asarray(self.accepting, dtype=bool)
        if not self.alphabet or any(not isinstance(s, str) or len(s) != 1 for s in self.alphabet):
            raise ValueError(
                f"alphabet must be a non-empty list of one-character strings, got {self.alphabet!r}"
            )
        if len(set(self.alphabet)) != len(self.alphabet):
            raise ValueError(f"alphabet has repeated symbols: {self.alphabet!r}")
        n = self.accepting.shape[0]
        if self.accepting.ndim != 1 or n == 0:
            raise ValueError(
                f"accepting must be a non-empty 1-D bool array, got shape {self.accepting.shape}"
            )
        if self.transitions.shape != (n, len(self.alphabet)):
            raise ValueError(
                f"transitions must have shape [n_states, n_symbols] = {(n, len(self.alphabet))}, "
                f"got {self.transitions.shape}"
            )
        if self.transitions.size and (self.transitions.min() < 0 or self.transitions.max() >= n):
            raise ValueError(f"transitions must hold state ids in [0, {n}), got values outside")
        if not 0 <= int(self.start) < n:
            raise ValueError(f"start must be a state id in [0, {n}), got {self.start}")
        self.start = int(self.start)

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_table(
        cls,
        alphabet: Sequence[str],
        table: dict[str, dict[str, str]],
        *,
        start: str,
        accepting: Iterable[str],
        name: str = "dfa",
    ) -> DFA:
        """Build from ``{state: {symbol: next_state}}`` with named states (order of ``table`` kept)."""
        names = list(table)
        index = {s: i for i, s in enumerate(names)}
        accept = set(accepting)
        unknown = (accept | {start}) - set(names)
        if unknown:
            raise ValueError(f"states {sorted(unknown)} are not keys of the table {names}")
        rows = []
        for state in names:
            missing = [a for a in alphabet if a not in table[state]]
            if missing:
                raise ValueError(
                    f"state {state!r} has no transition on {missing}; the DFA must be complete"
                )
            rows.append([index[table[state][a]] for a in alphabet])
        return cls(
            alphabet=list(alphabet),
            transitions=np.array(rows, dtype=np.int64),
            accepting=np.array([s in accept for s in names]),
            start=index[start],
            name=name,
        )

    # ----------------------------------------------------------------- running strings

    @property
    def n_states(self) -> int:
        return int(self.accepting.shape[0])

    def encode(self, strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Strings -> (symbol ids ``[B, T]`` padded with 0, lengths ``[B]``)."""
        if isinstance(strings, str):
            raise TypeError("pass a list of strings, not one string (use accepts() for one)")
        index = {s: i for i, s in enumerate(self.alphabet)}
        lengths = np.array([len(s) for s in strings], dtype=np.int64)
        codes = np.zeros((len(strings), int(lengths.max(initial=0))), dtype=np.int64)
        for row, string in enumerate(strings):
            try:
                codes[row, : len(string)] = [index[c] for c in string]
            except KeyError as err:
                raise ValueError(
                    f"string {string!r} has symbol {err.args[0]!r} outside the alphabet {self.alphabet}"
                ) from None
        return codes, lengths

    def run(self, codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """States after every prefix: ``[B, T + 1]`` (column 0 is the start state).

        Positions past a string's length repeat its last state, so ``out[b, lengths[b]]`` is the
        state after the whole string.
        """
        codes = np.asarray(codes, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        batch, steps = codes.shape
        states = np.empty((batch, steps + 1), dtype=np.int64)
        states[:, 0] = self.start
        for t in range(steps):
            nxt = self.transitions[states[:, t], codes[:, t]]
            states[:, t + 1] = np.where(t < lengths, nxt, states[:, t])
        return states

    def accepts_batch(self, strings: Sequence[str]) -> np.ndarray:
        """Bool array: which of ``strings`` the DFA accepts."""
        codes, lengths = self.encode(strings)
        final = self.run(codes, lengths)[np.arange(len(strings)), lengths]
        return self.accepting[final]

    def accepts(self, string: str) -> bool:
        """Whether the DFA accepts one string."""
        return bool(self.accepts_batch([string])[0])

    # ----------------------------------------------------------------- structure

    def reachable(self) -> np.ndarray:
        """Bool mask of the states reachable from the start."""
        seen = np.zeros(self.n_states, dtype=bool)
        seen[self.start] = True
        frontier = [self.start]
        while frontier:
            nxt = np.unique(self.transitions[frontier].ravel())
            frontier = [int(q) for q in nxt if not seen[q]]
            seen[frontier] = True
        return seen

    def sinks(self) -> np.ndarray:
        """Bool mask of rejecting states whose every transition loops back to themselves."""
        loops = (self.transitions == np.arange(self.n_states)[:, None]).all(axis=1)
        return loops & ~self.accepting

    def canonical(self) -> DFA:
        """Drop unreachable states and renumber the rest in breadth-first order from the start.

        Two DFAs are isomorphic exactly when their canonical forms have equal arrays.
        """
        order = [self.start]
        position = {self.start: 0}
        queue = deque([self.start])
        while queue:
            q = queue.popleft()
            for nxt in self.transitions[q]:
                if int(nxt) not in position:
                    position[int(nxt)] = len(order)
                    order.append(int(nxt))
                    queue.append(int(nxt))
        old = np.array(order)
        relabel = np.vectorize(position.__getitem__, otypes=[np.int64])
        return dataclasses.replace(
            self, transitions=relabel(self.transitions[old]), accepting=self.accepting[old], start=0
        )

    def minimize(self) -> DFA:
        """The minimal equivalent DFA (Hopcroft's partition refinement), canonically numbered.

        Unreachable states are dropped first; the result keeps one sink at most.
        """
        dfa = self.canonical()
        n, k = dfa.n_states, len(dfa.alphabet)
        inverse = [[[] for _ in range(n)] for _ in range(k)]  # inverse[a][q] = {p : delta(p,a)=q}
        for p in range(n):
            for a in range(k):
                inverse[a][int(dfa.transitions[p, a])].append(p)
        accept = frozenset(np.flatnonzero(dfa.accepting).tolist())
        reject = frozenset(range(n)) - accept
        partition = {block for block in (accept, reject) if block}
        work = {min(partition, key=len)} if len(partition) == 2 else set()
        while work:
            splitter = work.pop()
            for a in range(k):
                pre = {p for q in splitter for p in inverse[a][q]}
                if not pre:
                    continue
                for block in list(partition):
                    inside, outside = block & pre, block - pre
                    if not inside or not outside:
                        continue
                    partition.remove(block)
                    partition |= {inside, outside}
                    if block in work:
                        work.remove(block)
                        work |= {inside, outside}
                    else:
                        work.add(min(inside, outside, key=len))
        block_of = np.empty(n, dtype=np.int64)
        blocks = list(partition)
        for i, block in enumerate(blocks):
            block_of[list(block)] = i
        reps = np.array([min(block) for block in blocks])
        merged = dataclasses.replace(
            dfa,
            transitions=block_of[dfa.transitions[reps]],
            accepting=dfa.accepting[reps],
            start=int(block_of[dfa.start]),
        )
        return merged.canonical()

    def equivalent(self, other: DFA) -> tuple[bool, str | None]:
        """Whether both accept the same language, with a shortest string where they differ.

        Breadth-first search over the product automaton from the pair of start states: the first
        pair found whose acceptance differs gives a shortest counterexample (ties broken by
        alphabet order). Returns ``(True, None)`` when the languages are equal.
        """
        if not isinstance(other, DFA):
            raise TypeError(f"equivalent() needs a DFA, got {type(other).__name__}")
        if list(other.alphabet) != list(self.alphabet):
            raise ValueError(f"alphabets differ: {self.alphabet} vs {other.alphabet}")
        origin = (self.start, other.start)
        parent: dict[tuple[int, int], tuple[tuple[int, int], str] | None] = {origin: None}
        queue = deque([origin])
        while queue:
            pair = queue.popleft()
            if self.accepting[pair[0]] != other.accepting[pair[1]]:
                symbols = []
                while parent[pair] is not None:
                    pair, symbol = parent[pair]
                    symbols.append(symbol)
                return False, "".join(reversed(symbols))
            for a, symbol in enumerate(self.alphabet):
                nxt = (int(self.transitions[pair[0], a]), int(other.transitions[pair[1], a]))
                if nxt not in parent:
                    parent[nxt] = (pair, symbol)
                    queue.append(nxt)
        return True, None

    # ----------------------------------------------------------------- views

    def to_networkx(self) -> nx.MultiDiGraph:
        """A multigraph: one node per state (``accepting``, ``start``, ``sink`` attributes), one edge
        per transition (``symbol`` attribute)."""
        graph = nx.MultiDiGraph(name=self.name)
        sinks = self.sinks()
        for q in range(self.n_states):
            graph.add_node(
                q, accepting=bool(self.accepting[q]), start=q == self.start, sink=bool(sinks[q])
            )
        for q in range(self.n_states):
            for a, symbol in enumerate(self.alphabet):
                graph.add_edge(q, int(self.transitions[q, a]), symbol=symbol)
        return graph

    def table(self) -> str:
        """The transition table as plain text: one row per state, ``->`` marks the start, ``*``
        accepting states, ``(sink)`` the sink."""
        sinks = self.sinks()
        width = max(6, len(str(self.n_states)) + 4)
        header = f"{'state':<{width + 4}}" + "".join(f"{s:>{width}}" for s in self.alphabet)
        lines = [f"{self.name}: {self.n_states} states, alphabet {''.join(self.alphabet)}", header]
        for q in range(self.n_states):
            mark = ("->" if q == self.start else "  ") + ("*" if self.accepting[q] else " ")
            cells = "".join(
                f"{int(self.transitions[q, a]):>{width}}" for a in range(len(self.alphabet))
            )
            lines.append(f"{mark} {q:<{width}}{cells}" + ("  (sink)" if sinks[q] else ""))
        return "\n".join(lines)

    def figure(self, *, title: str | None = None) -> go.Figure:
        """The state graph: green nodes accept, grey ones reject, the start has a thick border;
        edges are labelled with their symbols (parallel edges merged)."""
        return state_graph_figure(self, title=title)

    def __repr__(self) -> str:
        return f"DFA(name={self.name!r}, n_states={self.n_states}, alphabet={self.alphabet})"


def state_graph_figure(dfa: DFA, *, title: str | None = None) -> go.Figure:
    """Plotly drawing of a DFA (used by :meth:`DFA.figure` and the extraction results)."""
    n = dfa.n_states
    angle = 2 * np.pi * np.arange(n) / n + np.pi / 2
    pos = np.stack([np.cos(angle), np.sin(angle)], axis=1) if n > 1 else np.zeros((1, 2))
    labels: dict[tuple[int, int], list[str]] = {}
    for q in range(n):
        for a, symbol in enumerate(dfa.alphabet):
            labels.setdefault((q, int(dfa.transitions[q, a])), []).append(symbol)
    fig = go.Figure()
    annotations = []
    for (p, q), symbols in labels.items():
        text = ",".join(symbols)
        if p == q:
            out = pos[p] * (1.28 if n > 1 else 0) + (0 if n > 1 else np.array([0, 0.3]))
            annotations.append(
                dict(x=out[0], y=out[1], text=f"↻ {text}", showarrow=False, font=dict(size=13))
            )
            continue
        src, dst = pos[p], pos[q]
        # Bend the edge sideways so p->q and q->p do not overlap.
        normal = np.array([-(dst - src)[1], (dst - src)[0]]) * 0.12
        mid = (src + dst) / 2 + normal
        fig.add_trace(
            go.Scatter(
                x=[src[0], mid[0], dst[0]],
                y=[src[1], mid[1], dst[1]],
                mode="lines",
                line=dict(color="#888", width=1.5, shape="spline"),
                hoverinfo="skip",
                showlegend=False,
            )
        )
        tip = dst + (mid - dst) * 0.25
        annotations.append(
            dict(
                x=tip[0],
                y=tip[1],
                ax=mid[0],
                ay=mid[1],
                xref="x",
                yref="y",
                axref="x",
                ayref="y",
                showarrow=True,
                arrowhead=3,
                arrowsize=1.4,
                arrowcolor="#555",
                text="",
            )
        )
        annotations.append(
            dict(
                x=mid[0],
                y=mid[1],
                text=text,
                showarrow=False,
                font=dict(size=13),
                bgcolor="rgba(255,255,255,0.8)",
            )
        )
    sinks = dfa.sinks()
    hover = [
        f"state {q}<br>{'accepting' if dfa.accepting[q] else 'rejecting'}"
        + ("<br>start" if q == dfa.start else "")
        + ("<br>sink" if sinks[q] else "")
        for q in range(n)
    ]
    fig.add_trace(
        go.Scatter(
            x=pos[:, 0],
            y=pos[:, 1],
            mode="markers+text",
            text=[str(q) for q in range(n)],
            textfont=dict(size=14, color="black"),
            hovertext=hover,
            hoverinfo="text",
            marker=dict(
                size=36,
                color=["#7fd17f" if a else "#d9d9d9" for a in dfa.accepting],
                line=dict(color="black", width=[4 if q == dfa.start else 1 for q in range(n)]),
            ),
            showlegend=False,
        )
    )
    fig.update_layout(
        title=title or f"{dfa.name}: {n} states (green = accepting, thick border = start)",
        annotations=annotations,
        xaxis=dict(visible=False, range=[-1.6, 1.6]),
        yaxis=dict(visible=False, range=[-1.6, 1.6], scaleanchor="x"),
        template="plotly_white",
        width=560,
        height=560,
    )
    return fig
