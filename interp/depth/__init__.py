"""Depth phases: block-recurrent structure of deep networks (Jacobs et al. 2025, arXiv 2512.19941).

- :func:`layer_similarity`: depth-by-depth dissimilarity of per-layer representations.
- :func:`segment_phases`: contiguous phases (exact DP) or the paper's recursive max-cut, scored
  against a structureless null.
- :func:`fit_raptor`: a surrogate of k weight-tied blocks applied recurrently, and its recovery
  (vision models: linear-probe accuracy; language models, :class:`LanguageRaptor`: next-token
  agreement and loss).
- :func:`trajectory_diagnostics`: angular convergence and effective rank of layer updates.
- :func:`digits_vit`: a small pre-LN ViT with LayerScale trained on scikit-learn's digits.

Names are imported on first use (see :mod:`interp._lazy`), so the command line stays fast.
"""

from __future__ import annotations

from interp._lazy import lazy_exports

_EXPORTS = {
    "DepthView": "interp.depth.views",
    "DigitsViT": "interp.depth.vit",
    "LanguageRaptor": "interp.depth.raptor_lm",
    "LayerSimilarity": "interp.depth.similarity",
    "Phases": "interp.depth.phases",
    "Raptor": "interp.depth.raptor",
    "RaptorFit": "interp.depth.raptor",
    "Trajectories": "interp.depth.trajectory",
    "ViTConfig": "interp.depth.vit",
    "digits_vit": "interp.depth.vit",
    "fit_raptor": "interp.depth.raptor",
    "layer_similarity": "interp.depth.similarity",
    "load_digits": "interp.depth.vit",
    "segment_phases": "interp.depth.phases",
    "trajectory_diagnostics": "interp.depth.trajectory",
    "view_of": "interp.depth.views",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
