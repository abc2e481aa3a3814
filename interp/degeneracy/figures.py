"""Plotly figures of degeneracy: distance heatmaps, MDS embeddings and sweep curves."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from sklearn.manifold import MDS


def mds_embedding(distances: torch.Tensor | np.ndarray, *, seed: int = 0) -> np.ndarray:
    """2-D metric MDS coordinates ``[N, 2]`` of a precomputed ``[N, N]`` distance matrix."""
    d = np.asarray(
        distances.double() if isinstance(distances, torch.Tensor) else distances, dtype=float
    )
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] < 3:
        raise ValueError(
            f"MDS needs a square distance matrix of at least 3 items, got shape {d.shape}"
        )
    mds = MDS(
        n_components=2, metric="precomputed", init="classical_mds", n_init=1, random_state=seed
    )
    return mds.fit_transform((d + d.T) / 2)


def distances_figure(
    distances: Mapping[str, torch.Tensor], summary: Mapping[str, float], title: str
) -> go.Figure:
    """One heatmap per metric (each with its own colour scale) and an MDS panel per metric."""
    names = list(distances)
    fig = make_subplots(
        rows=2,
        cols=len(names),
        subplot_titles=[f"{n} (mean {summary[n]:.3g})" for n in names]
        + [f"MDS: {n}" for n in names],
        vertical_spacing=0.15,
    )
    for col, name in enumerate(names, start=1):
        d = distances[name].double().numpy()
        fig.add_trace(
            go.Heatmap(
                z=d,
                colorscale="Viridis",
                showscale=False,
                hovertemplate=f"{name}<br>model %{{y}} vs %{{x}}: %{{z:.4f}}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=col)
        if d.shape[0] >= 3:
            xy = mds_embedding(d)
            fig.add_trace(
                go.Scatter(
                    x=xy[:, 0],
                    y=xy[:, 1],
                    mode="markers+text",
                    text=[str(i) for i in range(len(xy))],
                    textposition="top center",
                    showlegend=False,
                    hovertemplate="model %{text}<extra></extra>",
                ),
                row=2,
                col=col,
            )
    fig.update_layout(
        title=title, template="plotly_white", height=650, width=max(700, 260 * len(names))
    )
    return fig


def sweep_figure(
    table: pd.DataFrame,
    example: Mapping[str, torch.Tensor] | None = None,
    example_label: str = "",
    *,
    mds_metric: str = "dsa",
) -> go.Figure:
    """Degeneracy against each swept factor (one row per factor, one column per metric).

    ``table`` is the tidy frame of :func:`interp.degeneracy.sweep.degeneracy_sweep`; one line per
    task. With ``example`` (distance matrices of one ensemble) a last column shows its 2-D MDS
    embedding under ``mds_metric``.
    """
    factors = list(dict.fromkeys(table["factor"]))
    metrics = list(dict.fromkeys(table["metric"]))
    show_mds = example is not None and mds_metric in example and example[mds_metric].shape[0] >= 3
    cols = len(metrics) + int(show_mds)
    titles = []
    for r, factor in enumerate(factors):
        titles += [f"{m} vs {factor}" for m in metrics]
        if show_mds:
            titles.append(f"MDS ({mds_metric}): {example_label}" if r == 0 else "")
    fig = make_subplots(rows=len(factors), cols=cols, subplot_titles=titles, vertical_spacing=0.12)
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for k, task in enumerate(dict.fromkeys(table["task"])):
        for row, factor in enumerate(factors, start=1):
            for col, metric in enumerate(metrics, start=1):
                sub = table[
                    (table["task"] == task)
                    & (table["factor"] == factor)
                    & (table["metric"] == metric)
                ]
                sub = sub.sort_values("level_rank")
                fig.add_trace(
                    go.Scatter(
                        x=sub["level"].astype(str),
                        y=sub["degeneracy"],
                        mode="lines+markers",
                        name=str(task),
                        legendgroup=str(task),
                        showlegend=row == 1 and col == 1,
                        line={"color": palette[k % len(palette)]},
                        hovertemplate=f"{task}: {factor}=%{{x}}<br>{metric}: %{{y:.4f}}<extra></extra>",
                    ),
                    row=row,
                    col=col,
                )
                fig.update_xaxes(type="category", title_text=factor, row=row, col=col)
    if show_mds:
        xy = mds_embedding(example[mds_metric])
        fig.add_trace(
            go.Scatter(
                x=xy[:, 0],
                y=xy[:, 1],
                mode="markers+text",
                text=[str(i) for i in range(len(xy))],
                textposition="top center",
                showlegend=False,
                hovertemplate="model %{text}<extra></extra>",
            ),
            row=1,
            col=cols,
        )
    fig.update_yaxes(title_text="degeneracy", col=1)
    fig.update_layout(
        title="Degeneracy (mean pairwise distance) across the sweep",
        template="plotly_white",
        height=300 * len(factors) + 120,
        width=max(800, 230 * cols),
    )
    return fig
