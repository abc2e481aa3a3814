"""The :class:`FixedPoints` result: points, residuals, linearisations, stability, readouts, figure."""

from __future__ import annotations

import dataclasses

import numpy as np
import plotly.graph_objects as go
import torch
from torch import Tensor

from interp import __version__
from interp.results import Result

CLASS_COLOURS = {
    "stable": "#1a9850",
    "marginal": "#fdae61",
    "saturated": "#999999",
    "saddle": "#d73027",
    "unstable": "#4575b4",
}
CLASSES = tuple(CLASS_COLOURS)


def classify_points(moduli: Tensor, marginal_tol: float) -> tuple[Tensor, Tensor, list[str]]:
    """``(n_unstable, n_marginal, classes)`` from eigenvalue moduli ``[K, H]``.

    A mode is *unstable* when ``|λ| > 1 + marginal_tol`` and *marginal* when
    ``||λ| − 1| <= marginal_tol`` (neither decays nor grows at the precision of the linearisation).
    Classes: "stable" (every ``|λ| < 1 − tol``); "marginal" (no unstable mode, some marginal:
    line/ring attractors); "saturated" (every mode marginal: the Jacobian is the identity
    within tolerance, as where a GRU's update gates saturate and the state is frozen, so the
    linearisation says nothing about stability); "saddle" (some unstable modes, not all);
    "unstable" (all). Without the tolerance, a frozen point's ``|λ| = 1.00001`` from rounding or
    a tiny gate leak would make it a "saddle".
    """
    size = moduli.shape[-1]
    n_unstable = (moduli > 1 + marginal_tol).sum(-1)
    n_marginal = ((moduli - 1).abs() <= marginal_tol).sum(-1)
    classes = []
    for unstable, marginal in zip(n_unstable.tolist(), n_marginal.tolist(), strict=True):
        if unstable == 0:
            cls = "saturated" if marginal == size else "marginal" if marginal else "stable"
        else:
            cls = "unstable" if unstable == size else "saddle"
        classes.append(cls)
    return n_unstable, n_marginal, classes


@dataclasses.dataclass
class FixedPoints(Result):
    """Fixed (and slow) points ``h* = step(h*, u*)`` of a recurrent model, with their linearisation.

    Row ``k`` of every array describes one point. ``q = ½‖step(h*, u*) − h*‖²``. Eigenvalues of the
    state Jacobian ``∂step/∂h`` are sorted by decreasing modulus (stored as real and imaginary
    parts); in discrete time a mode is unstable when ``|λ| > 1 + marginal_tol`` and marginal within
    ``marginal_tol`` of 1 (``settings["marginal_tol"]``, default 1e-3). ``classes``: "stable",
    "marginal", "saturated", "saddle", "unstable" (see :func:`classify_points`). ``slow`` marks points whose q stayed above ``q_tol``
    but below ``slow_tol`` (slow points, not exact fixed points). ``time_constants`` are
    ``τ = −1/log|λ|`` steps per mode (``inf`` at ``|λ| = 1``, negative for growing modes).
    """

    points: Tensor  # [K, H]
    inputs: Tensor  # [K, I]
    q: Tensor  # [K]
    jacobians: Tensor  # [K, H, H]  ∂step/∂h
    input_jacobians: Tensor  # [K, H, I]  ∂step/∂x
    eigenvalues_real: Tensor  # [K, H]
    eigenvalues_imag: Tensor  # [K, H]
    time_constants: Tensor  # [K, H]
    n_unstable: Tensor  # [K] long
    n_marginal: Tensor  # [K] long, modes with ||λ| − 1| <= marginal_tol
    readouts: Tensor  # [K, O]
    slow: Tensor  # [K] bool
    classes: list[str]
    counts: dict  # starts, converged, slow, not_converged, outliers, duplicates
    settings: dict
    trajectories: Tensor | None = None  # [N, T, H] real trajectories, for the figure
    version: str = __version__

    @property
    def eigenvalues(self) -> Tensor:
        """Complex eigenvalues ``[K, H]`` sorted by decreasing modulus."""
        return torch.complex(self.eigenvalues_real, self.eigenvalues_imag)

    @property
    def stable(self) -> Tensor:
        """Bool mask of the stable points."""
        return torch.tensor([c == "stable" for c in self.classes], dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.classes)

    def table(self, max_rows: int = 50) -> str:
        """One row per point (stable first, then by number of unstable modes)."""
        c = self.counts
        tol = self.settings.get("marginal_tol", 1e-3)
        by_class = ", ".join(f"{self.classes.count(k)} {k}" for k in CLASSES)
        lines = [
            f"{len(self)} points from {c.get('starts')} starts, {int(self.slow.sum())} of them slow:",
            f"  {by_class}",
            f"Dropped: {c.get('outliers')} outliers, {c.get('duplicates')} duplicates, "
            f"{c.get('not_converged')} not converged{self._failure_note()}.",
            f"Modes (tol {tol:g}): unstable if |λ| > 1 + tol, marginal if ||λ| − 1| <= tol;",
            "  a saturated point has every mode marginal (frozen, e.g. saturated GRU gates).",
            f"{'#':>4} {'class':>9} {'unstable':>8} {'q':>10} {'max|λ|':>8} {'slow':>5}  readout",
        ]
        moduli = self.eigenvalues.abs()
        order = sorted(range(len(self)), key=lambda k: (int(self.n_unstable[k]), float(self.q[k])))
        for k in order[:max_rows]:
            readout = " ".join(f"{v:+.2f}" for v in self.readouts[k].tolist()[:8])
            lines.append(
                f"{k:>4} {self.classes[k]:>9} {int(self.n_unstable[k]):>8} {float(self.q[k]):>10.2e} "
                f"{float(moduli[k, 0]):>8.4f} {'yes' if self.slow[k] else '':>5}  {readout}"
            )
        if len(self) > max_rows:
            lines.append(f"... {len(self) - max_rows} more")
        return "\n".join(lines)

    def _failure_note(self) -> str:
        """Why starts failed, on a line of its own: ``(3 stalled, 1 out of budget; ...)``."""
        c = self.counts
        if "stalled" not in c or not c.get("not_converged"):  # none failed, or saved before
            return ""
        note = f"{c['stalled']} stalled, {c['out_of_budget']} out of budget"
        if c.get("singular"):
            note += f"; {c['singular']} hit a singular Jacobian, re-damped"
        return f"\n  ({note})"

    def figure(self, components: int = 3) -> go.Figure:
        """Trajectories (grey) and points (coloured by stability) in the top principal components.

        The PCA basis is fitted on the trajectories when present, else on the points.
        """
        points = self.points.double().numpy()
        data = self.trajectories.double().numpy() if self.trajectories is not None else None
        basis_source = data.reshape(-1, data.shape[-1]) if data is not None else points
        mean = basis_source.mean(0)
        _, _, vt = np.linalg.svd(basis_source - mean, full_matrices=False)
        dims = min(components, 3, vt.shape[0])
        basis = vt[:dims].T
        if dims < 3:
            basis = np.pad(basis, ((0, 0), (0, 3 - dims)))
        fig = go.Figure()
        if data is not None:
            for n, trajectory in enumerate(data):
                xyz = (trajectory - mean) @ basis
                fig.add_trace(
                    go.Scatter3d(
                        x=xyz[:, 0],
                        y=xyz[:, 1],
                        z=xyz[:, 2],
                        mode="lines",
                        line={"color": "rgba(120,120,120,0.35)", "width": 2},
                        name="trajectories",
                        legendgroup="trajectories",
                        showlegend=n == 0,
                        hoverinfo="skip",
                    )
                )
        xyz = (points - mean) @ basis
        for cls, colour in CLASS_COLOURS.items():
            index = [k for k, c in enumerate(self.classes) if c == cls]
            if not index:
                continue
            hover = [
                f"point {k}<br>{cls}, {int(self.n_unstable[k])} unstable<br>q={float(self.q[k]):.2e}"
                f"<br>readout {np.round(self.readouts[k].numpy(), 2).tolist()}"
                for k in index
            ]
            slow = self.slow[index].numpy()
            fig.add_trace(
                go.Scatter3d(
                    x=xyz[index, 0],
                    y=xyz[index, 1],
                    z=xyz[index, 2],
                    mode="markers",
                    name=cls,
                    marker={
                        "size": 6,
                        "color": colour,
                        "symbol": ["diamond-open" if s else "circle" for s in slow],
                    },
                    text=hover,
                    hovertemplate="%{text}<extra></extra>",
                )
            )
        fig.update_layout(
            title=f"Fixed points ({len(self)}) in the top principal components",
            scene={"xaxis_title": "PC1", "yaxis_title": "PC2", "zaxis_title": "PC3"},
            template="plotly_white",
            height=700,  # the report leads with this figure: give the 3-D scene room
            margin={"l": 0, "r": 0, "t": 50, "b": 0},
            legend={"x": 0.01, "y": 0.98},
        )
        return fig
