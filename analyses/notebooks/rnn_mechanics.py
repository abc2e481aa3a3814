"""Cells of notebooks/rnn_mechanics.ipynb (flip-flop fixed points, Tomita automaton); build with build.py."""

CELLS = [
    (
        "markdown",
        "# RNN mechanics: fixed points and automata\n\n"
        "Two ways to read out what a trained recurrent net computes:\n\n"
        "1. **Fixed points** (Sussillo & Barak 2013): a GRU trained on the 3-bit flip-flop must hold "
        "8 memories; at zero input each is a stable fixed point whose readout is one of the 8 sign "
        "patterns, and saddles sit between them.\n"
        "2. **Automaton extraction**: a GRU trained to recognise a Tomita grammar is quantized into a "
        "DFA, which is compared with the grammar's true minimal DFA.\n\n"
        "Everything runs through the `Recurrent` protocol (`initial_state`, `step`, `readout`), so "
        "`as_recurrent(nn.GRU(...))` or your own module works the same way.",
    ),
    (
        "code",
        "import torch\n"
        "torch.set_num_threads(1)\n"
        "from interp.rnn import make_task, make_net, train, find_fixed_points\n\n"
        "task = make_task('flipflop', bits=3)\n"
        "net = make_net('gru', task.input_size, 16, task.output_size, seed=0)\n"
        "history = train(net, task, steps=3000, lr=1e-2, eval_every=250, progress=False)\n"
        "print(history.table())",
    ),
    ("code", "history.figure()"),
    (
        "markdown",
        "## Fixed points\n"
        "1,024 starts (states from real trajectories plus noise) are optimized together by batched "
        "Levenberg–Marquardt on q(h) = ½‖step(h, 0) − h‖²; duplicates merge, and each point's "
        "Jacobian eigenvalues classify it (stable: all |λ| < 1).",
    ),
    (
        "code",
        "fixed_points = find_fixed_points(net, task=task, n_starts=1024)\n"
        "print(fixed_points.table(max_rows=12))\n"
        "stable = fixed_points.stable\n"
        "patterns = {tuple(r) for r in torch.sign(fixed_points.readouts[stable]).int().tolist()}\n"
        "print(f'{int(stable.sum())} stable points with {len(patterns)} distinct sign patterns')",
    ),
    (
        "markdown",
        "Grey lines are trajectories of the net on test inputs; the 8 stable points sit at the "
        "corners the trajectories visit, saddles on the edges between them.",
    ),
    ("code", "fixed_points.figure()"),
    (
        "markdown",
        "## Automaton extraction on Tomita 4\n"
        "Tomita 4 accepts binary strings without `000`; its minimal DFA (sink included) has 4 "
        "states. A 10-unit GRU is trained with a length curriculum (4 → 8 → 12), its states are "
        "quantized by k-means (smallest k reaching 99.9% fidelity), and the resulting DFA is "
        "minimized and checked for exact equivalence with the truth.",
    ),
    (
        "code",
        "from interp.rnn.grammar_training import train_grammar_net\n"
        "from interp.rnn import extract_automaton\n\n"
        "gru, grammar, _ = train_grammar_net('tomita4', hidden_size=10, seed=0)\n"
        "extraction = extract_automaton(gru, grammar, seed=0)\n"
        "print(extraction.table())",
    ),
    ("code", "extraction.dfa.figure(title='DFA extracted from the GRU (minimized)')"),
    ("code", "extraction.figure()"),
]
