"""Cells of notebooks/head_finders.ipynb (induction, successor, retrieval heads of the embedded model)."""

CELLS = [
    (
        "markdown",
        "# Special attention heads of SmolLM2-135M\n\n"
        "The embedded model (30 layers x 9 heads, shipped as a wheel, no download) is searched for "
        "three kinds of heads, each returned as a `HeadScores` (a `[layers, heads]` map per metric, "
        "`top()`, `heads()`, `table()`, `figure()`, `save()`):\n\n"
        "- **induction heads** (Olsson et al. 2022): prefix matching and copying on repeated random "
        "tokens, computed from fused attention statistics (no `[T, T]` pattern is stored);\n"
        "- **successor heads** (Gould et al. 2023): the effective OV circuit on ordinal sequences "
        "(numbers, days, months, letters...), pure weights;\n"
        "- **retrieval heads** (Wu et al. 2024): heads that copy the needle while the model answers "
        "a needle-in-a-haystack question, and what masking them does.",
    ),
    (
        "code",
        "import torch\n"
        "import interp\n"
        "from interp import heads\n\n"
        "lm = interp.load_model()  # the embedded SmolLM2-135M-Instruct\n"
        "lm",
    ),
    (
        "markdown",
        "## Induction heads\n"
        "`[BOS] + r` repeated 4 times, `r` 25 random mid-vocabulary tokens, 10 examples. An induction "
        "head has prefix matching >= 0.4 and a copying score above the documented default.",
    ),
    (
        "code",
        "induction = heads.induction_scores(lm)\n"
        "print(induction.table(k=5))\n"
        "print('induction heads:', induction.heads())",
    ),
    ("code", "induction.figure('prefix_matching')"),
    (
        "markdown",
        "In-context learning score (Olsson et al.): loss at token 500 minus loss at token 50 on "
        "windows of the shipped offline corpus (negative: later tokens are predicted better).",
    ),
    ("code", "icl = heads.in_context_learning_score(lm, n_windows=4)\nprint(icl.table())"),
    (
        "markdown",
        "## Successor heads\n"
        "For each head, `W_U · W_O W_V · MLP0(norm(W_E[t]))` on each ordinal task; the score is "
        "the fraction of tokens whose successor wins among the task's tokens.",
    ),
    (
        "code",
        "successor = heads.successor_scores(lm)\n"
        "print(successor.table(k=5))\n"
        "print('dropped tasks (not single tokens):', successor.settings['dropped_tasks'])",
    ),
    ("code", "successor.figure()"),
    (
        "code",
        "best_layer, best_head, _ = successor.top(1)[0]\n"
        "mod10 = heads.mod10_features(lm, (best_layer, best_head))\n"
        "print(mod10.table())",
    ),
    (
        "markdown",
        "## Retrieval heads\n"
        "Needles from the shipped set are hidden at depths 0, 0.5 and 1 of haystacks of 256 and 512 "
        "tokens; while the model answers greedily, a head scores when its most-attended token is "
        "the needle token being copied. Only tests the model answers correctly count.",
    ),
    (
        "code",
        "grid = heads.retrieval_grid(lm, lengths=[256, 512], depths=[0.0, 0.5, 1.0], n_needles=2)\n"
        "print(grid.table())\n"
        "retrieval = grid.scores()\n"
        "print(retrieval.table(k=5))",
    ),
    ("code", "retrieval.figure()"),
    (
        "markdown",
        "Masking (queries zeroed, so the head attends uniformly) the top-10 retrieval heads against "
        "10 random other heads:",
    ),
    (
        "code",
        "masking = heads.masking_experiment(lm, retrieval, k=10, n_random=1, lengths=[512],\n"
        "                                  depths=[0.5], n_needles=2)\n"
        "print(masking.table())\n"
        "masking.figure()",
    ),
]
