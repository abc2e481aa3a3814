"""Regular-language tasks with their ground-truth automata: Tomita 1-7 and bounded parentheses.

Each grammar ships as an explicit complete :class:`~interp.rnn.automata.DFA` (definitions differ
between papers, so the automaton *is* the definition). Over the alphabet ``{0, 1}``:

====  ==========================================================  ===========================
 #    language                                                    minimal states (sink incl.)
====  ==========================================================  ===========================
 1    ``1*``                                                      2
 2    ``(10)*``                                                   3
 3    no odd run of 1s *later* followed by an odd run of 0s       5
      (runs are maximal; Weiss et al. 2018's definition)
 4    no ``000``                                                  4
 5    even number of 0s and even number of 1s                     4
 6    ``(#0 - #1) ≡ 0 (mod 3)``                                   3
 7    ``0*1*0*1*``                                                5
====  ==========================================================  ===========================

``parens``: balanced parentheses over ``{(, )}`` with nesting depth at most 5 (deeper strings are
rejected), 7 states.

:class:`GrammarTask` turns a DFA into a task of the :class:`interp.rnn.tasks.Task` protocol. Input:
a begin-of-string symbol, then one one-hot vector per symbol (size ``|alphabet| + 1``). Every
prefix is itself a string with a label, so the target at step ``t`` is whether the
prefix read so far is accepted (the label at the last valid step is the string's label); the
begin-of-string step carries the label of the empty string, so the network's state after it is
the automaton's start state. ``labels="last"`` supervises the last step only. Strings are sampled
balanced: half positive, half negative at every length where both exist, each uniform among the
strings of that length and label (so the tiny languages Tomita 1 and 2 get as many positives as
negatives). The train / val / test splits are disjoint sets of strings (:mod:`interp.rnn.strings`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from interp.rnn.automata import DFA
from interp.rnn.strings import (
    GRAMMAR_SPLITS,
    dfa_key,
    lengths_in_split,
    sample_strings,
)
from interp.rnn.tasks import Task, TaskBatch, register_task

_BIN = ("0", "1")


def _tomita(number: int) -> DFA:
    tables: dict[int, tuple[dict[str, dict[str, str]], str, set[str]]] = {
        1: (
            {"ones": {"0": "sink", "1": "ones"}, "sink": {"0": "sink", "1": "sink"}},
            "ones",
            {"ones"},
        ),
        2: (
            {
                "even": {"0": "sink", "1": "odd"},
                "odd": {"0": "even", "1": "sink"},
                "sink": {"0": "sink", "1": "sink"},
            },
            "even",
            {"even"},
        ),
        # clean: no odd 1-run seen yet (current 1-run even or none); ones_odd: inside an odd 1-run;
        # after: an odd 1-run was seen, current 0-run even; zeros_odd: ... current 0-run odd.
        3: (
            {
                "clean": {"0": "clean", "1": "ones_odd"},
                "ones_odd": {"0": "zeros_odd", "1": "clean"},
                "zeros_odd": {"0": "after", "1": "sink"},
                "after": {"0": "zeros_odd", "1": "after"},
                "sink": {"0": "sink", "1": "sink"},
            },
            "clean",
            {"clean", "ones_odd", "after"},
        ),
        4: (
            {
                "z0": {"0": "z1", "1": "z0"},
                "z1": {"0": "z2", "1": "z0"},
                "z2": {"0": "sink", "1": "z0"},
                "sink": {"0": "sink", "1": "sink"},
            },
            "z0",
            {"z0", "z1", "z2"},
        ),
        5: (
            {
                "ee": {"0": "oe", "1": "eo"},
                "oe": {"0": "ee", "1": "oo"},
                "eo": {"0": "oo", "1": "ee"},
                "oo": {"0": "eo", "1": "oe"},
            },
            "ee",
            {"ee"},
        ),
        6: (
            {
                "r0": {"0": "r1", "1": "r2"},
                "r1": {"0": "r2", "1": "r0"},
                "r2": {"0": "r0", "1": "r1"},
            },
            "r0",
            {"r0"},
        ),
        7: (
            {
                "zeros1": {"0": "zeros1", "1": "ones1"},
                "ones1": {"0": "zeros2", "1": "ones1"},
                "zeros2": {"0": "zeros2", "1": "ones2"},
                "ones2": {"0": "sink", "1": "ones2"},
                "sink": {"0": "sink", "1": "sink"},
            },
            "zeros1",
            {"zeros1", "ones1", "zeros2", "ones2"},
        ),
    }
    table, start, accepting = tables[number]
    return DFA.from_table(_BIN, table, start=start, accepting=accepting, name=f"tomita{number}")


def parentheses_dfa(max_depth: int = 5) -> DFA:
    """Balanced parentheses with nesting depth at most ``max_depth`` (state ``d`` = open depth)."""
    if max_depth < 1:
        raise ValueError(f"max_depth must be >= 1, got {max_depth}")
    sink = max_depth + 1
    rows = [
        [d + 1 if d < max_depth else sink, d - 1 if d > 0 else sink] for d in range(max_depth + 1)
    ]
    rows.append([sink, sink])
    accepting = np.zeros(max_depth + 2, dtype=bool)
    accepting[0] = True
    return DFA(alphabet=["(", ")"], transitions=np.array(rows), accepting=accepting, name="parens")


GRAMMARS: dict[str, Callable[[], DFA]] = {
    **{f"tomita{i}": functools.partial(_tomita, i) for i in range(1, 8)},
    "parens": parentheses_dfa,
}


def grammar_dfa(name: str) -> DFA:
    """The ground-truth DFA of a grammar by name (``tomita1`` .. ``tomita7``, ``parens``)."""
    if name not in GRAMMARS:
        raise ValueError(f"unknown grammar {name!r}; known: {', '.join(GRAMMARS)}")
    return GRAMMARS[name]()


@dataclasses.dataclass(frozen=True)
class SymbolEncoding:
    """How strings become network inputs: a begin-of-string one-hot (optional), then one one-hot per
    symbol. Channel ``len(alphabet)`` is the begin-of-string symbol."""

    alphabet: tuple[str, ...]
    bos: bool = True

    @property
    def input_size(self) -> int:
        return len(self.alphabet) + int(self.bos)

    def one_hot(self, codes: Tensor) -> Tensor:
        """Symbol ids ``[B, T]`` -> inputs ``[B, T (+1 with bos), input_size]`` (float32)."""
        x = torch.nn.functional.one_hot(codes, self.input_size).float()
        if self.bos:
            start = torch.zeros(codes.shape[0], 1, self.input_size)
            start[:, 0, len(self.alphabet)] = 1.0
            x = torch.cat([start, x], dim=1)
        return x

    def bos_input(self, batch: int) -> Tensor | None:
        """The begin-of-string inputs ``[B, input_size]``, or None without one."""
        if not self.bos:
            return None
        x = torch.zeros(batch, self.input_size)
        x[:, len(self.alphabet)] = 1.0
        return x


def strings_from_codes(alphabet: Sequence[str], codes: Tensor, lengths: Tensor) -> list[str]:
    """Symbol ids ``[B, T]`` + lengths -> list of strings."""
    rows = codes.tolist()
    return [
        "".join(alphabet[c] for c in row[: int(n)])
        for row, n in zip(rows, lengths.tolist(), strict=True)
    ]


class GrammarTask(Task):
    """Accept/reject strings of a regular language (see the module docstring for the encoding).

    Splits (``splits``: train, val, test) are disjoint sets of strings (:func:`string_split`
    hashes each string into one), so no test string is ever a training string. With ``labels=
    "prefixes"`` a test string's *prefixes* may still be training strings: that is inherent to
    labelling every prefix. ``split=None`` samples from all strings (extraction does this).

    Args:
        dfa: the ground-truth automaton (its ``name`` becomes the task's name).
        train_length: longest sampled string (every split). Extraction tests up to twice this
            length.
        labels: ``"prefixes"`` (every step is labelled with its prefix's membership) or ``"last"``.
        min_length: shortest sampled string.
    """

    loss = "bce"
    output_size = 1
    splits = GRAMMAR_SPLITS

    def __init__(
        self, dfa: DFA, *, train_length: int = 10, labels: str = "prefixes", min_length: int = 0
    ) -> None:
        if not isinstance(dfa, DFA):
            raise TypeError(f"GrammarTask needs a DFA, got {type(dfa).__name__}")
        if labels not in ("prefixes", "last"):
            raise ValueError(f"labels must be 'prefixes' or 'last', got {labels!r}")
        if not 0 <= min_length <= train_length:
            raise ValueError(
                f"need 0 <= min_length <= train_length, got {min_length}, {train_length}"
            )
        super().__init__(train_length=train_length, labels=labels, min_length=min_length)
        self.dfa, self.train_length, self.labels, self.min_length = (
            dfa,
            train_length,
            labels,
            min_length,
        )
        self.name = dfa.name
        self.encoding = SymbolEncoding(tuple(dfa.alphabet), bos=True)
        self.input_size = self.encoding.input_size

    @property
    def alphabet(self) -> tuple[str, ...]:
        return self.encoding.alphabet

    def sample_codes(
        self,
        batch: int,
        generator: torch.Generator,
        *,
        split: str | None = "train",
        length: int | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Balanced strings of ``split`` as (symbol ids ``[B, T]``, lengths ``[B]``, labels ``[B]``).

        Without ``length``, lengths are uniform over those in ``min_length..train_length`` that
        have a string in the split (the few shortest strings each lie in one split only).
        """
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        if split is not None and split not in GRAMMAR_SPLITS:
            raise ValueError(f"split must be one of {GRAMMAR_SPLITS} or None, got {split!r}")
        if length is None:
            choices = torch.tensor(self._lengths_in(split))
            lengths = choices[torch.randint(0, len(choices), (batch,), generator=generator)]
        else:
            if length < 0:
                raise ValueError(f"length must be >= 0, got {length}")
            lengths = torch.full((batch,), int(length))
        wanted = torch.randint(0, 2, (batch,), generator=generator)
        codes, labels = sample_strings(self.dfa, lengths, wanted, generator, split)
        return codes, lengths, labels

    def _lengths_in(self, split: str | None) -> list[int]:
        if split is None:
            return list(range(self.min_length, self.train_length + 1))
        found = lengths_in_split(
            dfa_key(self.dfa), self.min_length, self.train_length, GRAMMAR_SPLITS.index(split)
        )
        if not found:
            raise ValueError(
                f"no string of length {self.min_length}..{self.train_length} lies in the "
                f"{split!r} split; use longer strings"
            )
        return found

    def batch_from_codes(self, codes: Tensor, lengths: Tensor) -> TaskBatch:
        """Encode strings and label them (every prefix, or the last step) with the ground truth."""
        states = torch.from_numpy(self.dfa.run(codes.numpy(), lengths.numpy()))  # [B, T+1]
        y = torch.from_numpy(self.dfa.accepting)[states].float().unsqueeze(-1)
        steps = torch.arange(states.shape[1])
        if self.labels == "prefixes":
            mask = steps[None, :] <= lengths[:, None]
        else:
            mask = steps[None, :] == lengths[:, None]
        return TaskBatch(x=self.encoding.one_hot(codes), y=y, mask=mask)

    def sample(
        self,
        batch: int,
        generator: torch.Generator,
        *,
        split: str = "train",
        length: int | None = None,
    ) -> TaskBatch:
        """x ``[B, T+1, |Σ|+1]`` (begin-of-string first), y ``[B, T+1, 1]``, mask ``[B, T+1]``."""
        codes, lengths, _ = self.sample_codes(batch, generator, split=split, length=length)
        return self.batch_from_codes(codes, lengths)


def grammar_task(name: str, **kwargs) -> GrammarTask:
    """A :class:`GrammarTask` for a named grammar; keyword arguments go to :class:`GrammarTask`."""
    return GrammarTask(grammar_dfa(name), **kwargs)


GRAMMAR_TASKS: dict[str, Callable[..., GrammarTask]] = {
    name: functools.partial(grammar_task, name) for name in GRAMMARS
}
for _name, _factory in GRAMMAR_TASKS.items():
    register_task(_name, _factory)
