"""End-to-end depth study of one model: similarity -> phases -> trajectories (-> Raptor), as a report.

Shared by the ``interp phases`` command, the notebook and the analyses scripts, so they all run
the same pipeline with the same settings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from interp.depth.phases import Phases, segment_phases
from interp.depth.raptor import RaptorFit, fit_raptor
from interp.depth.similarity import LayerSimilarity, layer_similarity
from interp.depth.trajectory import Trajectories, trajectory_diagnostics
from interp.depth.vit import ViTConfig, digits_vit, load_digits, single_thread
from interp.viz import Report


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
        raptor_phases = phases if phases.k == (k or raptor_k) and phases.contiguous else None
        raptor_phases = raptor_phases or segment_phases(similarity, k or raptor_k, method="dp")
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


def study_language_model(
    model: Any,
    *,
    k: int | None = None,
    method: str = "dp",
    epsilon: float = 0.1,
    metric: str = "cosine",
    samples: int = 32,
    length: int = 64,
) -> DepthStudy:
    """Similarity, phases and trajectories of a HookedLM's residual stream on corpus windows."""
    from interp.depth.views import corpus_windows

    tokens = corpus_windows(model, samples, length)
    with torch.no_grad():
        similarity = layer_similarity(model, tokens, metric=metric)
        trajectories = trajectory_diagnostics(model, tokens)
    phases = segment_phases(similarity, k, method=method, epsilon=epsilon)
    note = f"{samples} windows of {length} tokens of the shipped corpus (after a BOS token)"
    return DepthStudy(similarity, phases, trajectories, None, [note])
