"""PatchingResult: the metric after patching each cell of one site, with its baselines.

``values`` holds the metric (mean over the input examples) after patching each cell: layer x
position [x head] (positions dropped when all were patched together). For attribution patching
it holds the linear estimate ``corrupted + (clean - corrupted) . grad``, so both methods read
the same way. ``effects`` is the change from the unpatched run that was patched (``baseline``:
the corrupted run for patching, the clean run for an ablation); ``recovered()`` the fraction of
the clean - corrupted gap a patch restores (activation patching only).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from interp import __version__
from interp.errors import InvalidArgumentError
from interp.results import Result
from interp.viz import heatmap


@dataclasses.dataclass
class PatchingResult(Result):
    """One site's patching result.

    Fields:
        values: ``[*shape]`` metric after patching each cell, mean over examples.
        per_example: ``[*shape, n_examples]`` the same per input example.
        clean_metric, corrupted_metric, baseline: ``[n_examples]`` metric on the clean run, the
            corrupted run (NaN for an ablation) and the run that was patched.
        site: ``"z"``, ``"resid_pre"``...; hook: its hook name with ``{layer}`` open.
        axes: the dimensions of ``values`` (``layer``, ``position``, ``head``).
        layers, positions, heads: the index along each axis (positions None: patched together;
            heads None: a site without heads).
        method: ``"activation patching"``, ``"zero ablation"``, ``"attribution patching"``...
        metric: the metric's name; tokens: the first clean input's tokens as text.
    """

    values: torch.Tensor
    per_example: torch.Tensor
    clean_metric: torch.Tensor
    corrupted_metric: torch.Tensor
    baseline: torch.Tensor
    site: str
    hook: str
    axes: list[str]
    layers: list[int]
    positions: list[int] | None
    heads: list[int] | None
    method: str = "activation patching"
    metric: str = "metric"
    tokens: list[str] = dataclasses.field(default_factory=list)
    model: str = ""
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # own copies: safetensors refuses fields sharing storage (baseline is often a metric)
        for name in ("values", "per_example", "clean_metric", "corrupted_metric", "baseline"):
            setattr(self, name, torch.as_tensor(getattr(self, name)).detach().cpu().clone())
        self.settings = dict(self.settings)
        self.settings.setdefault("interp_version", __version__)

    # ----------------------------------------------------------------- derived numbers
    @property
    def effects(self) -> torch.Tensor:
        """``values`` minus the patched run's own metric (0: the cell changes nothing)."""
        return self.values - self.baseline.mean()

    def recovered(self) -> torch.Tensor:
        """``(values - corrupted) / (clean - corrupted)``: 1 = the patch restores the clean
        metric, 0 = it changes nothing (activation and attribution patching only)."""
        if torch.isnan(self.corrupted_metric).any():
            raise InvalidArgumentError(f"a {self.method} has no corrupted run to recover from")
        gap = self.clean_metric.mean() - self.corrupted_metric.mean()
        return (self.values - self.corrupted_metric.mean()) / gap

    def _labels(self, axis: str) -> list[str]:
        if axis == "layer":
            return [f"L{layer}" for layer in self.layers]
        if axis == "head":
            return [f"H{h}" for h in self.heads or []]
        toks = self.tokens
        return [f"{p}:{toks[p]!r}" if p < len(toks) else str(p) for p in self.positions or []]

    # ----------------------------------------------------------------- reports
    def table(self, k: int = 20) -> str:
        """The ``k`` cells with the largest |effect|, with the clean / corrupted baselines."""
        effects = self.effects.reshape(-1)
        order = torch.argsort(effects.abs().nan_to_num(-1.0), descending=True)[:k]
        index = np.unravel_index(order.numpy(), tuple(self.values.shape))
        head = f"{'  '.join(f'{a:>8}' for a in self.axes)}  {'value':>10}  {'effect':>10}"
        corrupted = self.corrupted_metric.mean()
        lines = [
            f"{self.method} of {self.hook} ({self.metric}) on {self.model or 'a model'}: clean "
            f"{self.clean_metric.mean():.4f}"
            + ("" if corrupted.isnan() else f", corrupted {corrupted:.4f}")
            + f", patched run {self.baseline.mean():.4f}",
            head,
        ]
        for row, flat in enumerate(order.tolist()):
            cells = [self._labels(a)[int(index[i][row])] for i, a in enumerate(self.axes)]
            lines.append(
                f"{'  '.join(f'{c:>8}' for c in cells)}  {float(self.values.reshape(-1)[flat]):>10.4f}"
                f"  {float(effects[flat]):>10.4f}"
            )
        return "\n".join(lines)

    def figure(self, by: str | None = None, position: int | None = None) -> go.Figure:
        """A heatmap of the effects (diverging colours, 0 white): layer x position or layer x
        head. A per-position per-head result shows layer x head summed over positions (or at
        ``position``), or layer x position summed over heads with ``by="position"``."""
        effects, axes, note = self.effects, list(self.axes), ""
        if position is not None:
            if "position" not in axes or position not in (self.positions or []):
                raise InvalidArgumentError(f"position {position} was not patched on its own")
            effects = effects.select(axes.index("position"), self.positions.index(position))
            axes.remove("position")
            note = f" at position {self._labels('position')[self.positions.index(position)]}"
        if len(axes) == 3:
            drop = "head" if by == "position" else "position"
            effects = effects.sum(axes.index(drop))
            axes.remove(drop)
            note = f", summed over {drop}s"
        if len(axes) == 1:
            effects, x_label, x_ticks = effects[:, None], "position", ["all positions"]
        else:
            x_label, x_ticks = axes[1], self._labels(axes[1])
        limit = float(effects.abs().max()) or 1.0
        return heatmap(
            effects,
            title=f"{self.method} of {self.hook} on {self.model or 'the model'}: change in "
            f"{self.metric} from the {'clean' if self.method.endswith('ablation') else 'corrupted'}"
            f" run, layer x {x_label}{note}",
            x_label=x_label,
            y_label="layer",
            x_ticks=x_ticks,
            y_ticks=self._labels("layer"),
            colorscale="RdBu",
            hover=f"change in {self.metric}",
            zmin=-limit,
            zmax=limit,
        )
