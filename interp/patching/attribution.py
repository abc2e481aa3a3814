"""Attribution patching: activation patching's first-order Taylor estimate (Nanda 2023).

Patching a cell replaces the corrupted activation ``a'`` by the clean ``a``; to first order the
metric changes by ``(a - a') . dmetric/da`` with the gradient taken on the corrupted run. One
forward pass on the clean inputs (the activations) and one forward + backward pass on the
corrupted inputs give the estimate for every cell of every site at once: the product summed
over the cell's features (``d_model``, or ``d_head`` of one head), and over positions when all
positions are patched together. It is exact when the metric is linear in the activation; it
misses saturation (e.g. a softmax in the metric or attention) and interactions downstream.
With ``ablation=`` it estimates the ablation instead: ``(source - a) . dmetric/da`` on the clean
run, with the zeros / means / resampled values of :mod:`interp.patching.sources`.

The gradient is taken with respect to a zero tensor added to each hook's value (an edit), so it
works whether or not the model's parameters require gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from interp.models.protocol import Inputs
from interp.patching.activation import to_result
from interp.patching.metrics import Metric, evaluate
from interp.patching.result import PatchingResult
from interp.patching.sites import Grid, Positions, make_grid, resolve_sites
from interp.patching.sources import Baselines, baselines, tokenize

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel


def attribution_patching(
    lm: LanguageModel,
    clean: Inputs,
    corrupted: Inputs | None,
    metric: Metric,
    *,
    sites: str | Sequence[str] = "resid_pre",
    layers: Sequence[int] | None = None,
    positions: Positions = "each",
    heads: Sequence[int] | None = None,
    ablation: str | None = None,
    reference: Inputs | None = None,
    seed: int = 0,
    prepend_bos: bool = True,
    padding_side: str = "right",
) -> PatchingResult | dict[str, PatchingResult]:
    """The linear estimate of :func:`~interp.patching.activation_patching` for every cell.

    Same arguments and results as :func:`~interp.patching.activation_patching`; ``values`` is
    the estimated metric after patching, ``baseline + (clean - corrupted) . grad``, so
    ``effects`` is the attribution itself.
    """
    names = resolve_sites(sites)
    tokens, _ = tokenize(lm, clean, prepend_bos, padding_side, "clean")
    grids = [
        make_grid(lm, s, tokens.shape[1], layers=layers, positions=positions, heads=heads)
        for s in names
    ]
    base = baselines(
        lm, clean, corrupted, metric, grids, ablation=ablation, reference=reference, seed=seed,
        prepend_bos=prepend_bos, padding_side=padding_side, run_corrupted=False,
    )  # fmt: skip
    scores = attribution_scores(lm, base, metric, grids)
    if ablation is None:  # the forward + backward pass was the corrupted run
        base.corrupted_metric = base.base_metric
    method = "attribution patching" + (f" ({ablation} ablation)" if ablation else "")
    settings = {
        "layers": list(layers) if layers is not None else None,
        "positions": positions if isinstance(positions, str | int) else list(positions),
        "heads": list(heads) if heads is not None else None, "ablation": ablation, "seed": seed,
        "n_examples": base.n_examples, "prepend_bos": prepend_bos, "padding_side": padding_side,
    }  # fmt: skip
    results = {}
    for grid in grids:
        per_example = scores[grid.site] + base.base_metric
        results[grid.site] = to_result(grid, per_example, base, method, metric, lm, settings)
    return results[names[0]] if isinstance(sites, str) else results


def attribution_scores(
    lm: LanguageModel, base: Baselines, metric: Metric, grids: list[Grid]
) -> dict[str, torch.Tensor]:
    """Per site ``[*grid.shape, n_examples]``: ``(source - a) . dmetric/da`` per cell."""
    hooks = list(dict.fromkeys(g.hook.format(layer=layer) for g in grids for layer in g.layers))
    seen: dict[str, torch.Tensor] = {}
    offsets: dict[str, torch.Tensor] = {}

    def probe(hook: str):
        def add_zero(value: torch.Tensor, ctx: object) -> torch.Tensor:
            seen[hook] = value.detach()
            offsets[hook] = torch.zeros_like(value, requires_grad=True)
            return value + offsets[hook]

        return add_zero

    logits, _ = lm.run(
        base.tokens, attention_mask=base.mask, edits={h: probe(h) for h in hooks}, grad=True
    )
    value = evaluate(metric, logits, base.context(1))
    base.base_metric = value.detach().cpu()  # the run patched: corrupted, or clean (ablation)
    grads = torch.autograd.grad(value.sum(), [offsets[h] for h in hooks], allow_unused=True)
    products = {}
    for hook, grad in zip(hooks, grads, strict=True):
        grad = torch.zeros_like(seen[hook]) if grad is None else grad
        delta = base.sources[hook].to(grad.device, grad.dtype) - seen[hook]
        product = (delta * grad).sum(-1).detach().cpu()  # [n, pos(, heads)]
        products[hook] = product.to(base.base_metric.dtype)
    return {g.site: _cells(g, products) for g in grids}


def _cells(grid: Grid, products: dict[str, torch.Tensor]) -> torch.Tensor:
    """Gather each cell's attribution ``[*grid.shape, n]`` from ``[n, pos(, heads)]`` maps."""
    stacked = torch.stack([products[grid.hook.format(layer=layer)] for layer in grid.layers])
    if grid.positions is None:
        stacked = stacked.sum(2, keepdim=True)  # [layers, n, 1(, heads)]
        chosen = [0]
    else:
        chosen = grid.positions
    picked = stacked[:, :, chosen]  # [layers, n, P(, heads)]
    if grid.heads is not None:
        picked = picked[..., grid.heads]
    picked = picked.movedim(1, -1)  # [layers, P(, heads), n]
    if grid.positions is None:
        picked = picked.squeeze(1)
    return picked
