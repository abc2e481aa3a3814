"""Digits ViT with and without stochastic depth over seeds: phases, null baseline, Raptor recovery.

Checks two claims of Jacobs et al. 2025 (arXiv 2512.19941) at small scale: a 2-3 block Raptor
recovers most of the original's linear-probe accuracy, and stochastic depth promotes
block-recurrent structure. For each drop-path rate and seed it trains (or loads from
$INTERP_CACHE) a 12-block digits ViT (a seed sets the initialization, the training order and the
stratified train/test split) and measures, on the held-out digits:

- the phases of the epsilon rule (gated by the lag null: one phase when the rule's phases do not
  beat a matrix that only depends on depth distance, see interp.depth.phases);
- at k = 2 and 3 (DP phases): the cut fraction (share of the layer dissimilarity between phases),
  the lag null's cut fraction for the same k, and the block score (0 = no more block structure
  than the null, 1 = perfect blocks);
- Raptor with k = 2 and 3: probe accuracy of the original, of the surrogate under the original's
  probe, of a refitted probe, recovery, and the final-layer relative error.

The summary gives mean ± standard deviation over the seeds (n - 1 in the denominator).

    OMP_NUM_THREADS=1 .venv/bin/python analyses/depth_digits.py [--rates 0.0 0.3] [--seeds 0 1 2]
        [--ks 2 3] [--steps 300] [--out out/depth_digits.html]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import interp.depth as depth
from interp.viz import Report

METRICS = (
    "head acc",
    "cut frac",
    "null cut",
    "block score",
    "probe acc",
    "raptor acc",
    "refit acc",
    "recovery",
    "final err",
)


def study(rate: float, seed: int, ks: list[int], steps: int, report: Report) -> list[dict]:
    """One model: its phases and one Raptor fit per k; one row of METRICS per k."""
    config = depth.ViTConfig(drop_path=rate, seed=seed)
    model = depth.digits_vit(config)
    data = depth.load_digits(config.seed)
    similarity = depth.layer_similarity(model, data["test_images"])
    auto = depth.segment_phases(similarity)
    head = model.training_log["test_accuracy"]
    print(f"\n=== drop-path {rate}, seed {seed}: head accuracy {head:.4f}")
    print(auto.table())
    report.heading(f"drop-path {rate}, seed {seed}")
    report.preformatted(auto.table())
    rows = []
    for k in ks:
        phases = depth.segment_phases(similarity, k)
        fit = depth.fit_raptor(
            model,
            data["train_images"],
            phases,
            labels=data["train_labels"],
            eval_inputs=data["test_images"],
            eval_labels=data["test_labels"],
            phase_steps=steps,
            end_to_end_steps=steps,
            seed=seed,
        )
        print(phases.table().splitlines()[0])
        print(fit.table())
        report.preformatted(phases.table() + "\n\n" + fit.table())
        if k == ks[0]:
            report.figure(phases.figure())
        values = (
            head,
            phases.cut_fraction,
            phases.null_cut_fraction,
            phases.block_score,
            fit.teacher_accuracy,
            fit.surrogate_accuracy,
            fit.retrained_accuracy,
            fit.recovery,
            float(fit.layer_error[-1]),
        )
        rows.append(
            {
                "rate": rate,
                "seed": seed,
                "k": k,
                "auto": auto.describe(),
                **dict(zip(METRICS, values, strict=True)),
            }
        )
    return rows


def summarize(rows: list[dict], rates: list[float], ks: list[int]) -> list[list]:
    """Mean ± std over seeds of every metric, one line per (rate, k)."""
    lines = []
    for rate in rates:
        for k in ks:
            group = [r for r in rows if r["rate"] == rate and r["k"] == k]
            cells = [rate, k, len(group)]
            for metric in METRICS:
                values = [r[metric] for r in group]
                spread = statistics.stdev(values) if len(values) > 1 else float("nan")
                cells.append(f"{statistics.mean(values):.4f} ± {spread:.4f}")
            lines.append(cells)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--steps", type=int, default=300, help="Raptor steps per stage")
    parser.add_argument("--out", default=None, help="optional HTML report")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    report = Report("Digits ViT: stochastic depth and block-recurrent structure, over seeds")
    rows = []
    for rate in args.rates:
        for seed in args.seeds:
            rows += study(rate, seed, args.ks, args.steps, report)
            print(f"({time.perf_counter() - start:.0f} s so far)")
    print("\nper model (auto = epsilon-rule phases after the lag-null gate):")
    print(
        f"{'drop-path':>9} {'seed':>4} {'k':>2} {'auto':>16} "
        + " ".join(f"{m:>11}" for m in METRICS)
    )
    for r in rows:
        print(
            f"{r['rate']:>9} {r['seed']:>4} {r['k']:>2} {r['auto']:>16} "
            + " ".join(f"{r[m]:>11.4f}" for m in METRICS)
        )
    summary = summarize(rows, args.rates, args.ks)
    columns = ["drop-path", "k", "seeds", *METRICS]
    print(f"\nmean ± std over seeds {args.seeds}:")
    print("  ".join(f"{c:>17}" for c in columns))
    for line in summary:
        print("  ".join(f"{v!s:>17}" for v in line))
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.out:
        report.table(columns, summary)
        print(f"report: {report.write(args.out, overwrite=True)}")


if __name__ == "__main__":
    main()
