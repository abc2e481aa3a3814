"""Successor heads of a pretrained model (default: the embedded SmolLM2-135M-Instruct).

Gould et al. 2023 (arXiv 2312.09230) score every head's OV circuit on ordinal token tasks. The
embedded model is a negative control: no head should reach the 0.4 threshold (an earlier
independent measurement found the best succession score below 0.2). Prints the surviving token
tasks, the top heads for each effective-embedding option with their per-task breakdown, and the
mod-10 probe / vector arithmetic through the best head.

    .venv/bin/python analyses/heads_successor.py [--model SPEC] [--out DIR] [--overwrite]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import interp
from interp.heads import mod10_features, successor_report_sections, successor_scores
from interp.heads.successor import EMBEDDINGS, task_breakdown
from interp.viz import Report


def breakdown_text(columns: list[str], rows: list[list[object]]) -> str:
    width = max(len(c) for c in columns)
    lines = [f"{'task':<{width}}  " + "  ".join(f"{r[0]:>7}" for r in rows)]
    for i, column in enumerate(columns[1:], start=1):
        lines.append(f"{column:<{width}}  " + "  ".join(f"{r[i]:>7.3f}" for r in rows))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=None, help="model spec for interp.load_model (default: embedded)"
    )
    parser.add_argument("--top", type=int, default=5, help="heads shown per table")
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for saved results and report.html"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs in --out"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    lm = interp.load_model(args.model, device="cpu")
    print(lm)
    results = {embedding: successor_scores(lm, embedding=embedding) for embedding in EMBEDDINGS}
    first = results["mlp0"]
    print("\nsurviving tasks (single-token items, pairs):")
    for name, info in first.settings["tasks"].items():
        print(
            f"  {name:<28} {len(info['items']):>3} tokens {info['pairs']:>3} pairs  {' '.join(info['items'])[:70]}"
        )
    print("dropped:", first.settings["dropped_tasks"] or "none")
    for embedding, scores in results.items():
        print(f"\n=== embedding {embedding} ===")
        print(scores.table(k=args.top).split("\n\n")[0])
        print("\n".join(scores.table(k=args.top).split("\n\n")[1].splitlines()[1:]))
        print("\nper-task succession of the top heads:")
        print(breakdown_text(*task_breakdown(scores, args.top)))
    best = max(float(s["succession"].max()) for s in results.values())
    verdict = "no successor head" if best < 0.4 else "successor heads found"
    print(f"\nbest succession score over all embeddings: {best:.3f} -> {verdict} (threshold 0.4)")

    layer, head, _ = first.top(1)[0]
    features = mod10_features(lm, (layer, head))
    print()
    print(features.table())

    if args.out is not None:
        for embedding, scores in results.items():
            scores.save(
                args.out / f"successor_{embedding.replace('+', '_')}", overwrite=args.overwrite
            )
        features.save(args.out / "mod10", overwrite=args.overwrite)
        report = Report(f"Successor heads of {lm.name}")
        successor_report_sections(first, report)
        report.figure(features.figure())
        report.preformatted(features.table())
        print("wrote", report.write(args.out / "report.html", overwrite=args.overwrite))


if __name__ == "__main__":
    main()
