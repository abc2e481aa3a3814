"""Sequence mixers as interaction operators (Ghodsi 2025, "How Many Heads Make an SSM?").

- :func:`interaction_operators`: a layer's effective ``W_ij(X)`` as a structured object
  (attention pattern + per-head OV factors; LTI lag operators ``K_l = C A^l B``; selective-SSM
  per-token parameters), never the ``T x T x d x d`` tensor.
- :func:`interaction_rank`: numerical rank and full singular spectrum at a stated tolerance.
- :func:`gradient_paths` / :func:`layer_gradient_paths`: ``||dy_i/dx_j||`` against ``i - j``.
- :func:`head_count_table`: the head-count theorem checked numerically on random linear SSMs.
- :func:`analyze_mixers`: all of the above per layer of a wrapped LM.

Names are imported on first use (see :mod:`interp._lazy`).
"""

from __future__ import annotations

from interp._lazy import lazy_exports

_EXPORTS = {
    "AttentionOperators": "interp.mixers.operators",
    "LinearSSM": "interp.mixers.operators",
    "LTIOperators": "interp.mixers.operators",
    "SelectiveOperators": "interp.mixers.operators",
    "InteractionRank": "interp.mixers.rank",
    "interaction_rank": "interp.mixers.rank",
    "GradientPaths": "interp.mixers.paths",
    "gradient_paths": "interp.mixers.paths",
    "layer_gradient_paths": "interp.mixers.paths",
    "HeadCountFit": "interp.mixers.theorem",
    "fit_heads": "interp.mixers.theorem",
    "head_count_table": "interp.mixers.theorem",
    "MixerAnalysis": "interp.mixers.model",
    "analyze_mixers": "interp.mixers.model",
    "interaction_operators": "interp.mixers.model",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
