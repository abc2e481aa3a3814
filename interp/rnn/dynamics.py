"""Noise-driven dynamics of a bias-free ReLU RNN (Torre et al. 2025, arXiv 2510.25674).

The net is anything with ``weight_hh [H, H]``, ``weight_ih [H, I]`` and a readout (``readout``),
stepping ``h ← ReLU(W_hh h + W_in u)`` on noise ``u ~ N(0, σ² I)`` (:class:`~interp.rnn.hmm_net.
NoiseRNN`). Optional ``gains [.., H]`` multiply each neuron's activity after the ReLU (gain μ:
0 ablates a neuron, 1 leaves it, 2 excites it). Every analysis is one batched computation:

- :func:`residency_times`: from each state, ``n_continuations`` noisy continuations of up to
  ``horizon`` steps; the residency time is the number of steps until ``argmax(readout)`` differs
  from the state's own (``horizon`` when it never does: censored). Paper: 20 continuations of up
  to 50 steps from 1,000 states after 20 warm-up steps.
- :func:`zones`: mean residency < 2 → "kick" (transition) zone, 2–8 → "intermediate",
  > 8 with max output probability > 0.8 → "cluster" (else "unassigned").
- :func:`local_instability`: ``J(h, u) = diag(1[W_hh h + W_in u > 0]) W_hh`` (the ReLU
  Jacobian of the step taken from ``h``); the number of eigenvalues with ``|λ| > 1``.
- :func:`orbit_phase`: PCA of the states; the phase is the angle in the PC1–PC2 plane; per
  emitted symbol the circular mean phase and its resultant length; the return map
  ``(θ_t, θ_{t+1})``.
- :func:`kick_neurons`: each neuron's gain set to μ ∈ {0, 2} in turn, the output transition rate
  (fraction of steps whose argmax output differs from the previous step's) on the same noise;
  a neuron's *cut* is ``rate(μ=1) − rate(μ=0)``. Kick neurons: the neurons whose ablation cuts
  the rate by at least ``min_cut`` of the baseline (or the ``top_k`` largest cuts); control:
  ablating as many random neurons drawn from the others.
- :func:`switch_commitment`: the paper's backward look from each output switch to the step from
  which it is certain (every one of 100 noisy replays switches within < 3 steps), and the
  neurons unusually active there (weighted by their outgoing weights).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from interp.errors import InvalidArgumentError

ZONES = ("kick", "intermediate", "cluster", "unassigned")


def _check_net(net: object) -> None:
    for name in ("weight_hh", "weight_ih", "readout"):
        if not hasattr(net, name):
            raise InvalidArgumentError(
                f"{type(net).__name__} is not a noise-driven ReLU RNN (needs weight_hh, "
                "weight_ih and readout); build one with interp.rnn.NoiseRNN"
            )


def gain_step(net, h: Tensor, u: Tensor, gains: Tensor | None = None) -> Tensor:
    """``ReLU(W_hh h + W_in u) * gains`` (``gains`` broadcast against ``[B, H]``)."""
    out = torch.relu(h @ net.weight_hh.T + u @ net.weight_ih.T)
    return out if gains is None else out * gains


def run_noise(net, h0: Tensor, noise: Tensor, gains: Tensor | None = None) -> Tensor:
    """Every state on noise ``[B, T, I]`` from ``h0 [B, H]``: ``[B, T, H]``."""
    h, states = h0, []
    for t in range(noise.shape[1]):
        h = gain_step(net, h, noise[:, t], gains)
        states.append(h)
    return torch.stack(states, 1)


def symbols(net, states: Tensor) -> Tensor:
    """``argmax(readout(h))`` per state."""
    return net.readout(states).argmax(-1)


def _dtype(net) -> torch.dtype:
    return net.weight_hh.dtype


def noisy_trajectory(
    net,
    steps: int,
    *,
    generator: torch.Generator,
    warmup: int = 20,
    noise_scale: float = 1.0,
    batch: int = 1,
    h0: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``(states [B, steps, H], noise [B, steps, I])`` after ``warmup`` discarded steps.

    ``noise[:, t]`` is the input that produced ``states[:, t]``; ``h0`` defaults to zeros.
    """
    _check_net(net)
    if steps < 1 or warmup < 0 or noise_scale < 0:
        raise InvalidArgumentError(
            f"need steps >= 1, warmup >= 0, noise_scale >= 0; got {steps}, {warmup}, {noise_scale}"
        )
    size, inputs = net.weight_hh.shape[0], net.weight_ih.shape[1]
    h = torch.zeros(batch, size, dtype=_dtype(net)) if h0 is None else h0.expand(batch, -1)
    noise = noise_scale * torch.randn(
        batch, warmup + steps, inputs, generator=generator, dtype=_dtype(net)
    )
    with torch.no_grad():
        states = run_noise(net, h, noise)
    return states[:, warmup:], noise[:, warmup:]


def residency_times(
    net,
    states: Tensor,
    *,
    n_continuations: int = 20,
    horizon: int = 50,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
    noise_scale: float = 1.0,
) -> Tensor:
    """Steps until the argmax output changes, ``[N, n_continuations]`` (long), all at once.

    All ``N · R`` continuations step together; each one leaves the batch as soon as its output
    changes, so the work is proportional to the residency times. ``noise`` (``[N, R, horizon,
    I]``) fixes the continuations' inputs; otherwise they are drawn step by step from
    ``generator`` (``noise_scale`` · N(0, 1)), for the continuations still running.
    """
    _check_net(net)
    n, size = states.shape
    if noise is not None:
        n_continuations, horizon = noise.shape[1], noise.shape[2]
    elif generator is None:
        raise InvalidArgumentError("pass generator= or noise= for the continuations")
    if n_continuations < 1 or horizon < 1:
        raise InvalidArgumentError("need n_continuations >= 1 and horizon >= 1")
    inputs = net.weight_ih.shape[1]
    flat_noise = None if noise is None else noise.reshape(n * n_continuations, horizon, inputs)
    with torch.no_grad():
        h = states.repeat_interleave(n_continuations, 0)
        start = symbols(net, h)
        result = torch.full((h.shape[0],), horizon, dtype=torch.long)
        alive = torch.arange(h.shape[0])  # continuations whose output has not changed yet
        for t in range(horizon):
            if noise is None:
                u = noise_scale * torch.randn(
                    len(alive), inputs, generator=generator, dtype=h.dtype
                )
            else:
                u = flat_noise[alive, t]
            h = gain_step(net, h, u)
            changed = symbols(net, h) != start
            result[alive[changed]] = t + 1
            keep = ~changed  # drop finished continuations: the work follows the residency times
            alive, h, start = alive[keep], h[keep], start[keep]
            if not len(alive):
                break
    return result.view(n, n_continuations)


def residency_times_loop(net, states: Tensor, noise: Tensor) -> Tensor:
    """The per-state reference of :func:`residency_times` (one state at a time; same numbers)."""
    rows = []
    for k in range(states.shape[0]):
        rows.append(residency_times(net, states[k : k + 1], noise=noise[k : k + 1]))
    return torch.cat(rows)


def max_probability(net, states: Tensor) -> Tensor:
    """Largest softmax probability of the readout per state."""
    with torch.no_grad():
        return torch.softmax(net.readout(states), -1).max(-1).values


def zones(
    residency: Tensor,
    max_prob: Tensor,
    *,
    kick_below: float = 2.0,
    cluster_above: float = 8.0,
    cluster_prob: float = 0.8,
) -> Tensor:
    """Zone index per state (into :data:`ZONES`) from mean residency and max output probability."""
    mean = residency.double().mean(-1) if residency.ndim == 2 else residency.double()
    zone = torch.full(mean.shape, 3, dtype=torch.long)
    zone[mean > cluster_above] = 3
    zone[(mean > cluster_above) & (max_prob > cluster_prob)] = 2
    zone[(mean >= kick_below) & (mean <= cluster_above)] = 1
    zone[mean < kick_below] = 0
    return zone


def local_instability(
    net, states: Tensor, inputs: Tensor, *, tol: float = 1e-6
) -> tuple[Tensor, Tensor]:
    """``(n_unstable [N], spectral_radius [N])`` of ``J = diag(1[W_hh h + W_in u > 0]) W_hh``.

    ``inputs[k]`` is the noise of the step taken from ``states[k]``; a mode counts as unstable
    when ``|λ| > 1 + tol`` (so exactly marginal modes, ``|λ| = 1`` up to rounding, do not).
    """
    with torch.no_grad():
        active = (states @ net.weight_hh.T + inputs @ net.weight_ih.T > 0).to(states.dtype)
        jac = active.unsqueeze(-1) * net.weight_hh
        moduli = torch.linalg.eigvals(jac).abs()
    return (moduli > 1 + tol).sum(-1), moduli.max(-1).values


def pca(states: Tensor, k: int = 3) -> tuple[Tensor, Tensor, Tensor]:
    """``(mean [H], basis [H, k], explained variance ratio [k])`` of ``states [N, H]``."""
    x = states.double()
    mean = x.mean(0)
    _, s, vt = torch.linalg.svd(x - mean, full_matrices=False)
    var = s**2
    k = min(k, vt.shape[0])
    return mean, vt[:k].T, var[:k] / var.sum().clamp(min=1e-300)


def orbit_phase(projected: Tensor, emitted: Tensor, n_outputs: int) -> dict:
    """Phase ``θ = atan2(PC2, PC1)`` and how it tracks the emitted symbol.

    Returns ``angles [N]``, per symbol the circular mean ``mean_angle [O]`` and resultant length
    ``concentration [O]`` (1 = one phase per symbol), ``decoding_accuracy`` (symbol = the one whose
    mean phase is closest) and ``symbol_order`` (symbols sorted by mean phase).
    """
    angles = torch.atan2(projected[:, 1], projected[:, 0])
    mean_angle = torch.full((n_outputs,), float("nan"), dtype=torch.float64)
    concentration = torch.zeros(n_outputs, dtype=torch.float64)
    for o in range(n_outputs):
        picked = angles[emitted == o]
        if picked.numel():
            vector = torch.complex(torch.cos(picked), torch.sin(picked)).mean()
            mean_angle[o], concentration[o] = torch.angle(vector), vector.abs()
    seen = ~torch.isnan(mean_angle)
    distance = torch.angle(torch.exp(1j * (angles[:, None] - mean_angle[None]))).abs()
    distance[:, ~seen] = float("inf")
    decoded = distance.argmin(-1)
    order = [int(o) for o in torch.argsort(mean_angle[seen]).tolist()]
    labels = torch.nonzero(seen).view(-1).tolist()
    return {
        "angles": angles,
        "mean_angle": mean_angle,
        "concentration": concentration,
        "decoding_accuracy": float((decoded == emitted).double().mean()),
        "symbol_order": [labels[o] for o in order],
    }


def transition_rates(
    net, starts: Tensor, gains: Tensor, *, steps: int, generator: torch.Generator
) -> Tensor:
    """Output transition rate under each gain vector ``gains [G, H]``: ``[G]``.

    All ``G`` conditions run from the same ``starts [N, H]`` on the same noise (common random
    numbers), as one batch of ``G · N`` trajectories.
    """
    g, n = gains.shape[0], starts.shape[0]
    inputs = net.weight_ih.shape[1]
    with torch.no_grad():
        gain = gains.repeat_interleave(n, 0).to(starts.dtype)
        h = starts.repeat(g, 1) * gain
        previous = symbols(net, h)
        switches = torch.zeros(g * n, dtype=torch.float64)
        for _ in range(steps):
            u = torch.randn(n, inputs, generator=generator, dtype=starts.dtype).repeat(g, 1)
            h = gain_step(net, h, u, gain)
            current = symbols(net, h)
            switches += (current != previous).double()
            previous = current
    return (switches / steps).view(g, n).mean(-1)


def kick_neurons(
    net,
    starts: Tensor,
    *,
    generator: torch.Generator,
    steps: int = 100,
    gains: tuple[float, ...] = (0.0, 2.0),
    top_k: int | None = None,
    min_cut: float = 0.2,
    n_random: int = 20,
) -> dict:
    """Rank neurons by how much ablating them cuts the output transition rate (see module doc).

    Returns ``rates [len(gains), H]`` (each neuron's gain set to each μ), ``baseline``, ``cut``
    (``baseline − rate(μ=0)`` per neuron), ``ranking`` (neurons by decreasing cut), ``kick``
    (the selected neurons), ``ablated_rate`` (all kick neurons at μ=0 together) and
    ``random_rates [n_random]`` (as many random non-kick neurons ablated together).
    """
    if 0.0 not in gains:
        raise InvalidArgumentError(f"gains must include 0 (the ablation), got {gains}")
    size = net.weight_hh.shape[0]
    dtype = starts.dtype
    eye = torch.eye(size, dtype=dtype)
    conditions = [torch.ones(1, size, dtype=dtype)]
    for mu in gains:
        conditions.append(1 + (mu - 1) * eye)
    all_rates = transition_rates(
        net, starts, torch.cat(conditions), steps=steps, generator=generator
    )
    baseline = float(all_rates[0])
    rates = all_rates[1:].view(len(gains), size)
    cut = baseline - rates[gains.index(0.0)]
    ranking = torch.argsort(cut, descending=True, stable=True)
    if top_k is None:
        kick = ranking[cut[ranking] >= min_cut * baseline] if baseline > 0 else ranking[:0]
    else:
        kick = ranking[:top_k]
    kick = torch.sort(kick).values
    others = np.setdiff1d(np.arange(size), kick.numpy())
    picks = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=generator)))
    masks = [torch.ones(size, dtype=dtype)]
    masks[0][kick] = 0
    for _ in range(n_random):
        chosen = picks.choice(others, size=min(len(kick), len(others)), replace=False)
        mask = torch.ones(size, dtype=dtype)
        mask[torch.as_tensor(chosen, dtype=torch.long)] = 0
        masks.append(mask)
    ablations = transition_rates(net, starts, torch.stack(masks), steps=steps, generator=generator)
    return {
        "gains": list(gains),
        "rates": rates,
        "baseline": baseline,
        "cut": cut,
        "ranking": ranking,
        "kick": kick,
        "ablated_rate": float(ablations[0]),
        "random_rates": ablations[1:],
    }


def switch_commitment(
    net,
    states: Tensor,
    *,
    generator: torch.Generator,
    n_replays: int = 100,
    max_back: int = 5,
    within: int = 3,
) -> dict:
    """Where each output switch of a trajectory becomes deterministic (the paper's backward look).

    For every switch (``argmax`` output of ``states[t]`` differs from ``states[t − 1]``) and every
    lag ``ℓ = 1..max_back``, ``n_replays`` noisy replays start from ``states[t − ℓ]``; the switch
    is *committed* at lag ℓ when every replay's output changes in fewer than ``within`` steps. The
    commitment lag is the largest ℓ with all lags 1..ℓ committed (0: never). All replays of all
    switches run as one :func:`residency_times` batch.

    Returns ``switch_steps [S]``, ``lags [S]`` and ``drive [H]``: per neuron, its mean activity
    at the commitment states minus its mean over the trajectory, times the norm of its outgoing
    weights (``‖W_hh[:, i]‖``) — the neurons that are unusually active, and can move the state,
    where a switch becomes certain.
    """
    emitted = symbols(net, states)
    switch_steps = torch.nonzero(emitted[1:] != emitted[:-1]).view(-1) + 1
    lags = torch.arange(1, max_back + 1)
    starts = switch_steps.view(-1, 1) - lags.view(1, -1)  # [S, L]
    valid = starts >= 0
    index = starts.clamp(min=0).reshape(-1)
    residency = residency_times(
        net, states[index], n_continuations=n_replays, horizon=within, generator=generator
    )
    committed = ((residency < within).all(-1).view(starts.shape)) & valid
    run = torch.cumprod(committed.long(), dim=1)  # contiguous from lag 1
    commit_lag = run.sum(1)
    size = states.shape[-1]
    drive = torch.zeros(size, dtype=torch.float64)
    picked = commit_lag > 0
    if picked.any():
        commit_states = states[switch_steps[picked] - commit_lag[picked]].double()
        outgoing = net.weight_hh.detach().double().norm(dim=0)
        drive = (commit_states.mean(0) - states.double().mean(0)) * outgoing
    return {"switch_steps": switch_steps, "lags": commit_lag, "drive": drive}
