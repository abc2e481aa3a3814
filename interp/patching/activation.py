"""Activation patching and ablations, batched along the batch axis.

Activation patching (causal tracing, Meng et al. 2022; path patching's building block in Wang
et al. 2022): run the *corrupted* inputs, replace one activation (a cell: layer, position,
head) by its value on the *clean* inputs, and measure the metric. A cell whose patch restores
the clean metric carries the information the corruption removed. Ablations run the clean inputs
and replace a cell by zeros, a reference mean or another input's value (resample ablation).

Patched runs are batched: a chunk of ``B`` cells runs as ONE forward pass over the inputs
repeated ``B`` times, with one edit function per hook that patches each row's own cell. ``B``
comes from ``batch_size`` (cells per forward) or from the ``max_bytes`` memory budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from interp.errors import InvalidArgumentError
from interp.models.protocol import Inputs
from interp.patching.metrics import Metric, evaluate, metric_name
from interp.patching.result import PatchingResult
from interp.patching.sites import Grid, Positions, make_grid, patch_edits, resolve_sites
from interp.patching.sources import Baselines, baselines, tokenize

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel

DEFAULT_MAX_BYTES = 2**30


def activation_patching(
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
    batch_size: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    prepend_bos: bool = True,
    padding_side: str = "right",
) -> PatchingResult | dict[str, PatchingResult]:
    """The metric after patching each cell of each site; one result per site.

    ``clean`` / ``corrupted``: texts, lists of texts or token ids, the same number of tokens
    each (position by position). ``metric(logits, ctx) -> [rows]`` (see
    :class:`~interp.patching.metrics.MetricContext`; :func:`~interp.patching.logit_diff`).
    ``sites``: names in :data:`~interp.patching.sites.SITES` (a single name returns a
    :class:`PatchingResult`, a list a dict of them). ``layers`` (default all), ``positions``
    (``"each"``, ``"all"`` together, or a list), ``heads`` (per-head sites; default all).
    ``ablation="zero"|"mean"|"resample"`` ablates cells of the clean run instead (``corrupted``
    must be None; ``reference`` inputs give the mean / the resampled values, default the clean
    batch). ``batch_size``: cells per forward pass; else as many as ``max_bytes`` allows.
    """
    names = resolve_sites(sites)
    tokens, _ = tokenize(lm, clean, prepend_bos, padding_side, "clean")
    length = tokens.shape[1]
    grids = [
        make_grid(lm, s, length, layers=layers, positions=positions, heads=heads) for s in names
    ]
    _check_budget(batch_size, max_bytes)
    base = baselines(
        lm, clean, corrupted, metric, grids, ablation=ablation, reference=reference, seed=seed,
        prepend_bos=prepend_bos, padding_side=padding_side,
    )  # fmt: skip
    cells = torch.cat(
        [
            torch.cat([torch.full((len(c), 1), i), c], 1)
            for i, g in enumerate(grids)
            for c in [g.cells()]
        ]
    )
    chunk = batch_size or cells_per_forward(lm, base, max_bytes)
    values = patched_metrics(lm, base, metric, cells, grids, chunk)
    method = "activation patching" if ablation is None else f"{ablation} ablation"
    settings = {
        "layers": list(layers) if layers is not None else None,
        "positions": positions if isinstance(positions, str | int) else list(positions),
        "heads": list(heads) if heads is not None else None, "ablation": ablation, "seed": seed, "cells_per_forward": chunk,
        "n_examples": base.n_examples, "prepend_bos": prepend_bos, "padding_side": padding_side,
    }  # fmt: skip
    results = {}
    start = 0
    for grid in grids:
        count = len(grid.cells())
        per_example = values[start : start + count].reshape(*grid.shape, base.n_examples)
        start += count
        results[grid.site] = to_result(grid, per_example, base, method, metric, lm, settings)
    return results[names[0]] if isinstance(sites, str) else results


def patched_metrics(
    lm: LanguageModel,
    base: Baselines,
    metric: Metric,
    cells: torch.Tensor,
    grids: list[Grid],
    chunk: int,
) -> torch.Tensor:
    """``[n_cells, n_examples]`` the metric with each cell patched, ``chunk`` cells a forward."""
    n = base.n_examples
    out = torch.empty(len(cells), n, dtype=base.clean_metric.dtype)
    keep = 1 if base.last_only else 0
    for start in range(0, len(cells), chunk):
        part = cells[start : start + chunk]
        repeats = len(part)
        edits = patch_edits(part, grids, base.sources, n)
        mask = base.mask.repeat(repeats, 1) if base.mask is not None else None
        logits, _ = lm.run(
            base.tokens.repeat(repeats, 1), attention_mask=mask, edits=edits, logits_to_keep=keep
        )
        value = evaluate(metric, logits, base.context(repeats))
        out[start : start + repeats] = value.detach().reshape(repeats, n).cpu()
    return out


def cells_per_forward(lm: LanguageModel, base: Baselines, max_bytes: int) -> int:
    """How many patched copies of the inputs fit ``max_bytes``: per row, a layer's working set
    (residual, attention, MLP, the edited copy) and the logits kept."""
    n, length = base.tokens.shape
    size = torch.finfo(lm.dtype).bits // 8
    d_mlp = getattr(lm, "d_mlp", 4 * lm.d_model)
    layer = size * length * (12 * lm.d_model + 3 * d_mlp + 2 * lm.n_heads * length)
    logits = 4 * (1 if base.last_only else length) * lm.d_vocab
    return max(1, int(max_bytes // (n * (layer + logits))))


def _check_budget(batch_size: int | None, max_bytes: int) -> None:
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise InvalidArgumentError(
            f"batch_size must be a positive int (cells per forward), got {batch_size!r}"
        )
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise InvalidArgumentError(f"max_bytes must be a positive int, got {max_bytes!r}")


def to_result(
    grid: Grid,
    per_example: torch.Tensor,
    base: Baselines,
    method: str,
    metric: Metric,
    lm,
    settings: dict,
) -> PatchingResult:
    """One site's :class:`PatchingResult`."""
    return PatchingResult(
        values=per_example.mean(-1),
        per_example=per_example,
        clean_metric=base.clean_metric,
        corrupted_metric=base.corrupted_metric,
        baseline=base.base_metric,
        site=grid.site,
        hook=grid.hook,
        axes=grid.axes,
        layers=grid.layers,
        positions=grid.positions,
        heads=grid.heads,
        method=method,
        metric=metric_name(metric),
        tokens=base.str_tokens,
        model=getattr(lm, "name", ""),
        settings=settings,
    )
