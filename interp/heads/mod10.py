"""Mod-10 features of numeric tokens and the vector-arithmetic test (Gould et al. 2023, §4).

Gould et al. find directions ``f_k`` in the effective embeddings (MLP0 outputs) of numeric tokens
that encode the value modulo 10, and show that ``e('twelve') − f_2 + f_4`` decodes, through a
successor head's OV circuit, to ``'fourteen'`` in most cases for numbers, about half the time for
months, and not for days or letters. Here:

- Probe: a logistic regression (scikit-learn, standardized features) predicts ``value mod 10``
  from the effective embeddings of the numeric tasks' tokens (numbers, number words, ordinals,
  Roman numerals; one row per distinct token), with held-out accuracy (k-fold
  ``cross_val_predict``) next to chance, the majority-class frequency. Two splits: by *value*
  (``StratifiedGroupKFold``: every token of a value, "5", "five", " five", "V", is held out
  together, so the probe must carry the digit across values, 3 -> 13 — the mod-10 claim), and by
  *token* (``StratifiedKFold``), which lets spelling variants of the same value leak between
  train and test and so overstates the mod-10 structure. ``probe_accuracy`` is the by-value one.
- ``f_k`` = the mean effective embedding of the numeric tokens whose value is ≡ k (mod 10)
  (class means, not the probe's weight vectors: a difference ``f_b − f_a`` of class means moves
  an embedding by the mean offset between the classes, which is what the arithmetic needs).
- Arithmetic: for every token t of every task with value v (a = v mod 10) and every b ≠ a whose
  target value v − a + b is an item of the same task, decode ``e(t) − f_a + f_b`` through the
  head's OV circuit (:func:`interp.heads.successor.ov_logits`) and take the argmax over the
  task's tokens; success when it is the target. The baseline feeds ``e(t)`` unchanged (how often
  the head already outputs the target), chance is 1 / (number of task tokens).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import torch

from interp import __version__
from interp.heads.ordinal_tasks import OrdinalTask, ResolvedTask, resolve_tasks
from interp.heads.successor import EMBEDDINGS, Embedding, effective_embedding, ov_logits
from interp.results import Result


@dataclasses.dataclass
class Mod10Features(Result):
    """Probe accuracy for value mod 10, and per-task vector-arithmetic success through one head."""

    head: list[int]
    model: str
    embedding: str
    probe_accuracy: float
    probe_accuracy_tokens: float
    probe_chance: float
    n_numeric: int
    success: dict[str, float]
    baseline: dict[str, float]
    chance: dict[str, float]
    cases: dict[str, int]
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def table(self) -> str:
        layer, head = self.head
        lines = [
            f"mod-10 features — {self.model}, head L{layer}H{head}, embedding {self.embedding}",
            f"probe (value mod 10, {self.n_numeric} numeric tokens, {self.settings.get('folds')}-fold): "
            f"accuracy {self.probe_accuracy:.3f} on held-out values, {self.probe_accuracy_tokens:.3f} on "
            f"held-out tokens (chance {self.probe_chance:.3f})",
            "",
            f"{'task':<28}{'cases':>7}{'success':>10}{'baseline':>10}{'chance':>9}",
        ]
        for task, count in self.cases.items():
            if count:
                lines.append(
                    f"{task:<28}{count:>7}{self.success[task]:>10.3f}{self.baseline[task]:>10.3f}{self.chance[task]:>9.3f}"
                )
            else:
                lines.append(f"{task:<28}{0:>7}{'—':>10}{'—':>10}{self.chance[task]:>9.3f}")
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        tasks = [t for t, n in self.cases.items() if n]
        fig = go.Figure()
        for name, values in (
            ("e(t) − f_a + f_b", self.success),
            ("e(t) unchanged", self.baseline),
            ("chance", self.chance),
        ):
            fig.add_trace(go.Bar(name=name, x=tasks, y=[values[t] for t in tasks]))
        layer, head = self.head
        fig.update_layout(
            barmode="group",
            title=f"Mod-10 vector arithmetic through L{layer}H{head} (probe accuracy {self.probe_accuracy:.2f}, "
            f"chance {self.probe_chance:.2f})",
            xaxis_title="task",
            yaxis_title="fraction decoded to the shifted token",
            yaxis={"range": [0, 1]},
            template="plotly_white",
        )
        return fig


def _numeric_tokens(tasks: Sequence[ResolvedTask]) -> tuple[list[int], list[int]]:
    """Distinct (token, value) of the numeric tasks (first task wins for a shared token)."""
    seen: dict[int, int] = {}
    for task in tasks:
        if task.task.numeric:
            for token, value in zip(task.token_ids, task.values, strict=True):
                seen.setdefault(token, value)
    return list(seen), list(seen.values())


def _probe(
    features: torch.Tensor, labels: list[int], groups: list[int], folds: int, seed: int
) -> tuple[float, float, float]:
    """Held-out accuracy with values held out, with tokens held out, and the chance level."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = features.double().cpu().numpy(), np.asarray(labels)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    by_value = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    by_token = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    values = cross_val_predict(probe, x, y, cv=by_value, groups=np.asarray(groups))
    tokens = cross_val_predict(probe, x, y, cv=by_token)
    chance = np.bincount(y).max() / len(y)
    return float((values == y).mean()), float((tokens == y).mean()), float(chance)


def _shift_cases(
    task: ResolvedTask, means: dict[int, torch.Tensor]
) -> tuple[list[int], list[int], torch.Tensor | None]:
    """Every (item, digit b) whose target value v - a + b is in the task: source and target
    item indices, and the shifts ``f_b - f_a`` stacked ``[cases, d]`` (None when no case)."""
    where = {v: i for i, v in enumerate(task.values)}
    source, target, shifts = [], [], []
    for i, v in enumerate(task.values):
        a = v % 10
        for b in means:
            if a in means and b != a and v - a + b in where:
                source.append(i)
                target.append(where[v - a + b])
                shifts.append(means[b] - means[a])
    return source, target, torch.stack(shifts) if shifts else None


def mod10_features(
    model,
    head: tuple[int, int],
    *,
    embedding: Embedding = "mlp0",
    tasks: Sequence[OrdinalTask] | None = None,
    folds: int = 5,
    seed: int = 0,
) -> Mod10Features:
    """Probe the mod-10 features and run the vector-arithmetic test through ``head``.

    ``tasks`` as in :func:`interp.heads.successor_scores`; the numeric ones (``numeric=True``)
    train the probe and define ``f_k``; every task gets an arithmetic success rate.
    """
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}")
    if not (
        isinstance(head, Sequence) and len(head) == 2 and all(isinstance(i, int) for i in head)
    ):
        raise TypeError(f"head must be a (layer, head) pair of ints, got {head!r}")
    layer, index = head
    if not (0 <= layer < model.n_layers and 0 <= index < model.n_heads):
        raise ValueError(
            f"head {head} outside the model's {model.n_layers} layers x {model.n_heads} heads"
        )
    kept, dropped = resolve_tasks(model.tokenizer, model.d_vocab, tasks)
    tokens, values = _numeric_tokens(kept)
    labels = [v % 10 for v in values]
    if len(set(labels)) < 2 or len(tokens) < max(folds, 10):
        raise ValueError(
            f"the mod-10 probe needs at least {max(folds, 10)} single-token numeric items in two or more "
            f"classes; this tokenizer leaves {len(tokens)} in {len(set(labels))} class(es)"
        )
    features = effective_embedding(model, torch.tensor(tokens), embedding)
    accuracy, token_accuracy, chance = _probe(features, labels, values, folds, seed)
    label_t = torch.tensor(labels, device=features.device)
    means = {k: features[label_t == k].mean(0) for k in sorted(set(labels))}

    success, baseline, cases = {}, {}, {}
    for task in kept:
        source, target, shift = _shift_cases(task, means)
        cases[task.name] = len(source)
        if not source:
            continue
        task_ids = torch.tensor(task.token_ids)
        embeds = effective_embedding(model, task_ids, embedding)
        plain = ov_logits(model, embeds, task_ids, layers=[layer])[0, index]
        shifted = ov_logits(model, embeds[source] + shift, task_ids, layers=[layer])[0, index]
        target_t = torch.tensor(target, device=plain.device)
        success[task.name] = float((shifted.argmax(-1) == target_t).double().mean())
        baseline[task.name] = float((plain[source].argmax(-1) == target_t).double().mean())
    return Mod10Features(
        head=[layer, index],
        model=model.name,
        embedding=embedding,
        probe_accuracy=accuracy,
        probe_accuracy_tokens=token_accuracy,
        probe_chance=chance,
        n_numeric=len(tokens),
        success=success,
        baseline=baseline,
        chance={t.name: 1.0 / len(t.token_ids) for t in kept},
        cases=cases,
        settings={
            "folds": folds,
            "seed": seed,
            "tasks": [t.name for t in kept],
            "numeric_tasks": [t.name for t in kept if t.task.numeric],
            "dropped_tasks": dropped,
            "f_k": "class means of numeric tokens' effective embeddings",
            "interp_version": __version__,
        },
    )
