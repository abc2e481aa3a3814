"""Validate automaton extraction on Tomita 1-7: train small GRUs, extract, compare with the truth.

For each grammar (and seed): train a GRU (hidden 10) with a length curriculum 4 -> 8 -> 12, extract
a DFA by k-means quantization (k = smallest reaching 99.9% validation fidelity), and report the
number of states, the fidelity to the GRU and the accuracies of the GRU and of the DFA against the
ground truth on strings of length 0..24 (twice the longest training string), and exact
equivalence with the ground-truth DFA (shortest counterexample otherwise).

    .venv/bin/python analyses/tomita_extraction.py                 # seed 0, ~1 min on 1 core
    .venv/bin/python analyses/tomita_extraction.py --seeds 0 1 2   # robustness over seeds
    .venv/bin/python analyses/tomita_extraction.py --kind state_regularized --method centroids
"""

from __future__ import annotations

import argparse
import time

import torch

from interp.rnn.extraction import extract_automaton
from interp.rnn.grammar_training import train_grammar_net

GRAMMARS = [f"tomita{i}" for i in range(1, 8)]
COLUMNS = [
    "grammar",
    "seed",
    "true",
    "states",
    "k",
    "rnn acc",
    "fidelity",
    "dfa acc",
    "equivalent",
    "conflicts",
    "train s",
    "rnn acc <= 12",
    "rnn acc > 12",
]


def run(grammar: str, seed: int, args: argparse.Namespace) -> list[object]:
    options = (
        {"straight_through": True, "n_centroids": 10, "temperature": 1.0}
        if args.kind == "state_regularized"
        else {}
    )
    start = time.perf_counter()
    net, task, _ = train_grammar_net(
        grammar, kind=args.kind, hidden_size=args.hidden, seed=seed, **options
    )
    seconds = time.perf_counter() - start
    result = extract_automaton(net, task, method=args.method, seed=seed)
    summary = result.summary()
    verdict = "yes" if result.equivalent else f"no ({result.counterexample!r})"
    by_length = result.rnn_accuracy_by_length
    seen = result.lengths <= task.train_length  # lengths the GRU was trained on
    return [
        grammar, seed, summary["target_states"], summary["states"], summary["clusters"],
        float(by_length.mean()), result.fidelity, result.accuracy, verdict,
        result.settings["transition_conflict_rate"], seconds, float(by_length[seen].mean()),
        float(by_length[~seen].mean()),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--hidden", type=int, default=10)
    parser.add_argument("--kind", default="gru")
    parser.add_argument("--method", default="kmeans", choices=["kmeans", "centroids"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [run(grammar, seed, args) for seed in args.seeds for grammar in GRAMMARS]
    print(f"{args.kind} (hidden {args.hidden}), extraction by {args.method}; test lengths 0..24")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        cells = [
            f"{v:.4f}"
            if isinstance(v, float) and c != "train s"
            else f"{v:.1f}"
            if isinstance(v, float)
            else str(v)
            for v, c in zip(row, COLUMNS, strict=True)
        ]
        print("| " + " | ".join(cells) + " |")
    exact = sum(row[8] == "yes" for row in rows)
    print(f"\nexactly equivalent to the ground truth: {exact} / {len(rows)}")
    print(
        "\nfidelity = agreement of the extracted DFA with the GRU; dfa acc / rnn acc = agreement "
        "of the DFA / of the GRU with the ground truth (strings of length 0..24; the GRU trained "
        "on lengths <= 12)."
    )
    corrected = [row for row in rows if row[8] == "yes" and row[5] < 1.0]
    for row in corrected:
        print(
            f"- {row[0]} seed {row[1]}: the DFA is exactly the ground truth although the GRU "
            f"itself is not (GRU accuracy {row[5]:.4f}: {row[11]:.4f} on lengths <= 12, "
            f"{row[12]:.4f} on 13..24; fidelity {row[6]:.4f}): quantization corrected the GRU's "
            "errors, so 'equivalent: yes' describes the extracted automaton, not the network."
        )
    for row in rows:
        if row[8] != "yes":
            print(
                f"- {row[0]} seed {row[1]}: not equivalent, shortest counterexample {row[8][4:-1]}"
            )


if __name__ == "__main__":
    main()
