"""Model loading and hook-instrumented wrappers (the only place that knows HF / TL / nnsight).

Names are imported on first use (see :mod:`interp._lazy`): ``import interp.models.recurrent``
does not pull in transformers.
"""

from __future__ import annotations

from interp._lazy import lazy_exports

_EXPORTS = {
    "REGISTRY": "interp.models.registry",
    "load_model": "interp.models.registry",
    "ActivationCache": "interp.models.hooks",
    "HookedLM": "interp.models.hooked",
    "NativeLM": "interp.models.native",
    "LanguageModel": "interp.models.protocol",
    "FAMILIES": "interp.models.families",
    "HookedModule": "interp.models.module",
    "StatsRequest": "interp.models.attention",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
