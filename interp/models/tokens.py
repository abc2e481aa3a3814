"""Tokenizing for :class:`interp.models.hooked.HookedLM`: texts to ids (padded on either side,
with the padding mask), ids to strings, and the context-length check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from interp.errors import ContextLengthError, InputTypeError, InvalidArgumentError
from interp.models.protocol import Inputs

PaddingSide = Literal["right", "left"]
_TOKEN_DTYPES = (torch.long, torch.int, torch.int32, torch.int64, torch.int16, torch.uint8)


class Tokenizing:
    """Texts and token ids; needs ``tokenizer``, ``config``, ``name``, ``d_vocab``, ``n_ctx``."""

    tokenizer: object
    config: object
    name: str
    d_vocab: int
    n_ctx: int

    @property
    def bos_token_id(self) -> int | None:
        bos = getattr(self.tokenizer, "bos_token_id", None)
        return bos if bos is not None else getattr(self.config, "bos_token_id", None)

    @property
    def eos_token_ids(self) -> list[int]:
        """The token ids that end a generation (tokenizer and config, deduplicated)."""
        ids: list[int] = []
        for value in (
            getattr(self.config, "eos_token_id", None),
            getattr(self.tokenizer, "eos_token_id", None),
        ):
            values = value if isinstance(value, list | tuple) else [value]
            ids += [int(v) for v in values if v is not None and int(v) not in ids]
        return ids

    def to_tokens(
        self,
        text: str | Sequence[str],
        *,
        prepend_bos: bool = True,
        padding_side: PaddingSide = "right",
    ) -> torch.Tensor:
        """Token ids ``[batch, pos]``; a list of texts of different lengths is padded on
        ``padding_side`` (``run`` returns the padding mask as ``cache.attention_mask``)."""
        return self._encode(text, prepend_bos=prepend_bos, padding_side=padding_side)[0]

    def _encode(
        self, text: str | Sequence[str], *, prepend_bos: bool, padding_side: PaddingSide = "right"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if padding_side not in ("right", "left"):
            raise InvalidArgumentError(
                f"padding_side must be 'right' or 'left', got {padding_side!r}"
            )
        texts = [text] if isinstance(text, str) else text
        if (
            not isinstance(texts, Sequence)
            or not texts
            or not all(isinstance(t, str) for t in texts)
        ):
            raise InputTypeError(
                "inputs must be a string, a non-empty list of strings or a tensor of token ids "
                f"[pos] / [batch, pos]; got {type(text).__name__}"
            )
        ids = [self.tokenizer.encode(t, add_special_tokens=False) for t in texts]
        if prepend_bos:
            if self.bos_token_id is None:
                raise InvalidArgumentError(f"{self.name} has no BOS token; pass prepend_bos=False")
            ids = [[self.bos_token_id, *row] for row in ids]
        width = max(len(row) for row in ids)
        if width == 0:
            raise InvalidArgumentError("text is empty: nothing to tokenize")
        pad = getattr(self.tokenizer, "pad_token_id", None)
        pad = pad if pad is not None else 0
        tokens = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, values in enumerate(ids):
            span = (
                slice(0, len(values))
                if padding_side == "right"
                else slice(width - len(values), width)
            )
            tokens[row, span] = torch.tensor(values, dtype=torch.long)
            mask[row, span] = 1
        return tokens, mask

    def to_str_tokens(self, tokens: str | torch.Tensor, *, prepend_bos: bool = True) -> list[str]:
        """The token strings of one sequence (text or ids)."""
        if isinstance(tokens, str):
            tokens = self.to_tokens(tokens, prepend_bos=prepend_bos)
        if not isinstance(tokens, torch.Tensor) or not (tokens.dim() == 1 or tokens.shape[0] == 1):
            raise InputTypeError("to_str_tokens takes one sequence (a string or ids [pos])")
        return [self.tokenizer.decode([i]) for i in tokens.reshape(-1).tolist()]

    def to_string(self, tokens: torch.Tensor) -> str:
        return self.tokenizer.decode(tokens.reshape(-1).tolist())

    def _as_tokens(
        self,
        inputs: Inputs,
        attention_mask: torch.Tensor | None,
        prepend_bos: bool,
        padding_side: PaddingSide = "right",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token ids ``[batch, pos]`` and the padding mask (None when nothing is padded)."""
        if isinstance(inputs, torch.Tensor):
            if inputs.dtype not in _TOKEN_DTYPES:
                raise InputTypeError(f"token tensors must be integer ids, got {inputs.dtype}")
            tokens = inputs.long().reshape(1, -1) if inputs.dim() == 1 else inputs.long()
            if tokens.dim() != 2:
                raise InvalidArgumentError(
                    f"tokens must be [pos] or [batch, pos], got shape {tuple(inputs.shape)}"
                )
            if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.d_vocab):
                raise InvalidArgumentError(
                    f"token ids must lie in [0, {self.d_vocab}); got {tokens.min()}..{tokens.max()}"
                )
        else:
            tokens, mask = self._encode(inputs, prepend_bos=prepend_bos, padding_side=padding_side)
            attention_mask = (
                mask if attention_mask is None and not bool(mask.all()) else attention_mask
            )
        if tokens.shape[1] == 0:
            raise InvalidArgumentError("empty input: no tokens")
        if attention_mask is not None and attention_mask.shape[0] != tokens.shape[0]:
            raise InvalidArgumentError(
                f"attention_mask has {attention_mask.shape[0]} rows but the batch has "
                f"{tokens.shape[0]}"
            )
        return tokens, attention_mask

    def check_length(self, length: int) -> None:
        if length > self.n_ctx:
            raise ContextLengthError(
                f"input has {length} tokens but {self.name} has a context of {self.n_ctx} tokens; "
                "shorten the text or split it"
            )
