"""What happens inside a Hugging Face Mamba / Mamba-2 mixer, as interp's hooks see it.

transformers computes the scan in one function (a sequential loop for Mamba on the torch path, the
chunked SSD algorithm for Mamba-2, or a CUDA kernel from ``mamba_ssm`` / the kernels hub) and
never exposes the per-token parameters or the state. Interp captures the mixer's input with a
forward hook and recomputes, from the mixer's own weights and with the same torch operations as
transformers' torch path, everything up to the scan: the gate ``z``, the scan input ``u`` (after
the causal convolution and activation, padding masked), ``Delta = softplus(dt + bias)`` (clamped
to Mamba-2's ``time_step_limit``), ``A = -exp(A_log)``, ``B`` and ``C``. On the torch path those
are bit for bit the values transformers' scan receives; with CUDA convolution kernels they agree
to the kernel's rounding. The state
``h_t = exp(Delta_t A) h_{t-1} + Delta_t B_t u_t`` and the scan output ``y_t = C_t . h_t + D u_t``
are computed by interp's sequential recurrence (float32 like transformers, float64 for a float64
model), so the state is the same on every path; the model's own scan output equals it to the
rounding of whichever path ran.

Shapes (``c`` = intermediate channels, ``N`` = state size, ``H``/``P``/``G`` = Mamba-2 heads, head
size and groups): Mamba: ``delta [b, t, c]``, ``log_abar``/``bbar``/``state [b, t, c, N]``,
``B``/``C [b, t, N]``; Mamba-2: ``delta``/``log_abar [b, t, H]``, ``B``/``C [b, t, G, N]``,
``bbar [b, t, H, N]``, ``state [b, t, H, P, N]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Hooks inside the mixer, in the order they are computed; the last three are [..., c, N]-sized.
MIXER_HOOKS = (
    "mixer.hook_in",
    "mixer.hook_gate",
    "mixer.hook_x",
    "mixer.hook_delta",
    "mixer.hook_B",
    "mixer.hook_C",
    "mixer.hook_log_abar",
    "mixer.hook_bbar",
    "mixer.hook_state",
    "mixer.hook_y",
)
STATE_HOOKS = ("mixer.hook_log_abar", "mixer.hook_bbar", "mixer.hook_state")
RECOMPUTED = MIXER_HOOKS[1:]  # everything but the mixer input is interp's recomputation


def _mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return (x * mask[:, :, None]).to(x.dtype) if mask is not None else x


def _conv(mixer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The causal depthwise convolution and activation on ``x [b, c, t]`` (transformers' torch
    ``causal_conv1d_fn``)."""
    conv = mixer.conv1d
    out = F.conv1d(
        x.to(conv.weight.dtype),
        conv.weight,
        conv.bias,
        padding=conv.kernel_size[0] - 1,
        groups=conv.in_channels,
    )[:, :, : x.shape[-1]]
    return mixer.act(out).to(x.dtype)


def scan_dtype(dtype: torch.dtype) -> torch.dtype:
    """Float64 for a float64 model, else float32 (the torch paths scan in float32)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def mamba_parameters(mixer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None) -> dict:
    """Gate, scan input and discretization parameters of a ``MambaMixer`` (or Falcon-Mamba's,
    which normalizes dt, B and C) on ``hidden [b, t, d]``."""
    projected = mixer.in_proj(_mask(hidden, mask)).transpose(1, 2)
    x, gate = projected.chunk(2, dim=1)
    x = _mask(_conv(mixer, x).transpose(1, 2), mask)  # [b, t, c]
    rank, n = mixer.time_step_rank, mixer.ssm_state_size
    step, B, C = torch.split(mixer.x_proj(x), [rank, n, n], dim=-1)
    if hasattr(mixer, "b_layernorm"):  # Falcon-Mamba: weightless RMS norms on dt, B and C
        step, B, C = mixer.dt_layernorm(step), mixer.b_layernorm(B), mixer.c_layernorm(C)
    dt = (mixer.dt_proj.weight @ step.transpose(1, 2)).transpose(1, 2)
    delta = F.softplus(dt + mixer.dt_proj.bias.to(dt.dtype))
    A = -torch.exp(mixer.A_log.float())
    return {
        "gate": gate.transpose(1, 2),
        "x": x,
        "delta": delta,
        "A": A,
        "B": B,
        "C": C,
        "D": mixer.D,
    }


def mamba2_parameters(mixer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None) -> dict:
    """Gate, scan input and discretization parameters of a ``Mamba2Mixer``."""
    projected = mixer.in_proj(_mask(hidden, mask))
    gate, xbc, dt = projected.split(
        [mixer.intermediate_size, mixer.conv_dim, mixer.num_heads], dim=-1
    )
    xbc = _mask(_conv(mixer, xbc.transpose(1, 2)).transpose(1, 2), mask)
    g, n = mixer.n_groups, mixer.ssm_state_size
    x, B, C = torch.split(xbc, [mixer.intermediate_size, g * n, g * n], dim=-1)
    delta = F.softplus(dt + mixer.dt_bias.to(dt.dtype))
    low, high = mixer.time_step_limit
    delta = torch.clamp(delta, min=low, max=high)
    b, t = hidden.shape[:2]
    return {
        "gate": gate,
        "x": x,
        "delta": delta,
        "A": -torch.exp(mixer.A_log.float()),
        "B": B.reshape(b, t, g, n),
        "C": C.reshape(b, t, g, n),
        "D": mixer.D,
    }


def discretized(
    params: dict, variant: str, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``log Abar = Delta A`` and ``Bbar = Delta B`` in ``dtype`` (see the module docstring for
    the shapes)."""
    delta = params["delta"].to(dtype)
    A, B = params["A"].to(dtype), params["B"].to(dtype)
    if variant == "mamba":
        return delta[..., None] * A, delta[..., None] * B[:, :, None, :]
    heads = delta.shape[-1]
    per_group = heads // B.shape[2]
    return delta * A, delta[..., None] * B.repeat_interleave(per_group, dim=2)


def recurrence(params: dict, variant: str, dtype: torch.dtype, *, keep_states: bool) -> dict:
    """Run ``h_t = exp(log Abar_t) h_{t-1} + Bbar_t u_t``, ``y_t = C_t . h_t + D u_t`` from
    ``h_0 = 0``; ``{"y": [b, t, c], "state": per-token states or None}``."""
    log_abar, bbar = discretized(params, variant, dtype)
    x, C, D = params["x"].to(dtype), params["C"].to(dtype), params["D"].to(dtype)
    b, t = x.shape[:2]
    if variant == "mamba":
        decay, inject = log_abar.exp(), bbar * x[..., None]  # [b, t, c, N]
        readout = C[:, :, None, :]
        skip = D * x
    else:
        heads = log_abar.shape[-1]
        xh = x.reshape(b, t, heads, -1)  # [b, t, H, P]
        decay = log_abar.exp()[..., None, None]  # [b, t, H, 1, 1]
        inject = xh[..., None] * bbar[:, :, :, None, :]  # [b, t, H, P, N]
        readout = C.repeat_interleave(heads // C.shape[2], dim=2)[:, :, :, None, :]
        skip = (D[:, None] * xh).reshape(b, t, -1)
    h = torch.zeros_like(inject[:, 0])
    states, ys = [], []
    for step in range(t):
        h = decay[:, step] * h + inject[:, step]
        ys.append((h * readout[:, step]).sum(-1))
        if keep_states:
            states.append(h)
    y = torch.stack(ys, 1).reshape(b, t, -1) + skip
    return {"y": y, "state": torch.stack(states, 1) if keep_states else None}


def mixer_output_from(params: dict, y: torch.Tensor, mixer: nn.Module, variant: str):
    """The mixer's output from the scan output ``y``: gate (Mamba: ``y * silu(z)``; Mamba-2: the
    gated RMSNorm) and the output projection, in ``y``'s dtype."""
    gate = params["gate"].to(y.dtype)
    if variant == "mamba":
        gated = y * F.silu(gate)
    else:
        norm = mixer.norm
        gated = y * F.silu(gate)
        groups = gated.reshape(*gated.shape[:-1], -1, norm.group_size)
        groups = groups * torch.rsqrt(groups.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
        gated = norm.weight.to(y.dtype) * groups.reshape(gated.shape)
    return F.linear(gated, mixer.out_proj.weight.to(y.dtype), _bias(mixer.out_proj, y.dtype))


def _bias(linear: nn.Linear, dtype: torch.dtype) -> torch.Tensor | None:
    return linear.bias.to(dtype) if linear.bias is not None else None


def mixer_hooks(
    mixer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None, variant: str, wanted: set
) -> dict[str, torch.Tensor]:
    """The requested mixer hooks (suffixes after ``mixer.``) for the input ``hidden``."""
    compute = mamba_parameters if variant == "mamba" else mamba2_parameters
    params = compute(mixer, hidden, mask)
    out = {"hook_in": hidden}
    out.update({f"hook_{k}": params[k] for k in ("gate", "x", "delta", "B", "C")})
    dtype = scan_dtype(hidden.dtype)
    if wanted & {"hook_log_abar", "hook_bbar"}:
        out["hook_log_abar"], out["hook_bbar"] = discretized(params, variant, dtype)
    if wanted & {"hook_state", "hook_y"}:
        run = recurrence(params, variant, dtype, keep_states="hook_state" in wanted)
        out["hook_y"], out["hook_state"] = run["y"], run["state"]
    return {k: v for k, v in out.items() if k in wanted}


def fixed_parameters(mixer: nn.Module) -> dict[str, torch.Tensor]:
    """A mixer's input-independent parameters per scan channel: ``A [c, N]`` (``-exp(A_log)``;
    Mamba-2's per-head scalar repeated over the head's channels and states) and ``D [c]``."""
    A, D = -torch.exp(mixer.A_log.detach().float()), mixer.D.detach()
    if A.dim() == 1:  # Mamba-2: one scalar per head
        per_head = mixer.intermediate_size // mixer.num_heads
        A = A.repeat_interleave(per_head)[:, None].expand(-1, mixer.ssm_state_size)
        D = D.repeat_interleave(per_head)
    return {"A": A, "D": D}


def variant_of(mixer: nn.Module) -> str:
    """``"mamba2"`` for a Mamba-2 mixer (scalar ``A`` per head), else ``"mamba"``."""
    return "mamba2" if mixer.A_log.dim() == 1 else "mamba"
