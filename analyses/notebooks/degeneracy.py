"""Cells of notebooks/degeneracy.ipynb (a small flip-flop ensemble); build with build.py."""

CELLS = [
    (
        "markdown",
        "# Solution degeneracy across task-trained RNNs\n\nHuang et al. 2024 ask how different the solutions of independently trained RNNs are, at three levels: **behaviour** (outputs on held-out and out-of-distribution inputs), **neural dynamics** (Dynamical Similarity Analysis, Ostrow et al. 2023) and **weights** (distance after matching hidden units up to permutation and sign). Each metric gives an N x N distance matrix; the *degeneracy* of the ensemble is its mean off-diagonal entry.\n\nThis notebook trains a small ensemble of tanh RNNs on the 2-bit flip-flop task in one vectorized computation, measures it, and runs a tiny sweep over network size.",
    ),
    (
        "code",
        "import torch\ntorch.set_num_threads(1)\nfrom interp.degeneracy import train_ensemble, measure_degeneracy, degeneracy_sweep\n\nensemble = train_ensemble('flipflop', 'rnn_tanh', n_models=6, hidden_size=24, steps=250,\n                          task_options={'bits': 2, 'steps': 32}, progress=False)\nprint(ensemble.table())",
    ),
    ("code", "ensemble.figure()"),
    (
        "markdown",
        "## Distances at three levels\n`behaviour`: RMS output difference on held-out trials; two out-of-distribution sets, reported separately: `behaviour_ood` on sequences twice as long, `behaviour_amp` on input pulses of amplitude 0.5 and 2 (trained at 1). `dsa`: angular DSA distance (radians) between rank-10 DMD operators of 5-delay embeddings (the orthogonal alignment is optimized from 11 starts per pair); `eigen_w1`: optimal transport between their eigenvalues; `cka`, `procrustes`: state geometry. `weights`: relative distance after signed-permutation matching; `weights_init`: the same between the untrained initial weights (chance level).",
    ),
    (
        "code",
        "result = measure_degeneracy(ensemble, n_trials=32, dsa_iters=200)\nprint(result.table())",
    ),
    ("code", "result.figure()"),
    (
        "markdown",
        "## A tiny sweep over network size\nThe full study (`analyses/degeneracy_sweep.py`) also varies task complexity and regularization; jobs can run on Ray with `executor=make_executor('auto')`.",
    ),
    (
        "code",
        "sweep = degeneracy_sweep('flipflop', {'hidden_size': [12, 32]},\n                         base={'n_models': 4, 'steps': 150}, task_options={'bits': 2, 'steps': 24},\n                         measure={'n_trials': 16, 'dsa_iters': 100})\nprint(sweep.table())",
    ),
    ("code", "sweep.figure()"),
]
