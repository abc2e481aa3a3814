"""Adapters: the HookedLM interface over models built in other interpretability libraries.

``interp.load_model`` hands TransformerLens ``TransformerBridge`` objects and nnsight language
models to :func:`adapt`. Each adapter is a :class:`HookedLM` subclass with the same hook names,
shapes, weights and helpers as the native backend, captured through that library's own hook
system (see :mod:`interp.models.adapters_tl` and :mod:`interp.models.adapters_nnsight`). The
libraries are imported only when such an object arrives.
"""

from __future__ import annotations

from interp.models.hooked import HookedLM

KINDS = ("transformer_bridge", "nnsight")


def adapt(spec: object, kind: str, *, tokenizer: object | None = None) -> HookedLM:
    """Wrap ``spec`` (a model object of library ``kind``) as a :class:`HookedLM`.

    ``kind``: ``"transformer_bridge"`` (TransformerLens >= 4) or ``"nnsight"`` (LanguageModel /
    TransformersModel). ``tokenizer`` overrides the object's own tokenizer.
    """
    if kind == "transformer_bridge":
        from interp.models.adapters_tl import TransformerLensLM

        return TransformerLensLM(spec, tokenizer=tokenizer)
    if kind == "nnsight":
        from interp.models.adapters_nnsight import NNsightLM

        return NNsightLM(spec, tokenizer=tokenizer)
    raise ValueError(f"unknown adapter kind {kind!r}; expected one of {', '.join(KINDS)}")
