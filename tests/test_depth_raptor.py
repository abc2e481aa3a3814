"""Raptor surrogate: exact at initialization where the answer is known, trains, saves, rebuilds."""

from __future__ import annotations

import copy

import pytest
import torch

from interp.depth import DigitsViT, RaptorFit, ViTConfig, fit_raptor, view_of
from interp.depth.raptor import (
    DepthConditioning,
    Raptor,
    forcing_weight,
    phase_spans,
    token_weights,
)
from interp.depth.vit import single_thread


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():  # tiny models: one thread is fastest on a shared machine
        yield


SMALL = ViTConfig(depth=4, dim=16, heads=2, layerscale=0.5)


def small_vit(seed: int = 0) -> DigitsViT:
    torch.manual_seed(seed)
    return DigitsViT(SMALL).eval()


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_depth_conditioning_starts_at_one_and_has_the_papers_shape():
    conditioning = DepthConditioning(dim=5)
    assert [m.__class__.__name__ for m in conditioning.net] == ["Linear", "SiLU", "Linear"]
    assert conditioning.net[0].in_features == 1 and conditioning.net[0].out_features == 16
    assert conditioning.net[2].out_features == 15
    for t in (0.0, 0.3, 1.0):
        assert all(torch.equal(scale, torch.ones(5)) for scale in conditioning(t))


def test_one_phase_per_layer_reproduces_the_teacher_exactly():
    # Every block is a copy of its own layer and all scales start at 1: the rollout is the teacher.
    model = small_vit()
    view = view_of(model)
    states = view.states(images(5))
    raptor = Raptor(view.layers, [(layer, layer) for layer in range(1, 5)], dim=16).eval()
    with torch.no_grad():
        assert torch.allclose(raptor(states[0]), states[1:], atol=1e-5)


def test_weight_tied_teacher_is_exactly_a_two_block_raptor_at_init():
    # Hand-built recurrent teacher: blocks 1-2 share one weight set, blocks 3-4 another.
    model = small_vit()
    model.blocks[0] = copy.deepcopy(model.blocks[1])
    model.blocks[3] = copy.deepcopy(model.blocks[2])
    view = view_of(model)
    states = view.states(images(5))
    raptor = Raptor(
        view.layers, [(1, 2), (3, 4)], dim=16
    ).eval()  # middle layers: blocks 1 and 2 (1-based)
    with torch.no_grad():
        assert torch.allclose(raptor(states[0]), states[1:], atol=1e-5)
    untied = Raptor(view_of(small_vit(seed=1)).layers, [(1, 2), (3, 4)], dim=16).eval()
    with torch.no_grad():
        assert not torch.allclose(untied(states[0]), states[1:], atol=1e-2)


def _hf_vision_model(family: str):
    """A tiny random-init Hugging Face ViT or DINOv2 (3 layers, width 16)."""
    import transformers

    config_class, model_class, ffn = {
        "vit": ("ViTConfig", "ViTModel", {"intermediate_size": 32}),
        "dinov2": ("Dinov2Config", "Dinov2Model", {"mlp_ratio": 2}),
    }[family]
    config = getattr(transformers, config_class)(
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        image_size=8,
        patch_size=4,
        **ffn,
    )
    torch.manual_seed(0)
    return getattr(transformers, model_class)(config).eval()


@pytest.mark.parametrize(("family", "layer_type"), [("vit", "ViTLayer"), ("dinov2", "Dinov2Layer")])
def test_hf_raptor_uses_its_own_layer_type_and_reproduces_the_teacher_at_init(family, layer_type):
    view = view_of(_hf_vision_model(family))
    states = view.states(torch.randn(3, 3, 8, 8))
    raptor = Raptor(view.layers, [(layer, layer) for layer in range(1, 4)], dim=16).eval()
    assert type(raptor.blocks[0].layer).__name__ == layer_type
    with torch.no_grad():
        assert torch.allclose(raptor(states[0]), states[1:], atol=1e-5)


def test_token_weights_follow_the_paper():
    with_registers = token_weights(10, n_prefix=3)
    assert float(with_registers[0]) == pytest.approx(0.45)
    assert float(with_registers[1:3].sum()) == pytest.approx(0.10)
    assert float(with_registers[3:].sum()) == pytest.approx(0.45)
    plain = token_weights(5, n_prefix=1)
    assert float(plain[0]) == pytest.approx(0.5) and float(plain.sum()) == pytest.approx(1.0)
    no_cls = token_weights(8, n_prefix=0)  # no prefix token: every token alike
    assert torch.allclose(no_cls, torch.full((8,), 1 / 8))
    with pytest.raises(ValueError, match="n_prefix"):
        token_weights(4, n_prefix=4)


def test_forcing_weight_decays_linearly_over_the_first_quarter():
    weights = [forcing_weight(step, 100) for step in range(100)]
    assert (
        weights[0] == 1.0
        and weights[10] == pytest.approx(0.6)
        and weights[20] == pytest.approx(0.2)
    )
    assert all(w == 0.0 for w in weights[25:])
    assert forcing_weight(0, 2) == 1.0 and forcing_weight(1, 2) == 0.0  # short stages still decay


def test_teacher_forced_rollout_mixes_teacher_and_own_state():
    # Reference: a hand-written loop over the blocks with the documented input mixing.
    model = small_vit()
    view = view_of(model)
    states = view.states(images(3))
    teacher = states + 0.1 * torch.randn(states.shape, generator=torch.Generator().manual_seed(7))
    raptor = Raptor(view.layers, [(1, 2), (3, 4)], dim=16).eval()
    with torch.no_grad():
        forced = raptor(states[0], teacher, forcing=0.3, restart_phases=True)
        x, expected = states[0], []
        for layer, block in zip(range(1, 5), [0, 0, 1, 1], strict=True):
            x = teacher[layer - 1] if layer in (1, 3) else 0.3 * teacher[layer - 1] + 0.7 * x
            x = raptor.blocks[block](x, layer / 4)
            expected.append(x)
        assert torch.allclose(forced, torch.stack(expected), atol=1e-6)
        # forcing 1 without restarts: every block reads the teacher's state
        full = raptor(states[0], teacher, forcing=1.0)
        one_step = torch.stack(
            [
                raptor.blocks[block](teacher[layer - 1], layer / 4)
                for layer, block in zip(range(1, 5), [0, 0, 1, 1], strict=True)
            ]
        )
        assert torch.allclose(full, one_step, atol=1e-6)


def test_untrained_one_block_per_layer_surrogate_scores_like_the_original():
    # lr 0: the surrogate stays the original, so every probe score must equal the original's.
    model = small_vit()
    train, test = images(60, seed=1), images(30, seed=2)
    labels = (train.mean((1, 2)) > train.mean()).long()
    test_labels = (test.mean((1, 2)) > train.mean()).long()
    fit = fit_raptor(
        model,
        train,
        [(layer, layer) for layer in range(1, 5)],
        labels=labels,
        eval_inputs=test,
        eval_labels=test_labels,
        phase_steps=2,
        end_to_end_steps=2,
        batch_size=8,
        lr=0.0,
    )
    assert float(fit.layer_error.max()) < 1e-10
    assert fit.surrogate_accuracy == fit.teacher_accuracy == fit.retrained_accuracy
    assert fit.recovery == 1.0 and fit.teacher_accuracy > 0.8  # the brightness label is learnable


def test_fit_trains_evaluates_saves_and_rebuilds(tmp_path):
    model = small_vit()
    train, test = images(48, seed=1), images(24, seed=2)
    labels = torch.arange(48) % 3
    test_labels = torch.arange(24) % 3
    fit = fit_raptor(
        model,
        train,
        [(1, 2), (3, 4)],
        labels=labels,
        eval_inputs=test,
        eval_labels=test_labels,
        phase_steps=12,
        end_to_end_steps=12,
        batch_size=16,
        lr=3e-3,
    )
    assert fit.k == 2 and len(fit.loss_curve) == 24 and len(fit.layer_error) == 4
    assert fit.loss_curve[-4:].mean() < fit.loss_curve[:4].mean()
    assert fit.recovery == pytest.approx(fit.surrogate_accuracy / fit.teacher_accuracy)
    assert "recovery" in fit.table() and fit.figure() is not None
    loaded = RaptorFit.load(fit.save(tmp_path / "raptor"))
    assert loaded.spans == [[1, 2], [3, 4]]
    rebuilt = loaded.surrogate(model)
    states = view_of(model).states(test)
    with torch.no_grad():
        error = (rebuilt(states[0]) - states[1:]).pow(2).mean((1, 2, 3)) / states[1:].pow(2).mean(
            (1, 2, 3)
        )
    assert torch.allclose(error, fit.layer_error, rtol=1e-4, atol=1e-7)


def test_bad_phases_are_named():
    with pytest.raises(ValueError, match="contiguous runs covering"):
        phase_spans([(1, 2), (4, 4)], 4)
    with pytest.raises(ValueError, match="do not cover"):
        phase_spans([(1, 2)], 4)
    with pytest.raises(ValueError, match="eval_labels"):
        fit_raptor(small_vit(), images(4), [(1, 4)], labels=torch.zeros(4), eval_inputs=images(4))
    with pytest.raises(TypeError, match="attention and MLP"):
        from interp.depth.views import branches

        branches(torch.nn.Linear(2, 2))
