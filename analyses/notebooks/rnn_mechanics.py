"""Cells of notebooks/rnn_mechanics.ipynb (flip-flop fixed points, Tomita automaton); build with build.py.

The markdown states what to look for; every number (how many stable points, sign patterns,
states, whether the automaton is equivalent) is computed and printed by the code cells, so the
text never claims a result the run did not produce.
"""

CELLS = [
    (
        "markdown",
        "# RNN mechanics: fixed points and automata\n\n"
        "Two ways to read out what a trained recurrent net computes:\n\n"
        "1. **Fixed points** (Sussillo & Barak 2013): a net that solves the 3-bit flip-flop must "
        "hold 2³ = 8 memories. The expectation is that at zero input each memory is a stable "
        "fixed point whose readout is one of the 8 sign patterns, with saddles between them; the "
        "cells below count what this run actually found.\n"
        "2. **Automaton extraction**: a GRU trained to recognise a Tomita grammar is quantized "
        "into a DFA, which is compared with the grammar's true minimal DFA.\n\n"
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
        "history = train(net, task, steps=1500, lr=1e-2, eval_every=250, progress=False)\n"
        "print(history.table())",
    ),
    ("code", "history.figure()"),
    (
        "markdown",
        "## Fixed points\n"
        "1,024 starts (states from real trajectories plus noise) are optimized together by batched "
        "Levenberg–Marquardt on q(h) = ½‖step(h, 0) − h‖²; duplicates merge, and each point's "
        "Jacobian eigenvalues classify it (discrete time, with a tolerance of 1e-3 on |λ| = 1: "
        "stable when every |λ| < 1; a saddle has some unstable directions, |λ| > 1; a marginal "
        "point has modes at |λ| ≈ 1 and none unstable; a saturated point has *every* mode at "
        "|λ| ≈ 1, a frozen state such as saturated GRU gates, where the linearisation cannot "
        "tell stability).",
    ),
    (
        "code",
        "fixed_points = find_fixed_points(net, task=task, n_starts=1024)\n"
        "print(fixed_points.table(max_rows=12))",
    ),
    (
        "code",
        "stable = fixed_points.stable\n"
        "patterns = {tuple(r) for r in torch.sign(fixed_points.readouts[stable]).int().tolist()}\n"
        "saddles = fixed_points.classes.count('saddle')\n"
        "frozen = fixed_points.classes.count('marginal') + fixed_points.classes.count('saturated')\n"
        "print(f'final test loss {history.test_loss:.1e}, accuracy {history.final_accuracy:.3f}')\n"
        "print(f'{int(stable.sum())} stable points with {len(patterns)} of 8 distinct sign '\n"
        "      f'patterns; {saddles} saddles; {frozen} marginal or saturated; '\n"
        "      f'{int(fixed_points.slow.sum())} slow points')\n"
        "if len(patterns) == 8 and int(stable.sum()) == 8:\n"
        "    print('-> one stable point per memory, as the flip-flop requires')\n"
        "else:\n"
        "    print('-> not one stable point per memory: train longer (lower loss) for clean attractors')",
    ),
    (
        "markdown",
        "In the figure, grey lines are trajectories of the net on test inputs in the first three "
        "principal components; points are coloured by their class. Stable points should sit where "
        "trajectories settle between pulses, saddles between them.",
    ),
    ("code", "fixed_points.figure()"),
    (
        "markdown",
        "## Automaton extraction on Tomita 4\n"
        "Tomita 4 accepts binary strings without `000`; its minimal DFA (sink included) has 4 "
        "states. A 10-unit GRU is trained with a length curriculum (4 → 8 → 12), its states are "
        "quantized by k-means (smallest k reaching 99.9% validation fidelity), and the resulting "
        "DFA is minimized and checked for exact equivalence with the truth. Fidelity is agreement "
        "with the GRU; accuracy is agreement with the grammar.",
    ),
    (
        "code",
        "from interp.rnn.grammar_training import train_grammar_net\n"
        "from interp.rnn import extract_automaton\n\n"
        "gru, grammar, grammar_history = train_grammar_net('tomita4', hidden_size=10, seed=0)\n"
        "extraction = extract_automaton(gru, grammar, seed=0)\n"
        "print(extraction.table())",
    ),
    (
        "code",
        "truth = grammar.dfa.minimize().n_states\n"
        "verdict = 'exactly equivalent to' if extraction.equivalent else 'not equivalent to'\n"
        "print(f'GRU test accuracy {grammar_history.final_accuracy:.4f}; extracted DFA: '\n"
        "      f'{extraction.n_states} states (truth {truth}), {verdict} the ground truth')\n"
        "print(f'fidelity to the GRU {extraction.fidelity:.4f}, DFA accuracy {extraction.accuracy:.4f}')\n"
        "if not extraction.equivalent:\n"
        "    print(f'shortest counterexample: {extraction.counterexample!r}')",
    ),
    ("code", "extraction.dfa.figure(title='DFA extracted from the GRU (minimized)')"),
    ("code", "extraction.figure()"),
]
