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
    d = (d + d.T) / 2
    # classical MDS start, with negative eigenvalues clipped: distances that are not Euclidean
    # (1 − CKA can break the triangle inequality) would give sklearn's own start NaN coordinates
    n = d.shape[0]
    centre = np.eye(n) - 1.0 / n
    values, vectors = np.linalg.eigh(-0.5 * centre @ (d**2) @ centre)
    start = vectors[:, -2:][:, ::-1] * np.sqrt(np.clip(values[-2:][::-1], 0.0, None))
    mds = MDS(n_components=2, metric="precomputed", init="random", n_init=1, random_state=seed)
    return mds.fit_transform(d, init=start)


PANELS_PER_ROW = 3


def _colorbar(fig: go.Figure, row: int, col: int) -> dict:
    """A slim colorbar just right of subplot ``(row, col)``, as tall as it (in paper units)."""
    ref = fig.get_subplot(row, col)
    (_, x1), (y0, y1) = ref.xaxis.domain, ref.yaxis.domain
    return {"x": x1 + 0.008, "xanchor": "left", "y": (y0 + y1) / 2, "len": y1 - y0, "thickness": 10}


def distances_figure(
    distances: Mapping[str, torch.Tensor],
    summary: Mapping[str, float],
    title: str,
    *,
    flagged: list[int] | None = None,
) -> go.Figure:
    """A heatmap per metric (own colour scale and colorbar) above its MDS embedding.

    Panels wrap at :data:`PANELS_PER_ROW` metrics per row and the width follows the page
    (``autosize``; no fixed pixel width), so nine metrics stay readable without scrolling.
    ``flagged`` members (e.g. below the accuracy threshold) are drawn red in the MDS panels.
    """
    names = list(distances)
    cols = min(PANELS_PER_ROW, len(names))
    groups = -(-len(names) // cols)
    titles: list[str] = []
    for g in range(groups):
        chunk = names[g * cols : (g + 1) * cols]
        pad = [""] * (cols - len(chunk))
        titles += [f"{n} (mean {summary[n]:.3g})" for n in chunk] + pad
        titles += [f"MDS: {n}" for n in chunk] + pad
    fig = make_subplots(
        rows=2 * groups,
        cols=cols,
        subplot_titles=titles,
        vertical_spacing=0.3 / (2 * groups),
        horizontal_spacing=0.12,
    )
    flagged_set = set(flagged or [])
    for index, name in enumerate(names):
        row, col = 2 * (index // cols) + 1, index % cols + 1
        d = distances[name].double().numpy()
        fig.add_trace(
            go.Heatmap(
                z=d,
                colorscale="Viridis",
                colorbar=_colorbar(fig, row, col),
                hovertemplate=f"{name}<br>model %{{y}} vs %{{x}}: %{{z:.4f}}<extra></extra>",
            ),
            row=row,
            col=col,
        )
        fig.update_yaxes(autorange="reversed", row=row, col=col)
        if d.shape[0] >= 3:
            xy = mds_embedding(d)
            colours = ["#d62728" if i in flagged_set else "#1f77b4" for i in range(len(xy))]
            fig.add_trace(
                go.Scatter(
                    x=xy[:, 0],
                    y=xy[:, 1],
                    mode="markers+text",
                    marker={"color": colours},
                    text=[str(i) for i in range(len(xy))],
                    textposition="top center",
                    showlegend=False,
                    hovertemplate="model %{text}<extra></extra>",
                ),
                row=row + 1,
                col=col,
            )
    fig.update_layout(title=title, template="plotly_white", height=560 * groups, autosize=True)
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
        autosize=True,  # the width follows the page
    )
    return fig
