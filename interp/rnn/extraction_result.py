"""The result of :func:`interp.rnn.extract_automaton`: the automaton, how faithful it is, and how it
was obtained."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.results import Result
from interp.rnn.automata import DFA, state_graph_figure


@dataclasses.dataclass
class Extraction(Result):
    """An automaton extracted from an RNN.

    Fields: the minimized DFA (``transitions``, ``accepting``, ``start`` over ``alphabet``), the raw
    majority-vote DFA over all ``n_clusters`` clusters (``raw_*``), the ground truth it was compared
    with (``target_*``, None without one), per-length test curves (``lengths``,
    ``fidelity_by_length`` = agreement with the RNN, ``accuracy_by_length`` = agreement of the DFA
    with the ground truth, ``rnn_accuracy_by_length`` = the RNN's own accuracy), their averages,
    exact ``equivalent``-ce with the ground truth and a shortest ``counterexample``, the search over
    k (``search_k``, ``search_fidelity`` on the validation set; empty for L*) and every setting and
    conflict rate in ``settings``.

    L* (``settings["method"] == "lstar"``) also fills ``membership_queries`` (distinct strings the
    RNN was asked), ``equivalence_queries``, the ``counterexamples`` the teacher returned in order,
    and ``complete``: False when a limit stopped the run (``stopped_by`` names it: ``max_states``,
    ``max_membership_queries``, ``max_equivalence_queries`` or ``time_limit``); the automaton is
    then the hypothesis so far. For L*, ``n_clusters`` is the number of parts of the abstraction
    of the state space (0 with the PAC oracle) and the raw DFA is the last hypothesis. ``seconds``
    is the wall time of the whole extraction, evaluation included.
    """

    alphabet: list[str]
    transitions: np.ndarray
    accepting: np.ndarray
    start: int
    raw_transitions: np.ndarray
    raw_accepting: np.ndarray
    raw_start: int
    target_transitions: np.ndarray | None
    target_accepting: np.ndarray | None
    target_start: int | None
    target_name: str | None
    lengths: np.ndarray
    fidelity_by_length: np.ndarray
    accuracy_by_length: np.ndarray | None
    rnn_accuracy_by_length: np.ndarray | None
    fidelity: float
    accuracy: float | None
    equivalent: bool | None
    counterexample: str | None
    n_clusters: int
    search_k: np.ndarray
    search_fidelity: np.ndarray
    validation_fidelity: float
    settings: dict[str, Any]
    membership_queries: int | None = None
    equivalence_queries: int | None = None
    counterexamples: list[str] | None = None
    complete: bool = True
    stopped_by: str | None = None
    seconds: float | None = None

    @property
    def dfa(self) -> DFA:
        """The extracted, minimized automaton."""
        return DFA(self.alphabet, self.transitions, self.accepting, self.start, name="extracted")

    @property
    def raw_dfa(self) -> DFA:
        """The majority-vote automaton over all clusters, before minimization."""
        return DFA(
            self.alphabet, self.raw_transitions, self.raw_accepting, self.raw_start, name="raw"
        )

    @property
    def target(self) -> DFA | None:
        """The ground-truth automaton, if one was given."""
        if self.target_transitions is None:
            return None
        return DFA(
            self.alphabet,
            self.target_transitions,
            self.target_accepting,
            self.target_start,
            name=self.target_name or "target",
        )

    @property
    def n_states(self) -> int:
        return int(np.asarray(self.accepting).shape[0])

    def summary(self) -> dict[str, Any]:
        """The headline numbers as a flat dict (one row of a comparison table)."""
        target = self.target
        return {
            "target": self.target_name,
            "states": self.n_states,
            "target_states": target.minimize().n_states if target is not None else None,
            "clusters": self.n_clusters,
            "fidelity": self.fidelity,
            "accuracy": self.accuracy,
            "equivalent": self.equivalent,
            "counterexample": self.counterexample,
            "transition_conflict_rate": self.settings.get("transition_conflict_rate"),
            "membership_queries": self.membership_queries,
            "equivalence_queries": self.equivalence_queries,
            "complete": self.complete,
            "stopped_by": self.stopped_by,
            "seconds": self.seconds,
        }

    def table(self) -> str:
        """Headline numbers, then the transition table of the extracted DFA."""
        s = self.summary()
        lstar = self.settings.get("method") == "lstar"
        how = (
            f"lstar, {self.settings.get('equivalence')} oracle"
            if lstar
            else f"{self.settings.get('method')}, k={self.n_clusters}"
        )
        lines = [
            f"Extracted automaton ({how}): {s['states']} states"
            + (f" (ground truth {s['target']}: {s['target_states']})" if s["target"] else ""),
        ]
        if not self.complete:
            lines.append(
                f"INCOMPLETE: the {self.stopped_by} limit stopped L*; this is the hypothesis so far"
            )
        lines.append(
            f"fidelity to the RNN (lengths 0..{int(self.lengths[-1])}): {self.fidelity:.4f}"
        )
        if self.accuracy is not None:
            rnn = float(np.mean(self.rnn_accuracy_by_length))
            lines.append(f"accuracy vs ground truth: DFA {self.accuracy:.4f}, RNN {rnn:.4f}")
            verdict = (
                "yes" if self.equivalent else f"no, shortest counterexample {self.counterexample!r}"
            )
            lines.append(f"equivalent to the ground truth: {verdict}")
        if lstar:
            lines.append(self._queries_line())
        else:
            lines.append(
                "conflict rates: transitions {:.4f}, accept labels {:.4f}; unobserved "
                "transitions {}".format(
                    self.settings.get("transition_conflict_rate", float("nan")),
                    self.settings.get("label_conflict_rate", float("nan")),
                    self.settings.get("unobserved_transitions"),
                )
            )
        lines += ["", self.dfa.table()]
        return "\n".join(lines)

    def _queries_line(self) -> str:
        shown = [repr(c) for c in (self.counterexamples or [])[:8]]
        more = len(self.counterexamples or []) - len(shown)
        return (
            f"queries: {self.membership_queries} membership ({self.settings.get('rnn_unrolls')} "
            f"batched unrolls), {self.equivalence_queries} equivalence; counterexamples: "
            + (", ".join(shown) or "none")
            + (f" and {more} more" if more > 0 else "")
        )

    def figure(self) -> go.Figure:
        """Left: the extracted state graph. Right: fidelity and accuracy by string length."""
        graph = state_graph_figure(self.dfa)
        fig = make_subplots(
            rows=1,
            cols=2,
            column_widths=[0.55, 0.45],
            subplot_titles=(
                f"extracted DFA ({self.n_states} states)",
                "agreement by string length",
            ),
        )
        for trace in graph.data:
            fig.add_trace(trace, row=1, col=1)
        for note in graph.layout.annotations:
            fig.add_annotation(
                note.update(
                    xref="x",
                    yref="y",
                    axref="x" if note.showarrow else None,
                    ayref="y" if note.showarrow else None,
                )
            )
        curves = {"fidelity (DFA vs RNN)": self.fidelity_by_length}
        if self.accuracy_by_length is not None:
            curves["DFA vs ground truth"] = self.accuracy_by_length
            curves["RNN vs ground truth"] = self.rnn_accuracy_by_length
        for name, values in curves.items():
            fig.add_trace(
                go.Scatter(x=self.lengths, y=values, mode="lines+markers", name=name), row=1, col=2
            )
        train_length = self.settings.get("max_length")
        if train_length is not None:
            fig.add_vline(x=train_length, line_dash="dot", line_color="grey", row=1, col=2)
        fig.update_xaxes(visible=False, range=[-1.6, 1.6], row=1, col=1)
        fig.update_yaxes(visible=False, range=[-1.6, 1.6], scaleanchor="x", row=1, col=1)
        fig.update_xaxes(title_text="string length (dotted: longest sampled)", row=1, col=2)
        fig.update_yaxes(title_text="agreement", range=[0, 1.02], row=1, col=2)
        title = f"Automaton extracted from the RNN (fidelity {self.fidelity:.3f}"
        if self.equivalent is not None:
            title += (
                ", equivalent to ground truth"
                if self.equivalent
                else ", NOT equivalent to ground truth"
            )
        if not self.complete:
            title += f"; INCOMPLETE: stopped by {self.stopped_by}"
        fig.update_layout(title=title + ")", template="plotly_white", width=1100, height=520)
        return fig
