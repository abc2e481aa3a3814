"""Raptor for language models on tiny random-init Llamas: exact at init, trains, scores, saves."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import interp
from interp.depth import RaptorFit, fit_raptor
from interp.depth.raptor import rollout
from interp.depth.raptor_lm import LanguageRaptor, channel_scale, standardized_error
from interp.depth.views import branches, language_model_states
from interp.depth.vit import single_thread
from tests.tiny import tiny_hf_model, word_tokenizer


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def tiny_llama(layers: int = 3, seed: int = 0, family: str = "llama"):
    tokenizer = word_tokenizer(96)
    model = tiny_hf_model(family, vocab_size=len(tokenizer), layers=layers, seed=seed)
    return interp.load_model(model, tokenizer=tokenizer, device="cpu")


def windows(n: int, length: int = 12, seed: int = 0) -> torch.Tensor:
    ids = torch.randint(3, 96, (n, length), generator=torch.Generator().manual_seed(seed))
    ids[:, 0] = 1  # BOS
    return ids


def test_decoder_layer_branches_rebuild_the_layer_output():
    lm = tiny_llama()
    tokens = windows(3)
    states = language_model_states(lm, tokens)
    raptor = LanguageRaptor(lm, [(1, 1), (2, 2), (3, 3)])
    context = raptor.context(states[0])
    for layer, block in enumerate(lm.model.model.layers):
        attention, mlp = branches(block, context)
        with torch.no_grad():
            x = states[layer] + attention(states[layer])
            assert torch.allclose(x + mlp(x), states[layer + 1], atol=1e-5)
    with pytest.raises(ValueError, match="position_embeddings"):
        branches(lm.model.model.layers[0])[0](states[0])


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma"])
def test_one_phase_per_layer_reproduces_the_residual_stream_exactly(family):
    lm = tiny_llama(family=family)
    tokens = windows(4)
    states = language_model_states(lm, tokens)
    raptor = LanguageRaptor(lm, [(1, 1), (2, 2), (3, 3)])
    assert type(raptor.blocks[0].layer) is type(lm.model.model.layers[0])
    assert torch.allclose(rollout(raptor, states[0]), states[1:], atol=1e-5)
    # causal: changing the last token changes nothing before it
    changed = tokens.clone()
    changed[:, -1] = 5
    other = rollout(raptor, language_model_states(lm, changed)[0])
    assert torch.allclose(other[:, :, :-1], states[1:, :, :-1], atol=1e-5)
    assert not torch.allclose(other[:, :, -1], states[1:, :, -1], atol=1e-3)


def test_weight_tied_language_model_is_exactly_a_two_block_raptor():
    lm = tiny_llama()
    layers = lm.model.model.layers
    layers[1].load_state_dict(layers[0].state_dict())  # blocks 1-2 share weights
    states = language_model_states(lm, windows(3))
    raptor = LanguageRaptor(lm, [(1, 2), (3, 3)])  # phase [1-2] starts from block 1
    assert torch.allclose(rollout(raptor, states[0]), states[1:], atol=1e-5)
    untied = LanguageRaptor(tiny_llama(seed=1), [(1, 2), (3, 3)])
    assert not torch.allclose(rollout(untied, states[0]), states[1:], atol=1e-3)


def test_standardized_error_weighs_every_channel_alike_and_skips_bos():
    # Reference by hand: channel 0 is 100x larger than channel 1; both are 10% off.
    target = torch.tensor([[[[7.0, 7.0], [100.0, 1.0], [-100.0, -1.0]]]])  # [L=1, N=1, T=3, D=2]
    pred = target * torch.tensor([[[[5.0], [1.1], [0.9]]]])  # BOS (position 0) far off
    scale = channel_scale(torch.cat([torch.zeros_like(target), target]))
    assert torch.allclose(scale, torch.tensor([[1e4, 1.0]]))
    assert float(standardized_error(pred, target, scale)) == pytest.approx(0.01)


def test_next_token_scores_against_the_models_own_logits(tmp_path):
    # lr 0: the one-block-per-layer surrogate stays the original, so it agrees everywhere.
    lm = tiny_llama()
    train, held_out = windows(6, seed=1), windows(5, seed=2)
    fit = fit_raptor(
        lm,
        train,
        [(1, 1), (2, 2), (3, 3)],
        eval_inputs=held_out,
        phase_steps=1,
        end_to_end_steps=1,
        batch_size=2,
        lr=0.0,
    )
    logits = lm.forward(held_out)
    expected = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), held_out[:, 1:].reshape(-1)
    )
    scores = fit.next_token
    assert scores["loss_original"] == pytest.approx(float(expected), rel=1e-5)
    assert scores["loss_surrogate"] == pytest.approx(float(expected), rel=1e-5)
    assert scores["agreement"] == 1.0 and scores["agreement_init"] == 1.0
    assert scores["loss_uniform"] == pytest.approx(math.log(96))
    assert float(fit.layer_error.max()) < 1e-10


def test_fit_trains_saves_and_rebuilds(tmp_path):
    lm = tiny_llama(layers=4)
    train, held_out = windows(8, seed=3), windows(4, seed=4)
    fit = fit_raptor(
        lm,
        train,
        [(1, 2), (3, 4)],
        eval_inputs=held_out,
        phase_steps=30,
        end_to_end_steps=30,
        batch_size=4,
        lr=3e-3,
    )
    assert fit.k == 2 and len(fit.loss_curve) == 60 and len(fit.layer_error) == 4
    assert fit.loss_curve[-5:].mean() < 0.75 * fit.loss_curve[30:35].mean()  # end to end improves
    assert fit.settings["kind"] == "language" and fit.settings["held_out"]
    assert "top-1 agreement" in fit.table() and fit.figure() is not None
    loaded = RaptorFit.load(fit.save(tmp_path / "raptor"))
    assert loaded.next_token == fit.next_token
    rebuilt = loaded.surrogate(lm)
    states = language_model_states(lm, held_out)
    scale = channel_scale(language_model_states(lm, train))
    rebuilt_error = standardized_error(rollout(rebuilt, states[0]), states[1:], scale)
    assert torch.allclose(rebuilt_error, fit.layer_error, rtol=1e-4, atol=1e-7)
    untrained = LanguageRaptor(lm, [(1, 2), (3, 4)])
    untrained_error = standardized_error(rollout(untrained, states[0]), states[1:], scale)
    assert float(fit.layer_error[-1]) < 0.75 * float(untrained_error[-1])  # better on held-out text


def test_bad_inputs_are_named():
    lm = tiny_llama()
    with pytest.raises(TypeError, match="corpus_windows"):
        fit_raptor(lm, ["w1 w2 w3"], [(1, 3)])
    with pytest.raises(ValueError, match="labels are for vision"):
        fit_raptor(lm, windows(2), [(1, 3)], labels=torch.zeros(2))
    with pytest.raises(ValueError, match="do not cover"):
        fit_raptor(lm, windows(2), [(1, 2)])
    gpt2 = tiny_llama(family="gpt2")
    with pytest.raises(ValueError, match="has no rotary embedding"):
        LanguageRaptor(gpt2, [(1, 3)])


def test_raptor_runs_on_a_transformer_lens_model_as_on_the_native_one(tmp_path):
    """The LM Raptor reaches the model only through the protocol (decoder_layers, rotary,
    causal mask, run, unembed): on a TransformerBridge over the same weights the teacher states,
    the untrained surrogate's rollout and a short fit equal the native backend's."""
    from interp.models.adapters_tl import TransformerLensLM
    from tests.test_models_adapters_families import boot_bridge

    native = tiny_llama()
    tokenizer = native.tokenizer
    bridge = boot_bridge(tiny_hf_model("llama", vocab_size=96, layers=3), tokenizer, tmp_path)
    lm = interp.load_model(bridge, tokenizer=tokenizer)
    assert isinstance(lm, TransformerLensLM)
    train, held_out = windows(6, seed=1), windows(4, seed=2)
    states = language_model_states(lm, held_out)
    reference = language_model_states(native, held_out)
    torch.testing.assert_close(states, reference, atol=1e-5, rtol=0)
    spans = [(1, 2), (3, 3)]
    untrained = rollout(LanguageRaptor(lm, spans), states[0])
    torch.testing.assert_close(
        untrained, rollout(LanguageRaptor(native, spans), reference[0]), atol=1e-5, rtol=0
    )
    one_per_layer = rollout(LanguageRaptor(lm, [(1, 1), (2, 2), (3, 3)]), states[0])
    torch.testing.assert_close(one_per_layer, states[1:], atol=1e-5, rtol=0)
    settings = dict(eval_inputs=held_out, phase_steps=3, end_to_end_steps=3, batch_size=2)
    fits = [fit_raptor(model, train, spans, lr=1e-3, **settings) for model in (lm, native)]
    assert len(fits[0].loss_curve) == 6
    curves = [torch.as_tensor(fit.loss_curve) for fit in fits]
    # The first loss is before any update: equal. Adam then normalizes gradients whose float32
    # rounding differs between the two forwards (~1e-7), so later steps agree to ~1e-3 only.
    torch.testing.assert_close(curves[0][0], curves[1][0], rtol=1e-5, atol=0)
    torch.testing.assert_close(curves[0], curves[1], rtol=1e-2, atol=0)
    torch.testing.assert_close(fits[0].layer_error, fits[1].layer_error, rtol=1e-2, atol=1e-7)
    for key in ("loss_original", "loss_init", "agreement_init"):
        assert fits[0].next_token[key] == pytest.approx(fits[1].next_token[key], rel=1e-5), key
