"""Tiny random Mamba / Mamba-2 language models (tests, notebooks, the ``mixers`` examples)."""

from __future__ import annotations

import torch
from torch import nn

_SIZES = {
    "mamba": {"intermediate_size": 32, "time_step_rank": 4},
    "falcon_mamba": {"intermediate_size": 32, "time_step_rank": 4},
    "mamba2": {"num_heads": 4, "head_dim": 8, "n_groups": 2, "expand": 2, "chunk_size": 8},
}


def tiny_ssm(
    variant: str = "mamba",
    *,
    layers: int = 2,
    d_model: int = 16,
    d_state: int = 4,
    vocab: int = 96,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    **overrides: object,
) -> nn.Module:
    """A randomly initialized ``MambaForCausalLM`` (``variant="mamba"``),
    ``FalconMambaForCausalLM`` (``"falcon_mamba"``) or ``Mamba2ForCausalLM`` (``"mamba2"``) built
    from a config, no download. ``A_log``, ``D`` and
    the norms get random perturbations so that no parameter sits at a special value."""
    from transformers import AutoConfig, AutoModelForCausalLM

    options = {
        "hidden_size": d_model,
        "num_hidden_layers": layers,
        "state_size": d_state,
        "vocab_size": vocab,
        "conv_kernel": 3,
        **_SIZES[variant],
        **overrides,
    }
    config = AutoConfig.for_model(variant, **options)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).to(dtype).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("A_log", ".D", "norm.weight", "norm_f.weight")):
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))
    return model
