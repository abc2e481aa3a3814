"""How many heads make an SSM (Ghodsi 2025), reproduced numerically, plus a trained tiny Mamba.

1. The head-count theorem: random stable linear SSMs whose lag operators ``K_l = C A^l B`` span
   exactly ``k`` dimensions (``k`` in 1, 2, 4, 8; ``A`` with ``k`` distinct eigenvalues), emulated
   by ``H = 1..12`` position-only attention heads (``K_{i-j} = sum_h alpha^h_ij V_h``) fitted by
   least squares two ways: the closed-form optimum (SVD, Eckart-Young) and alternating
   ``torch.linalg.lstsq`` from a random start. The relative error must reach numerical zero at
   ``H = k`` and not before.
2. Tiny Mamba and Mamba-2 models trained here on a delayed copy (predict the token ``lag`` steps
   back), against the same architectures at random init: interaction rank per layer at several
   tolerances, the rank at 1e-6 without the skip ``D u_i`` (itself one head, ``alpha_ij = [i =
   j]``), the top of the spectrum, and the gradient-path decay per step ``rho``.

    .venv/bin/python analyses/ssm_heads.py [--length 32] [--steps 300] [--figure PATH]

The printed report is ``analyses/results/ssm_heads.txt``; ``--figure`` writes the error-vs-H
figure (``.html``, or ``.png`` when kaleido can render).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from interp.mixers import analyze_mixers, head_count_table, interaction_operators
from interp.mixers.rank import numerical_rank, singular_values
from interp.mixers.train import delayed_copy_batch, train_delayed_copy

TOLERANCES = (1e-2, 1e-4, 1e-6, 1e-10)


def theorem(length: int, seed: int):
    print(f"== 1. head-count theorem (T = {length} tokens, d_in = d_out = 4, float64)")
    fits = {}
    for method in ("svd", "als"):
        fit = head_count_table((1, 2, 4, 8), range(1, 13), length=length, method=method, seed=seed)
        print(fit.table())
        ok = fit.minimal_heads == list(fit.spans)
        print(f"   theorem holds ({method}): {ok}  (H* = {fit.minimal_heads})\n")
        fits[method] = fit
    return fits


def mamba_rows(lm, tokens, label: str) -> None:
    result = analyze_mixers(lm, tokens)
    for layer in result.layers:
        operators = interaction_operators(lm, tokens, layer)
        values = singular_values(operators)
        ranks = " ".join(f"{numerical_rank(values, tol):>4d}" for tol in TOLERANCES)
        operators.skip = False
        ranks += f"  {numerical_rank(singular_values(operators), 1e-6):>7d}"
        top = ", ".join(f"{float(v / values[0]):.2g}" for v in values[:6])
        print(
            f"{label:<22s} {layer:>5d} {ranks}  {result.bounds[layer]:>5d}  "
            f"{result.rhos[layer]:>6.3f}  {top}"
        )


def trained_models(steps: int, seed: int) -> None:
    import interp
    from interp.models.ssm_tiny import tiny_ssm
    from interp.models.tiny import word_tokenizer

    print("== 2. tiny SSMs trained on a delayed copy (lag 2, alphabet 8, 24 tokens) vs random init")
    tolerances = " ".join(f"{t:>4.0e}"[-5:] for t in TOLERANCES)
    print(
        f"{'model':<22s} layer rank@rtol {tolerances}  no-skip  bound   rho     "
        "sigma_r/sigma_1 (top 6)"
    )
    g = torch.Generator().manual_seed(seed + 100)
    tokens, _ = delayed_copy_batch(1, 24, 8, 2, g)
    for variant in ("mamba", "mamba2"):
        start = time.perf_counter()
        trained = train_delayed_copy(variant, steps=steps, seed=seed)
        elapsed = time.perf_counter() - start
        tokenizer = word_tokenizer(96)
        lm = interp.load_model(trained.model, tokenizer=tokenizer, device="cpu")
        print(
            f"   {variant}: trained {steps} steps in {elapsed:.0f} s, held-out accuracy "
            f"{trained.accuracy:.3f}"
        )
        mamba_rows(lm, tokens, f"{variant} trained")
        fresh = tiny_ssm(variant, vocab=8, seed=seed)
        mamba_rows(
            interp.load_model(fresh, tokenizer=tokenizer, device="cpu"),
            tokens,
            f"{variant} random init",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    fits = theorem(args.length, args.seed)
    trained_models(args.steps, args.seed)
    if args.figure is not None:
        figure = fits["svd"].figure()
        if args.figure.suffix == ".png":
            figure.write_image(args.figure, width=800, height=500)
        else:
            figure.write_html(args.figure, include_plotlyjs="cdn")
        print(f"figure written to {args.figure}")
    print(f"\ntotal {time.perf_counter() - start:.0f} s on one thread")


if __name__ == "__main__":
    main()
