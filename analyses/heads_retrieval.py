"""Retrieval heads of a pretrained model (default: embedded SmolLM2-135M-Instruct), Wu et al. 2024.

Needle-in-a-haystack grid (written needles x prompt lengths x depths) over the shipped offline
corpus, greedy decoding with the KV cache, per-step top-1 key of every head from the fused
attention statistics; retrieval score = mean copy-paste rate over retrieved tests. Then the
causal check: needle accuracy with the top-K retrieval heads masked (zeroed queries, uniform
attention) against K random non-retrieval heads masked. Expected on SmolLM2 (earlier
measurement): about 5% of heads > 0.1, top L18H7, L23H2, L20H6, L17H3.

The prompt lengths default to 256, 512 and 1024 tokens (about 8 minutes on 2 CPU cores with the
masking check); ``--max-length N`` switches to the library's grid (doubling from 256 up to N;
``retrieval_grid``'s own default goes up to 2048 for SmolLM2).

    .venv/bin/python analyses/heads_retrieval.py [--lengths 256 512 1024 | --max-length 2048]
        [--needles 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import interp
from interp.heads.defaults import DEFAULT_DEPTHS
from interp.heads.masking import masking_experiment
from interp.heads.retrieval import retrieval_grid, retrieval_report_sections
from interp.viz import Report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=None, help="model spec for interp.load_model (default: embedded)"
    )
    parser.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=None,
        help="prompt lengths (tokens); default 256 512 1024 unless --max-length is given",
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="use the library's length grid, doubling from 256 up to this many tokens",
    )
    parser.add_argument(
        "--depths", type=float, nargs="+", default=list(DEFAULT_DEPTHS), help="needle depths (0..1)"
    )
    parser.add_argument("--needles", type=int, default=3, help="how many shipped needles to use")
    parser.add_argument(
        "--synthetic", action="store_true", help="random-word needles with a repeat prompt"
    )
    parser.add_argument(
        "--mask-k", type=int, default=10, help="heads masked in the causal check (0: skip it)"
    )
    parser.add_argument(
        "--mask-length", type=int, default=512, help="prompt length of the masking runs"
    )
    parser.add_argument("--top", type=int, default=10, help="heads shown per table")
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
    lengths = args.lengths
    if lengths is None and args.max_length is None:
        lengths = [256, 512, 1024]
    grid = retrieval_grid(
        lm,
        lengths=lengths,
        max_length=args.max_length,
        depths=args.depths,
        n_needles=args.needles,
        synthetic=args.synthetic,
    )
    print(f"\nneedle grid in {time.perf_counter() - start:.1f} s")
    print(grid.table())
    print("\nevery test: needle | length | depth | recall | retrieved | response | top heads")
    for needle, length, depth, recall, ok, response, heads in grid.test_rows():
        print(
            f"  {needle[:3]:<3} {length:>5} {depth:>5.2f} {recall:>5.2f} {ok:<3} "
            f"{response[:50]!r:<54} {heads}"
        )
    scores = grid.scores()
    print()
    print(scores.table(k=args.top))
    values = scores["retrieval"]
    total = values.numel()
    share = float((values > 0.1).sum()) / total
    print(
        f"\nheads > 0.1: {int((values > 0.1).sum())} of {total} ({100 * share:.1f}%); median {float(values.nanmedian()):.3f}; "
        f"never fire: {int((scores['fire_rate'] == 0).sum())} ({100 * float((scores['fire_rate'] == 0).float().mean()):.0f}%)"
    )

    masking = None
    if args.mask_k > 0 and scores.settings["successful_tests"]:
        start = time.perf_counter()
        masking = masking_experiment(
            lm,
            scores,
            k=args.mask_k,
            lengths=(args.mask_length,),
            n_needles=args.needles,
            synthetic=args.synthetic,
        )
        print(f"\nmasking experiment in {time.perf_counter() - start:.1f} s")
        print(masking.table())

    if args.out is not None:
        grid.save(args.out / "retrieval_grid", overwrite=args.overwrite)
        scores.save(args.out / "retrieval", overwrite=args.overwrite)
        if masking is not None:
            masking.save(args.out / "masking", overwrite=args.overwrite)
        report = Report(f"Retrieval heads of {lm.name}")
        retrieval_report_sections(scores, grid, report, masking=masking)
        report.write(args.out / "report.html", overwrite=args.overwrite)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
