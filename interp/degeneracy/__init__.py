"""Solution degeneracy across ensembles of task-trained RNNs (Huang et al. 2024; DSA, Ostrow et al. 2023).

Train an ensemble with :func:`train_ensemble` (one vectorized computation), measure it with
:func:`measure_degeneracy` (behaviour, dynamics and weight distances), and sweep factors with
:func:`degeneracy_sweep` (in-process or on Ray).

Names are imported on first use (see :mod:`interp._lazy`), so the command line stays fast.
"""

from __future__ import annotations

from interp._lazy import lazy_exports

_EXPORTS = {
    "Degeneracy": "interp.degeneracy.metrics",
    "DegeneracySweep": "interp.degeneracy.sweep",
    "Ensemble": "interp.degeneracy.ensemble",
    "LocalExecutor": "interp.degeneracy.executors",
    "RayExecutor": "interp.degeneracy.executors",
    "cka_distances": "interp.degeneracy.geometry",
    "degeneracy": "interp.degeneracy.pairs",
    "degeneracy_se": "interp.degeneracy.pairs",
    "degeneracy_sweep": "interp.degeneracy.sweep",
    "dsa_distances": "interp.degeneracy.dsa",
    "eigenvalue_wasserstein": "interp.degeneracy.dsa",
    "explained_rank": "interp.degeneracy.dsa",
    "fit_dmd": "interp.degeneracy.dsa",
    "make_executor": "interp.degeneracy.executors",
    "match_hidden_units": "interp.degeneracy.weights",
    "measure_degeneracy": "interp.degeneracy.metrics",
    "procrustes_distances": "interp.degeneracy.geometry",
    "procrustes_vector_fields": "interp.degeneracy.dsa",
    "train_ensemble": "interp.degeneracy.ensemble",
    "weight_distances": "interp.degeneracy.weights",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
