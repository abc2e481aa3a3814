"""Timescales a recurrent network builds (Khajehabdollahi et al. 2023, arXiv 2309.12927).

- Single-neuron τ: the parameters (:attr:`TimescaleRNN.time_constants`).
- Network-mediated τ_net: drive the net with input of the task's statistics for ``steps`` steps
  (paper: 10⁵ after 500 burn-in, 10 trials); per neuron the autocorrelation
  (:func:`autocorrelation`: FFT of the mean-subtracted, zero-padded activity, divided by the
  overlap count ``T − lag``, normalised by lag 0), averaged over trials; fit lags 0..30 with
  ``a·e^{−t/τ}`` and with ``a[c·e^{−t/τ1} + (1 − c)·e^{−t/τ2}]`` (``scipy.optimize.curve_fit``),
  keep the one with the lower ``AIC = 2k + n·log(RSS/n)``. τ_net of a neuron is the single τ, or
  the slower of τ1, τ2 when the double fit wins (our reading; the paper's text does not pin it).
- Jacobian timescales: ``−1/log|λ|`` of the eigenvalues of the step's Jacobian at the fixed
  points (:func:`~interp.rnn.fixed_points.find_fixed_points`) under a constant input.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.optimize import OptimizeWarning, curve_fit
from torch import Tensor

from interp.errors import InvalidArgumentError
from interp.rnn.fixed_points import find_fixed_points

LAGS = 31  # lags 0..30


def autocorrelation(x: np.ndarray, max_lag: int = LAGS - 1) -> np.ndarray:
    """Autocorrelation along axis 0 of ``x [T, ...]`` for lags ``0..max_lag``: ``[max_lag+1, ...]``.

    Mean-subtracted, zero-padded FFT; each lag divided by its overlap count ``T − lag``, then by
    lag 0. A constant series gives NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    steps = x.shape[0]
    if steps <= max_lag:
        raise InvalidArgumentError(f"need more than {max_lag} steps, got {steps}")
    centred = x - x.mean(0)
    size = 1 << int(np.ceil(np.log2(2 * steps - 1)))
    spectrum = np.fft.rfft(centred, n=size, axis=0)
    raw = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=0)[: max_lag + 1]
    overlap = (steps - np.arange(max_lag + 1)).reshape(-1, *([1] * (x.ndim - 1)))
    raw = raw / overlap
    with np.errstate(invalid="ignore", divide="ignore"):
        return raw / raw[:1]


def _single(t, a, tau):
    return a * np.exp(-t / tau)


def _double(t, a, c, tau1, tau2):
    return a * (c * np.exp(-t / tau1) + (1 - c) * np.exp(-t / tau2))


def _aic(rss: float, n: int, k: int) -> float:
    return 2 * k + n * np.log(max(rss, 1e-300) / n)


def fit_timescale(ac: np.ndarray) -> dict:
    """Single vs double exponential fit of one autocorrelation (lags 0..len-1), chosen by AIC."""
    ac = np.asarray(ac, dtype=np.float64)
    t = np.arange(len(ac), dtype=np.float64)
    nan = {"tau_net": float("nan"), "model": "none", "tau": float("nan"), "taus": [], "aic": []}
    if not np.all(np.isfinite(ac)):
        return nan
    positive = ac[1] if len(ac) > 1 and ac[1] > 1e-3 else 0.5
    guess = float(np.clip(-1 / np.log(min(positive, 0.999)), 0.1, 1e3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            p1, _ = curve_fit(
                _single, t, ac, p0=[1.0, guess], bounds=([0, 1e-3], [2, 1e4]), maxfev=5000
            )
        except RuntimeError:
            return nan
        rss1 = float(((_single(t, *p1) - ac) ** 2).sum())
        try:
            p2, _ = curve_fit(
                _double,
                t,
                ac,
                p0=[1.0, 0.5, max(guess / 3, 0.05), guess * 2],
                bounds=([0, 0, 1e-3, 1e-3], [2, 1, 1e4, 1e4]),
                maxfev=10000,
            )
            rss2 = float(((_double(t, *p2) - ac) ** 2).sum())
        except RuntimeError:
            p2, rss2 = None, float("inf")
    n = len(ac)
    aic1, aic2 = _aic(rss1, n, 2), _aic(rss2, n, 4) if p2 is not None else float("inf")
    if aic2 < aic1:
        taus = sorted([float(p2[2]), float(p2[3])])
        return {"tau_net": taus[1], "model": "double", "tau": float(p1[1]), "taus": taus,
                "aic": [aic1, aic2]}  # fmt: skip
    return {"tau_net": float(p1[1]), "model": "single", "tau": float(p1[1]),
            "taus": [float(p1[1])], "aic": [aic1, aic2]}  # fmt: skip


def drive(net, inputs: Tensor, *, burn_in: int = 500, h0: Tensor | None = None) -> np.ndarray:
    """States of ``net`` on ``inputs [trials, burn_in + T, I]`` after the burn-in: ``[trials, T, H]``.

    Steps with the net's own ``step`` (any :class:`~interp.rnn.protocol.Recurrent`), batched
    over trials, stored as float32.
    """
    trials, total, _ = inputs.shape
    if total <= burn_in:
        raise InvalidArgumentError(f"inputs must be longer than burn_in={burn_in}, got {total}")
    with torch.no_grad():
        h = net.initial_state(trials) if h0 is None else h0
        out = np.empty((trials, total - burn_in, h.shape[-1]), dtype=np.float32)
        for t in range(total):
            h = net.step(h, inputs[:, t].to(h.dtype))
            if t >= burn_in:
                out[:, t - burn_in] = h.float().numpy()
    return out


def timescales_of_states(states: np.ndarray, max_lag: int = LAGS - 1) -> dict:
    """Per-neuron autocorrelation (mean over trials) and fits, from ``states [trials, T, H]``."""
    states = np.asarray(states)
    if states.ndim != 3:
        raise InvalidArgumentError(f"states must be [trials, time, neurons], got {states.shape}")
    acs = np.stack([autocorrelation(trial, max_lag) for trial in states])  # [trials, lags, H]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ac = np.nanmean(acs, axis=0) if np.isfinite(acs).any() else acs[0]
    fits = [fit_timescale(ac[:, k]) for k in range(ac.shape[1])]
    return {
        "autocorrelation": ac,  # [lags, H]
        "tau_net": np.array([f["tau_net"] for f in fits]),
        "model": [f["model"] for f in fits],
        "fits": fits,
    }


def network_timescales(
    net,
    task,
    *,
    steps: int = 100_000,
    burn_in: int = 500,
    trials: int = 10,
    seed: int = 0,
) -> dict:
    """τ_net per neuron under input with ``task``'s statistics (``task.inputs(trials, T, gen)``).

    One trial at a time (so memory stays ``T × H``); autocorrelations are averaged over trials.
    """
    if steps <= LAGS or trials < 1 or burn_in < 0:
        raise InvalidArgumentError(f"need steps > {LAGS}, trials >= 1, burn_in >= 0")
    generator = torch.Generator().manual_seed(seed)
    acs = []
    for _ in range(trials):
        inputs = task.inputs(1, burn_in + steps, generator)
        states = drive(net, inputs, burn_in=burn_in)
        acs.append(autocorrelation(states[0]))
        del states
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ac = np.nanmean(np.stack(acs), axis=0)
    fits = [fit_timescale(ac[:, k]) for k in range(ac.shape[1])]
    return {
        "autocorrelation": ac,
        "tau_net": np.array([f["tau_net"] for f in fits]),
        "model": [f["model"] for f in fits],
        "fits": fits,
        "settings": {"steps": steps, "burn_in": burn_in, "trials": trials, "seed": seed},
    }


def jacobian_timescales(net, *, inputs: Tensor, task=None, n_starts: int = 128, seed: int = 0):
    """Fixed points at constant ``inputs`` and ``−1/log|λ|`` of each one's Jacobian modes.

    Returns the :class:`~interp.rnn.fixed_points_result.FixedPoints` (its ``time_constants``
    ``[K, H]`` are these timescales) — starts from states visited on ``task``.
    """
    return find_fixed_points(net, inputs=inputs, task=task, n_starts=n_starts, seed=seed)
