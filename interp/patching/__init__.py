"""Interventions and causal attribution on the model protocol: activation patching and ablations
(Meng et al. 2022; Wang et al. 2022), attribution patching (Nanda 2023), direct logit
attribution, the logit lens, steering vectors and spliced modules (autoencoders, probes).

Names are imported on first use (see :mod:`interp._lazy`).
"""

from __future__ import annotations

from interp._lazy import lazy_exports

_EXPORTS = {
    # activation and attribution patching (activation.py, attribution.py, metrics.py,
    # result.py, sites.py, sources.py)
    "activation_patching": "interp.patching.activation",
    "attribution_patching": "interp.patching.attribution",
    "PatchingResult": "interp.patching.result",
    "MetricContext": "interp.patching.metrics",
    "logit_diff": "interp.patching.metrics",
    "SITES": "interp.patching.sites",
    # DLA, lens, steering, splicing
    "DLAResult": "interp.patching.dla",
    "direct_logit_attribution": "interp.patching.dla",
    "LogitLens": "interp.patching.lens",
    "logit_lens": "interp.patching.lens",
    "SteeringResult": "interp.patching.steering",
    "mean_difference": "interp.patching.steering",
    "steering_edits": "interp.patching.steering",
    "steer": "interp.patching.steering",
    "splice_edits": "interp.patching.splice",
    "SpliceResult": "interp.patching.splice",
    "splice_module": "interp.patching.splice",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
