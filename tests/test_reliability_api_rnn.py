"""Reliability of RNN training and the fixed-point search (issue 14): divergence, singular
Jacobians, NaN input, and points in saturation classed as such."""

from __future__ import annotations

import pytest
import torch
from scipy.optimize import brentq
from torch import Tensor

from interp.errors import NonFiniteError, TrainingDivergedError
from interp.rnn import make_net, make_task, train
from interp.rnn.fixed_points import find_fixed_points, lm_phase
from interp.rnn.fixed_points_result import FixedPoints, classify_points
from interp.rnn.grammar_training import train_grammar_net


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------- training divergence
@pytest.mark.parametrize("kind", ["gru", "rnn_tanh"])
def test_training_at_a_huge_learning_rate_raises_naming_the_step(kind):
    task = make_task("flipflop")
    net = make_net(kind, task.input_size, 8, task.output_size, seed=0)
    with pytest.raises(
        TrainingDivergedError, match=r"diverged at step 2: the loss .* is above 1000 x .*lr=1e\+06"
    ):
        train(net, task, steps=30, lr=1e6, batch_size=16, eval_batch=32, progress=False)


def test_divergence_is_a_floating_point_error_and_the_bound_is_a_setting():
    task = make_task("parity")
    net = make_net("gru", task.input_size, 8, task.output_size, seed=0)
    with pytest.raises(FloatingPointError, match="Lower the learning rate"):
        train(net, task, steps=10, lr=1e6, batch_size=16, eval_batch=32, progress=False)
    net = make_net("gru", task.input_size, 8, task.output_size, seed=0)
    result = train(net, task, steps=5, lr=1e-2, batch_size=16, eval_batch=32, progress=False)
    assert result.settings["max_loss_ratio"] == 1e3 and result.steps_run == 5
    with pytest.raises(ValueError, match="max_loss_ratio must be > 1"):
        train(net, task, steps=5, max_loss_ratio=0.5, progress=False)


def test_grammar_curriculum_training_stops_on_divergence_too():
    with pytest.raises(TrainingDivergedError, match="diverged at step"):
        train_grammar_net("tomita1", hidden_size=4, curriculum=(4,), steps_per_stage=20, lr=1e7)


# ----------------------------------------------------------------- a hand-built net
class GatedTanh:
    """``h' = h + z(h) (tanh(W h) − h)``, ``W = diag(2, 0.5)``, gate ``z = σ(8 (2 − h₀))``.

    Where ``h₀ < 1.5`` the gate is open (z ≈ 1): ``h' = tanh(W h)``, with a saddle at 0
    (eigenvalues 2 and 0.5) and stable points at ``(±a, 0)``, ``a = tanh(2a)``. Where
    ``h₀ > 4`` the gate is shut (z < 1e-7): every state is (numerically) fixed and the Jacobian is
    the identity up to ``~27 z`` — the leak makes ``|λ₀|`` slightly above 1, which the old
    classifier called a saddle. These are saturated points.
    """

    weight = torch.tensor([2.0, 0.5], dtype=torch.float64)

    def initial_state(self, batch: int) -> Tensor:
        return torch.zeros(batch, 2, dtype=torch.float64)

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        gate = torch.sigmoid(8 * (2 - h[..., :1]))
        return h + gate * (torch.tanh(self.weight * h) - h)

    def readout(self, h: Tensor) -> Tensor:
        return h[..., :1]


def _gated_states() -> Tensor:
    g = torch.Generator().manual_seed(0)
    near = (torch.rand(200, 2, generator=g, dtype=torch.float64) * 2 - 1) * 1.2
    frozen = torch.rand(40, 2, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0])
    frozen += torch.tensor([4.5, -1.0])
    return torch.cat([near, frozen])


def test_saturated_region_is_saturated_and_the_true_saddle_is_the_only_saddle():
    fp = find_fixed_points(
        GatedTanh(), inputs=torch.zeros(1, dtype=torch.float64), initial_states=_gated_states(),
        n_starts=240, noise=0.0,
    )  # fmt: skip
    a = brentq(lambda v: torch.tanh(torch.tensor(2 * v)).item() - v, 0.1, 1.0)
    classes = fp.classes
    saddles = [k for k, c in enumerate(classes) if c == "saddle"]
    assert len(saddles) == 1, fp.table()
    torch.testing.assert_close(fp.points[saddles[0]], torch.zeros(2, dtype=torch.float64))
    stable = fp.points[fp.stable]
    torch.testing.assert_close(
        torch.sort(stable[:, 0]).values, torch.tensor([-a, a], dtype=torch.float64), atol=1e-6,
        rtol=0,
    )  # fmt: skip
    frozen = fp.points[:, 0] > 3.5
    assert int(frozen.sum()) >= 30
    assert {classes[k] for k in frozen.nonzero().view(-1).tolist()} == {"saturated"}
    # the leak pushes |λ| above 1 by less than the tolerance: that is what used to read "saddle"
    moduli = fp.eigenvalues.abs()[frozen]
    assert (moduli[:, 0] > 1).any() and (moduli - 1).abs().max() < 1e-3
    lines = fp.table().splitlines()
    assert (
        lines[1] == f"  2 stable, 0 marginal, {int(frozen.sum())} saturated, 1 saddle, 0 unstable"
    )
    assert lines[3] == "Modes (tol 0.001): unstable if |λ| > 1 + tol, marginal if ||λ| − 1| <= tol;"
    assert max(len(line) for line in lines) <= 80


def test_classify_points_by_hand():
    moduli = torch.tensor(
        [[0.5, 0.2], [1.0004, 0.5], [1.0004, 0.9999], [2.0, 0.5], [2.0, 1.5], [1.01, 1.0]]
    )
    n_unstable, n_marginal, classes = classify_points(moduli, 1e-3)
    assert classes == ["stable", "marginal", "saturated", "saddle", "unstable", "saddle"]
    assert n_unstable.tolist() == [0, 0, 0, 1, 2, 1]
    assert n_marginal.tolist() == [0, 1, 2, 0, 0, 1]


# ----------------------------------------------------------------- singular Jacobians, failures
class Drift:
    """``h' = h + (1, 0)``: no fixed point, and ``∂step/∂h − I = 0`` (singular everywhere)."""

    def initial_state(self, batch: int) -> Tensor:
        return torch.zeros(batch, 2, dtype=torch.float64)

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        return h + torch.tensor([1.0, 0.0], dtype=h.dtype)

    def readout(self, h: Tensor) -> Tensor:
        return h


def test_undamped_lm_on_a_singular_jacobian_survives_and_reports_it():
    h = torch.zeros(4, 2, dtype=torch.float64)
    diagnostics: dict[str, Tensor] = {}
    # damping=0 is plain Gauss-Newton: the normal matrix is exactly zero (torch.linalg.solve raised)
    out, q, _ = lm_phase(
        Drift(), h, torch.zeros(4, 1, dtype=torch.float64), iterations=50, q_tol=1e-12,
        damping=0.0, diagnostics=diagnostics,
    )  # fmt: skip
    assert diagnostics["singular"].all()
    torch.testing.assert_close(q, torch.full((4,), 0.5, dtype=torch.float64))  # never made worse
    assert diagnostics["stalled"].all()  # no damped step lowers q: the damping ran out


def test_no_fixed_point_reports_how_many_starts_failed_and_why():
    states = torch.randn(50, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fp = find_fixed_points(
        Drift(), inputs=torch.zeros(1, dtype=torch.float64), initial_states=states, n_starts=20
    )
    assert len(fp) == 0
    assert fp.counts["not_converged"] == 20
    assert fp.counts["stalled"] + fp.counts["out_of_budget"] == 20
    assert fp.table().splitlines()[2:4] == [
        "Dropped: 0 outliers, 0 duplicates, 20 not converged",
        f"  ({fp.counts['stalled']} stalled, {fp.counts['out_of_budget']} out of budget).",
    ]


def test_a_diverged_gru_no_longer_crashes_the_search():
    """The issue's case: a GRU trained at lr=1e6 made ``torch.linalg.solve`` raise (singular)."""
    task = make_task("flipflop")
    net = make_net("gru", task.input_size, 16, task.output_size, seed=0)
    train(net, task, steps=50, lr=1e6, progress=False, max_loss_ratio=None)
    fp = find_fixed_points(net, task=task, n_starts=256)
    c = fp.counts
    assert c["converged"] + c["slow"] + c["not_converged"] == 256
    assert c["stalled"] + c["out_of_budget"] == c["not_converged"]
    assert "saddle" not in {fp.classes[k] for k in range(len(fp)) if fp.n_unstable[k] == 0}


# ----------------------------------------------------------------- NaN input
def test_nan_starts_inputs_and_weights_raise():
    task = make_task("flipflop")
    net = make_net("gru", task.input_size, 8, task.output_size, seed=0)
    states = torch.randn(20, 8)
    states[3, 2] = float("nan")
    with pytest.raises(NonFiniteError, match=r"initial_states hold 1 NaN/inf value\(s\) of 160"):
        find_fixed_points(net, initial_states=states, n_starts=16)
    with pytest.raises(NonFiniteError, match="inputs hold"):
        find_fixed_points(
            net, initial_states=torch.randn(20, 8), inputs=torch.full((3,), float("inf"))
        )
    with torch.no_grad():
        net.weight_hh.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="weights hold NaN/inf in weight_hh"):
        find_fixed_points(net, task=task, n_starts=16)


def test_nan_from_a_protocol_objects_step_raises():
    class Broken(GatedTanh):
        def step(self, h: Tensor, x: Tensor) -> Tensor:
            return h * float("nan")

    with pytest.raises(NonFiniteError, match="the model's step at the starts"):
        find_fixed_points(
            Broken(), inputs=torch.zeros(1, dtype=torch.float64), initial_states=_gated_states()
        )


def test_counts_of_results_saved_before_the_reasons_still_print(tmp_path):
    fp = find_fixed_points(
        GatedTanh(), inputs=torch.zeros(1, dtype=torch.float64),
        initial_states=_gated_states()[:50], n_starts=20, noise=0.0,
    )  # fmt: skip
    for key in ("stalled", "out_of_budget", "singular"):
        fp.counts.pop(key)
    fp.save(tmp_path / "fp")
    assert "duplicates, 0 not converged." in FixedPoints.load(tmp_path / "fp").table()


def test_train_command_at_a_huge_learning_rate_is_one_line_and_saves_nothing(tmp_path):
    from typer.testing import CliRunner

    from interp.cli import app

    out = tmp_path / "run"
    args = ["train", "--task", "flipflop", "--steps", "10", "--lr", "1e6", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: training diverged at step 2: the loss")
    assert "Traceback" not in result.output and not out.exists()
