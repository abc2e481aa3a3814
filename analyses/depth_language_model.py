"""Depth phases of the embedded language model (SmolLM2-135M, 30 layers) or any other.

Residual stream (resid_pre of block 0, then every block's resid_post) on windows of the shipped
English corpus, last token and mean token (BOS excluded) per window; 1 - cos and 1 - CKA; DP
phases for the epsilon rule and for k = 2..5 (max-cut enumeration is limited to 22 layers);
trajectory diagnostics.

    .venv/bin/python analyses/depth_language_model.py [--model smollm2-135m] [--samples 32] [--length 64]
"""

from __future__ import annotations

import argparse
import time

import torch

import interp
import interp.depth as depth
from interp.depth.study import study_language_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="load_model spec (default: embedded SmolLM2)")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--out", default=None, help="optional HTML report")
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    model = interp.load_model(args.model, device="cpu")
    print(f"loaded {model.name} in {time.perf_counter() - start:.0f} s")
    study = study_language_model(model, samples=args.samples, length=args.length)
    print(study.similarity.table())
    print(study.table())
    for k in (2, 3, 4, 5):
        print(depth.segment_phases(study.similarity, k).table())
    tokens = depth.views.corpus_windows(model, args.samples, args.length)
    cka = depth.layer_similarity(model, tokens, metric="cka")
    print(depth.segment_phases(cka).table())
    for k in (2, 3, 4):
        print(depth.segment_phases(cka, k).table())
    if args.out:
        study.report(f"Depth phases of {model.name}").write(args.out, overwrite=True)
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
