"""Argument checks shared by the head finders: a model that is not a wrapped language model."""

from __future__ import annotations

from interp.errors import InputTypeError

# What every head finder reads from the model (the LanguageModel protocol's core).
_NEEDS = ("run", "tokenizer", "n_layers", "n_heads", "n_ctx")


def check_model(model: object, who: str) -> None:
    """Raise :class:`InputTypeError` unless ``model`` looks like an interp language model.

    Checked before any work, so ``induction_scores("gpt2")`` says what to pass instead of failing
    deep inside with ``'str' object has no attribute 'bos_token_id'``.
    """
    if all(hasattr(model, name) for name in _NEEDS):
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
