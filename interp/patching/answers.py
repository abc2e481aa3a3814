"""Answer tokens and positions for the logit-based analyses (DLA, lens, steering, splicing).

An answer is a token id or a text that the tokenizer turns into exactly one token (``" Mary"``
with its leading space, as the model sees it mid-sentence). A text of several tokens, a token the
tokenizer does not know, or an id outside the vocabulary is refused in one line naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from interp.errors import InputTypeError, InvalidArgumentError

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel

Token = int | str


def token_id(lm: LanguageModel, token: Token, what: str = "answer") -> int:
    """The id of ``token``: an int in ``0..d_vocab-1`` or a text that is exactly one token."""
    if isinstance(token, bool) or not isinstance(token, int | str):
        raise InputTypeError(f"{what} must be a token id or a one-token text, got {token!r}")
    if isinstance(token, int):
        if not 0 <= token < lm.d_vocab:
            raise InvalidArgumentError(f"{what} id {token} is outside 0..{lm.d_vocab - 1}")
        return token
    ids = lm.tokenizer.encode(token, add_special_tokens=False)
    if len(ids) != 1:
        pieces = [lm.tokenizer.decode([i]) for i in ids]
        raise InvalidArgumentError(
            f"{what} {token!r} is {len(ids)} tokens {pieces}, not one; pass a single token "
            "(mind the leading space: ' Mary')"
        )
    unknown = getattr(lm.tokenizer, "unk_token_id", None)
    if ids[0] == unknown or not 0 <= ids[0] < lm.d_vocab:
        raise InvalidArgumentError(f"{what} {token!r} is not in {lm.name}'s vocabulary")
    return int(ids[0])


def token_ids(
    lm: LanguageModel, tokens: Token | Sequence[Token], batch: int, what: str
) -> torch.Tensor:
    """One id per example ``[batch]``: one token for all, or a list of ``batch`` tokens."""
    if isinstance(tokens, int | str):
        return torch.full((batch,), token_id(lm, tokens, what), dtype=torch.long)
    tokens = list(tokens)
    if len(tokens) != batch:
        raise InvalidArgumentError(
            f"{what} has {len(tokens)} tokens for {batch} inputs; give one, or one per input"
        )
    return torch.tensor([token_id(lm, t, what) for t in tokens], dtype=torch.long)


def chosen_positions(
    positions: int | Sequence[int] | None, last: torch.Tensor, length: int
) -> torch.Tensor:
    """``[batch, P]`` positions: each row's last real token (``None``), or the given positions
    (negative ones count from the end of the padded row), checked against ``length``."""
    if positions is None:
        return last.long()[:, None]
    items = [positions] if isinstance(positions, int) else list(positions)
    if not items or not all(isinstance(p, int) and not isinstance(p, bool) for p in items):
        raise InvalidArgumentError(f"positions must be ints, got {positions!r}")
    bad = [p for p in items if not -length <= p < length]
    if bad:
        raise InvalidArgumentError(f"positions {bad} outside an input of {length} tokens")
    fixed = torch.tensor([p % length for p in items], dtype=torch.long)
    return fixed.expand(len(last), -1)


def gather_positions(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``x [batch, pos, ...]`` at ``positions [batch, P]``: ``[batch, P, ...]``."""
    rows = torch.arange(x.shape[0], device=x.device)[:, None]
    return x[rows, positions.to(x.device)]
