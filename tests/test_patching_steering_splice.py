"""Steering and splicing on a tiny Llama.

References: the model's own unembedding of an edited residual (steering at the last layer's
``hook_resid_post`` shifts the logits to ``unembed(resid + s v)`` exactly), hand-computed means
of captured activations, an explicit edit with the reconstruction, and the clean run (splicing
with the error added back changes nothing).
"""

from __future__ import annotations

import pytest
import torch

import interp
from interp.errors import InvalidArgumentError
from interp.patching import (
    SpliceResult,
    SteeringResult,
    mean_difference,
    splice_edits,
    splice_module,
    steer,
    steering_edits,
)
from tests.tiny import tiny_hf_model

TEXT = "w5 w9 w14 w5 w9 w30"
LAST = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def lm(tokenizer):
    return interp.load_model(tiny_hf_model("llama", vocab_size=len(tokenizer)), tokenizer=tokenizer)


def test_steering_at_the_last_residual_shifts_logits_by_the_unembedding(lm):
    vector = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(0))
    logits, cache = lm.run(TEXT, capture=LAST)
    steered, _ = lm.run(TEXT, edits=steering_edits(vector, 1, scale=3.0, hook="hook_resid_post"))
    expected = lm.unembed(cache[LAST] + 3.0 * vector)
    torch.testing.assert_close(steered, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(steered, logits, atol=1e-3)


def test_steering_only_at_chosen_positions(lm):
    vector = torch.ones(lm.d_model)
    _, base = lm.run(TEXT, capture="blocks.1.hook_resid_pre")
    edits = steering_edits(vector, 1, scale=2.0, positions=[0, 3])
    _, cache = lm.run(TEXT, capture="blocks.1.hook_resid_pre", edits=edits)
    shift = cache["blocks.1.hook_resid_pre"] - base["blocks.1.hook_resid_pre"]
    expected = torch.zeros_like(shift)
    expected[:, [0, 3]] = 2.0
    torch.testing.assert_close(shift, expected)


def test_steered_generation_takes_the_steered_argmax(lm):
    vector = 5 * lm.W_U[:, 40] / lm.W_U[:, 40].norm()
    edits = steering_edits(vector, 1, scale=4.0, hook="hook_resid_post")
    out = lm.generate(TEXT, max_new_tokens=3, edits=edits)
    tokens = lm.to_tokens(TEXT)
    for step in range(3):  # each new token is the argmax of the steered run on the prefix
        steered, _ = lm.run(tokens, prepend_bos=False, edits=edits)
        assert int(out.new_tokens[0, step]) == int(steered[0, -1].argmax())
        tokens = torch.cat([tokens, out.new_tokens[:, step : step + 1]], dim=1)
    plain = lm.generate(TEXT, max_new_tokens=3)
    assert not torch.equal(plain.new_tokens, out.new_tokens)


def test_mean_difference_is_the_difference_of_means(lm):
    positive, negative = ["w5 w9", "w5 w9 w14 w3"], ["w7 w8 w20"]
    name = "blocks.1.hook_resid_pre"
    v = mean_difference(lm, positive, negative, 1)
    pos = [lm.run(t, capture=name)[1][name][0, -1] for t in positive]
    neg = lm.run(negative[0], capture=name)[1][name][0, -1]
    torch.testing.assert_close(v, (pos[0] + pos[1]) / 2 - neg, atol=1e-5, rtol=1e-5)
    v_mean = mean_difference(lm, positive[:1], negative, 1, position="mean")
    full = lm.run(positive[0], capture=name)[1][name][0].mean(0)
    full_neg = lm.run(negative[0], capture=name)[1][name][0].mean(0)
    torch.testing.assert_close(v_mean, full - full_neg, atol=1e-5, rtol=1e-5)


def test_steer_sweep_matches_single_runs(lm, tmp_path):
    vector = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(1))
    result = steer(lm, TEXT, vector, "w14", "w3", layers=[0, 1], scales=[0.0, 2.0])
    ids = lm.to_tokens(["w14", "w3"], prepend_bos=False)[:, 0]
    logits, _ = lm.run(TEXT, edits=steering_edits(vector, 1, scale=2.0))
    assert result.values[1, 1] == pytest.approx(
        float(logits[0, -1, ids[0]] - logits[0, -1, ids[1]]), abs=1e-5
    )
    assert result.values[0, 0] == pytest.approx(result.baseline, abs=1e-6)
    loaded = SteeringResult.load(result.save(tmp_path / "steer"))
    assert torch.equal(loaded.values, result.values) and result.figure().data[0].z.shape == (2, 2)
    with pytest.raises(InvalidArgumentError, match="not a hook"):
        steer(lm, TEXT, vector, "w14", layers=[7])


class TinySAE(torch.nn.Module):
    def __init__(self, d: int, n: int) -> None:
        super().__init__()
        self.enc = torch.nn.Linear(d, n)
        self.dec = torch.nn.Linear(n, d)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.enc(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return self.dec(f)


@pytest.fixture(scope="module")
def sae(lm):
    """An autoencoder trained here on the tiny model's captured activations."""
    texts = [" ".join(f"w{(7 * i + 3 * j) % 90 + 3}" for j in range(12)) for i in range(16)]
    _, cache = lm.run(texts, capture="blocks.0.hook_resid_post")
    acts = cache["blocks.0.hook_resid_post"].reshape(-1, lm.d_model).clone()
    torch.manual_seed(0)
    model = TinySAE(lm.d_model, 64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(300):
        f = model.encode(acts)
        loss = (model.decode(f) - acts).pow(2).mean() + 1e-3 * f.abs().mean()
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss) < 0.2 * first  # it learned something
    return model.eval().requires_grad_(False)


def test_splice_with_error_added_back_is_the_clean_run(lm, sae):
    clean, _ = lm.run(TEXT)
    spliced, _ = lm.run(TEXT, edits=splice_edits("blocks.0.hook_resid_post", sae, add_error=True))
    assert torch.equal(spliced, clean)
    result = splice_module(lm, TEXT, "blocks.0.hook_resid_post", sae, add_error=True)
    assert result.kl == 0.0 and result.loss_spliced == result.loss_clean


def test_splice_without_error_is_the_reconstruction(lm, sae, tmp_path):
    hook = "blocks.0.hook_resid_post"
    _, cache = lm.run(TEXT, capture=hook)
    recon = sae.decode(sae.encode(cache[hook]))
    explicit, _ = lm.run(TEXT, edits={hook: recon})
    result = splice_module(lm, TEXT, hook, sae)
    spliced, _ = lm.run(TEXT, edits=splice_edits(hook, sae, add_error=False))
    torch.testing.assert_close(spliced, explicit, atol=1e-6, rtol=1e-6)
    clean, _ = lm.run(TEXT)
    assert not torch.allclose(spliced, clean, atol=1e-4)
    error = (cache[hook] - recon).norm(dim=-1)
    torch.testing.assert_close(result.error_norm, error, atol=1e-5, rtol=1e-5)
    assert result.kl > 0 and result.features.shape == (1, 7, 64)
    loaded = SpliceResult.load(result.save(tmp_path / "splice"))
    assert torch.equal(loaded.features, result.features) and "KL" in result.table()
    assert result.figure(k=8).data[0].z.shape == (8, 7)


def test_feature_edit_acts_on_top_of_the_error(lm, sae):
    hook = "blocks.0.hook_resid_post"
    _, cache = lm.run(TEXT, capture=hook)
    x = cache[hook]
    f = sae.encode(x)
    dead = f.clone()
    dead[..., 5] = 0
    expected_input = x + sae.decode(dead) - sae.decode(f)
    explicit, _ = lm.run(TEXT, edits={hook: expected_input})

    def zero_five(features, ctx):
        out = features.clone()
        out[..., 5] = 0
        return out

    edits = splice_edits(hook, sae, add_error=True, feature_edit=zero_five)
    spliced, _ = lm.run(TEXT, edits=edits)
    torch.testing.assert_close(spliced, explicit, atol=1e-6, rtol=1e-6)


def test_probe_reads_without_changing_the_run(lm):
    probe = torch.nn.Linear(lm.d_model, 3).requires_grad_(False)
    clean, cache = lm.run(TEXT, capture="blocks.1.hook_resid_pre")
    result = splice_module(lm, TEXT, "blocks.1.hook_resid_pre", probe)
    torch.testing.assert_close(
        result.features[0], probe(cache["blocks.1.hook_resid_pre"][0]).detach()
    )
    assert result.kind == "probe" and result.kl == 0.0
