"""Needles for needle-in-a-haystack tests, and the ROUGE-1 recall that decides retrieval success.

A :class:`Needle` is a sentence inserted into a haystack, a question about it, and the answer span
(a substring of the needle) the model must reproduce. The shipped needles
(``interp/data/needles.json``) are invented facts written for this project. For models too small
to answer questions, :func:`synthetic_needle` makes a random-word "code" and asks the model to
repeat it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from importlib import resources

import torch


@dataclasses.dataclass(frozen=True)
class Needle:
    """``needle`` is inserted, ``question`` is asked, ``answer`` (a substring of ``needle``) is
    the span a head must copy from and the reference for ROUGE-1 recall."""

    needle: str
    question: str
    answer: str

    def __post_init__(self) -> None:
        for name in ("needle", "question", "answer"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"needle field {name!r} must be a non-empty string, got {value!r}")
        if self.answer.lower() not in self.needle.lower():
            raise ValueError(
                f"answer {self.answer!r} must be a substring of the needle {self.needle!r}"
            )


def load_needles(path: str | None = None) -> list[Needle]:
    """The shipped needles, or those of a JSON file ``{"needles": [{needle, question, answer}]}``."""
    if path is None:
        raw = resources.files("interp").joinpath("data", "needles.json").read_text(encoding="utf-8")
    else:
        with open(path, encoding="utf-8") as handle:
            raw = handle.read()
    items = json.loads(raw)
    items = items["needles"] if isinstance(items, dict) else items
    return [Needle(**item) for item in items]


def synthetic_needle(tokenizer, *, n_words: int = 6, seed: int = 0) -> Needle:
    """A random-word code needle ("The special magic code is: w1 w2 ... (remember it).") with a
    repeat prompt.

    Words are vocabulary entries that decode to a plain alphabetic or alphanumeric word of 3+
    characters, drawn from the middle 80% of ids (seeded), so the code is unpredictable. The code
    is followed by a space, never by punctuation, so its last word stays the same token under
    tokenizers that split on whitespace only.
    """
    vocab = len(tokenizer)
    lo, hi = int(0.1 * vocab), int(0.9 * vocab)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(hi - lo, generator=generator) + lo
    words: list[str] = []
    for token_id in order.tolist():
        word = tokenizer.decode([token_id]).strip()
        if re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,}", word) and word not in words:
            words.append(word.lower() if word[0].isupper() else word)
        if len(words) == n_words:
            break
    if len(words) < n_words:
        raise ValueError(
            f"the tokenizer offers only {len(words)} plain words; asked for n_words={n_words}"
        )
    code = " ".join(words)
    return Needle(
        needle=f"The special magic code is: {code} (remember it).",
        question="What is the special magic code? Repeat it exactly.",
        answer=code,
    )


def _rouge_tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def rouge1_recall(reference: str, response: str) -> float:
    """ROUGE-1 recall: clipped unigram overlap divided by the reference's unigram count.

    Tokenization as rouge_score's default (lowercase, runs of ``[a-z0-9]``); unlike the paper's
    ``use_stemmer=True`` no Porter stemming is applied, so "parks" does not match "park".
    An empty reference raises ``ValueError``.
    """
    ref = Counter(_rouge_tokens(reference))
    if not ref:
        raise ValueError(f"reference {reference!r} has no words")
    got = Counter(_rouge_tokens(response))
    return sum(min(count, got[word]) for word, count in ref.items()) / sum(ref.values())
