"""What an analyzer may use of a model: the ``LanguageModel`` and ``Recurrent`` protocols.

Analyzers (head finders, depth phases, the LM Raptor, patching) are typed against
:class:`LanguageModel` and use nothing else: no Hugging Face, TransformerLens or nnsight internals.
Every backend (:class:`interp.models.native.NativeLM`, the TransformerLens and nnsight adapters)
implements it through :class:`interp.models.hooked.HookedLM`. RNN analyses use
:class:`interp.rnn.protocol.Recurrent`, re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol

import torch
from torch import nn

from interp.rnn.protocol import Recurrent

NormKind = Literal["attn", "mlp", "final"]
Inputs = str | Sequence[str] | torch.Tensor

__all__ = ["LanguageModel", "NormKind", "Inputs", "Recurrent"]


class LanguageModel(Protocol):
    """A causal language model seen through TransformerLens-style hooks and per-head weights.

    Sizes: ``n_layers``, ``n_heads``, ``n_kv_heads``, ``d_model``, ``d_head``, ``d_vocab``,
    ``n_ctx``. Weights in TransformerLens layout (activations are row vectors): ``W_Q, W_K, W_V
    [layers, heads, d_model, d_head]`` (keys/values expanded to every query head), ``W_O [layers,
    heads, d_head, d_model]``, ``W_E [d_vocab, d_model]``, ``W_U [d_model, d_vocab]``.
    """

    name: str
    tokenizer: Any
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    d_vocab: int
    n_ctx: int
    hook_names: list[str]

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def bos_token_id(self) -> int | None: ...

    @property
    def eos_token_ids(self) -> list[int]: ...

    def to_tokens(self, text: str | Sequence[str], *, prepend_bos: bool = True) -> torch.Tensor: ...

    def to_str_tokens(
        self, tokens: str | torch.Tensor, *, prepend_bos: bool = True
    ) -> list[str]: ...

    def to_string(self, tokens: torch.Tensor) -> str: ...

    def check_length(self, length: int) -> None: ...

    def run(
        self, inputs: Inputs, capture: str | Sequence[str] | None = None, **kwargs: Any
    ) -> tuple[torch.Tensor, Any]: ...

    def ablate_heads(
        self, heads: Sequence[tuple[int, int]], method: str = "uniform"
    ) -> AbstractContextManager[None]: ...

    # per-head and embedding weights
    W_Q: torch.Tensor
    W_K: torch.Tensor
    W_V: torch.Tensor
    W_O: torch.Tensor
    b_Q: torch.Tensor
    b_K: torch.Tensor
    b_V: torch.Tensor
    b_O: torch.Tensor
    W_E: torch.Tensor
    W_U: torch.Tensor
    b_U: torch.Tensor

    @property
    def embedding_scale(self) -> float: ...

    def norm_weights(self) -> dict[str, torch.Tensor]: ...

    def norm(self, layer: int | None, kind: NormKind, x: torch.Tensor) -> torch.Tensor: ...

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor: ...

    def attn_output(self, layer: int, z: torch.Tensor) -> torch.Tensor: ...

    def attention_scale(self, layer: int) -> float: ...

    def unembed(self, x: torch.Tensor) -> torch.Tensor: ...

    # the model's own computation, for surrogates that re-run decoder layers (LM Raptor)
    def decoder_layers(self) -> list[nn.Module]: ...

    def rotary_embedding(self, x: torch.Tensor, positions: torch.Tensor) -> Any: ...

    def causal_mask(self, x: torch.Tensor, positions: torch.Tensor) -> Any: ...


# What every analyzer reads first (the protocol's core): checked before any work.
_CORE = ("run", "tokenizer", "n_layers", "n_heads", "n_ctx")


def check_language_model(model: object, who: str) -> None:
    """Raise :class:`~interp.errors.InputTypeError` unless ``model`` looks like a wrapped
    language model, so ``induction_scores("gpt2")`` says what to pass instead of failing deep
    inside. (A cheap attribute check: the protocol is for type checkers; a runtime
    ``isinstance`` would evaluate every weight property.)"""
    from interp.errors import InputTypeError

    if all(hasattr(model, name) for name in _CORE):
        return
    hint = (
        f"; to use {model!r} load it first: {who}(interp.load_model({model!r}))"
        if isinstance(model, str | bytes)
        else ""
    )
    raise InputTypeError(
        f"{who} needs a language model wrapped by interp (interp.load_model(...), a HookedLM), "
        f"got {type(model).__name__}{hint}"
    )
