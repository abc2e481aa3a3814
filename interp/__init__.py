"""interp: a mechanistic-interpretability toolkit.

Load a pretrained model and find its induction, successor and retrieval heads; extract the fixed
points and automata of trained RNNs; fit block-recurrent depth phases; measure solution
degeneracy across RNN ensembles. Every analysis returns a result object with ``table()``,
``save()``, ``load()`` and ``figure()``. ``import interp`` stays light: transformers is imported
only when a model is loaded.
"""

from __future__ import annotations

from interp._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "HookedLM": "interp.models.hooked",
    "HookedModule": "interp.models.module",
    "LanguageModel": "interp.models.protocol",
    "load_model": "interp.models.registry",
}
__all__ = [*sorted(_EXPORTS), "__version__"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
