"""Small plotly builders shared by the result objects, so every figure looks alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch


def _array(values: torch.Tensor | np.ndarray | Sequence) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=float)


def heatmap(
    values: torch.Tensor | np.ndarray,
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_ticks: Sequence[str] | None = None,
    y_ticks: Sequence[str] | None = None,
    colorscale: str = "Viridis",
    hover: str = "value",
    zmin: float | None = None,
    zmax: float | None = None,
) -> go.Figure:
    """A 2-D heatmap with the row on the y axis (top row first) and hover text naming each cell."""
    z = _array(values)
    rows, cols = z.shape
    x = list(x_ticks) if x_ticks is not None else [str(i) for i in range(cols)]
    y = list(y_ticks) if y_ticks is not None else [str(i) for i in range(rows)]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=x,
            y=y,
            colorscale=colorscale,
            zmin=zmin,
            zmax=zmax,
            hovertemplate=f"{y_label} %{{y}}<br>{x_label} %{{x}}<br>{hover} %{{z:.4f}}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title=x_label,
        yaxis_title=y_label,
        yaxis={"autorange": "reversed", "type": "category"},
        xaxis={"type": "category"},
        template="plotly_white",
    )
    return fig


def line_chart(
    series: Mapping[str, torch.Tensor | np.ndarray | Sequence[float]],
    *,
    x: Sequence[float] | None = None,
    title: str,
    x_label: str,
    y_label: str,
) -> go.Figure:
    """One line per named series over a shared x axis."""
    fig = go.Figure()
    for name, values in series.items():
        y = _array(values)
        fig.add_trace(
            go.Scatter(x=list(x) if x is not None else None, y=y, mode="lines+markers", name=name)
        )
    fig.update_layout(
        title=title, xaxis_title=x_label, yaxis_title=y_label, template="plotly_white"
    )
    return fig
