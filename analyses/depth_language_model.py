"""Depth phases and a Raptor fit of the embedded language model (SmolLM2-135M, 30 layers) or another.

Residual stream (resid_pre of block 0, then every block's resid_post) on windows of the shipped
English corpus, last token and mean token (BOS excluded) per window; 1 - cos and 1 - CKA; DP
phases for the epsilon rule (gated by the lag null) and for k = 2..5, each with the null's cut
fraction and the block score (max-cut enumeration is limited to 22 layers); trajectory
diagnostics. Then Raptor (interp.depth.raptor_lm) for each --raptor-ks: k weight-tied copies of
the phases' middle decoder layers, trained on the same windows (MSE standardized per channel, teacher
forcing annealed over the first quarter of the phase steps, then end to end; AdamW), scored on
the next --eval-samples windows of the corpus (held out): top-1 next-token agreement with the
original and the loss, against the original's.

    OMP_NUM_THREADS=1 .venv/bin/python analyses/depth_language_model.py [--model smollm2-135m]
        [--samples 32] [--length 64] [--raptor-ks 3 5] [--steps 100] [--out out/depth_lm.html]
"""

from __future__ import annotations

import argparse
import time

import torch

import interp
import interp.depth as depth
from interp.depth.study import study_language_model
from interp.depth.views import corpus_windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="load_model spec (default: embedded SmolLM2)")
    parser.add_argument("--samples", type=int, default=32, help="training / similarity windows")
    parser.add_argument("--length", type=int, default=64, help="tokens per window (after BOS)")
    parser.add_argument("--eval-samples", type=int, default=16, help="held-out windows")
    parser.add_argument(
        "--raptor-ks", type=int, nargs="*", default=[3, 5], help="Raptor block counts"
    )
    parser.add_argument("--steps", type=int, default=100, help="Raptor steps per stage")
    parser.add_argument("--batch-size", type=int, default=4, help="Raptor windows per step")
    parser.add_argument("--lr", type=float, default=3e-3, help="Raptor AdamW learning rate")
    parser.add_argument("--out", default=None, help="optional HTML report")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    model = interp.load_model(args.model, device="cpu")
    print(f"loaded {model.name} in {time.perf_counter() - start:.0f} s")
    study = study_language_model(model, samples=args.samples, length=args.length)
    print(study.similarity.table())
    print(study.table())
    for k in (2, 3, 4, 5):
        print(depth.segment_phases(study.similarity, k).table())
    tokens = corpus_windows(model, args.samples, args.length)
    cka = depth.layer_similarity(model, tokens, metric="cka")
    print(depth.segment_phases(cka).table())
    for k in (2, 3, 4):
        print(depth.segment_phases(cka, k).table())
    held_out = corpus_windows(model, args.eval_samples, args.length, start=args.samples)
    report = study.report(f"Depth phases of {model.name}")
    for k in args.raptor_ks:
        began = time.perf_counter()
        fit = depth.fit_raptor(
            model,
            tokens,
            depth.segment_phases(study.similarity, k),
            eval_inputs=held_out,
            phase_steps=args.steps,
            end_to_end_steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
        )
        print(f"\nRaptor, k = {k} ({time.perf_counter() - began:.0f} s):")
        print(fit.table())
        curve = fit.loss_curve
        marks = list(range(0, len(curve), max(1, len(curve) // 10)))
        print(
            "training loss (mean of 10 steps) at steps "
            + ", ".join(f"{i}: {float(curve[i : i + 10].mean()):.3f}" for i in marks)
        )
        print(
            "standardized error per layer (1 = no better than zero): "
            + " ".join(f"{float(e):.2f}" for e in fit.layer_error)
        )
        report.heading(f"Raptor, k = {k}")
        report.preformatted(fit.table())
        report.figure(fit.figure())
    if args.out:
        report.write(args.out, overwrite=True)
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
