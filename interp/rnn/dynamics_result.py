"""The :class:`NoiseDynamics` result: what a noise-driven RNN does between and during transitions."""

from __future__ import annotations

import dataclasses

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor

from interp import __version__
from interp.results import Result
from interp.rnn.dynamics import ZONES

ZONE_COLOURS = {"kick": "#d73027", "intermediate": "#fdae61", "cluster": "#1a9850"}
ZONE_COLOURS["unassigned"] = "#999999"
SYMBOL_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")


@dataclasses.dataclass
class NoiseDynamics(Result):
    """Analyses of one noisy trajectory of a bias-free ReLU RNN (see :mod:`interp.rnn.dynamics`).

    Row ``t`` of the per-state arrays describes ``states[t]``: the symbol it emits (argmax
    readout), its PCA projection and phase, its residency times (one per continuation), its
    largest output probability, its zone (index into :data:`~interp.rnn.dynamics.ZONES`) and the
    number of unstable eigenvalues of the step's ReLU Jacobian. ``fixed_points`` summarises the
    zero-input fixed points (:func:`~interp.rnn.fixed_points.find_fixed_points`); ``kick`` the
    gain-change screen (``kick_rates [len(gains), H]``, ``kick_cut [H]``); ``commitment`` the
    backward look from each output switch (:func:`~interp.rnn.dynamics.switch_commitment`).
    """

    states: Tensor  # [T, H]
    emitted: Tensor  # [T] long
    projected: Tensor  # [T, 3]
    pca_mean: Tensor  # [H]
    pca_basis: Tensor  # [H, 3]
    explained: Tensor  # [3]
    angles: Tensor  # [T]
    residency: Tensor  # [T, R] long
    max_prob: Tensor  # [T]
    zone: Tensor  # [T] long
    n_unstable: Tensor  # [T] long
    spectral_radius: Tensor  # [T]
    level_projections: dict  # noise level -> [T', 3] projected trajectory
    fixed_point_states: Tensor  # [K, H]
    kick_rates: Tensor  # [len(gains), H]
    kick_cut: Tensor  # [H]
    random_rates: Tensor  # [n_random]
    commitment_drive: Tensor  # [H] activity at commitment states x outgoing weight norm
    phase: dict
    zone_summary: dict
    fixed_points: dict
    kick: dict
    commitment: dict
    settings: dict
    version: str = __version__

    def table(self) -> str:
        fp, k, ph = self.fixed_points, self.kick, self.phase
        lines = [
            f"zero-input fixed points: {fp['n']} ({', '.join(fp['classes']) or 'none'}); "
            f"norms {', '.join(f'{v:.2g}' for v in fp['norms'])}; "
            f"largest |λ| {', '.join(f'{v:.3f}' for v in fp['max_moduli'])}",
            f"without input, {fp['collapsed_fraction']:.1%} of the visited states decay below 1e-6 "
            f"of their norm in {fp['collapse_steps']} steps (largest final norm "
            f"{fp['largest_final_norm']:.2g})",
            f"phase: decodes the emitted symbol {ph['decoding_accuracy']:.3f}; symbols by phase "
            f"{ph['symbol_order']}; concentration {[round(c, 3) for c in ph['concentration']]}",
            f"{'zone':>12} {'states':>7} {'residency':>10} {'unstable':>9} {'any>1':>6}",
        ]
        for name in ZONES:
            z = self.zone_summary[name]
            cells = [
                "-" if z[key] is None else f"{z[key]:.2f}"
                for key in ("mean_residency", "mean_unstable", "fraction_unstable")
            ]
            lines.append(f"{name:>12} {z['count']:>7} {cells[0]:>10} {cells[1]:>9} {cells[2]:>6}")
        controls = self.random_rates.double()
        lines += [
            f"transition rate {k['baseline']:.4f}; kick neurons {k['kick']} ("
            + (
                f"the {self.settings['top_k']} largest cuts"
                if self.settings.get("top_k")
                else f"cut >= {self.settings['min_cut']:.0%} of it when ablated"
            )
            + ")",
            f"ablating them: rate {k['ablated_rate']:.4f}; {len(controls)} random sets of "
            f"{len(k['kick'])} others: {float(controls.mean()):.4f} ± {float(controls.std()):.4f}",
        ]
        c = self.commitment
        lines.append(
            f"switches: {c['n_switches']}, certain (all {self.settings['n_replays']} replays switch "
            f"in < 3 steps) at lag >= 1 for {c['committed']}, mean lag {c['mean_lag']:.2f}; "
            f"neurons driving them {c['top_drive']} (shared with the kick neurons: {c['overlap']})"
        )
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        """The state space: the trajectory in PC1–PC2 coloured by emitted symbol, other noise
        levels, and the zero-input fixed points."""
        fig = go.Figure()
        xy = self.projected.numpy()
        emitted = self.emitted.numpy()
        for level, proj in self.level_projections.items():
            p = proj.numpy()
            fig.add_trace(
                go.Scatter(x=p[:, 0], y=p[:, 1], mode="lines", name=f"noise ×{level}", opacity=0.35)
            )
        for o in np.unique(emitted):
            pick = emitted == o
            fig.add_trace(
                go.Scatter(
                    x=xy[pick, 0],
                    y=xy[pick, 1],
                    mode="markers",
                    marker={"size": 4, "color": SYMBOL_COLOURS[int(o) % len(SYMBOL_COLOURS)]},
                    name=f"emits {int(o)}",
                )
            )
        if len(self.fixed_point_states):
            fp = (self.fixed_point_states.double() - self.pca_mean) @ self.pca_basis
            fig.add_trace(
                go.Scatter(
                    x=fp[:, 0].numpy(),
                    y=fp[:, 1].numpy(),
                    mode="markers",
                    marker={"size": 14, "symbol": "x", "color": "black"},
                    name="fixed point (no input)",
                )
            )
        ev = self.explained.tolist()
        fig.update_layout(
            title="Noise-driven state space (top principal components)",
            xaxis_title=f"PC1 ({ev[0]:.0%})",
            yaxis_title=f"PC2 ({ev[1]:.0%})" if len(ev) > 1 else "PC2",
            template="plotly_white",
        )
        return fig

    def figures(self) -> dict[str, go.Figure]:
        """Every figure: state space, phase, return map, residency, instability, kick neurons."""
        return {
            "state_space": self.figure(),
            "phase": self._phase_figure(),
            "residency": self._residency_figure(),
            "kick": self._kick_figure(),
        }

    def _phase_figure(self) -> go.Figure:
        angles = self.angles.numpy()
        fig = make_subplots(rows=1, cols=2, subplot_titles=("phase over time", "return map"))
        colours = [SYMBOL_COLOURS[int(o) % len(SYMBOL_COLOURS)] for o in self.emitted.tolist()]
        fig.add_trace(
            go.Scatter(y=angles, mode="markers", marker={"size": 3, "color": colours}, name="θ_t"),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=angles[:-1],
                y=angles[1:],
                mode="markers",
                marker={"size": 3, "color": colours[:-1]},
                name="(θ_t, θ_t+1)",
            ),
            row=1,
            col=2,
        )
        fig.update_xaxes(title_text="step", row=1, col=1)
        fig.update_xaxes(title_text="θ_t", row=1, col=2)
        fig.update_yaxes(title_text="θ (rad)", row=1, col=1)
        fig.update_yaxes(title_text="θ_t+1", row=1, col=2)
        fig.update_layout(title="Orbit phase (coloured by emitted symbol)", template="plotly_white")
        return fig

    def _residency_figure(self) -> go.Figure:
        fig = make_subplots(
            rows=1, cols=2, subplot_titles=("mean residency per state", "unstable modes per zone")
        )
        mean = self.residency.double().mean(-1).numpy()
        zone = self.zone.numpy()
        for index, name in enumerate(ZONES):
            pick = zone == index
            if pick.any():
                fig.add_trace(
                    go.Histogram(x=mean[pick], name=name, marker_color=ZONE_COLOURS[name]),
                    row=1,
                    col=1,
                )
        summary = [self.zone_summary[name]["mean_unstable"] or 0.0 for name in ZONES]
        fig.add_trace(
            go.Bar(
                x=list(ZONES),
                y=summary,
                marker_color=[ZONE_COLOURS[n] for n in ZONES],
                showlegend=False,
            ),
            row=1,
            col=2,
        )
        fig.update_xaxes(title_text="steps until the output changes", row=1, col=1)
        fig.update_yaxes(title_text="mean #|λ|>1", row=1, col=2)
        fig.update_layout(
            title="Residency zones and local instability", barmode="stack", template="plotly_white"
        )
        return fig

    def _kick_figure(self) -> go.Figure:
        cut = self.kick_cut.double().numpy()
        order = np.argsort(-cut)
        kick = set(self.kick["kick"])
        fig = make_subplots(
            rows=1,
            cols=2,
            subplot_titles=("rate cut by ablating each neuron", "ablation vs control"),
        )
        fig.add_trace(
            go.Bar(
                x=[str(i) for i in order],
                y=cut[order],
                marker_color=["#d73027" if i in kick else "#999999" for i in order],
                name="cut",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Box(y=self.random_rates.double().numpy(), name="random neurons", boxpoints="all"),
            row=1,
            col=2,
        )
        fig.add_trace(
            go.Scatter(
                x=["kick neurons"],
                y=[self.kick["ablated_rate"]],
                mode="markers",
                marker={"size": 12, "color": "#d73027"},
                name="kick neurons ablated",
            ),
            row=1,
            col=2,
        )
        fig.add_hline(y=self.kick["baseline"], line_dash="dot", row=1, col=2)
        fig.update_xaxes(title_text="neuron (by cut)", type="category", row=1, col=1)
        fig.update_yaxes(title_text="transition rate", row=1, col=2)
        fig.update_layout(title="Kick neurons", template="plotly_white")
        return fig
