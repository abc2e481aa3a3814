"""Induction heads and in-context learning of a pretrained model (default: embedded SmolLM2-135M).

Olsson et al. 2022: prefix matching and copying on [BOS] + 4 copies of 25 random tokens (10
examples), plus previous-token, duplicate-token and ARENA stripe scores from the same forward
pass, and the in-context-learning score (loss at token 500 minus loss at token 50) on the
shipped offline corpus. Expected on SmolLM2 (earlier measurement): strongest prefix matchers
L18H6, L17H3-5; OV copying at L23H0/2, L24H5; loss on the repeats far below the first copy.
Copying follows Olsson's evaluator as read in :mod:`interp.heads.copying` (chance about -0.92).

    .venv/bin/python analyses/heads_induction.py [--model SPEC] [--windows 8] [--out DIR] [--overwrite]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import interp
from interp.heads.icl import in_context_learning_score
from interp.heads.induction import induction_report_sections, induction_scores
from interp.viz import Report


def distribution(values: torch.Tensor) -> str:
    q = torch.quantile(
        values.double().flatten(), torch.tensor([0.1, 0.5, 0.9, 0.99], dtype=torch.float64)
    )
    return "  ".join(f"p{p}={float(v):+.3f}" for p, v in zip((10, 50, 90, 99), q, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=None, help="model spec for interp.load_model (default: embedded)"
    )
    parser.add_argument(
        "--examples", type=int, default=10, help="random sequences for the induction scores"
    )
    parser.add_argument(
        "--windows", type=int, default=8, help="512-token corpus windows for the ICL score"
    )
    parser.add_argument("--top", type=int, default=8, help="heads shown per table")
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
    start = time.perf_counter()
    scores = induction_scores(lm, n_examples=args.examples, progress=False)
    print(f"\ninduction scores in {time.perf_counter() - start:.1f} s")
    print(scores.table(k=args.top))
    print("\nscore distributions over all heads:")
    for metric in scores.metrics:
        print(f"  {metric:<16} {distribution(scores[metric])}")
    n_copy = scores.settings["copy_tokens"]
    print(
        f"\ncopying chance level (a head that ignores the attended token): 2/{n_copy} - 1 = "
        f"{2 / n_copy - 1:+.3f}"
    )
    rule = " AND ".join(f"{m} >= {t:g}" for m, t in scores.thresholds.items())
    found = ", ".join(f"L{layer}H{head}" for layer, head in scores.heads()) or "none"
    print(f"induction heads ({rule}): {found}")
    loss = scores.extras["loss_by_repeat"]
    print("\nmean loss per copy of r (nats):", "  ".join(f"{float(v):.2f}" for v in loss))

    start = time.perf_counter()
    icl = in_context_learning_score(lm, n_windows=args.windows)
    print(f"\nICL score in {time.perf_counter() - start:.1f} s")
    print(icl.table())

    if args.out is not None:
        scores.save(args.out / "induction", overwrite=args.overwrite)
        icl.save(args.out / "icl", overwrite=args.overwrite)
        report = Report(f"Induction heads of {lm.name}")
        induction_report_sections(scores, report, icl=icl)
        report.write(args.out / "report.html", overwrite=args.overwrite)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
