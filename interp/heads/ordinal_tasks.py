"""Ordinal token tasks for successor heads (Gould et al. 2023, arXiv 2312.09230).

A task is an ordered list of items (numbers, days, months, ...); the successor of item i is item
i + 1 (and, for cyclic tasks, the last item's successor is the first). Only items the tokenizer
turns into exactly one token take part: a pair ``(t, succ(t))`` counts only when both items are
single tokens, and the argmax of a head's OV logits is taken over the task's surviving tokens.

Leading spaces: BPE tokenizers give ``"Monday"`` and ``" Monday"`` different tokens, and models
mostly see the spaced form mid-sentence. Every default task therefore comes twice, as ``name``
(no space) and ``name_space`` (each item prefixed with one space); both are scored as separate
tasks. A variant whose surviving tokens are exactly those of an already kept task (tokenizers
that drop or merge the space) is dropped as a duplicate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch


@dataclasses.dataclass(frozen=True)
class OrdinalTask:
    """An ordered item list. ``start`` is the value of the first item (``"one"`` -> 1), used by
    the mod-10 analysis; ``numeric`` marks tasks whose values are numbers (its probe's data)."""

    name: str
    items: tuple[str, ...]
    cyclic: bool = False
    start: int = 1
    numeric: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("an OrdinalTask needs a non-empty name")
        items = tuple(self.items)
        if len(items) < 2 or not all(isinstance(i, str) and i for i in items):
            raise ValueError(f"task {self.name!r}: items must be at least two non-empty strings")
        if len(set(items)) != len(items):
            raise ValueError(f"task {self.name!r}: items must be distinct")
        object.__setattr__(self, "items", items)

    def with_space(self) -> OrdinalTask:
        """The same task with a leading space on every item (named ``<name>_space``)."""
        return dataclasses.replace(
            self, name=f"{self.name}_space", items=tuple(f" {i}" for i in self.items)
        )


def _roman(n: int) -> str:
    numerals = [(10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]
    out = ""
    for value, symbol in numerals:
        count, n = divmod(n, value)
        out += symbol * count
    return out


# fmt: off
_NUMBER_WORDS = [
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
    "twenty",
]
_ORDINALS = [
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]
# fmt: on

BASE_TASKS: tuple[OrdinalTask, ...] = (
    OrdinalTask("numbers", tuple(str(i) for i in range(1, 201)), numeric=True),
    OrdinalTask("number_words", tuple(_NUMBER_WORDS), numeric=True),
    OrdinalTask("ordinals", tuple(_ORDINALS), numeric=True),
    OrdinalTask("days", tuple(_DAYS), cyclic=True),
    OrdinalTask("day_abbreviations", tuple(d[:3] for d in _DAYS), cyclic=True),
    OrdinalTask("months", tuple(_MONTHS), cyclic=True),
    OrdinalTask("month_abbreviations", tuple(m[:3] for m in _MONTHS), cyclic=True),
    OrdinalTask("letters", tuple(chr(c) for c in range(ord("A"), ord("Z") + 1))),
    OrdinalTask("roman_numerals", tuple(_roman(i) for i in range(1, 21)), numeric=True),
)
DEFAULT_TASKS: tuple[OrdinalTask, ...] = tuple(v for t in BASE_TASKS for v in (t, t.with_space()))


@dataclasses.dataclass(frozen=True)
class ResolvedTask:
    """A task restricted to its single-token items.

    ``token_ids[i]`` is the token of ``items[i]`` (surviving items only, in order), ``values[i]``
    its ordinal value, ``pairs`` the ``(i, j)`` index pairs with ``items[j] = succ(items[i])``.
    """

    task: OrdinalTask
    items: tuple[str, ...]
    token_ids: tuple[int, ...]
    values: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...]

    @property
    def name(self) -> str:
        return self.task.name


def single_token_id(tokenizer: object, text: str, d_vocab: int) -> int | None:
    """The id of ``text`` when the tokenizer makes it exactly one known token, else None."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        return None
    token = int(ids[0])
    if token == getattr(tokenizer, "unk_token_id", None) or not 0 <= token < d_vocab:
        return None
    return token if tokenizer.decode([token]).strip() == text.strip() else None


def resolve_task(task: OrdinalTask, tokenizer: object, d_vocab: int) -> ResolvedTask:
    """Keep the items that are single tokens; pairs join consecutive items that both survive."""
    ids = [single_token_id(tokenizer, item, d_vocab) for item in task.items]
    kept = [i for i, token in enumerate(ids) if token is not None]
    position = {original: new for new, original in enumerate(kept)}
    n = len(task.items)
    successors = [(i, i + 1) for i in range(n - 1)] + ([(n - 1, 0)] if task.cyclic else [])
    pairs = tuple(
        (position[a], position[b]) for a, b in successors if a in position and b in position
    )
    tokens = tuple(ids[i] for i in kept)
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"task {task.name!r}: different items map to the same token")
    return ResolvedTask(
        task=task,
        items=tuple(task.items[i] for i in kept),
        token_ids=tokens,
        values=tuple(task.start + i for i in kept),
        pairs=pairs,
    )


def resolve_tasks(
    tokenizer: object, d_vocab: int, tasks: Sequence[OrdinalTask] | None = None
) -> tuple[list[ResolvedTask], dict[str, str]]:
    """Resolve tasks against a tokenizer: ``(kept, dropped)`` with ``dropped`` name -> reason.

    With the default tasks (``tasks=None``) tasks without any single-token pair are dropped (and
    reported); tasks passed explicitly must each keep at least one pair, else ValueError. Either
    way, ValueError when no task survives.
    """
    explicit = tasks is not None
    tasks = list(DEFAULT_TASKS if tasks is None else tasks)
    if not tasks:
        raise ValueError("tasks is empty: pass OrdinalTask objects or None for the default tasks")
    bad = [t for t in tasks if not isinstance(t, OrdinalTask)]
    if bad:
        raise TypeError(f"tasks must be OrdinalTask objects, got {type(bad[0]).__name__}")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be distinct, got {names}")
    kept: list[ResolvedTask] = []
    dropped: dict[str, str] = {}
    for task in tasks:
        resolved = resolve_task(task, tokenizer, d_vocab)
        twin = next((k.name for k in kept if set(k.token_ids) == set(resolved.token_ids)), None)
        if not resolved.pairs:
            reason = f"no consecutive pair of single-token items ({len(resolved.items)} of {len(task.items)} items are one token)"
            if explicit:
                raise ValueError(f"task {task.name!r} is empty for this tokenizer: {reason}")
            dropped[task.name] = reason
        elif twin is not None and not explicit:
            dropped[task.name] = f"same tokens as {twin!r}"
        else:
            kept.append(resolved)
    if not kept:
        raise ValueError(
            "no ordinal task survives this tokenizer (no task has two consecutive single-token "
            f"items): {dropped}; pass tasks=[OrdinalTask(...)] with items that are single tokens"
        )
    return kept, dropped


def union_tokens(tasks: Sequence[ResolvedTask]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """All distinct token ids of the tasks, and per task the positions of its tokens in that list."""
    vocab = sorted({t for task in tasks for t in task.token_ids})
    index = {t: i for i, t in enumerate(vocab)}
    positions = [
        torch.tensor([index[t] for t in task.token_ids], dtype=torch.long) for task in tasks
    ]
    return torch.tensor(vocab, dtype=torch.long), positions
