"""Extract a DFA from a trained RNN by quantizing its state space.

The pipeline (Omlin & Giles 1996; Weiss et al. 2018 and Dave et al. 2024 for the evaluation):

1. **States.** Run the RNN (batched over strings) on every string up to ``exhaustive_length`` plus
   ``n_strings`` sampled strings and keep its state after every prefix, together with its own
   accept/reject decision there (``readout(h) > 0`` on the single logit).
2. **Cluster.** k-means over the distinct states (or, for a state-regularized net, the argmax of
   its centroid attention α, ``method="centroids"``).
3. **Transitions.** Tally (cluster, symbol) -> next cluster over all observed prefixes and keep the
   majority; the *conflict rate* is the fraction of observations that disagree with it. A pair never
   observed gets the cluster of ``step(centre, symbol)``.
4. **Accepting clusters** by majority of the RNN's own decisions on the states in them (the
   *label conflict rate* is the minority fraction); for centroids, the readout of the centroid
   (the conflict rate then counts RNN decisions that disagree with their centroid's).
5. **Start** = cluster of the state after the begin-of-string input; Hopcroft minimization drops
   unreachable states and merges equivalent ones (one sink at most).

**Choice of k** (``method="kmeans"``, ``n_clusters=None``): the smallest k in 2..``max_clusters``
whose minimized DFA agrees with the RNN on at least ``fidelity_target`` of a validation set of
strings (a separate draw with lengths 0..``test_length``: long strings are needed to tell apart
states that differ only in the far future, like depth 6 vs the sink of bounded parentheses); if
none does, the k with the best validation fidelity. Why fidelity and not a geometric criterion (silhouette, elbow): an RNN often
keeps several separated clouds for one automaton state (e.g. drifting with length), so geometry
alone over-counts; what we want is the smallest automaton that *behaves* like the RNN, which is
what fidelity measures. Minimization afterwards merges clusters that turned out to be equivalent.

String draws (state sample, validation, test) come from all strings, not from a training task's
disjoint splits: extraction compares the DFA with the RNN, so what matters is that the three draws
are independent (one seeded stream), not which strings the RNN was trained on.

**Evaluation** on fresh strings of every length 0..``test_length`` (default twice the sample
length): fidelity (DFA vs RNN), accuracy of the DFA and of the RNN against the ground truth, and
exact equivalence with the ground-truth DFA with a shortest counterexample. Matching state counts
prove little (a published Tomita-3 extraction had 5 states but agreed on only 92% of strings up to
length 15), so equivalence is decided on the automata themselves.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import Tensor

from interp import __version__
from interp.rnn.automata import DFA
from interp.rnn.extraction_result import Extraction
from interp.rnn.grammars import GrammarTask, SymbolEncoding
from interp.rnn.protocol import Recurrent, check_recurrent, unroll

METHODS = ("kmeans", "centroids")


def _encoding(alphabet: Sequence[str] | SymbolEncoding | GrammarTask) -> SymbolEncoding:
    if isinstance(alphabet, GrammarTask):
        return alphabet.encoding
    if isinstance(alphabet, SymbolEncoding):
        return alphabet
    if isinstance(alphabet, str) or not all(isinstance(s, str) and len(s) == 1 for s in alphabet):
        raise TypeError(
            "alphabet must be a GrammarTask, a SymbolEncoding or a sequence of one-character "
            f"symbols like ['0', '1'], got {alphabet!r}"
        )
    return SymbolEncoding(tuple(alphabet), bos=False)


class _Strings:
    """A padded batch of strings: symbol ids ``[N, T]`` and lengths ``[N]``."""

    def __init__(self, codes: Tensor, lengths: Tensor) -> None:
        self.codes, self.lengths = codes.long(), lengths.long()

    @classmethod
    def cat(cls, parts: Sequence[_Strings]) -> _Strings:
        width = max(p.codes.shape[1] for p in parts)
        codes = torch.cat(
            [torch.nn.functional.pad(p.codes, (0, width - p.codes.shape[1])) for p in parts]
        )
        return cls(codes, torch.cat([p.lengths for p in parts]))

    @classmethod
    def exhaustive(cls, n_symbols: int, max_length: int) -> _Strings:
        rows = [
            w for n in range(max_length + 1) for w in itertools.product(range(n_symbols), repeat=n)
        ]
        codes = torch.zeros(len(rows), max_length, dtype=torch.long)
        for i, w in enumerate(rows):
            codes[i, : len(w)] = torch.tensor(w, dtype=torch.long)
        return cls(codes, torch.tensor([len(w) for w in rows]))

    @classmethod
    def draw(
        cls,
        task: GrammarTask | None,
        n_symbols: int,
        count: int,
        generator: torch.Generator,
        *,
        max_length: int,
        length: int | None = None,
    ) -> _Strings:
        """Half uniform random strings, half the task's balanced sampler (all uniform without one)."""
        n_task = count // 2 if task is not None else 0
        parts = []
        if n_task:
            split_task = GrammarTask(task.dfa, train_length=max_length, min_length=0)
            codes, lengths, _ = split_task.sample_codes(
                n_task, generator, split=None, length=length
            )
            parts.append(cls(codes, lengths))
        n_uniform = count - n_task
        if length is None:
            lengths = torch.randint(0, max_length + 1, (n_uniform,), generator=generator)
        else:
            lengths = torch.full((n_uniform,), length)
        width = max(int(lengths.max()) if n_uniform else 0, 1)
        codes = torch.randint(0, n_symbols, (n_uniform, width), generator=generator)
        parts.append(cls(codes, lengths))
        return cls.cat(parts)


class _Run:
    """The RNN's states, decisions and (for centroid nets) centroid ids after every prefix."""

    def __init__(
        self, model: Recurrent, encoding: SymbolEncoding, strings: _Strings, *, centroids: bool
    ) -> None:
        n = strings.codes.shape[0]
        x = encoding.one_hot(strings.codes)
        h0 = model.initial_state(n)
        x = x.to(h0.dtype)
        if centroids:
            states, ids = _unroll_centroids(model, x, h0)
        else:
            states, ids = unroll(model, x, h0), None
        if not encoding.bos:  # the start state is h0 itself
            states = torch.cat([h0[:, None], states], dim=1)
            if ids is not None:
                ids = torch.cat([_nearest(h0, model.centroids)[:, None], ids], dim=1)
        self.states = states  # [N, T+1, H], column t = after t symbols
        self.ids = ids
        self.accept = _decide(model.readout(states))  # [N, T+1]
        self.strings = strings
        steps = torch.arange(states.shape[1])
        self.valid = steps[None, :] <= strings.lengths[:, None]

    def final_accept(self) -> np.ndarray:
        rows = torch.arange(self.states.shape[0])
        return self.accept[rows, self.strings.lengths].numpy()


def _decide(logits: Tensor) -> Tensor:
    if logits.shape[-1] != 1:
        raise ValueError(
            f"extraction reads accept/reject from a single output logit (> 0 accepts); the model "
            f"has {logits.shape[-1]} outputs"
        )
    return logits[..., 0] > 0


def _nearest(points: Tensor, centres: Tensor) -> Tensor:
    return torch.cdist(points.to(centres.dtype), centres).argmin(dim=-1)


def _unroll_centroids(model: Any, x: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
    if not callable(getattr(model, "step_with_attention", None)) or not hasattr(model, "centroids"):
        raise TypeError(
            "method='centroids' needs a state-regularized net (interp.rnn.state_regularized) with "
            "step_with_attention() and centroids; use method='kmeans' for other RNNs"
        )
    h, states, ids = h0, [], []
    for t in range(x.shape[1]):
        h, alpha = model.step_with_attention(h, x[:, t])
        states.append(h)
        ids.append(alpha.argmax(dim=-1))
    return torch.stack(states, dim=1), torch.stack(ids, dim=1)


def build_dfa(
    ids: np.ndarray,
    accept: np.ndarray,
    codes: np.ndarray,
    lengths: np.ndarray,
    n_clusters: int,
    alphabet: Sequence[str],
    *,
    fill_transition: Any,
    fill_accepting: Any,
    cluster_labels: np.ndarray | None = None,
) -> tuple[DFA, dict[str, float]]:
    """Majority-vote automaton from cluster ids of every prefix state.

    ``ids`` and ``accept`` are ``[N, T+1]`` (column 0 = start), ``codes`` ``[N, T]``. Unobserved
    (cluster, symbol) pairs are filled by ``fill_transition(clusters, symbols) -> clusters``;
    clusters with no state by ``fill_accepting(clusters) -> bool``. ``cluster_labels`` (bool
    ``[k]``), when given, decides acceptance instead of the majority (the label conflict rate then
    counts the RNN decisions that disagree with it). Returns the raw (unminimized) DFA and the
    conflict statistics.
    """
    k, n_symbols = n_clusters, len(alphabet)
    steps = np.arange(codes.shape[1])
    moved = steps[None, :] < lengths[:, None]  # transition t -> t+1 exists
    src, sym, dst = ids[:, :-1][moved], codes[moved], ids[:, 1:][moved]
    tally = np.bincount((src * n_symbols + sym) * k + dst, minlength=k * n_symbols * k).reshape(
        k, n_symbols, k
    )
    totals = tally.sum(axis=2)
    transitions = tally.argmax(axis=2)
    unseen = np.argwhere(totals == 0)
    if len(unseen):
        transitions[unseen[:, 0], unseen[:, 1]] = fill_transition(unseen[:, 0], unseen[:, 1])
    observed = totals.sum()
    conflict = 1.0 - tally.max(axis=2).sum() / observed if observed else 0.0

    valid = np.arange(ids.shape[1])[None, :] <= lengths[:, None]
    votes = np.bincount(ids[valid], weights=accept[valid].astype(float), minlength=k)
    members = np.bincount(ids[valid], minlength=k)
    if cluster_labels is None:
        accepting = votes * 2 > members
        empty = np.flatnonzero(members == 0)
        if len(empty):
            accepting[empty] = fill_accepting(empty)
    else:
        accepting = np.asarray(cluster_labels, dtype=bool)
    disagree = np.where(accepting, members - votes, votes)
    minority = disagree.sum() / max(members.sum(), 1)
    start = np.bincount(ids[:, 0], minlength=k).argmax()
    dfa = DFA(
        alphabet=list(alphabet),
        transitions=transitions,
        accepting=accepting,
        start=int(start),
        name="extracted",
    )
    stats = {
        "transition_conflict_rate": float(conflict),
        "label_conflict_rate": float(minority),
        "unobserved_transitions": len(unseen),
        "start_conflict_rate": float(1.0 - np.bincount(ids[:, 0], minlength=k).max() / len(ids)),
    }
    return dfa, stats


class _Quantizer:
    """Maps states to clusters and back to centres, for one k (k-means) or for the centroids."""

    def __init__(self, model: Any, encoding: SymbolEncoding, centres: Tensor, assign: Any) -> None:
        self.model, self.encoding, self.centres, self.assign = model, encoding, centres, assign

    def fill_transition(self, clusters: np.ndarray, symbols: np.ndarray) -> np.ndarray:
        x = torch.nn.functional.one_hot(torch.as_tensor(symbols), self.encoding.input_size)
        with torch.no_grad():
            h = self.centres[torch.as_tensor(clusters)]
            return self.assign(h, x.to(h.dtype))

    def fill_accepting(self, clusters: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return _decide(self.model.readout(self.centres[torch.as_tensor(clusters)])).numpy()


def _kmeans_quantizer(model: Any, encoding: SymbolEncoding, points: np.ndarray, k: int, seed: int):
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(points)
    centres = torch.as_tensor(km.cluster_centers_, dtype=model.initial_state(1).dtype)

    def assign(h: Tensor, x: Tensor) -> np.ndarray:
        return km.predict(model.step(h, x).double().numpy())

    return km, _Quantizer(model, encoding, centres, assign)


def _centroid_quantizer(model: Any, encoding: SymbolEncoding) -> _Quantizer:
    def assign(h: Tensor, x: Tensor) -> np.ndarray:
        return model.step_with_attention(h, x)[1].argmax(dim=-1).numpy()

    return _Quantizer(model, encoding, model.centroids.detach(), assign)


def _fidelity(dfa: DFA, strings: _Strings, rnn_accept: np.ndarray) -> float:
    return float((_dfa_accepts(dfa, strings) == rnn_accept).mean())


def _dfa_accepts(dfa: DFA, strings: _Strings) -> np.ndarray:
    lengths = strings.lengths.numpy()
    final = dfa.run(strings.codes.numpy(), lengths)[np.arange(len(lengths)), lengths]
    return dfa.accepting[final]


def extract_automaton(
    model: Recurrent,
    alphabet: Sequence[str] | SymbolEncoding | GrammarTask,
    *,
    target: DFA | None = None,
    method: str = "kmeans",
    n_clusters: int | None = None,
    max_clusters: int = 20,
    fidelity_target: float = 0.999,
    exhaustive_length: int = 7,
    n_strings: int = 1000,
    max_length: int | None = None,
    test_length: int | None = None,
    n_test_per_length: int = 200,
    seed: int = 0,
) -> Extraction:
    """Extract a DFA from ``model`` by quantizing its states (see the module docstring).

    Args:
        model: a :class:`~interp.rnn.protocol.Recurrent` with a single output logit (> 0 accepts).
        alphabet: a :class:`~interp.rnn.grammars.GrammarTask` (its encoding with begin-of-string,
            its balanced sampler and its ground-truth DFA), a :class:`SymbolEncoding`, or plain
            one-character symbols (one-hot inputs, start state = ``model.initial_state``).
        target: ground-truth DFA to compare with (default: the task's).
        method: ``"kmeans"`` or ``"centroids"`` (state-regularized nets: argmax of α).
        n_clusters: fix k instead of searching 2..``max_clusters``.
        fidelity_target: validation fidelity at which the search over k stops.
        exhaustive_length: every string up to this length is in the state sample.
        n_strings: sampled strings (lengths 0..``max_length``) added to the state sample; also the
            size of the validation set for choosing k (lengths 0..``test_length``).
        max_length: longest sampled string (default: the task's ``train_length``, else 10).
        test_length: longest test string (default ``2 * max_length``).
        n_test_per_length: test strings per length (half uniform, half balanced by the task).
        seed: seeds the string samples and k-means.
    """
    model = check_recurrent(model)
    encoding = _encoding(alphabet)
    task = alphabet if isinstance(alphabet, GrammarTask) else None
    if target is None and task is not None:
        target = task.dfa
    if target is not None and list(target.alphabet) != list(encoding.alphabet):
        raise ValueError(
            f"target alphabet {target.alphabet} differs from {list(encoding.alphabet)}"
        )
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if n_clusters is not None and n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    if not 0.0 < fidelity_target <= 1.0:
        raise ValueError(f"fidelity_target must be in (0, 1], got {fidelity_target}")
    max_length = max_length or (task.train_length if task is not None else 10)
    test_length = test_length or 2 * max_length
    n_symbols = len(encoding.alphabet)
    generator = torch.Generator().manual_seed(seed)

    with torch.no_grad():
        sample = _Strings.cat(
            [
                _Strings.exhaustive(n_symbols, exhaustive_length),
                _Strings.draw(task, n_symbols, n_strings, generator, max_length=max_length),
            ]
        )
        run = _Run(model, encoding, sample, centroids=method == "centroids")
        validation = _Strings.draw(task, n_symbols, n_strings, generator, max_length=test_length)
        val_accept = _Run(model, encoding, validation, centroids=False).final_accept()
        codes, lengths = sample.codes.numpy(), sample.lengths.numpy()
        accept, valid = run.accept.numpy(), run.valid.numpy()

        def attempt(
            k: int, ids: np.ndarray, quantizer: _Quantizer, labels=None
        ) -> tuple[DFA, DFA, dict, float]:
            raw, stats = build_dfa(
                ids,
                accept,
                codes,
                lengths,
                k,
                encoding.alphabet,
                fill_transition=quantizer.fill_transition,
                fill_accepting=quantizer.fill_accepting,
                cluster_labels=labels,
            )
            minimal = raw.minimize()
            return raw, minimal, stats, _fidelity(minimal, validation, val_accept)

        search: dict[int, float] = {}
        if method == "centroids":
            quantizer = _centroid_quantizer(model, encoding)
            chosen_k = int(quantizer.centres.shape[0])
            labels = quantizer.fill_accepting(np.arange(chosen_k))  # readout of every centroid
            raw, minimal, stats, val_fid = attempt(chosen_k, run.ids.numpy(), quantizer, labels)
            search[chosen_k] = val_fid
        else:
            flat = run.states[torch.from_numpy(valid)].double().numpy()
            points = np.unique(flat.round(6), axis=0)
            candidates = [n_clusters] if n_clusters else list(range(2, max_clusters + 1))
            candidates = [k for k in candidates if k <= len(points)] or [len(points)]
            best = None
            for k in candidates:
                km, quantizer = _kmeans_quantizer(model, encoding, points, k, seed)
                ids = km.predict(run.states.double().numpy().reshape(-1, flat.shape[1])).reshape(
                    valid.shape
                )
                outcome = attempt(k, ids, quantizer)
                search[k] = outcome[3]
                if best is None or outcome[3] > best[1][3]:
                    best = (k, outcome)
                if outcome[3] >= fidelity_target:
                    best = (k, outcome)
                    break
            chosen_k, (raw, minimal, stats, val_fid) = best

        test = _Strings.cat(
            [
                _Strings.draw(
                    task, n_symbols, n_test_per_length, generator, max_length=test_length, length=n
                )
                for n in range(test_length + 1)
            ]
        )
        rnn_test = _Run(model, encoding, test, centroids=False).final_accept()

    dfa_test = _dfa_accepts(minimal, test)
    by_length = test.lengths.numpy()
    lengths_axis = np.arange(test_length + 1)

    def per_length(hit: np.ndarray) -> np.ndarray:
        return np.array([hit[by_length == n].mean() for n in lengths_axis])

    fidelity = per_length(dfa_test == rnn_test)
    truth = _dfa_accepts(target, test) if target is not None else None
    equivalent, counterexample = minimal.equivalent(target) if target is not None else (None, None)
    return Extraction(
        alphabet=list(encoding.alphabet),
        transitions=minimal.transitions,
        accepting=minimal.accepting,
        start=minimal.start,
        raw_transitions=raw.transitions,
        raw_accepting=raw.accepting,
        raw_start=raw.start,
        target_transitions=target.transitions if target is not None else None,
        target_accepting=target.accepting if target is not None else None,
        target_start=target.start if target is not None else None,
        target_name=target.name if target is not None else None,
        lengths=lengths_axis,
        fidelity_by_length=fidelity,
        accuracy_by_length=per_length(dfa_test == truth) if truth is not None else None,
        rnn_accuracy_by_length=per_length(rnn_test == truth) if truth is not None else None,
        fidelity=float((dfa_test == rnn_test).mean()),
        accuracy=float((dfa_test == truth).mean()) if truth is not None else None,
        equivalent=equivalent,
        counterexample=counterexample,
        n_clusters=chosen_k,
        search_k=np.array(list(search)),
        search_fidelity=np.array(list(search.values())),
        validation_fidelity=val_fid,
        settings={
            "method": method,
            "n_clusters": n_clusters,
            "max_clusters": max_clusters,
            "fidelity_target": fidelity_target,
            "exhaustive_length": exhaustive_length,
            "n_strings": n_strings,
            "max_length": max_length,
            "test_length": test_length,
            "n_test_per_length": n_test_per_length,
            "seed": seed,
            "n_prefix_states": int(valid.sum()),
            "begin_of_string": encoding.bos,
            "interp_version": __version__,
            **stats,
        },
    )
