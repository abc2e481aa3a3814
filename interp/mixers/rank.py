"""Interaction rank: the numerical rank and full singular spectrum of a mixer's stacked operators.

Ghodsi 2025: a mixer with ``y_i = sum_j W_ij x_j`` is emulated by ``H`` position-only attention
heads exactly when the maps ``W_ij`` span at most ``H`` dimensions. The stacked vectors are
``vec K_l`` (``l < n``) for an LTI SSM, the diagonals ``w_ij`` over every pair ``i >= j`` for a
selective SSM, and ``vec OV_h`` for attention. The rank alone depends on the tolerance, so the
full spectrum is kept and plotted, and the rank is stated with its relative tolerance:
``rank = #{sigma_r > rtol * sigma_1}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
import torch

from interp.errors import InvalidArgumentError
from interp.mixers.operators import Operators
from interp.results import Result

DEFAULT_RTOL = 1e-6


def singular_values(operators: Operators) -> torch.Tensor:
    """Singular values of the stacked span vectors, in float64, largest first.

    The rows arrive in chunks; a running QR keeps only the ``[m, m]`` triangular factor, whose
    singular values equal those of the whole stack (no Gram matrix, so no squared condition).
    """
    r: torch.Tensor | None = None
    for rows in operators.span_rows():
        rows = rows.to(torch.float64)
        stacked = rows if r is None else torch.cat([r, rows])
        r = torch.linalg.qr(stacked, mode="r").R if stacked.shape[0] > stacked.shape[1] else stacked
    if r is None:
        raise InvalidArgumentError("the operators have no span vectors (an empty sequence?)")
    return torch.linalg.svdvals(r)


def numerical_rank(values: torch.Tensor, rtol: float) -> int:
    """``#{sigma_r > rtol * sigma_1}`` (0 for an all-zero spectrum)."""
    if values.numel() == 0 or float(values[0]) == 0.0:
        return 0
    return int((values > rtol * values[0]).sum())


def _check_rtol(rtol: float) -> float:
    if not isinstance(rtol, int | float) or not 0 < rtol < 1:
        raise InvalidArgumentError(f"rtol must be a relative tolerance in (0, 1), got {rtol!r}")
    return float(rtol)


@dataclass
class InteractionRank(Result):
    """Spectrum and numerical rank of one mixer layer's interaction operators.

    ``singular_values`` (float64, largest first) of the stacked span vectors; ``rank`` counts
    those above ``rtol * sigma_1``. ``bound``: the rank the structure allows (heads for
    attention, state size for an LTI SSM, channels for a selective SSM).
    """

    singular_values: torch.Tensor
    rank: int
    rtol: float
    kind: str
    layer: int | None = None
    bound: int | None = None
    settings: dict = field(default_factory=dict)

    def table(self) -> str:
        s = self.singular_values
        head = f"{self.kind} layer {self.layer}: rank {self.rank} at rtol {self.rtol:g}"
        if self.bound is not None:
            head += f" (structural bound {self.bound})"
        top = ", ".join(f"{float(v / s[0]):.3g}" for v in s[: min(12, len(s))]) if len(s) else ""
        return f"{head}\nsigma_r / sigma_1: {top}{' ...' if len(s) > 12 else ''}"

    def figure(self) -> go.Figure:
        return spectrum_figure(
            {f"layer {self.layer} ({self.kind})": self.singular_values}, self.rtol
        )


def interaction_rank(operators: Operators, rtol: float = DEFAULT_RTOL) -> InteractionRank:
    """Numerical rank and full singular spectrum of ``operators`` at relative tolerance ``rtol``."""
    rtol = _check_rtol(rtol)
    values = singular_values(operators)
    return InteractionRank(
        singular_values=values,
        rank=numerical_rank(values, rtol),
        rtol=rtol,
        kind=operators.kind,
        layer=operators.layer,
        bound=_bound(operators),
        settings={"length": operators.length},
    )


def _bound(operators: Operators) -> int:
    if operators.kind == "attention":
        return operators.pattern.shape[0]
    if operators.kind == "lti":
        return operators.ssm.state_size
    return operators.heads or operators.channels


def spectrum_figure(spectra: dict[str, torch.Tensor], rtol: float) -> go.Figure:
    """``sigma_r / sigma_1`` against ``r`` (log scale), one line per layer, the tolerance dashed."""
    fig = go.Figure()
    for name, values in spectra.items():
        v = values.double().cpu().numpy()
        rel = v / v[0] if len(v) and v[0] > 0 else v
        rel = np.maximum(rel, 1e-300)
        fig.add_trace(
            go.Scatter(x=list(range(1, len(v) + 1)), y=rel, mode="lines+markers", name=name)
        )
    fig.add_hline(y=rtol, line_dash="dash", annotation_text=f"rtol {rtol:g}")
    fig.update_layout(
        title="Interaction spectrum (singular values of the stacked operators)",
        xaxis_title="index r",
        yaxis_title="sigma_r / sigma_1",
        yaxis_type="log",
        template="plotly_white",
    )
    return fig
