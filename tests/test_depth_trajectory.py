"""Trajectory diagnostics on hand-built states with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from interp.depth import Trajectories, trajectory_diagnostics
from interp.depth.trajectory import effective_rank


def test_effective_rank_of_equal_singular_values_is_the_rank():
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=torch.Generator().manual_seed(0)))
    for rank in (1, 3, 7):
        matrix = 2.5 * q[:, :rank] @ torch.eye(rank, 12)[:rank]
        assert float(effective_rank(matrix)) == pytest.approx(rank, rel=1e-6)


def test_effective_rank_matches_numpy_reference():
    matrix = torch.randn(3, 15, 6, generator=torch.Generator().manual_seed(1))
    for batch in range(3):
        s = np.linalg.svd(matrix[batch].double().numpy(), compute_uv=False)
        p = s / s.sum()
        assert float(effective_rank(matrix)[batch]) == pytest.approx(
            math.exp(-(p * np.log(p)).sum()), rel=1e-9
        )


def test_rotation_towards_final_direction_and_rank_one_updates():
    # Every token turns from e0 to e1 in 4 equal steps inside one plane: cos to final = cos of the
    # remaining angle, and every update lies in that plane (rank <= 2), with one direction per
    # layer shared by all tokens (rank 1).
    angles = torch.linspace(0, math.pi / 2, 5)
    path = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # [5, 2]
    states = torch.zeros(5, 3, 4, 6)
    states[..., :2] = path[:, None, None, :]
    result = trajectory_diagnostics(states)
    assert torch.allclose(result.cos_to_final_cls, torch.cos(math.pi / 2 - angles), atol=1e-6)
    assert torch.allclose(result.cos_to_final_tokens, torch.cos(math.pi / 2 - angles), atol=1e-6)
    assert torch.allclose(result.update_effective_rank, torch.ones(4), atol=1e-6)
    step = 2 * math.sin(math.pi / 16)  # chord of a pi/8 turn on the unit circle
    assert torch.allclose(result.update_relative_norm, torch.full((4,), step), atol=1e-6)


def test_class_separation_grows_when_classes_split(tmp_path):
    generator = torch.Generator().manual_seed(2)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    centres = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])[labels]
    noise = torch.randn(6, 3, generator=generator)
    # layer 0: pure noise; layer 1: noise + class centre; layer 2: class centre only
    cls = torch.stack([noise, noise * 0.3 + centres, centres])
    states = torch.stack([cls, cls], dim=2)  # [3, 6, 2, 3]
    result = trajectory_diagnostics(states, labels=labels)
    separation = result.class_separation
    assert separation[0] < separation[1] < separation[2]
    assert float(separation[2]) == pytest.approx(1.0)  # same class cos 1, different classes cos 0
    loaded = Trajectories.load(result.save(tmp_path / "traj"))
    assert torch.equal(loaded.class_separation, separation)
    rows = [line.split() for line in result.table().splitlines()[2:]]
    assert [int(row[0]) for row in rows] == [0, 1, 2]
    assert float(rows[2][1]) == pytest.approx(float(result.cos_to_final_cls[2]), abs=5e-4)
    assert float(rows[1][3]) == pytest.approx(float(result.update_effective_rank[0]), abs=5e-3)
    assert float(rows[2][-1]) == pytest.approx(1.0, abs=5e-4)  # class separation column
    assert len(result.figure().data) == 4


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="per-token states"):
        trajectory_diagnostics(torch.randn(3, 4, 5))
    with pytest.raises(ValueError, match="labels must have shape"):
        trajectory_diagnostics(torch.randn(3, 4, 2, 5), labels=torch.zeros(3))
