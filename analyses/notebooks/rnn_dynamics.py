"""Cells of notebooks/rnn_dynamics.ipynb (noise-driven HMM RNNs, timescales); build with build.py.

Runs on the shipped cyclic-4 net (``data/hmm_cyclic4``, made by ``analyses/hmm_cyclic4.py``) and
a tiny curriculum, so it executes in well under a minute. Every number the markdown refers to is
computed and printed by the code cells.
"""

CELLS = [
    (
        "markdown",
        "# RNN dynamics: noise-driven HMM emulators and long timescales\n\n"
        "1. **RNNs emulating HMMs** (Torre et al. 2025): a bias-free ReLU RNN driven only by "
        "Gaussian noise, outputs sampled by a hard Gumbel-softmax, trained with a Sinkhorn "
        "divergence to emit like the cyclic 4-state HMM. The paper's picture: without input the "
        "activity collapses to one fixed point; with noise it circulates on an orbit of slow "
        "clusters joined by fast transitions that a few *kick neurons* start.\n"
        "2. **Timescales** (Khajehabdollahi et al. 2023): a leaky RNN with one trainable τ per "
        "neuron learns N-parity through a curriculum; its timescales are the parameters τ, the "
        "network's τ_net (autocorrelation fits) and the Jacobian's −1/log|λ|.\n\n"
        "The net below was trained at a small budget on one CPU core "
        "(`analyses/hmm_cyclic4.py`); the cells print how well it fits its HMM.",
    ),
    (
        "code",
        "from pathlib import Path\n"
        "import torch\n"
        "torch.set_num_threads(1)\n"
        "from interp.rnn.hmm_net import load_hmm_run\n"
        "from interp.rnn.dynamics_analysis import analyze_noise_rnn\n\n"
        "root = Path.cwd() if (Path.cwd() / 'data').is_dir() else Path.cwd().parent\n"
        "net, task, training = load_hmm_run(root / 'data' / 'hmm_cyclic4')\n"
        "print(training.table())",
    ),
    (
        "markdown",
        "## The dynamics\n"
        "One noisy trajectory of 1,000 states (after 20 warm-up steps); from each state 20 noisy "
        "continuations of up to 50 steps give its residency time (steps until the argmax output "
        "changes): < 2 steps is a kick zone, 2–8 intermediate, > 8 with max output probability "
        "> 0.8 a cluster. Each neuron's gain is set to 0 and 2 in turn; the six neurons whose "
        "ablation cuts the output transition rate most are compared with 20 random sets of six.",
    ),
    (
        "code",
        "dynamics = analyze_noise_rnn(net, top_k=6)\nprint(dynamics.table())",
    ),
    ("code", "figures = dynamics.figures()\nfigures['state_space']"),
    ("code", "figures['phase']"),
    ("code", "figures['residency']"),
    ("code", "figures['kick']"),
    (
        "markdown",
        "## Timescales\n"
        "A tiny multi-head curriculum on N-parity (heads for N = 2, 3, …; a head is added when "
        "the mean accuracy over heads and the newest head both exceed 98%), then τ, τ_net "
        "(autocorrelation under N-parity input, single vs double exponential chosen by AIC) and "
        "the zero-input Jacobian timescales. `analyses/timescales_curricula.py` runs the "
        "single- vs multi-head comparison at a larger budget.",
    ),
    (
        "code",
        "from interp.rnn.timescales_net import TimescaleRNN\n"
        "from interp.rnn.timescales_training import train_curriculum\n"
        "from interp.rnn.timescales_result import analyze_timescales\n\n"
        "torch.manual_seed(0)\n"
        "leaky = TimescaleRNN(1, 32, 2 * 5)\n"
        "history = train_curriculum(leaky, 'nparity', 'multi', epochs=20, steps_per_epoch=150,\n"
        "                           batch_size=64, eval_batches=5, max_n=6, progress=False)\n"
        "print(history.table())\n"
        "history.figure()",
    ),
    (
        "code",
        "timescales = analyze_timescales(leaky, 'nparity', max(history.max_n, 2), steps=10_000,\n"
        "                                trials=1, fixed_point_starts=32)\n"
        "print(timescales.table())\n"
        "timescales.figure()",
    ),
    (
        "markdown",
        "## Validation: a leaky unit with known τ\n"
        "`h ← (1 − 1/τ) h + x/τ` with no recurrence has autocorrelation (1 − 1/τ)^t, i.e. "
        "τ_net = −1/log(1 − 1/τ); the cell compares the fit with that value.",
    ),
    (
        "code",
        "import math\n"
        "from interp.rnn.timescales import drive, timescales_of_states\n\n"
        "unit = TimescaleRNN(1, 1, 2, negative_slope=1.0).double()\n"
        "with torch.no_grad():\n"
        "    unit.weight_hh.zero_(); unit.bias.zero_(); unit.weight_ih.fill_(1.0); "
        "unit.tau.fill_(10.0)\n"
        "x = torch.randn(2, 50_500, 1, generator=torch.Generator().manual_seed(0)).double()\n"
        "fit = timescales_of_states(drive(unit, x, burn_in=500))\n"
        "exact = -1 / math.log(1 - 1 / 10)\n"
        "print(f\"τ_net {fit['tau_net'][0]:.3f} ({fit['model'][0]} exponential), exact {exact:.3f}, \"\n"
        "      f\"error {fit['tau_net'][0] / exact - 1:+.2%}\")",
    ),
]
