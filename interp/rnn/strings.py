"""Sampling strings of a regular language: uniform per (length, label), within disjoint splits.

The number of strings of each length and label that lead from each DFA state to acceptance
(:func:`_counts`) ranks the strings of a length and label in symbol order; :func:`_unrank` maps a
rank to its string, so a uniform rank is a uniform string and small groups can be enumerated.

Splits: :func:`string_split` hashes every string into ``train`` (80%), ``val`` (10%) or ``test``
(10%), a function of the string alone, so the splits are disjoint *sets of strings*. Sampling
within a split enumerates small (length, label) groups and rejection-samples large ones (where
each split holds about its share of the strings), so it stays uniform within the split.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from interp.rnn.automata import DFA


def _counts(dfa: DFA, max_length: int) -> np.ndarray:
    """``counts[r, q, label]``: strings of length ``r`` that lead from ``q`` to an accepting
    (label 1) or rejecting (label 0) state. float64: exact up to 2**53."""
    counts = np.zeros((max_length + 1, dfa.n_states, 2))
    counts[0, :, 1] = dfa.accepting
    counts[0, :, 0] = ~dfa.accepting
    for r in range(1, max_length + 1):
        counts[r] = counts[r - 1][dfa.transitions].sum(axis=1)
    return counts


# ----------------------------------------------------------------------------- disjoint splits

GRAMMAR_SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
_ENUMERATE = 512  # (length, label) groups this small are enumerated, larger ones rejection-sampled
_REJECTION_ROUNDS = 1000
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (uint64 arithmetic wraps, which is the point)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def string_split(codes: np.ndarray | Tensor, lengths: np.ndarray | Tensor) -> np.ndarray:
    """The split of each string, as an index into :data:`GRAMMAR_SPLITS`.

    A fixed hash of the symbol ids and the length, mapped to [0, 1), puts a string in ``train``
    (first 80%), ``val`` (next 10%) or ``test`` (last 10%). It depends on the string only, so the
    three splits are disjoint sets of strings for every grammar over the same symbol ids.
    """
    codes = np.asarray(codes).astype(np.uint64)
    lengths = np.asarray(lengths).astype(np.int64)
    key = np.full(len(lengths), _GOLDEN, dtype=np.uint64)
    for t in range(codes.shape[1] if codes.ndim == 2 else 0):
        key = np.where(t < lengths, _mix(key + _GOLDEN * (codes[:, t] + np.uint64(1))), key)
    key = _mix(key ^ lengths.astype(np.uint64))
    unit = (key >> np.uint64(11)).astype(np.float64) / 2.0**53
    return np.searchsorted(np.cumsum(SPLIT_FRACTIONS)[:-1], unit, side="right")


def _unrank(
    dfa: DFA, counts: np.ndarray, lengths: np.ndarray, labels: np.ndarray, position: np.ndarray
) -> np.ndarray:
    """The string at (fractional) rank ``position`` in [0, count) among the strings of each row's
    length and label, in symbol order. ``position = u * count`` with ``u`` uniform samples them
    uniformly; ``position = r + 0.5`` enumerates them."""
    batch, max_len = len(lengths), int(lengths.max(initial=0))
    codes = np.zeros((batch, max_len), dtype=np.int64)
    state = np.full(batch, dfa.start)
    position = position.astype(np.float64).copy()
    rows = np.arange(batch)
    for t in range(max_len):
        remaining = np.maximum(lengths - t - 1, 0)
        weights = counts[remaining[:, None], dfa.transitions[state], labels[:, None]]  # [B, k]
        cumulative = np.cumsum(weights, axis=1)
        pick = np.minimum((position[:, None] >= cumulative).sum(axis=1), len(dfa.alphabet) - 1)
        before = np.where(pick > 0, cumulative[rows, np.maximum(pick - 1, 0)], 0.0)
        active = t < lengths
        codes[active, t] = pick[active]
        position = np.where(active, position - before, position)
        state = np.where(active, dfa.transitions[state, pick], state)
    return codes


def dfa_key(dfa: DFA) -> tuple:
    return (tuple(map(tuple, dfa.transitions.tolist())), tuple(dfa.accepting.tolist()), dfa.start)


@functools.lru_cache(maxsize=4096)
def _ranks_in_split(key: tuple, length: int, label: int, split: int) -> np.ndarray | None:
    """Ranks of the strings of ``(length, label)`` that lie in ``split``; None if there are too
    many to enumerate (then some lie in every split, with overwhelming probability)."""
    transitions, accepting, start = key
    dfa = DFA(
        alphabet=[str(i) for i in range(len(transitions[0]))],
        transitions=np.array(transitions),
        accepting=np.array(accepting),
        start=start,
    )
    counts = _counts(dfa, length)
    total = int(counts[length, dfa.start, label])
    if total > _ENUMERATE:
        return None
    ranks = np.arange(total)
    lengths = np.full(total, length)
    codes = _unrank(dfa, counts, lengths, np.full(total, label), ranks + 0.5)
    return ranks[string_split(codes, lengths) == split]


@functools.lru_cache(maxsize=256)
def lengths_in_split(key: tuple, low: int, high: int, split: int) -> list[int]:
    """The lengths in ``low..high`` with at least one string in ``split``."""
    return [
        n
        for n in range(low, high + 1)
        if any(
            (ranks := _ranks_in_split(key, n, lab, split)) is None or len(ranks) for lab in (0, 1)
        )
    ]


def _split_has(dfa: DFA, length: int, label: int, split: int) -> bool:
    ranks = _ranks_in_split(dfa_key(dfa), length, label, split)
    return ranks is None or len(ranks) > 0


def sample_strings(
    dfa: DFA,
    lengths: Tensor,
    labels: Tensor,
    generator: torch.Generator,
    split: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample one string per (length, label), uniform among the strings with that length and label
    (and, with ``split``, among those of that split only; see :func:`string_split`).

    Where no such string has the asked label (Tomita 2 at odd lengths; in a split, a tiny
    language's one positive string of that length lying in another split), the other label is
    used. Returns (symbol ids ``[B, max(lengths)]`` padded with 0, the labels actually used).
    """
    lengths_np = lengths.numpy().astype(np.int64)
    counts = _counts(dfa, int(lengths_np.max(initial=0)))
    label = labels.numpy().astype(np.int64).copy()
    if split is None:
        empty = counts[lengths_np, dfa.start, label] == 0
        label[empty] = 1 - label[empty]
        uniform = torch.rand(len(label), generator=generator, dtype=torch.float64).numpy()
        position = uniform * counts[lengths_np, dfa.start, label]
        return torch.from_numpy(
            _unrank(dfa, counts, lengths_np, label, position)
        ), torch.from_numpy(label)
    if split not in GRAMMAR_SPLITS:
        raise ValueError(f"split must be one of {GRAMMAR_SPLITS} or None, got {split!r}")
    index, key = GRAMMAR_SPLITS.index(split), dfa_key(dfa)
    has = {
        (n, lab): _split_has(dfa, n, lab, index) for n in set(lengths_np.tolist()) for lab in (0, 1)
    }
    for row, n in enumerate(lengths_np.tolist()):
        if not has[n, label[row]]:
            if not has[n, 1 - label[row]]:
                raise ValueError(f"no string of length {n} lies in the {split!r} split")
            label[row] = 1 - label[row]
    uniform = torch.rand(len(label), generator=generator, dtype=torch.float64).numpy()
    position = uniform * counts[lengths_np, dfa.start, label]
    large = np.ones(len(label), dtype=bool)
    for n, lab in {(n, lab) for n, lab in zip(lengths_np.tolist(), label.tolist(), strict=True)}:
        ranks = _ranks_in_split(key, n, lab, index)
        if ranks is not None:  # small group: pick uniformly among its members in the split
            rows = (lengths_np == n) & (label == lab)
            position[rows] = ranks[(uniform[rows] * len(ranks)).astype(np.int64)] + 0.5
            large[rows] = False
    codes = _unrank(dfa, counts, lengths_np, label, position)
    pending = np.flatnonzero(large)
    for _ in range(_REJECTION_ROUNDS):  # large groups: redraw the strings that fell elsewhere
        pending = pending[string_split(codes[pending], lengths_np[pending]) != index]
        if not len(pending):
            break
        redraw = torch.rand(len(pending), generator=generator, dtype=torch.float64).numpy()
        position = redraw * counts[lengths_np[pending], dfa.start, label[pending]]
        fresh = _unrank(dfa, counts, lengths_np[pending], label[pending], position)
        codes[pending] = 0
        codes[pending, : fresh.shape[1]] = fresh
    else:
        raise RuntimeError(f"could not draw {len(pending)} strings of the {split!r} split")
    return torch.from_numpy(codes), torch.from_numpy(label)
