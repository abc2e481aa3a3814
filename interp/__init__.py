"""interp: a mechanistic-interpretability toolkit.

Load a pretrained model and find its induction, successor and retrieval heads; extract the fixed
points and automata of trained RNNs; fit block-recurrent depth phases; measure solution
degeneracy across RNN ensembles. Every analysis returns a result object with ``table()``,
``save()``, ``load()`` and ``figure()``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["HookedLM", "HookedModule", "load_model", "__version__"]


def __getattr__(name: str):
    # Lazy: `import interp` stays light; transformers is imported only when a model is loaded.
    if name in {"HookedLM", "HookedModule", "load_model"}:
        from interp import models

        return getattr(models, name)
    raise AttributeError(f"module 'interp' has no attribute {name!r}")
