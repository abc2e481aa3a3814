"""Layer similarity: cosine distance and linear CKA against float64 references; model views."""

from __future__ import annotations

import pytest
import torch

from interp.depth import LayerSimilarity, layer_similarity, view_of
from interp.depth.similarity import cosine_distance, linear_cka, summarize_tokens
from interp.depth.views import branches, language_model_states


def reference_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Kornblith et al. 2019, eq. for linear CKA: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)."""
    x = (x - x.mean(0)).double()
    y = (y - y.mean(0)).double()
    return float((y.T @ x).norm() ** 2 / ((x.T @ x).norm() * (y.T @ y).norm()))


def test_cosine_distance_matches_a_loop_reference():
    states = torch.randn(4, 2, 7, 5, generator=torch.Generator().manual_seed(0))
    expected = torch.zeros(4, 4, dtype=torch.float64)
    for i in range(4):
        for j in range(4):
            cos = torch.nn.functional.cosine_similarity(
                states[i].double(), states[j].double(), dim=-1
            )
            expected[i, j] = (1 - cos).mean()
    assert torch.allclose(cosine_distance(states).double(), expected.fill_diagonal_(0), atol=1e-6)


@pytest.mark.parametrize("samples,dim", [(6, 10), (40, 3)])  # Gram path, covariance path
def test_linear_cka_matches_reference_on_both_paths(samples, dim):
    groups = torch.randn(3, 2, samples, dim, generator=torch.Generator().manual_seed(1)).double()
    cka = linear_cka(groups)
    for i in range(3):
        for j in range(3):
            expected = sum(reference_cka(groups[i, g], groups[j, g]) for g in range(2)) / 2
            assert float(cka[i, j]) == pytest.approx(expected, abs=1e-10)


def test_cka_is_invariant_to_rotation_and_scale_but_cosine_is_not_to_shift():
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(2))
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(3)))
    states = torch.stack([x, 3.0 * x @ rotation, x + 5.0])
    cka = layer_similarity(states, metric="cka")
    assert cka.matrix[0, 1] == pytest.approx(0.0, abs=1e-5)
    assert cka.matrix[0, 2] == pytest.approx(0.0, abs=1e-5)  # CKA centres: a shift changes nothing
    cosine = layer_similarity(states, metric="cosine")
    assert cosine.matrix[0, 2] > 0.1


def test_cls_and_mean_tokens_are_the_papers_two_tokens():
    states = torch.randn(2, 3, 5, 4)
    groups = summarize_tokens(states, "cls+mean", n_prefix=2)
    assert torch.equal(groups[:, 0], states[:, :, 0])
    assert torch.allclose(groups[:, 1], states[:, :, 2:].mean(2))
    assert summarize_tokens(states, "all").shape == (2, 1, 15, 4)
    assert torch.equal(summarize_tokens(states, "last+mean")[:, 0], states[:, :, -1])


def test_precomputed_list_input_save_load_and_figure(tmp_path):
    layers = [torch.randn(10, 6) for _ in range(4)]
    result = layer_similarity(layers, first_layer=1)
    assert result.layers == [1, 2, 3, 4] and result.tokens == "given"
    assert torch.allclose(result.matrix, result.matrix.T)
    loaded = LayerSimilarity.load(result.save(tmp_path / "sim"))
    assert torch.equal(loaded.matrix, result.matrix)
    assert "1 - cos" in result.figure().layout.title.text
    assert result.table().count("\n") == 5


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="metric"):
        layer_similarity(torch.randn(3, 4, 5), metric="euclid")
    with pytest.raises(ValueError, match="tokens must be one of"):
        layer_similarity(torch.randn(3, 4, 2, 5), tokens="pooled")
    with pytest.raises(ValueError, match="same shape"):
        layer_similarity([torch.randn(4, 5), torch.randn(4, 6)])
    with pytest.raises(ValueError, match="NaN"):
        layer_similarity(torch.full((3, 4, 5), float("nan")))
    with pytest.raises(ValueError, match="shape"):
        layer_similarity(torch.randn(3, 4))
    with pytest.raises(TypeError, match="representations"):
        layer_similarity("blocks")
    with pytest.raises(TypeError, match="block structure"):
        view_of(torch.nn.Linear(3, 3))


def _hf_models():
    from transformers import (
        Dinov2Config,
        Dinov2Model,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
        ViTConfig,
        ViTModel,
    )

    torch.manual_seed(0)
    shape = {
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "image_size": 16,
        "patch_size": 4,
    }
    return [
        (ViTModel(ViTConfig(**shape, intermediate_size=64)), 1),
        (Dinov2Model(Dinov2Config(**shape, mlp_ratio=2)), 1),
        (
            Dinov2WithRegistersModel(
                Dinov2WithRegistersConfig(**shape, mlp_ratio=2, num_register_tokens=2)
            ),
            3,
        ),
    ]


def test_hf_views_capture_the_residual_stream_and_split_blocks_exactly():
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    for model, n_prefix in _hf_models():
        model.eval()
        view = view_of(model)
        assert view.n_prefix == n_prefix and view.n_layers == 3
        states = view.states(images, batch_size=2)
        assert states.shape == (4, 3, 16 + n_prefix, 32)
        with torch.no_grad():
            output = model(pixel_values=images).last_hidden_state
            assert torch.allclose(view.final_norm(states[-1]), output, atol=1e-5)
            for layer, block in enumerate(view.layers):
                attention, mlp = branches(block)
                x = states[layer] + attention(states[layer])
                assert torch.allclose(x + mlp(x), states[layer + 1], atol=1e-5)
        result = layer_similarity(model, images)
        assert result.matrix.shape == (4, 4) and result.layers == [0, 1, 2, 3]


def test_language_model_states_and_similarity_against_hf_hidden_states(tiny_lm):
    # Reference: the HF model's own hidden states (embedding, each layer's output; transformers
    # replaces the last one by its final-normed version) and a float64 loop over the definition.
    texts = ["w1 w2 w3 w4 w5", "w6 w7 w8 w9 w10"]
    tokens = tiny_lm.to_tokens(texts)
    with torch.no_grad():
        hidden = tiny_lm.model(tokens, output_hidden_states=True).hidden_states
    states = language_model_states(tiny_lm, tokens)
    n = tiny_lm.n_layers
    assert torch.allclose(states[:n], torch.stack(hidden[:n]), atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(tiny_lm.model.model.norm(states[n]), hidden[n], atol=1e-5)
    result = layer_similarity(tiny_lm, tokens)
    assert result.tokens == "last+mean" and result.matrix.shape == (n + 1, n + 1)
    groups = [[s[:, -1].double(), s[:, 1:].double().mean(1)] for s in states]  # last, mean
    for i in range(n + 1):
        for j in range(n + 1):
            cos = [
                torch.nn.functional.cosine_similarity(groups[i][g], groups[j][g], dim=-1)
                for g in range(2)
            ]
            expected = float((1 - torch.cat(cos)).mean()) if i != j else 0.0
            assert float(result.matrix[i, j]) == pytest.approx(expected, abs=1e-5)


def test_generic_module_paths_give_the_same_states_as_the_builtin_view():
    from interp.depth import DigitsViT, ViTConfig

    torch.manual_seed(0)
    model = DigitsViT(ViTConfig(depth=11, dim=8, heads=2)).eval()
    images = torch.rand(4, 8, 8)
    generic = view_of(model, embed="embed", layers="blocks.*")
    assert generic.layer_paths == [f"blocks.{i}" for i in range(11)]  # numeric, not string, order
    assert torch.equal(generic.states(images), view_of(model).states(images))
    result = layer_similarity(generic, images, metric="cka")
    assert result.matrix.shape == (12, 12)
    with pytest.raises(ValueError, match="no module matches"):
        view_of(model, embed="embed", layers="layers.*")
    with pytest.raises(ValueError, match="give both"):
        view_of(model, layers="blocks.*")
