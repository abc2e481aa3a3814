"""Needle-in-a-haystack prompts, built in token space so every position is known exactly.

Following Wu et al. 2024's reference code (itself after Kamradt's needle test): the haystack is
the start of a long text cut to the wanted length; the needle goes in at ``depth`` (a fraction
of the haystack), moved back to just after the nearest earlier sentence end (0 and 1 put it at
the very start and end); the question follows. The prompt is

    <chat head> "<book>" haystack-with-needle "</book>\\nBased on the content of the book,
    Question: {question}\\nAnswer:" <chat tail>

with the model's chat template when it has one (the user turn holds the text above and the
generation prompt opens the assistant turn), plain ``[BOS] text`` otherwise. ``length`` is the
whole prompt's token count, so all depths of one (needle, length) pair have the same length and
run as one batch. The answer span is located with the reference rule (first window of the
answer's token length whose token *set* overlaps the answer's by more than 0.9), searched inside
the inserted needle only.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from interp.heads.corpus import load_corpus
from interp.heads.needles import Needle

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel

PLACEHOLDER = "\u0000CONTEXT\u0000"
SPAN_OVERLAP = 0.9


@dataclasses.dataclass(frozen=True)
class NeedlePrompt:
    """One test: prompt ``tokens [T]``, answer ``span`` and inserted ``needle`` ranges (half-open)."""

    tokens: torch.Tensor
    span: tuple[int, int]
    needle: tuple[int, int]
    length: int
    depth: float


def insertion_point(sentence_end: torch.Tensor, depth: float) -> int:
    """Index where the needle goes in a haystack whose token ``k`` ends a sentence iff
    ``sentence_end[k]``: ``int(n * depth)``, moved back until the token before it ends a sentence
    (or to 0); ``depth >= 1`` appends at the end."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be a fraction in [0, 1], got {depth}")
    n = int(sentence_end.numel())
    if depth >= 1.0:
        return n
    point = int(n * depth)
    ends = torch.nonzero(sentence_end[:point]).flatten()
    return int(ends[-1]) + 1 if len(ends) else 0


def find_span(tokens: torch.Tensor, answer: list[int], start: int, end: int) -> tuple[int, int]:
    """First window ``[i, i + len(answer))`` inside ``[start, end)`` whose token set overlaps the
    answer's token set by more than 0.9 (Wu et al.'s rule); ``ValueError`` when none does."""
    target = set(answer)
    width = len(answer)
    for i in range(start, end - width + 1):
        window = set(tokens[i : i + width].tolist())
        if len(window & target) / len(target) > SPAN_OVERLAP:
            return i, i + width
    raise ValueError("the answer's tokens were not found in the inserted needle")


def sentence_end_mask(tokenizer, ids: torch.Tensor) -> torch.Tensor:
    """``[n]`` bool: token decodes to text ending in ``.``, ``!`` or ``?`` (a sentence end)."""
    unique = ids.unique()
    ends = {int(i) for i in unique if tokenizer.decode([int(i)]).rstrip().endswith((".", "!", "?"))}
    return torch.tensor([int(i) in ends for i in ids.tolist()], dtype=torch.bool)


def prompt_frame(
    model: LanguageModel, question: str, *, chat: bool | None = None
) -> tuple[list[int], list[int]]:
    """Token ids before and after the haystack: chat template when available (``chat=None``)."""
    tokenizer = model.tokenizer
    after = f"</book>\nBased on the content of the book, Question: {question}\nAnswer:"
    use_chat = getattr(tokenizer, "chat_template", None) is not None if chat is None else chat
    if use_chat:
        messages = [{"role": "user", "content": f"<book>{PLACEHOLDER}{after}"}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        head, tail = text.split(PLACEHOLDER)
        return tokenizer.encode(head, add_special_tokens=False), tokenizer.encode(
            tail, add_special_tokens=False
        )
    bos = [model.bos_token_id] if model.bos_token_id is not None else []
    return bos + tokenizer.encode("<book>", add_special_tokens=False), tokenizer.encode(
        after, add_special_tokens=False
    )


def assemble(
    head: list[int],
    haystack: torch.Tensor,
    needle: list[int],
    tail: list[int],
    answer: list[int],
    *,
    length: int,
    depth: float,
    sentence_end: torch.Tensor,
) -> NeedlePrompt:
    """Cut the haystack so the prompt has exactly ``length`` tokens, insert the needle, find the span."""
    room = length - len(head) - len(tail) - len(needle)
    if room < 1:
        raise ValueError(
            f"length {length} leaves no room for the haystack: frame {len(head) + len(tail)} + needle "
            f"{len(needle)} tokens; use a longer length"
        )
    if room > haystack.numel():
        raise ValueError(
            f"the haystack text has {haystack.numel()} tokens; length {length} needs {room}"
        )
    context = haystack[:room]
    point = insertion_point(sentence_end[:room], depth)
    head_t, needle_t, tail_t = (torch.tensor(ids, dtype=torch.long) for ids in (head, needle, tail))
    tokens = torch.cat([head_t, context[:point], needle_t, context[point:], tail_t])
    start = len(head) + point
    span = find_span(tokens, answer, start, start + len(needle))
    return NeedlePrompt(
        tokens=tokens,
        span=span,
        needle=(start, start + len(needle)),
        length=length,
        depth=float(depth),
    )


def build_prompts(
    model: LanguageModel,
    needle: Needle,
    lengths: list[int],
    depths: list[float],
    *,
    text: str | None = None,
    chat: bool | None = None,
) -> list[list[NeedlePrompt]]:
    """``[len(lengths)][len(depths)]`` prompts for one needle over the shipped corpus (or ``text``)."""
    tokenizer = model.tokenizer
    haystack = torch.tensor(
        tokenizer.encode(text if text is not None else load_corpus(), add_special_tokens=False)
    )
    ends = sentence_end_mask(tokenizer, haystack[: max(lengths)])
    head, tail = prompt_frame(model, needle.question, chat=chat)
    needle_ids = tokenizer.encode(" " + needle.needle.strip(), add_special_tokens=False)
    answer_ids = tokenizer.encode(" " + needle.answer.strip(), add_special_tokens=False)
    grid = []
    for length in lengths:
        model.check_length(length)
        grid.append(
            [
                assemble(
                    head,
                    haystack,
                    needle_ids,
                    tail,
                    answer_ids,
                    length=length,
                    depth=d,
                    sentence_end=ends,
                )
                for d in depths
            ]
        )
    return grid
