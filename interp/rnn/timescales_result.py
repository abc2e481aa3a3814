"""The :class:`Timescales` result: single-neuron τ, network τ_net and Jacobian timescales of a net."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from interp import __version__
from interp.results import Result
from interp.rnn.tasks import make_task
from interp.rnn.timescales import LAGS, jacobian_timescales, network_timescales


@dataclasses.dataclass
class Timescales(Result):
    """Timescales of one net on one task (Khajehabdollahi et al. 2023).

    ``tau`` [H]: the single-neuron time constants (NaN for nets without them); ``tau_net`` [H]:
    per neuron, from the autocorrelation ``autocorrelation`` [31, H] under task-statistics input
    (``fit_models``: "single" / "double" / "none" for a silent neuron); ``jacobian_tau`` [K]: the
    slowest ``−1/log|λ|`` at each zero-input fixed point (``fixed_point_classes``).
    ``curriculum`` summarises the training that produced the net, when known.
    """

    task: str
    n: int
    tau: Tensor
    tau_net: Tensor
    fit_models: list
    autocorrelation: Tensor
    jacobian_tau: Tensor
    fixed_point_classes: list
    curriculum: dict
    settings: dict
    version: str = __version__

    def summary(self) -> dict:
        """Medians over neurons (finite values only) and the slowest Jacobian timescale."""
        tau_net = self.tau_net.double()
        finite = tau_net[torch.isfinite(tau_net)]
        stable = [
            float(t)
            for t, c in zip(self.jacobian_tau.tolist(), self.fixed_point_classes, strict=True)
            if c == "stable"
        ]
        return {
            "median_tau": float(self.tau.double().nanmedian()),
            "mean_tau": float(self.tau.double().nanmean()),
            "median_tau_net": float(finite.median()) if len(finite) else float("nan"),
            "mean_tau_net": float(finite.mean()) if len(finite) else float("nan"),
            "silent_neurons": int((~torch.isfinite(tau_net)).sum()),
            "double_fits": sum(m == "double" for m in self.fit_models),
            "slowest_jacobian_tau": max(stable) if stable else float("nan"),
        }

    def table(self) -> str:
        s = self.summary()
        lines = [
            f"{self.task} N={self.n}: τ median {s['median_tau']:.3f} (mean {s['mean_tau']:.3f}); "
            f"τ_net median {s['median_tau_net']:.3f} (mean {s['mean_tau_net']:.3f}); "
            f"{s['double_fits']} double-exponential fits, {s['silent_neurons']} silent neurons",
            f"zero-input fixed points: {len(self.fixed_point_classes)} "
            f"({', '.join(self.fixed_point_classes) or 'none'}); slowest stable Jacobian "
            f"timescale {s['slowest_jacobian_tau']:.3f} steps",
        ]
        if self.curriculum:
            c = self.curriculum
            lines.append(
                f"curriculum {c.get('curriculum')}: largest N solved {c.get('max_n')}, solved at "
                f"epochs {c.get('solved')}"
            )
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        fig = make_subplots(
            rows=1, cols=2, subplot_titles=("τ vs τ_net per neuron", "mean autocorrelation")
        )
        fig.add_trace(
            go.Scatter(x=self.tau.numpy(), y=self.tau_net.numpy(), mode="markers", name="neurons"),
            row=1,
            col=1,
        )
        ac = self.autocorrelation.double().numpy()
        fig.add_trace(
            go.Scatter(y=np.nanmean(ac, axis=1), mode="lines+markers", name="AC (mean)"),
            row=1,
            col=2,
        )
        fig.update_xaxes(title_text="τ (parameter)", row=1, col=1)
        fig.update_yaxes(title_text="τ_net (autocorrelation fit)", type="log", row=1, col=1)
        fig.update_xaxes(title_text="lag (steps)", row=1, col=2)
        fig.update_layout(title=f"Timescales on {self.task} (N={self.n})", template="plotly_white")
        return fig


def analyze_timescales(
    net,
    task: str = "nparity",
    n: int = 2,
    *,
    steps: int = 100_000,
    burn_in: int = 500,
    trials: int = 10,
    fixed_point_starts: int = 128,
    seed: int = 0,
    curriculum: dict | None = None,
) -> Timescales:
    """τ (parameters), τ_net (autocorrelation fits) and zero-input Jacobian timescales of ``net``.

    The input has ``task``'s statistics (N-parity: bits with one ``p ~ U(0, 1)`` per trial).
    """
    start = time.perf_counter()
    task_obj = make_task(task, n=n)
    net = net.eval()
    measured = network_timescales(
        net, task_obj, steps=steps, burn_in=burn_in, trials=trials, seed=seed
    )
    points = jacobian_timescales(
        net,
        inputs=torch.zeros(task_obj.input_size),
        task=task_obj,
        n_starts=fixed_point_starts,
        seed=seed,
    )
    moduli = points.eigenvalues.abs()
    slowest = -1 / torch.log(moduli[:, 0]) if len(points) else torch.zeros(0)
    tau = getattr(net, "time_constants", None)
    size = measured["autocorrelation"].shape[1]
    return Timescales(
        task=task,
        n=n,
        tau=tau.detach().double() if tau is not None else torch.full((size,), float("nan")),
        tau_net=torch.as_tensor(measured["tau_net"]),
        fit_models=measured["model"],
        autocorrelation=torch.as_tensor(measured["autocorrelation"]),
        jacobian_tau=slowest.double(),
        fixed_point_classes=list(points.classes),
        curriculum=curriculum or {},
        settings={
            **measured["settings"],
            "lags": LAGS,
            "fixed_point_starts": fixed_point_starts,
            "net": getattr(net, "config", type(net).__name__),
            "seconds": time.perf_counter() - start,
        },
    )
