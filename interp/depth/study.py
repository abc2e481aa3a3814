"""End-to-end depth study of one model: similarity -> phases -> trajectories (-> Raptor), as a report.

Shared by the ``interp phases`` command, the notebook and the analyses scripts, so they all run
the same pipeline with the same settings.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from interp.depth.phases import Phases, segment_phases
from interp.depth.raptor import RaptorFit, fit_raptor
from interp.depth.similarity import LayerSimilarity, layer_similarity
from interp.depth.trajectory import Trajectories, trajectory_diagnostics
from interp.depth.vit import ViTConfig, digits_vit, load_digits, single_thread
from interp.viz import Report

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel


@dataclasses.dataclass
class DepthStudy:
    """The results of one study (each is a Result with table/figure/save)."""

    similarity: LayerSimilarity
    phases: Phases
    trajectories: Trajectories
    raptor: RaptorFit | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    def table(self) -> str:
        parts = [self.phases.table(), self.trajectories.table()]
        if self.raptor is not None:
            parts.append(self.raptor.table())
        return "\n\n".join(parts + self.notes)

    def report(self, title: str) -> Report:
        report = Report(title)
        for note in self.notes:
            report.text(note)
        report.heading("Layer dissimilarity and phases")
        report.preformatted(self.phases.table())
        report.figure(self.phases.figure())
        report.heading("Trajectories")
        report.preformatted(self.trajectories.table())
        report.figure(self.trajectories.figure())
        if self.raptor is not None:
            report.heading("Raptor surrogate")
            report.preformatted(self.raptor.table())
            report.figure(self.raptor.figure())
        return report


def study_digits(
    config: ViTConfig = ViTConfig(),
    *,
    k: int | None = None,
    method: str = "dp",
    epsilon: float = 0.1,
    metric: str = "cosine",
    raptor: bool = True,
    raptor_k: int = 2,
    phase_steps: int = 300,
    end_to_end_steps: int = 300,
    cache: bool = True,
) -> DepthStudy:
    """Train (or load) a digits ViT and study its depth on the held-out digits.

    Similarity, phases and trajectories use the test images; Raptor trains on the training images
    and is evaluated on the test images. Raptor uses ``k`` phases when given, else ``raptor_k``.
    """
    model = digits_vit(config, cache=cache)
    data = load_digits(config.seed)
    similarity = layer_similarity(model, data["test_images"], metric=metric)
    phases = segment_phases(similarity, k, method=method, epsilon=epsilon)
    trajectories = trajectory_diagnostics(model, data["test_images"], labels=data["test_labels"])
    notes = [
        f"digits ViT ({config.depth} blocks, dim {config.dim}, drop-path {config.drop_path}), "
        f"test accuracy of its own head {model.training_log['test_accuracy']:.4f}"
    ]
    fit = None
    if raptor:
        raptor_phases = _raptor_phases(similarity, phases, k or raptor_k)
        with single_thread():
            fit = fit_raptor(
                model,
                data["train_images"],
                raptor_phases,
                labels=data["train_labels"],
                eval_inputs=data["test_images"],
                eval_labels=data["test_labels"],
                phase_steps=phase_steps,
                end_to_end_steps=end_to_end_steps,
            )
    return DepthStudy(similarity, phases, trajectories, fit, notes)


def _raptor_phases(similarity: LayerSimilarity, phases: Phases, k: int) -> Phases:
    """The study's phases when they are k contiguous runs, else the exact k-phase DP split."""
    return phases if phases.k == k and phases.contiguous else segment_phases(similarity, k)


def study_language_model(
    model: LanguageModel,
    *,
    k: int | None = None,
    method: str = "dp",
    epsilon: float = 0.1,
    metric: str = "cosine",
    samples: int = 32,
    length: int = 64,
    raptor: bool = False,
    raptor_k: int = 3,
    eval_samples: int = 16,
    phase_steps: int = 100,
    end_to_end_steps: int = 100,
    batch_size: int = 4,
    lr: float = 3e-3,
) -> DepthStudy:
    """Similarity, phases and trajectories of a HookedLM's residual stream on corpus windows.

    With ``raptor``: a Raptor fit of the residual stream (``k`` phases when given, else
    ``raptor_k``) on the same ``samples`` windows, scored on the next ``eval_samples`` windows of
    the corpus (held out). The defaults fit a CPU budget (200 steps of 4 windows, several minutes
    for the embedded model), hence lr 3e-3 rather than the paper's 3e-4 for long runs (on the
    embedded model, 3e-3 beat 1e-3 at this budget).
    """
    from interp.depth.views import corpus_windows

    tokens = corpus_windows(model, samples, length)
    with torch.no_grad():
        similarity = layer_similarity(model, tokens, metric=metric)
        trajectories = trajectory_diagnostics(model, tokens)
    phases = segment_phases(similarity, k, method=method, epsilon=epsilon)
    notes = [f"{samples} windows of {length} tokens of the shipped corpus (after a BOS token)"]
    fit = None
    if raptor:
        held_out = corpus_windows(model, eval_samples, length, start=samples)
        fit = fit_raptor(
            model,
            tokens,
            _raptor_phases(similarity, phases, k or raptor_k),
            eval_inputs=held_out,
            phase_steps=phase_steps,
            end_to_end_steps=end_to_end_steps,
            batch_size=batch_size,
            lr=lr,
        )
        notes.append(f"Raptor scored on the next {eval_samples} windows of the corpus (held out)")
    return DepthStudy(similarity, phases, trajectories, fit, notes)
