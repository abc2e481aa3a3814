"""L* (Weiss et al. 2018) beside quantization (k-means) on the same GRUs: where each one breaks.

Part 1, well-trained nets: Tomita 1-7 and bounded parentheses, GRUs (hidden 10) trained as
``analyses/tomita_extraction.py`` does (length curriculum 4 -> 8 -> 12, stop at 99.9%), several
seeds. For each net: states, membership and equivalence queries, time, exact equivalence with the
ground truth and fidelity to the GRU (lengths 0..24), for k-means quantization, for L* with the
abstraction oracle and for L* with Angluin's PAC oracle (ε = δ = 0.01).

Part 2, partially trained nets: a GRU trained on strings up to length 12 (one stage, no
curriculum: a curriculum would pass every target at the short lengths first), validation accuracy
checked every 5 steps, stopped when it first reaches 0.8, 0.9, 0.95, 0.99, on the grammars where
Dave et al. (2024) saw L* blow up (Tomita 5, 6) and three more, 3 seeds each. Extracted size and
fidelity for both methods, to reproduce or refute "L* grows far past the true size on imperfect
nets while quantization does not". L* runs under limits (``--time-limit`` seconds,
``--max-states``); a run a limit stopped is reported with the size of its last hypothesis (a
lower bound on where it was going) and the limit's name.

    .venv/bin/python analyses/lstar_vs_quantization.py                # ~5 min on one quiet core
    .venv/bin/python analyses/lstar_vs_quantization.py --seeds 0 --partial-seeds 0   # quicker
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from interp.rnn.extraction import extract_automaton
from interp.rnn.grammar_training import train_grammar_net
from interp.rnn.grammars import grammar_dfa, grammar_task
from interp.rnn.nets import make_net
from interp.rnn.training import train

GRAMMARS = [*(f"tomita{i}" for i in range(1, 8)), "parens"]
PARTIAL_GRAMMARS = ["tomita3", "tomita4", "tomita5", "tomita6", "tomita7"]
ACCURACIES = [0.8, 0.9, 0.95, 0.99]
OUT = Path(__file__).parent / "results" / "lstar_vs_quantization.txt"


def train_partial(grammar: str, target: float, seed: int, hidden: int):
    """A GRU trained at length 12 until validation accuracy (every prefix) first reaches
    ``target`` (checked every 5 steps; at most 3000 steps)."""
    task = grammar_task(grammar, train_length=12)
    net = make_net("gru", task.input_size, hidden, 1, seed=seed)
    train(net, task, steps=3000, seed=seed, target_accuracy=target, eval_every=5, progress=False)
    return net.eval(), task


def _yes(value: bool | None) -> str:
    return "yes" if value else "no"


def extract_all(net, task, seed: int, args: argparse.Namespace, *, pac: bool) -> dict:
    """k-means, L* (abstraction) and optionally L* (PAC) on one net: one dict of numbers each."""
    runs = {"kmeans": extract_automaton(net, task, seed=seed)}
    limits = {"max_states": args.max_states, "time_limit": args.time_limit}
    runs["lstar"] = extract_automaton(net, task, method="lstar", seed=seed, **limits)
    if pac:
        runs["pac"] = extract_automaton(
            net, task, method="lstar", equivalence="pac", seed=seed, **limits
        )
    out = {"rnn_acc": float(runs["kmeans"].rnn_accuracy_by_length.mean())}
    for name, r in runs.items():
        out[name] = {
            "states": r.n_states,
            "mq": r.membership_queries,
            "eq": r.equivalence_queries,
            "equivalent": r.equivalent,
            "fidelity": r.fidelity,
            "seconds": r.seconds,
            "complete": r.complete,
            "stopped_by": r.stopped_by,
            "k": r.n_clusters,
        }
    return out


def _lstar_cell(r: dict) -> str:
    return f"{r['states']}" if r["complete"] else f"{r['states']}+ ({r['stopped_by']})"


def part_one(args: argparse.Namespace, log) -> list[str]:
    header = (
        "| grammar | seed | true | GRU acc | kmeans states | kmeans equiv | kmeans fid | kmeans s "
        "| L* states | L* MQ | L* EQ | L* equiv | L* fid | L* s | PAC states | PAC MQ | PAC EQ "
        "| PAC equiv |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    rows = []
    for seed in args.seeds:
        for grammar in GRAMMARS:
            start = time.perf_counter()
            net, task, _ = train_grammar_net(grammar, hidden_size=args.hidden, seed=seed)
            trained = time.perf_counter() - start
            r = extract_all(net, task, seed, args, pac=True)
            true = grammar_dfa(grammar).minimize().n_states
            k, ls, pac = r["kmeans"], r["lstar"], r["pac"]
            rows.append((grammar, seed, true, r))
            line = (
                f"| {grammar} | {seed} | {true} | {r['rnn_acc']:.4f} | {k['states']} | "
                f"{_yes(k['equivalent'])} | {k['fidelity']:.4f} | {k['seconds']:.1f} | "
                f"{_lstar_cell(ls)} | {ls['mq']} | {ls['eq']} | {_yes(ls['equivalent'])} | "
                f"{ls['fidelity']:.4f} | {ls['seconds']:.1f} | {_lstar_cell(pac)} | {pac['mq']} | "
                f"{pac['eq']} | {_yes(pac['equivalent'])} |"
            )
            lines.append(line)
            log(f"[part 1] {grammar} seed {seed}: trained in {trained:.1f} s; {line}")
    n = len(rows)
    for name, label in (("kmeans", "k-means"), ("lstar", "L* (abstraction)"), ("pac", "L* (PAC)")):
        exact = sum(bool(r[name]["equivalent"]) for *_, r in rows)
        right = sum(r[name]["states"] == true for _, _, true, r in rows)
        secs = statistics.median(r[name]["seconds"] for *_, r in rows)
        lines.append(
            f"\n{label}: exactly equivalent to the ground truth {exact}/{n}, right state count "
            f"{right}/{n}, median time {secs:.2f} s"
            + (
                f", median membership queries {statistics.median(r[name]['mq'] for *_, r in rows)}"
                if name != "kmeans"
                else ""
            )
        )
    return lines


def part_two(args: argparse.Namespace, log) -> list[str]:
    header = (
        "| grammar | target acc | seed | GRU acc | true | kmeans states | kmeans fid "
        "| L* states | L* fid | L* MQ | L* EQ | L* s |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    rows = []
    for grammar in args.partial_grammars:
        true = grammar_dfa(grammar).minimize().n_states
        for target in args.accuracies:
            for seed in args.partial_seeds:
                net, task = train_partial(grammar, target, seed, args.hidden)
                r = extract_all(net, task, seed, args, pac=False)
                k, ls = r["kmeans"], r["lstar"]
                rows.append((grammar, target, true, r))
                line = (
                    f"| {grammar} | {target} | {seed} | {r['rnn_acc']:.4f} | {true} | "
                    f"{k['states']} | {k['fidelity']:.4f} | {_lstar_cell(ls)} | "
                    f"{ls['fidelity']:.4f} | {ls['mq']} | {ls['eq']} | {ls['seconds']:.1f} |"
                )
                lines.append(line)
                log(f"[part 2] {line}")
    lines += ["", "By target accuracy (all grammars and seeds):", ""]
    summary = (
        "| target acc | nets | median GRU acc | kmeans median states / true | L* median states / "
        "true | L* > 2x true | L* stopped by a limit | kmeans > 2x true | kmeans median fid | "
        "L* median fid |"
    )
    lines += [summary, "|" + "---|" * (summary.count("|") - 1)]
    for target in args.accuracies:
        group = [(true, r) for _, t, true, r in rows if t == target]
        if not group:
            continue

        def ratio(name: str, group=group) -> float:
            return statistics.median(r[name]["states"] / true for true, r in group)

        lines.append(
            f"| {target} | {len(group)} | "
            f"{statistics.median(r['rnn_acc'] for _, r in group):.3f} | {ratio('kmeans'):.2f} | "
            f"{ratio('lstar'):.2f} | "
            f"{sum(r['lstar']['states'] > 2 * true for true, r in group)}/{len(group)} | "
            f"{sum(not r['lstar']['complete'] for _, r in group)}/{len(group)} | "
            f"{sum(r['kmeans']['states'] > 2 * true for true, r in group)}/{len(group)} | "
            f"{statistics.median(r['kmeans']['fidelity'] for _, r in group):.3f} | "
            f"{statistics.median(r['lstar']['fidelity'] for _, r in group):.3f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--partial-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--partial-grammars", nargs="+", default=PARTIAL_GRAMMARS)
    parser.add_argument("--accuracies", type=float, nargs="+", default=ACCURACIES)
    parser.add_argument("--hidden", type=int, default=10)
    parser.add_argument("--max-states", type=int, default=200)
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--skip-part-one", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f} s] {text}", flush=True)

    report = [
        f"GRU (hidden {args.hidden}), k-means quantization vs L* (abstraction oracle; PAC oracle "
        f"with eps = delta = 0.01); L* limits: {args.max_states} states, {args.time_limit:g} s. "
        "Fidelity = agreement of the extracted DFA with the GRU on strings of length 0..24 "
        "(trained on <= 12); 'N+ (limit)': the limit stopped L* at a hypothesis of N states.",
        "",
    ]
    if not args.skip_part_one:
        report += ["## Well-trained nets", "", *part_one(args, log), ""]
    report += ["## Partially trained nets", "", *part_two(args, log)]
    report.append(f"\ntotal time {time.perf_counter() - started:.0f} s on one core")
    text = "\n".join(report)
    print("\n" + text)
    args.out.write_text(text + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
