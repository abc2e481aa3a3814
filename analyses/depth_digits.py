"""Digits ViT with and without stochastic depth: phases, block structure and Raptor recovery.

Checks two claims of Jacobs et al. 2025 (arXiv 2512.19941) at small scale: a 2-3 block Raptor
recovers most of the original's linear-probe accuracy, and stochastic depth promotes
block-recurrent structure. For each drop-path rate it trains (or loads from $INTERP_CACHE) a
12-block digits ViT and prints:

- the DP phases chosen by the epsilon rule, and the cut fraction at k = 2 and 3 (share of the
  total layer dissimilarity that falls between phases; 1 = perfectly block-structured);
- the mean within-phase dissimilarity of the k=2 phases (lower = layers inside a phase more alike);
- Raptor with k = 2 and 3 (DP phases): probe accuracy of the original, of the surrogate under the
  original's probe, of a refitted probe, recovery, and the final-layer relative error.

    .venv/bin/python analyses/depth_digits.py [--rates 0.0 0.3] [--ks 2 3] [--steps 300] [--out out/depth_digits.html]
"""

from __future__ import annotations

import argparse
import time

import torch

import interp.depth as depth
from interp.viz import Report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.3])
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--steps", type=int, default=300, help="Raptor steps per stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="optional HTML report")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = Report("Digits ViT: stochastic depth and block-recurrent structure")
    rows = []
    for rate in args.rates:
        config = depth.ViTConfig(drop_path=rate, seed=args.seed)
        start = time.perf_counter()
        model = depth.digits_vit(config)
        data = depth.load_digits(config.seed)
        similarity = depth.layer_similarity(model, data["test_images"])
        auto = depth.segment_phases(similarity)
        by_k = {k: depth.segment_phases(similarity, k) for k in args.ks}
        print(f"\n=== drop-path {rate}: head accuracy {model.training_log['test_accuracy']:.4f}")
        print(similarity.table())
        print(auto.table())
        report.heading(f"drop-path {rate}")
        report.figure(by_k[args.ks[0]].figure())
        for k, phases in by_k.items():
            fit = depth.fit_raptor(
                model,
                data["train_images"],
                phases,
                labels=data["train_labels"],
                eval_inputs=data["test_images"],
                eval_labels=data["test_labels"],
                phase_steps=args.steps,
                end_to_end_steps=args.steps,
                seed=args.seed,
            )
            print(fit.table())
            report.preformatted(fit.table())
            report.figure(fit.figure())
            rows.append(
                [
                    rate,
                    model.training_log["test_accuracy"],
                    auto.describe(),
                    k,
                    phases.describe(),
                    phases.cut_fraction,
                    float(phases.mean_within.mean()),
                    fit.teacher_accuracy,
                    fit.surrogate_accuracy,
                    fit.retrained_accuracy,
                    fit.recovery,
                    float(fit.layer_error[-1]),
                ]
            )
        print(f"({time.perf_counter() - start:.0f} s)")
    columns = [
        "drop-path",
        "head acc",
        "auto phases",
        "k",
        "phases",
        "cut frac",
        "mean within",
        "probe acc",
        "raptor acc",
        "refit acc",
        "recovery",
        "final rel err",
    ]
    print("\n" + "  ".join(f"{c:>12}" for c in columns))
    for row in rows:
        print("  ".join(f"{v:>12.4f}" if isinstance(v, float) else f"{v!s:>12}" for v in row))
    if args.out:
        report.table(columns, rows)
        print(f"report: {report.write(args.out, overwrite=True)}")


if __name__ == "__main__":
    main()
