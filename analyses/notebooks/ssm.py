"""Cells of notebooks/ssm.ipynb (how many heads make an SSM; a tiny Mamba); build with build.py."""

CELLS = [
    (
        "markdown",
        "# How many heads make an SSM?\n\nGhodsi 2025 writes every sequence mixer as "
        "$y_i = \\sum_{j \\le i} W_{ij}(X)\\, x_j$. Attention: $W_{ij} = \\sum_h \\alpha^h_{ij} "
        "V_h$, so the maps span at most $H$ dimensions. A linear SSM ($h_t = A h_{t-1} + B x_t$, "
        "$y_t = C h_t$): $W_{ij} = K_{i-j}$ with lag operators $K_\\ell = C A^\\ell B$. If the "
        "lag operators span $k$ dimensions, exactly $k$ position-only attention heads are needed "
        "and suffice to emulate the SSM.\n\nThis notebook checks the theorem numerically, "
        "compares gradient paths, then runs the same analysis on a tiny Mamba trained here.",
    ),
    (
        "code",
        "import torch\ntorch.set_num_threads(1)\nfrom interp.mixers import (LinearSSM, head_count_table, "
        "gradient_paths, interaction_operators,\n                           interaction_rank, analyze_mixers)\n\n"
        "fit = head_count_table(spans=(1, 2, 4, 8), heads=range(1, 13), length=24)\nprint(fit.table())",
    ),
    (
        "markdown",
        "Each row is a random stable SSM whose lag operators span exactly $k$ dimensions ($A$ has "
        "$k$ distinct eigenvalues). The fit is the least-squares optimum over position-only maps "
        "$\\alpha^h_{ij}$ and head maps $V_h$ (Eckart-Young; `method='als'` fits the same by "
        "alternating `torch.linalg.lstsq`). The error drops to float64 round-off at $H = k$, "
        "never before.",
    ),
    ("code", "fit.figure()"),
    (
        "markdown",
        "## Gradient paths\nA stable SSM's $\\|\\partial y_i / \\partial x_j\\|$ decays like "
        "$\\rho^{i-j}$; attention connects every pair through one weight, independent of "
        "distance. Both measured by autograd on a real input; the profile is "
        "$\\|\\partial y_i / \\partial x_{i-d}\\| / \\|\\partial y_i / \\partial x_i\\|$ "
        "averaged over queries $i$ (relative to each query, so uniform attention's $1/(i+1)$ "
        "scale is not mistaken for decay).",
    ),
    (
        "code",
        "from interp.mixers.paths import paths_figure\n\nssm = LinearSSM.random(4, 4, 4, seed=0)\n"
        "x = torch.randn(24, 4, dtype=torch.float64)\nssm_paths = gradient_paths(ssm, x, kind='lti')\n\n"
        "W = torch.randn(4, 4, dtype=torch.float64)\ndef uniform_attention(x):\n"
        "    weights = torch.ones(len(x), len(x), dtype=x.dtype).tril()\n"
        "    return (weights / weights.sum(-1, keepdim=True)) @ x @ W\n\n"
        "attention_paths = gradient_paths(uniform_attention, x, kind='attention')\n"
        "print(ssm_paths.table())\nprint(attention_paths.table())\n"
        "paths_figure({'linear SSM': ssm_paths.profile, 'uniform attention': attention_paths.profile})",
    ),
    (
        "markdown",
        "## A tiny Mamba trained on a delayed copy\nTwo Mamba blocks (d_model 16, 32 scan "
        "channels, state size 4) learn to output the token two steps back (about 10 s on one "
        "core). `interp.load_model` wraps it in the same interface as a transformer: residual "
        "hooks plus mixer hooks (`mixer.hook_delta`, `hook_B`, `hook_C`, the state "
        "`hook_state`, ...).",
    ),
    (
        "code",
        "import interp\nfrom transformers.utils import logging\nfrom interp.mixers.train import train_delayed_copy, delayed_copy_batch\n"
        "logging.set_verbosity_error()  # no notes about the CUDA kernels a CPU run lacks\n"
        "from interp.models.tiny import word_tokenizer\n\n"
        "trained = train_delayed_copy('mamba', lag=2, steps=250, seed=0)\n"
        "print(f'held-out accuracy {trained.accuracy:.3f}')\n"
        "lm = interp.load_model(trained.model, tokenizer=word_tokenizer(96), device='cpu')\n"
        "tokens, _ = delayed_copy_batch(1, 24, 8, 2, torch.Generator().manual_seed(1))\n"
        "logits, cache = lm.run(tokens, capture=['blocks.0.mixer.*', 'blocks.0.mixer.hook_state'])\n"
        "for name, value in cache.items():\n    print(f'{name:32s} {tuple(value.shape)}')",
    ),
    (
        "markdown",
        "The operators of a selective SSM depend on the input: $W_{ij} = "
        "\\mathrm{diag}_c\\big(\\sum_n C_i[n] \\prod_{k=j+1}^{i} \\bar A_k[c,n]\\, \\bar "
        "B_j[c,n]\\big)$. Their span over all pairs $i \\ge j$ is the number of position-only "
        "heads that would emulate the layer on this input. The rank depends on the tolerance, so "
        "the whole spectrum is plotted.",
    ),
    (
        "code",
        "analysis = analyze_mixers(lm, tokens)\nprint(analysis.table())\nanalysis.figure()",
    ),
    ("code", "analysis.paths_figure()"),
    (
        "markdown",
        "The same architecture at random initialization: its spectrum falls off much faster "
        "(nearly one dominant direction), so training spread the layer over more effective heads.",
    ),
    (
        "code",
        "from interp.models.ssm_tiny import tiny_ssm\n\n"
        "fresh = interp.load_model(tiny_ssm('mamba', vocab=8), tokenizer=word_tokenizer(96), "
        "device='cpu')\nfor rtol in (1e-2, 1e-4):\n"
        "    trained_ranks = [interaction_rank(interaction_operators(lm, tokens, l), rtol).rank for l in range(2)]\n"
        "    fresh_ranks = [interaction_rank(interaction_operators(fresh, tokens, l), rtol).rank for l in range(2)]\n"
        "    print(f'rtol {rtol:g}: trained {trained_ranks}, random init {fresh_ranks}')",
    ),
    (
        "markdown",
        "From the command line: `interp mixers --model SPEC --out report.html` writes the same "
        "table, spectra and gradient paths for any transformer or Mamba model; "
        "`analyses/ssm_heads.py` prints the full theorem table.",
    ),
]
