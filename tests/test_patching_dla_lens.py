"""Direct logit attribution and the logit lens on tiny models of several families.

References: the model's own logits (DLA components sum to the norm-frozen logit difference, which
is the model's logit difference where no multiplier/softcap applies; the lens's last row is the
model's output), a hand-computed frozen-norm projection of one head, and the family's known
logit multiplier.
"""

from __future__ import annotations

import pytest
import torch

import interp
from interp.errors import InvalidArgumentError
from interp.patching import DLAResult, LogitLens, direct_logit_attribution, logit_lens
from tests.tiny import tiny_hf_model

TEXTS = ["w5 w9 w14 w5 w9", "w3 w4 w7"]


@pytest.fixture(scope="module")
def models(tokenizer):
    return {
        family: interp.load_model(
            tiny_hf_model(family, vocab_size=len(tokenizer)), tokenizer=tokenizer
        )
        for family in ("llama", "gpt2", "granite", "gemma2")
    }


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_dla_sums_to_the_models_logit_difference(models, family):
    lm = models[family]
    result = direct_logit_attribution(lm, TEXTS, "w14", "w3", positions=[2, -1])
    logits, _ = lm.run(TEXTS, padding_side="left")
    ids = lm.to_tokens(["w14", "w3"], prepend_bos=False)[:, 0]
    expected = (logits[:, [2, -1], ids[0]] - logits[:, [2, -1], ids[1]]).double()
    torch.testing.assert_close(result.total.double(), expected, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(result.logit_diff.double(), expected, atol=1e-6, rtol=0)
    rest = result.values[result.kinds.index("rest")]
    assert float(rest.abs().max()) < 1e-5
    attn_rest = result.values[[k == "attn_rest" for k in result.kinds]]
    assert float(attn_rest.abs().max()) < 1e-5  # affine attention output: heads + bias exact
    expected_norm = "RMSNorm" if family == "llama" else "LayerNorm (centering)"
    assert result.settings["final_norm"] == expected_norm


def test_one_head_matches_a_hand_computed_frozen_norm_projection(models):
    lm = models["llama"]
    result = direct_logit_attribution(lm, TEXTS[0], "w14", "w3")
    _, cache = lm.run(TEXTS[0], capture=["blocks.1.attn.hook_z", "blocks.1.hook_resid_post"])
    z = cache["blocks.1.attn.hook_z"][0, -1]  # [heads, d_head]
    x = cache["blocks.1.hook_resid_post"][0, -1].double()
    head_out = z[2].double() @ lm.W_O[1, 2].double()  # no o_proj bias in Llama
    eps = lm.model.config.rms_norm_eps
    scale = (x.pow(2).mean() + eps).sqrt()
    ids = lm.to_tokens(["w14", "w3"], prepend_bos=False)[:, 0]
    u = lm.W_U[:, ids[0]].double() - lm.W_U[:, ids[1]].double()
    g = lm.norm_weights()["ln_final"].double()
    expected = (head_out / scale * g) @ u
    got = result.values[result.labels.index("L1H2"), 0, 0]
    torch.testing.assert_close(got.double(), expected, atol=1e-6, rtol=1e-5)
    assert result.head_map().shape == (lm.n_layers, lm.n_heads)


def test_multiplier_and_softcap_families(models):
    granite = models["granite"]
    result = direct_logit_attribution(granite, TEXTS, "w14", "w3")
    scaling = granite.model.config.logits_scaling  # the model's logits are total / scaling
    torch.testing.assert_close(result.total / scaling, result.logit_diff, atol=1e-6, rtol=1e-4)
    gemma = models["gemma2"]
    result = direct_logit_attribution(gemma, TEXTS, "w14")
    cap = gemma.model.config.final_logit_softcapping
    torch.testing.assert_close(
        cap * torch.tanh(result.total.double() / cap),
        result.logit_diff.double(),
        atol=2e-5,
        rtol=1e-4,
    )


def test_dla_result_saves_and_plots(models, tmp_path):
    result = direct_logit_attribution(models["llama"], TEXTS, "w14", "w3")
    loaded = DLAResult.load(result.save(tmp_path / "dla"))
    assert torch.equal(loaded.values, result.values) and loaded.labels == result.labels
    assert "L1H" in result.table() and result.figure().data[0].z.shape == (2, 4)
    assert result.figure("layers").data[0].z.shape == (2, 2)


def test_bad_answers_are_refused_in_one_line(models):
    with pytest.raises(InvalidArgumentError, match="2 tokens"):
        direct_logit_attribution(models["llama"], TEXTS, "w14 w3")
    with pytest.raises(InvalidArgumentError, match="not in"):
        direct_logit_attribution(models["llama"], TEXTS, "zebra")


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2"])
def test_lens_last_row_is_the_models_output(models, family):
    lm = models[family]
    lens = logit_lens(lm, TEXTS[0], targets=["w14"], k=3)
    logits, _ = lm.run(TEXTS[0])
    top = logits[0].topk(3, dim=-1)
    assert torch.equal(lens.top_ids[-1], top.indices)
    torch.testing.assert_close(lens.top_logits[-1], top.values, atol=1e-5, rtol=1e-5)
    probs = logits[0].softmax(-1)[:, lm.to_tokens("w14", prepend_bos=False)[0, 0]]
    torch.testing.assert_close(lens.target_probs[-1, :, 0], probs, atol=1e-6, rtol=1e-5)
    assert lens.top_ids.shape == (lm.n_layers + 1, 6, 3)


def test_lens_middle_row_is_the_unembedded_residual(models, tmp_path):
    lm = models["llama"]
    lens = logit_lens(lm, TEXTS[0])
    _, cache = lm.run(TEXTS[0], capture="blocks.0.hook_resid_post")
    expected = lm.unembed(cache["blocks.0.hook_resid_post"][0]).softmax(-1).topk(5, dim=-1)
    assert torch.equal(lens.top_ids[1], expected.indices)
    loaded = LogitLens.load(lens.save(tmp_path / "lens"))
    assert loaded.top_strings == lens.top_strings and "L1" in lens.table()
    assert lens.figure().data[0].z.shape == (3, 6)
