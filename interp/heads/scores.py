"""HeadScores: one ``[n_layers, n_heads]`` score map per metric, with the rules that classify heads.

Every head finder (induction, successor, retrieval) returns a :class:`HeadScores`. It keeps the
raw scores (thresholds classify, they never change the scores), the thresholds and comparison
rules of the paper it follows, optional breakdowns (``extras``, e.g. one succession map per
ordinal task under ``"succession/<task>"``), and the settings that produced it.

Classification. ``thresholds`` maps a metric to its cut-off; a head passes a metric when its
score is ``>= threshold``, or ``> threshold`` when ``strict[metric]`` is true (retrieval heads,
Wu et al. 2024, are defined by ``score > 0.1``). ``heads()`` with no arguments applies *all*
thresholds together (logical AND): an induction result with ``thresholds={"prefix_matching":
0.4, "copying": -0.5}`` (the induction defaults; copying runs from -1 to 1, chance about -0.92)
therefore lists heads that both prefix-match and copy. Pass ``metric=`` or
``rule=`` to classify by other cut-offs. NaN scores (e.g. a head never measured, or retrieval
scores when no needle test succeeded) never pass and are never ranked: ``top()`` lists only
finite scores, so it may return fewer than ``k`` heads.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from interp import __version__
from interp.errors import InvalidArgumentError
from interp.results import Result
from interp.viz import heatmap

Head = tuple[int, int]


def _as_score_map(name: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor | np.ndarray):
        raise TypeError(
            f"score map {name!r} must be a torch tensor or numpy array, got {type(value).__name__}"
        )
    tensor = torch.as_tensor(value).detach().cpu()
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    # clone: safetensors refuses tensors sharing storage (e.g. rows of one stacked tensor)
    return tensor.clone()


@dataclasses.dataclass
class HeadScores(Result):
    """Per-head scores of one or more metrics, with thresholds, breakdowns and settings.

    Fields:
        scores: metric name -> ``[n_layers, n_heads]`` float tensor (the raw scores).
        primary: the metric used when none is named (ranking, ``figure()``, ``heads(threshold=)``).
        thresholds: metric -> cut-off; ``heads()`` with no arguments ANDs all of them.
        strict: metric -> True when passing needs ``score > threshold`` (default ``>=``).
        extras: further tensors, e.g. per-task breakdowns ``"succession/<task>" -> [L, H]``;
            any shape is allowed, ``[L, H]`` ones also show in ``figure``/``to_frame``.
        settings: what produced the scores (seeds, prompt counts, token tasks, ...).
        model: the model's name.
        title: what the scores are ("successor heads", "induction heads", ...).
        metrics: metric order for tables and figures (defaults to the order of ``scores``;
            kept because a loaded result's dict order is not the saved one).
    """

    scores: dict[str, torch.Tensor]
    primary: str
    thresholds: dict[str, float] = dataclasses.field(default_factory=dict)
    strict: dict[str, bool] = dataclasses.field(default_factory=dict)
    extras: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: str = ""
    title: str = "head scores"
    metrics: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.scores, Mapping) or not self.scores:
            raise ValueError(
                "scores must be a non-empty dict: metric name -> [n_layers, n_heads] tensor"
            )
        scores = {str(k): _as_score_map(k, v) for k, v in self.scores.items()}
        shapes = {tuple(v.shape) for v in scores.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(
                f"every score map must have the same 2-D shape [n_layers, n_heads]; got "
                f"{ {k: tuple(v.shape) for k, v in scores.items()} }"
            )
        order = list(self.metrics) or list(scores)
        if sorted(order) != sorted(scores):
            raise ValueError(f"metrics {order} must list exactly the score names {list(scores)}")
        self.metrics = order
        self.scores = {name: scores[name] for name in order}
        self._check_names("primary", [self.primary])
        self._check_names("thresholds", self.thresholds)
        self._check_names("strict", self.strict)
        self.thresholds = {k: float(v) for k, v in self.thresholds.items()}
        self.strict = {k: bool(v) for k, v in self.strict.items()}
        self.extras = {str(k): _as_score_map(k, v) for k, v in (self.extras or {}).items()}
        self.settings = dict(self.settings)
        self.settings.setdefault("interp_version", __version__)

    def _check_names(self, what: str, names: Any) -> None:
        unknown = [n for n in names if n not in self.scores]
        if unknown:
            raise ValueError(
                f"{what} names unknown metric(s) {unknown}; the metrics are {self.metrics}"
            )

    # ----------------------------------------------------------------- basics
    @property
    def n_layers(self) -> int:
        return next(iter(self.scores.values())).shape[0]

    @property
    def n_heads(self) -> int:
        return next(iter(self.scores.values())).shape[1]

    def __getitem__(self, metric: str) -> torch.Tensor:
        return self.scores[self._metric(metric)]

    def _metric(self, metric: str | None) -> str:
        if metric is None:
            return self.primary
        if metric not in self.scores:
            raise ValueError(f"unknown metric {metric!r}; the metrics are {self.metrics}")
        return metric

    def _map(self, name: str) -> torch.Tensor:
        """A score map or an ``[L, H]``-shaped extra, by name."""
        if name in self.scores:
            return self.scores[name]
        extra = self.extras.get(name)
        if extra is not None and tuple(extra.shape) == (self.n_layers, self.n_heads):
            return extra
        raise ValueError(
            f"unknown map {name!r}; choose a metric {self.metrics} or an [L, H] extra {self._extra_maps()}"
        )

    def _extra_maps(self) -> list[str]:
        return [
            k for k, v in self.extras.items() if tuple(v.shape) == (self.n_layers, self.n_heads)
        ]

    # ----------------------------------------------------------------- ranking and classification
    def _order(self, values: torch.Tensor) -> torch.Tensor:
        """Flat head indices by descending score; ties by (layer, head); NaN last."""
        flat = values.reshape(-1).double()
        flat = torch.where(torch.isnan(flat), torch.full_like(flat, -math.inf), flat)
        return torch.sort(flat, descending=True, stable=True).indices

    def top(self, k: int = 10, metric: str | None = None) -> list[tuple[int, int, float]]:
        """The ``k`` best heads by ``metric`` (default: primary) as ``(layer, head, score)``.

        Only finite scores are ranked: NaN (never measured) and ±inf are skipped, so fewer than
        ``k`` heads (none, when no score is finite) may come back.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidArgumentError(f"k must be a positive integer, got {k!r}")
        values = self.scores[self._metric(metric)]
        flat = values.reshape(-1)
        finite = torch.isfinite(flat)
        order = [i for i in self._order(values).tolist() if finite[i]][:k]
        return [(i // self.n_heads, i % self.n_heads, float(flat[i])) for i in order]

    def classify(self, rule: Mapping[str, float] | None = None) -> torch.Tensor:
        """Boolean ``[n_layers, n_heads]`` mask of heads passing every cut-off in ``rule``.

        ``rule`` maps metric -> threshold (AND of all entries; each compared with ``>=`` or, for
        metrics marked ``strict``, ``>``). Default: ``self.thresholds``.
        """
        rule = dict(self.thresholds if rule is None else rule)
        if not rule:
            raise ValueError(
                "no thresholds to classify with: pass rule={metric: threshold} or set thresholds"
            )
        self._check_names("rule", rule)
        mask = torch.ones(self.n_layers, self.n_heads, dtype=torch.bool)
        for name, cut in rule.items():
            values = self.scores[name]
            passed = values > cut if self.strict.get(name, False) else values >= cut
            mask &= passed  # NaN compares False
        return mask

    def heads(
        self,
        threshold: float | None = None,
        metric: str | None = None,
        *,
        rule: Mapping[str, float] | None = None,
    ) -> list[Head]:
        """Heads passing a classification, best first (by the first metric of the rule).

        - ``heads()``: all of ``self.thresholds`` at once (AND).
        - ``heads(metric="copying")``: that metric against its own threshold.
        - ``heads(0.3)`` / ``heads(0.3, metric="copying")``: one metric against ``0.3``.
        - ``heads(rule={"prefix_matching": 0.4, "copying": -0.5})``: a combined rule.
        """
        if rule is not None:
            if threshold is not None or metric is not None:
                raise ValueError("pass either rule= or threshold/metric, not both")
            rule = dict(rule)
        elif threshold is None and metric is None:
            rule = dict(self.thresholds)
        else:
            name = self._metric(metric)
            if threshold is None:
                if name not in self.thresholds:
                    raise ValueError(f"metric {name!r} has no default threshold; pass threshold=")
                threshold = self.thresholds[name]
            rule = {name: float(threshold)}
        mask = self.classify(rule).reshape(-1)
        order = self._order(self.scores[next(iter(rule))])
        return [(i // self.n_heads, i % self.n_heads) for i in order.tolist() if mask[i]]

    # ----------------------------------------------------------------- views
    def table(self, k: int = 10) -> str:
        """Plain-text tables: the top ``k`` heads of each metric, every metric's value shown."""
        lines = [
            f"{self.title} — {self.model or 'model'} ({self.n_layers} layers x {self.n_heads} heads)"
        ]
        if self.thresholds:
            rule = " AND ".join(
                f"{m} {'>' if self.strict.get(m) else '>='} {t:g}"
                for m, t in self.thresholds.items()
            )
            lines.append(
                f"classified heads ({rule}): {len(self.heads())} of {self.n_layers * self.n_heads}"
            )
        width = max(10, *(len(m) for m in self.metrics))
        mark = bool(self.thresholds)
        for metric in self.metrics:
            lines.append("")
            lines.append(f"top {k} by {metric}")
            header = f"{'head':>8}  " + "  ".join(f"{m:>{width}}" for m in self.metrics)
            lines.append(header + ("  class" if mark else ""))
            mask = self.classify() if mark else None
            ranked = self.top(k, metric)
            if not ranked:
                lines[-1] = f"  no finite {metric} score: nothing to rank"
            for layer, head, _ in ranked:
                cells = "  ".join(
                    f"{float(self.scores[m][layer, head]):>{width}.4f}" for m in self.metrics
                )
                flag = ("      *" if mask[layer, head] else "       ") if mask is not None else ""
                lines.append(f"{f'L{layer}H{head}':>8}  {cells}{flag}")
        return "\n".join(lines)

    def figure(self, metric: str | None = None) -> go.Figure:
        """Layer x head heatmap of ``metric`` (default: primary); hover shows every metric.

        With several metrics (or ``[L, H]`` extras) a dropdown switches the map shown.
        """
        shown = self._metric(metric) if metric is None or metric in self.scores else metric
        names = [*self.metrics, *self._extra_maps()]
        fig = heatmap(
            self._map(shown),
            title=f"{self.title}: {shown}",
            x_label="head",
            y_label="layer",
            hover=shown,
        )
        custom = np.stack([self.scores[m].double().numpy() for m in self.metrics], axis=-1)
        extra = "".join(f"<br>{m} %{{customdata[{i}]:.4f}}" for i, m in enumerate(self.metrics))
        fig.data[0].customdata = custom
        fig.data[0].hovertemplate = (
            "layer %{y}<br>head %{x}<br><b>shown %{z:.4f}</b>" + extra + "<extra></extra>"
        )
        if len(names) > 1:
            buttons = [
                {
                    "label": name,
                    "method": "update",
                    "args": [
                        {"z": [self._map(name).double().numpy()]},
                        {"title": f"{self.title}: {name}"},
                    ],
                }
                for name in names
            ]
            active = names.index(shown)
            fig.update_layout(
                updatemenus=[{"buttons": buttons, "active": active, "x": 1.0, "y": 1.15}]
            )
        return fig

    def to_frame(self, *, extras: bool = False):
        """Tidy ``pandas.DataFrame`` with columns layer, head, metric, value (one row per head per map)."""
        import pandas as pd

        names = [*self.metrics, *(self._extra_maps() if extras else [])]
        layers, heads = np.meshgrid(
            np.arange(self.n_layers), np.arange(self.n_heads), indexing="ij"
        )
        parts = [
            pd.DataFrame(
                {
                    "layer": layers.reshape(-1),
                    "head": heads.reshape(-1),
                    "metric": name,
                    "value": self._map(name).double().numpy().reshape(-1),
                }
            )
            for name in names
        ]
        return pd.concat(parts, ignore_index=True)
