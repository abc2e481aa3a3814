"""Cells of notebooks/depth_phases.ipynb (the digits ViT end to end); build with build.py."""

CELLS = [
    (
        "markdown",
        "# Depth phases of a small ViT (block-recurrent hypothesis)\n\n"
        "Jacobs et al. 2025 (arXiv 2512.19941) propose that a trained L-layer network's depth can be "
        "rewritten as k << L distinct blocks applied recurrently. This notebook checks it at small scale:\n\n"
        "1. train a 12-block pre-LN ViT with LayerScale on scikit-learn's 8x8 digits (stochastic depth 0.3);\n"
        "2. measure the layer-by-layer dissimilarity of its CLS and mean-patch tokens (1 - cos);\n"
        "3. cut the layers into contiguous phases (exact dynamic programming) and with the paper's max-cut, "
        "and compare them with a structureless null;\n"
        "4. follow token trajectories through depth;\n"
        "5. fit Raptor, one weight-tied block per phase, and measure how much of the original's "
        "linear-probe accuracy it recovers.",
    ),
    (
        "code",
        "import torch\n"
        "torch.set_num_threads(1)\n"
        "import interp.depth as depth\n\n"
        "config = depth.ViTConfig(drop_path=0.3)\n"
        "model = depth.digits_vit(config)  # loads from $INTERP_CACHE, else trains: 690 steps on one core,\n"
        "# 0.5-8 minutes depending on the machine and its load (train_seconds below)\n"
        "data = depth.load_digits(config.seed)\n"
        "model.training_log",
    ),
    (
        "markdown",
        "## Layer dissimilarity\nRow/column 0 is the embedding output, l the output of block l.",
    ),
    (
        "code",
        "similarity = depth.layer_similarity(model, data['test_images'])\nsimilarity.figure()",
    ),
    (
        "markdown",
        "## Phases\nThe DP finds the best split into contiguous runs; with `k=None` it adds phases while "
        "each new one cuts at least `epsilon` (10%) of the total dissimilarity. Max-cut is the paper's "
        "recursive procedure (its phases need not be contiguous).\n\n"
        "A high cut fraction alone is no evidence of phases: a matrix that only grows with the depth "
        "distance |i - j| (a ramp) is cut just as well by contiguous runs. Every result is therefore "
        "compared with the *lag null*, the matrix averaged along its diagonals: `block_score` = "
        "(cut - null cut) / (1 - null cut) is 0 without block structure and 1 for perfect blocks, and "
        "the `k=None` rule reports a single phase unless its phases score at least 0.25.",
    ),
    (
        "code",
        "phases = depth.segment_phases(similarity)\n"
        "print(phases.table())\n"
        "print(depth.segment_phases(similarity, method='maxcut').table())\n"
        "for k in (2, 3):\n"
        "    print(depth.segment_phases(similarity, k).table().splitlines()[0])\n"
        "phases.figure()",
    ),
    (
        "code",
        "from interp.depth.phases import MIN_SCORE\n"
        "scores = {k: depth.segment_phases(similarity, k).block_score for k in (2, 3, 4)}\n"
        "print('block score by k:', {k: round(v, 3) for k, v in scores.items()})\n"
        "print(f'every k below the {MIN_SCORE} gate: {all(v < MIN_SCORE for v in scores.values())}')",
    ),
    (
        "markdown",
        "A block score near 0 means the phases cut this ViT's dissimilarity no better than the lag "
        "null does: the layers then drift smoothly with depth rather than forming blocks. "
        "`analyses/depth_digits.py` repeats this over seeds, with and without stochastic depth.",
    ),
    (
        "markdown",
        "## Trajectories\nAngular convergence to the final state, and the effective rank of each layer's update.",
    ),
    (
        "code",
        "trajectories = depth.trajectory_diagnostics(model, data['test_images'], labels=data['test_labels'])\n"
        "print(trajectories.table())\n"
        "trajectories.figure()",
    ),
    (
        "markdown",
        "## Raptor with 2 blocks\nRaptor does not need block structure to be tried: with k = 2 exact DP "
        "phases, each phase's block starts as a copy of the phase's middle layer; training anneals "
        "teacher forcing into autoregressive rollout, then trains end to end.",
    ),
    (
        "code",
        "two = depth.segment_phases(similarity, k=2)\n"
        "fit = depth.fit_raptor(model, data['train_images'], two, labels=data['train_labels'],\n"
        "                       eval_inputs=data['test_images'], eval_labels=data['test_labels'],\n"
        "                       phase_steps=200, end_to_end_steps=200)\n"
        "print(fit.table())\n"
        "fit.figure()",
    ),
]
