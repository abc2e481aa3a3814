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
        "head has prefix matching >= 0.4 and copying >= -0.5. Copying is Olsson et al.'s OV "
        "evaluator (see `interp.heads.copying`): it runs from -1 to +1, a head that ignores the "
        "attended token scores about 2/25 - 1 = -0.92, and -0.5 means the attended token gets at "
        "least a quarter of all the logit raise.",
    ),
    (
        "code",
        "induction = heads.induction_scores(lm)\n"
        "print(induction.table(k=5))\n"
        "print('induction heads:', induction.heads())",
    ),
    ("code", "induction.figure('prefix_matching')"),
    ("code", "induction.figure('copying')"),
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
        "the fraction of tokens whose successor wins among the task's tokens. SmolLM2 splits "
        "numbers into digits, so the `numbers` task keeps only 1..9; the tasks kept and dropped "
        "for this tokenizer are listed below. The embedded model is a negative control: no head "
        "reaches 0.4.",
    ),
    (
        "code",
        "successor = heads.successor_scores(lm)\n"
        "for name, info in successor.settings['tasks'].items():\n"
        "    print(f\"{name:<26} {len(info['items']):>3} tokens {info['pairs']:>3} pairs\")\n"
        "print('dropped:', successor.settings['dropped_tasks'])\n"
        "print(successor.table(k=5))",
    ),
    ("code", "successor.figure()"),
    (
        "markdown",
        "Mod-10 features (Gould et al. §4): a probe for `value mod 10` on the effective embeddings "
        "of numeric tokens, and the vector arithmetic `e(t) - f_a + f_b` decoded through the best "
        "head's OV circuit; it succeeds when the head outputs the successor of the shifted token "
        "(with no successor head here, expect little).",
    ),
    (
        "code",
        "best_layer, best_head, _ = successor.top(1)[0]\n"
        "mod10 = heads.mod10_features(lm, (best_layer, best_head))\n"
        "print(mod10.table())",
    ),
    (
        "markdown",
        "## Retrieval heads\n"
        "While the model answers a needle-in-a-haystack question greedily, a head copy-pastes when "
        "its most-attended token is the needle token it is emitting; only tests the model answers "
        "correctly (ROUGE-1 recall > 0.5) count. **This notebook runs a tiny grid so that it "
        "executes in CI within a few minutes: 2 needles x one 256-token prompt x depths 0 and 1 "
        "(4 tests).** The library default (`heads.retrieval_grid(lm)`) is 3 needles x prompt "
        "lengths 256..2048 x 5 depths; `analyses/heads_retrieval.py` runs a larger grid.",
    ),
    (
        "code",
        "grid = heads.retrieval_grid(lm, lengths=[256], depths=[0.0, 1.0], n_needles=2)\n"
        "print(grid.table())\n"
        "retrieval = grid.scores()\n"
        "print(retrieval.table(k=5))",
    ),
    (
        "code",
        "import pandas as pd\n\n"
        "columns = ['needle', 'length', 'depth', 'recall', 'retrieved', 'response', 'top heads']\n"
        "pd.DataFrame(grid.test_rows(), columns=columns)",
    ),
    ("code", "retrieval.figure()"),
    (
        "markdown",
        "Masking (queries zeroed, so the head attends uniformly) the top-10 retrieval heads against "
        "10 random non-retrieval heads (never drawn from the top 10), again on a tiny grid: one "
        "256-token prompt per needle, needle in the middle.",
    ),
    (
        "code",
        "masking = heads.masking_experiment(lm, retrieval, k=10, n_random=1, lengths=[256],\n"
        "                                  depths=[0.5], n_needles=2)\n"
        "print(masking.table())\n"
        "masking.figure()",
    ),
]
