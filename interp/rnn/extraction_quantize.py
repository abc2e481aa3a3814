"""Quantization: steps 1-5 of :mod:`interp.rnn.extraction` (states on every prefix, k-means or
centroid ids, majority transitions with their conflict rate, majority accept labels, Hopcroft
minimization) and the search over k by validation fidelity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import Tensor

from interp.rnn.automata import DFA
from interp.rnn.extraction import _decide, _fidelity, _Run, _Strings, validation_draw
from interp.rnn.grammars import GrammarTask, SymbolEncoding
from interp.rnn.protocol import Recurrent


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


def quantize(
    model: Recurrent,
    encoding: SymbolEncoding,
    task: GrammarTask | None,
    generator: torch.Generator,
    *,
    method: str,
    test_length: int,
    n_clusters: int | None,
    max_clusters: int,
    fidelity_target: float,
    exhaustive_length: int,
    n_strings: int,
    max_length: int,
    seed: int,
) -> dict[str, Any]:
    """Steps 1-5 of :mod:`interp.rnn.extraction`: the raw and minimized DFA, the chosen k and the
    search over k (validation fidelity on ``n_strings`` strings of lengths 0..``test_length``)."""
    n_symbols = len(encoding.alphabet)
    sample = _Strings.cat(
        [
            _Strings.exhaustive(n_symbols, exhaustive_length),
            _Strings.draw(task, n_symbols, n_strings, generator, max_length=max_length),
        ]
    )
    run = _Run(model, encoding, sample, centroids=method == "centroids")
    validation, val_accept = validation_draw(
        model, encoding, task, generator, n_strings=n_strings, test_length=test_length
    )
    codes, lengths = sample.codes.numpy(), sample.lengths.numpy()
    accept, valid = run.accept.numpy(), run.valid.numpy()

    def attempt(k: int, ids: np.ndarray, quantizer: _Quantizer, labels=None) -> tuple:
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
    return {
        "raw": raw,
        "minimal": minimal,
        "n_clusters": chosen_k,
        "search_k": np.array(list(search)),
        "search_fidelity": np.array(list(search.values())),
        "validation_fidelity": val_fid,
        "settings": {"n_prefix_states": int(valid.sum()), **stats},
    }
