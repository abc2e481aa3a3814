"""One call that runs every noise-dynamics analysis of Torre et al. 2025 on a trained net."""

from __future__ import annotations

import copy
import time

import torch
from torch import Tensor

from interp.errors import InvalidArgumentError
from interp.rnn import dynamics as D
from interp.rnn.dynamics_result import NoiseDynamics
from interp.rnn.fixed_points import find_fixed_points


def _zone_summary(zone: Tensor, residency: Tensor, n_unstable: Tensor) -> dict:
    mean = residency.double().mean(-1)
    summary = {}
    for index, name in enumerate(D.ZONES):
        pick = zone == index
        count = int(pick.sum())
        summary[name] = {
            "count": count,
            "mean_residency": float(mean[pick].mean()) if count else None,
            "mean_unstable": float(n_unstable[pick].double().mean()) if count else None,
            "fraction_unstable": float((n_unstable[pick] > 0).double().mean()) if count else None,
        }
    return summary


def _commitment_summary(commit: dict, kick: list[int]) -> dict:
    lags = commit["lags"]
    count = max(len(kick), 1)
    top = torch.argsort(commit["drive"], descending=True)[:count].tolist()
    return {
        "n_switches": len(lags),
        "committed": int((lags > 0).sum()),
        "mean_lag": float(lags.double().mean()) if len(lags) else float("nan"),
        "lag_counts": torch.bincount(lags).tolist() if len(lags) else [],
        "top_drive": sorted(int(i) for i in top),
        "overlap": len(set(top) & set(kick)),
    }


def _fixed_points(
    net, states: Tensor, n_starts: int, seed: int, collapse_steps: int = 200
) -> tuple[dict, Tensor]:
    """Zero-input fixed points, and whether every visited state decays onto one without input."""
    inputs = torch.zeros(net.weight_ih.shape[1], dtype=torch.float64)
    points = find_fixed_points(
        net, inputs=inputs, initial_states=states, n_starts=n_starts, seed=seed, noise=0.5
    )
    moduli = points.eigenvalues.abs()
    with torch.no_grad():  # the paper: without input the activity collapses to the fixed point
        h = states.clone()
        zero = torch.zeros(len(h), net.weight_ih.shape[1], dtype=h.dtype)
        for _ in range(collapse_steps):
            h = net.step(h, zero)
        ratio = h.norm(dim=-1) / states.norm(dim=-1).clamp(min=1e-300)
    summary = {
        "collapse_steps": collapse_steps,
        "collapsed_fraction": float((ratio < 1e-6).double().mean()),
        "largest_final_norm": float(h.norm(dim=-1).max()),
        "n": len(points),
        "classes": list(points.classes),
        "max_moduli": [float(m) for m in moduli[:, 0]] if len(points) else [],
        "norms": [float(v) for v in points.points.norm(dim=-1)],
        "counts": dict(points.counts),
    }
    return summary, points.points.to(states.dtype)


def analyze_noise_rnn(
    net,
    *,
    steps: int = 1000,
    warmup: int = 20,
    n_continuations: int = 20,
    horizon: int = 50,
    noise_levels: tuple[float, ...] = (0.5, 2.0),
    kick_starts: int = 64,
    kick_steps: int = 100,
    top_k: int | None = None,
    min_cut: float = 0.2,
    n_random: int = 20,
    n_replays: int = 100,
    max_back: int = 5,
    fixed_point_starts: int = 256,
    h0: Tensor | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> NoiseDynamics:
    """Fixed points without input, the noise-driven orbit and its phase, residency zones, local
    instability per zone and kick neurons, for one noisy trajectory of ``steps`` states.

    The paper's settings are the defaults (20 warm-up steps, 1,000 states, 20 continuations of up
    to 50 steps). ``kick_starts`` states of the trajectory start the gain screen, which runs
    ``kick_steps`` steps per condition. ``h0`` (default zeros) starts the trajectory.
    """
    D._check_net(net)
    if steps < 2 or kick_starts < 1 or kick_steps < 1:
        raise InvalidArgumentError("need steps >= 2, kick_starts >= 1 and kick_steps >= 1")
    start = time.perf_counter()
    if isinstance(net, torch.nn.Module):
        net = copy.deepcopy(net).to(dtype).eval()
    generator = torch.Generator().manual_seed(seed)
    h0 = None if h0 is None else h0.to(dtype).view(1, -1)
    states, noise = D.noisy_trajectory(net, steps + 1, generator=generator, warmup=warmup, h0=h0)
    states, next_noise = states[0, :-1], noise[0, 1:]
    with torch.no_grad():
        emitted = D.symbols(net, states)
        n_outputs = int(net.readout(states[:1]).shape[-1])
    mean, basis, explained = D.pca(states)
    projected = (states.double() - mean) @ basis
    phase = D.orbit_phase(projected, emitted, n_outputs)
    residency = D.residency_times(
        net, states, n_continuations=n_continuations, horizon=horizon, generator=generator
    )
    max_prob = D.max_probability(net, states)
    zone = D.zones(residency, max_prob)
    n_unstable, radius = D.local_instability(net, states, next_noise)
    levels = {}
    for level in noise_levels:
        other, _ = D.noisy_trajectory(
            net, min(steps, 300), generator=generator, warmup=warmup, noise_scale=level, h0=h0
        )
        levels[f"{level:g}"] = (other[0].double() - mean) @ basis
    fixed, fixed_states = _fixed_points(net, states, fixed_point_starts, seed)
    picks = torch.randperm(steps, generator=generator)[:kick_starts]
    kick = D.kick_neurons(
        net,
        states[picks],
        generator=generator,
        steps=kick_steps,
        top_k=top_k,
        min_cut=min_cut,
        n_random=n_random,
    )
    commit = D.switch_commitment(
        net, states, generator=generator, n_replays=n_replays, max_back=max_back
    )
    settings = {
        "n_replays": n_replays,
        "max_back": max_back,
        "steps": steps,
        "warmup": warmup,
        "n_continuations": n_continuations,
        "horizon": horizon,
        "noise_levels": list(noise_levels),
        "kick_starts": kick_starts,
        "kick_steps": kick_steps,
        "top_k": top_k,
        "min_cut": min_cut,
        "n_random": n_random,
        "fixed_point_starts": fixed_point_starts,
        "zones": {"kick_below": 2.0, "cluster_above": 8.0, "cluster_prob": 0.8},
        "seed": seed,
        "dtype": str(dtype),
        "net": getattr(net, "config", type(net).__name__),
        "seconds": time.perf_counter() - start,
    }
    phase_summary = {
        "mean_angle": [float(v) for v in phase["mean_angle"]],
        "concentration": [float(v) for v in phase["concentration"]],
        "decoding_accuracy": phase["decoding_accuracy"],
        "symbol_order": phase["symbol_order"],
    }
    kick_summary = {
        "gains": kick["gains"],
        "baseline": kick["baseline"],
        "kick": [int(i) for i in kick["kick"]],
        "ranking": [int(i) for i in kick["ranking"]],
        "ablated_rate": kick["ablated_rate"],
    }
    return NoiseDynamics(
        states=states,
        emitted=emitted,
        projected=projected,
        pca_mean=mean,
        pca_basis=basis,
        explained=explained,
        angles=phase["angles"],
        residency=residency,
        max_prob=max_prob,
        zone=zone,
        n_unstable=n_unstable,
        spectral_radius=radius,
        level_projections=levels,
        fixed_point_states=fixed_states,
        kick_rates=kick["rates"],
        kick_cut=kick["cut"],
        random_rates=kick["random_rates"],
        commitment_drive=commit["drive"],
        phase=phase_summary,
        zone_summary=_zone_summary(zone, residency, n_unstable),
        fixed_points=fixed,
        kick=kick_summary,
        commitment=_commitment_summary(commit, kick_summary["kick"]),
        settings=settings,
    )
