"""Model loading and hook-instrumented wrappers (the only place that knows HF / TL / nnsight)."""

from interp.models.attention import StatsRequest
from interp.models.hooked import HookedLM
from interp.models.hooks import ActivationCache
from interp.models.registry import REGISTRY, load_model

__all__ = ["REGISTRY", "ActivationCache", "HookedLM", "StatsRequest", "load_model", "HookedModule"]


def __getattr__(name: str):
    if name == "HookedModule":
        from interp.models.module import HookedModule

        return HookedModule
    raise AttributeError(f"module 'interp.models' has no attribute {name!r}")
