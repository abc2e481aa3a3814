"""Linear-probe evaluation of final features, the paper's yardstick for a Raptor surrogate.

Features are the CLS token and the mean of the patch tokens after the model's final norm,
concatenated (the usual DINOv2 linear-evaluation features). The probe is a multinomial logistic
regression on standardized features, fitted on the original model's training features.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from interp.depth.views import DepthView


def final_features(view: DepthView, last: torch.Tensor) -> np.ndarray:
    """[N, 2·D] features from last-block tokens [N, T, D]: CLS and mean patch token, normalized."""
    with torch.no_grad():
        tokens = view.final_norm(last) if view.final_norm is not None else last
    return torch.cat([tokens[:, 0], tokens[:, view.n_prefix :].mean(dim=1)], dim=-1).numpy()


def _probe(features: np.ndarray, labels: torch.Tensor):
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return probe.fit(features, labels.numpy())


def probe_accuracies(
    view: DepthView,
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> dict[str, float]:
    """Accuracies of the original's probe on original and surrogate features, and of a refitted one.

    ``train`` / ``test``: (original last-block tokens, surrogate last-block tokens, labels).
    """
    (train_teacher, train_surrogate, train_labels), (test_teacher, test_surrogate, test_labels) = (
        train,
        test,
    )
    y = test_labels.numpy()
    probe = _probe(final_features(view, train_teacher), train_labels)
    teacher = float((probe.predict(final_features(view, test_teacher)) == y).mean())
    surrogate = float((probe.predict(final_features(view, test_surrogate)) == y).mean())
    refit = _probe(final_features(view, train_surrogate), train_labels)
    retrained = float((refit.predict(final_features(view, test_surrogate)) == y).mean())
    return {
        "teacher": teacher,
        "surrogate": surrogate,
        "retrained": retrained,
        "recovery": surrogate / teacher if teacher > 0 else float("nan"),
    }
