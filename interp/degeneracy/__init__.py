"""Solution degeneracy across ensembles of task-trained RNNs (Huang et al. 2024; DSA, Ostrow et al. 2023).

Train an ensemble with :func:`train_ensemble` (one vectorized computation), measure it with
:func:`measure_degeneracy` (behaviour, dynamics and weight distances), and sweep factors with
:func:`degeneracy_sweep` (in-process or on Ray).
"""

from interp.degeneracy.dsa import (
    dsa_distances,
    eigenvalue_wasserstein,
    fit_dmd,
    procrustes_vector_fields,
)
from interp.degeneracy.ensemble import Ensemble, train_ensemble
from interp.degeneracy.executors import LocalExecutor, RayExecutor, make_executor
from interp.degeneracy.geometry import cka_distances, procrustes_distances
from interp.degeneracy.metrics import Degeneracy, measure_degeneracy
from interp.degeneracy.pairs import degeneracy, degeneracy_se
from interp.degeneracy.sweep import DegeneracySweep, degeneracy_sweep
from interp.degeneracy.weights import match_hidden_units, weight_distances

__all__ = [
    "Degeneracy",
    "DegeneracySweep",
    "Ensemble",
    "LocalExecutor",
    "RayExecutor",
    "cka_distances",
    "degeneracy",
    "degeneracy_se",
    "degeneracy_sweep",
    "dsa_distances",
    "eigenvalue_wasserstein",
    "fit_dmd",
    "make_executor",
    "match_hidden_units",
    "measure_degeneracy",
    "procrustes_distances",
    "procrustes_vector_fields",
    "train_ensemble",
    "weight_distances",
]
