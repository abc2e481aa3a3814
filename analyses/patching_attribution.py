"""Attribution patching vs activation patching on the same IOI-style task (Nanda 2023's check).

Model: the embedded SmolLM2-135M (CPU, float32). Task: clean "When Mary and John went to the
store, John gave a drink to" (answer " Mary"), corrupted "... Mary gave a drink to" (answer
" John"); metric: logit(" Mary") - logit(" John") at the last position.

For every site (resid_pre, attn_out, mlp_out, per-head z, q, k, v), every layer and every
position from the first token where the prompts differ (the S2 name) to the end: the effect of
patching the clean activation into the corrupted run (activation patching, exact) and its
first-order estimate (attribution patching: (clean - corrupted) . d metric / d activation, one
forward + backward). Positions before the S2 name are left out: clean and corrupted activations
are identical there, so both methods give exactly 0 and would inflate the correlation.

Reported per site: Pearson and Spearman correlation of the two over the cells, the slope of the
least-squares fit (estimate on exact), and the cells with the largest exact effect.

    .venv/bin/python analyses/patching_attribution.py [--out analyses/results/...txt]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
ANSWER, WRONG = " Mary", " John"
SITES = ["resid_pre", "attn_out", "mlp_out", "z", "q", "k", "v"]
OUT = Path(__file__).resolve().parent / "results" / "patching_attribution.txt"


def ranks(x: torch.Tensor) -> torch.Tensor:
    return x.argsort().argsort().double()


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1].item()


def cell_name(result, index: tuple[int, ...]) -> str:
    parts = []
    for axis, i in zip(result.axes, index, strict=True):
        if axis == "layer":
            parts.append(f"L{result.layers[i]}")
        elif axis == "position":
            pos = result.positions[i]
            parts.append(f"{pos}:{result.tokens[pos]!r}")
        else:
            parts.append(f"H{result.heads[i]}")
    return " ".join(parts)


def compare(site: str, exact, estimate) -> list[str]:
    a, b = exact.effects.reshape(-1), estimate.effects.reshape(-1)
    slope = (a.double() @ b.double() / (a.double() @ a.double())).item()
    lines = [
        f"{site:<10}{a.numel():>7}{pearson(a, b):>10.3f}{pearson(ranks(a), ranks(b)):>10.3f}"
        f"{slope:>8.2f}{a.abs().max().item():>12.3f}{b.abs().max().item():>12.3f}"
    ]
    for flat in a.abs().argsort(descending=True)[:3].tolist():
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), exact.values.shape))
        lines.append(
            f"{'':<10}  top: {cell_name(exact, index):<24} exact {a[flat].item():>8.3f}  "
            f"attribution {b[flat].item():>8.3f}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(2)

    import interp
    from interp.patching import activation_patching, attribution_patching, logit_diff

    lm = interp.load_model(device="cpu")
    clean, corrupt = lm.to_tokens(CLEAN), lm.to_tokens(CORRUPT)
    first = int((clean != corrupt).nonzero()[0, 1])
    positions = list(range(first, clean.shape[1]))
    metric = logit_diff(lm, ANSWER, WRONG)
    options = {"sites": SITES, "positions": positions}
    start = time.perf_counter()
    exact = activation_patching(lm, clean, corrupt, metric, **options)
    exact_s = time.perf_counter() - start
    start = time.perf_counter()
    estimate = attribution_patching(lm, clean, corrupt, metric, **options)
    estimate_s = time.perf_counter() - start
    any_site = exact[SITES[0]]
    lines = [
        f"Attribution vs activation patching, SmolLM2-135M, IOI pair of {clean.shape[1]} tokens; "
        f"metric logit({ANSWER!r}) - logit({WRONG!r}) at the last position",
        f"clean {any_site.clean_metric.item():.3f}, corrupted {any_site.corrupted_metric.item():.3f};"
        f" positions {first}..{clean.shape[1] - 1} ({any_site.tokens[first]!r} onwards), "
        "all layers and heads",
        f"activation patching {exact_s:.0f} s ({sum(r.values.numel() for r in exact.values())} "
        f"cells, batched); attribution patching {estimate_s:.1f} s (one forward + backward)",
        "effects: change of the metric from the corrupted run; slope: least-squares fit of the "
        "estimate on the exact effect (1 = same scale)",
        f"{'site':<10}{'cells':>7}{'pearson':>10}{'spearman':>10}{'slope':>8}"
        f"{'max|exact|':>12}{'max|attr|':>12}",
    ]
    for site in SITES:
        lines += compare(site, exact[site], estimate[site])
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
