"""The family contract: every row of the family table, built from a tiny random config, must
reproduce its own Hugging Face model exactly.

For each family (and Falcon's grouped layout as a second case): logits equal HF's forward; every
``hook_resid_post`` equals HF's hidden states; ``hook_embed`` (+ ``hook_pos_embed``) is the first
residual stream and ``W_E`` times ``embedding_scale``; per-head ``hook_v`` is the attention input
times ``W_V`` (so the fused q/k/v layouts are read right); the captured post-rotary q/k rebuild
HF's *eager* attention weights in float64 (with the layer's scale, causal mask, padding, sliding
window, softcap and sinks); the fused attention statistics (torch backend, and the Triton kernel
under the interpreter for the families with windows, softcaps and sinks) equal those weights' argmax
and maximum and the float64 log-sum-exp; ``attn_output``/``norm``/``mlp``/``unembed`` reproduce
each block's computation from its captured input.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pytest
import torch

import interp
from interp.models import StatsRequest
from interp.models.families import FAMILIES
from tests.tiny import tiny_hf_model

TEXTS = ["w5 w9 w14 w5 w9 w30 w31 w7 w8 w20 w21", "w3 w4 w5 w6 w7"]  # right-padded second row
CASES = [(name, {}) for name in sorted(FAMILIES)] + [
    ("falcon", {"new_decoder_architecture": True, "num_kv_heads": 2, "multi_query": False})
]
IDS = [name if not overrides else f"{name}-grouped" for name, overrides in CASES]
TRITON_FAMILIES = {"gemma2", "gpt_oss", "mistral", "llama"}


@dataclass
class Case:
    name: str
    lm: object
    hf: object  # the HF model's output before wrapping (default attention implementation)
    eager: object  # the same weights' eager output, with attention weights
    scales: list[float]
    windows: list[int | None]
    softcap: float | None
    sinks: list[torch.Tensor | None]
    tokens: torch.Tensor
    mask: torch.Tensor
    logits: torch.Tensor
    cache: dict


def _window(attention: torch.nn.Module, config: object) -> int | None:
    if hasattr(attention, "sliding_window"):
        return attention.sliding_window
    return getattr(config, "sliding_window", None)


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def case(request, tokenizer) -> Case:
    name, overrides = request.param
    model = tiny_hf_model(name, vocab_size=len(tokenizer), **overrides)
    family = FAMILIES[name]
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    batch = tokenizer([f"<bos> {t}" for t in TEXTS], padding=True, return_tensors="pt")
    tokens, mask = batch["input_ids"], batch["attention_mask"]
    # interp counts positions over real tokens (a padded row computes what it would alone)
    inputs = dict(
        input_ids=tokens, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(0)
    )
    with torch.no_grad():
        hf = model(**inputs, output_hidden_states=True)
        eager_out = eager(**inputs, output_attentions=True)
    attentions = [layer.get_submodule(family.attn) for layer in model.get_submodule(family.layers)]
    lm = interp.load_model(model, tokenizer=tokenizer, device="cpu")
    assert lm.attention_scale(0) in {float(a.scaling) for a in attentions} | {1.0}
    names = [
        "hook_embed",
        *(["hook_pos_embed"] if family.positions else []),
        "blocks.*.hook_resid_pre",
        "blocks.*.hook_resid_post",
        "blocks.*.hook_attn_out",
        "blocks.*.hook_mlp_out",
        "blocks.*.attn.hook_*",
        "blocks.*.attn.hook_pattern",
        "ln_final.hook_normalized",
    ]
    logits, cache = lm.run(tokens, capture=names, attention_mask=mask, attention_stats=True)
    return Case(
        name=name,
        lm=lm,
        hf=hf,
        eager=eager_out,
        scales=[lm.attention_scale(layer) for layer in range(lm.n_layers)],
        windows=[_window(a, model.config) for a in attentions],
        softcap=getattr(model.config, "attn_logit_softcapping", None),
        sinks=[getattr(a, "sinks", None) for a in attentions],
        tokens=tokens,
        mask=mask.bool(),
        logits=logits,
        cache=cache,
    )


def _close(actual: torch.Tensor, expected: torch.Tensor, mask: torch.Tensor, atol=1e-5) -> None:
    """Equal at the real (unpadded) positions ``mask [B, T]``."""
    diff = (actual.double() - expected.double()).abs()
    diff = diff[mask] if diff.shape[:2] == mask.shape else diff
    scale = expected.double().abs().max().clamp_min(1.0)
    assert diff.max().item() <= atol * scale, f"max difference {diff.max().item():.3g}"


def test_logits_and_residual_stream_equal_hugging_face(case):
    _close(case.logits, case.hf.logits, case.mask)
    hidden = case.hf.hidden_states  # embeddings, layers 0..L-2 outputs, final norm output
    lm = case.lm
    for layer in range(lm.n_layers - 1):
        _close(case.cache[f"blocks.{layer}.hook_resid_post"], hidden[layer + 1], case.mask)
    _close(case.cache["ln_final.hook_normalized"], hidden[-1], case.mask)
    _close(
        lm.unembed(case.cache[f"blocks.{lm.n_layers - 1}.hook_resid_post"]), case.logits, case.mask
    )


def test_embeddings_enter_the_residual_stream(case):
    lm, cache = case.lm, case.cache
    first = cache["hook_embed"] + cache.get("hook_pos_embed", 0)
    _close(first, cache["blocks.0.hook_resid_pre"], case.mask)
    _close(cache["hook_embed"], lm.W_E[case.tokens] * lm.embedding_scale, case.mask)


def test_values_are_the_attention_input_times_W_V(case):
    """Per-head ``W_V``/``b_V`` (GQA expanded) read right from every q/k/v layout."""
    lm, cache = case.lm, case.cache
    groups = lm.n_heads // lm.n_kv_heads
    for layer in range(lm.n_layers):
        x = lm.norm(layer, "attn", cache[f"blocks.{layer}.hook_resid_pre"])
        expected = torch.einsum("btd,hde->bthe", x, lm.W_V[layer]) + lm.b_V[layer]
        values = cache[f"blocks.{layer}.attn.hook_v"]  # [B, T, kv_heads, d_head]
        _close(values, expected[:, :, ::groups], case.mask)


def _eager_pattern(case: Case, layer: int) -> torch.Tensor:
    """HF's eager attention weights rebuilt in float64 from the captured post-rotary q/k."""
    q = case.cache[f"blocks.{layer}.attn.hook_q"].double().transpose(1, 2)  # [B, H, T, D]
    k = case.cache[f"blocks.{layer}.attn.hook_k"].double().transpose(1, 2)
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    logits = q @ k.transpose(-1, -2) * case.scales[layer]
    if case.softcap is not None:
        logits = case.softcap * torch.tanh(logits / case.softcap)
    positions = torch.arange(q.shape[2])
    allowed = positions[None, :] <= positions[:, None]
    if case.windows[layer] is not None:
        allowed &= positions[:, None] - positions[None, :] < case.windows[layer]
    allowed = allowed[None, None] & case.mask[:, None, None, :]
    logits = logits.masked_fill(~allowed, -math.inf)
    sinks = case.sinks[layer]
    if sinks is None:
        return torch.softmax(logits, dim=-1), torch.logsumexp(logits, dim=-1)
    sink = sinks.double().reshape(1, -1, 1, 1).expand(*logits.shape[:-1], 1)
    full = torch.cat([logits, sink], dim=-1)
    return torch.softmax(full, dim=-1)[..., :-1], torch.logsumexp(full, dim=-1)


def test_post_rotary_qk_rebuild_the_eager_attention_weights(case):
    for layer in range(case.lm.n_layers):
        pattern, _ = _eager_pattern(case, layer)
        reference = case.eager.attentions[layer].double()
        rows = case.mask[:, None, :, None]  # real query rows
        assert (pattern - reference).abs().masked_select(rows).max() < 1e-5
        captured = case.cache[f"blocks.{layer}.attn.hook_pattern"].double()
        assert (captured - reference).abs().masked_select(rows).max() < 1e-5


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_attention_stats_equal_the_eager_weights(case, backend):
    if backend == "triton" and case.name not in TRITON_FAMILIES:
        pytest.skip("the Triton interpreter is slow: run on the families with their own features")
    lm = case.lm
    _, cache = lm.run(
        case.tokens,
        attention_mask=case.mask.long(),
        attention_stats=StatsRequest(backend=backend),
    )
    rows = case.mask[:, None, :]
    for layer in range(lm.n_layers):
        stats = cache.attention_stats[layer]
        pattern, lse = _eager_pattern(case, layer)
        reference = case.eager.attentions[layer].double()
        real = rows.expand_as(stats.argmax)
        assert torch.equal(stats.argmax[real], reference.argmax(-1)[real])
        top = reference.max(-1).values
        assert (stats.max_prob.double() - top).abs().masked_select(rows).max() < 1e-5
        assert (stats.lse.double() - lse).abs().masked_select(rows).max() < 1e-4


def test_blocks_are_reproduced_from_their_inputs(case):
    """``attn_output`` from ``hook_z``; ``mlp(norm(...))`` from the residual the MLP reads; the
    residual update; so head and MLP contributions add up to what the model computes."""
    lm, cache = case.lm, case.cache
    for layer in range(lm.n_layers):
        prefix = f"blocks.{layer}."
        pre, attn_out = cache[prefix + "hook_resid_pre"], cache[prefix + "hook_attn_out"]
        mlp_out = cache[prefix + "hook_mlp_out"]
        _close(lm.attn_output(layer, cache[prefix + "attn.hook_z"]), attn_out, case.mask)
        mlp_input = pre if lm.parallel else pre + attn_out
        _close(lm.mlp(layer, lm.norm(layer, "mlp", mlp_input)), mlp_out, case.mask)
        _close(pre + attn_out + mlp_out, cache[prefix + "hook_resid_post"], case.mask)


def test_moe_layers_offer_their_router_logits(case):
    lm = case.lm
    routed = [n for n in lm.hook_names if n.endswith("mlp.hook_router_logits")]
    if FAMILIES[case.name].router is None:
        assert not routed
        return
    assert routed
    _, cache = lm.run(TEXTS[0], capture=routed)
    experts = [cache[name].shape[-1] for name in routed]
    assert all(n >= 2 for n in experts)
