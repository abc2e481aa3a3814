"""Depth phases: block-recurrent structure of deep networks (Jacobs et al. 2025, arXiv 2512.19941).

- :func:`layer_similarity`: depth-by-depth dissimilarity of per-layer representations.
- :func:`segment_phases`: contiguous phases (exact DP) or the paper's recursive max-cut, scored
  against a structureless null.
- :func:`fit_raptor`: a surrogate of k weight-tied blocks applied recurrently, and its recovery
  (vision models: linear-probe accuracy; language models, :class:`LanguageRaptor`: next-token
  agreement and loss).
- :func:`trajectory_diagnostics`: angular convergence and effective rank of layer updates.
- :func:`digits_vit`: a small pre-LN ViT with LayerScale trained on scikit-learn's digits.
"""

from interp.depth.phases import Phases, segment_phases
from interp.depth.raptor import Raptor, RaptorFit, fit_raptor
from interp.depth.raptor_lm import LanguageRaptor
from interp.depth.similarity import LayerSimilarity, layer_similarity
from interp.depth.trajectory import Trajectories, trajectory_diagnostics
from interp.depth.views import DepthView, view_of
from interp.depth.vit import DigitsViT, ViTConfig, digits_vit, load_digits

__all__ = [
    "DepthView",
    "DigitsViT",
    "LanguageRaptor",
    "LayerSimilarity",
    "Phases",
    "Raptor",
    "RaptorFit",
    "Trajectories",
    "ViTConfig",
    "digits_vit",
    "fit_raptor",
    "layer_similarity",
    "load_digits",
    "segment_phases",
    "trajectory_diagnostics",
    "view_of",
]
