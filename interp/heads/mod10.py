"""Mod-10 features of numeric tokens and the vector-arithmetic test (Gould et al. 2023, §4).

Gould et al. (arXiv 2312.09230) find directions ``f_k`` in the effective embeddings (MLP0
outputs) of numeric tokens that encode the value modulo 10, and use them to *edit a successor
head's behaviour*: ``e('twelve') − f_2 + f_4`` reads as 'fourteen' to the successor head, whose
OV circuit then outputs the successor of the edited token. REFERENCE.md summarises the result as
"decodes to 'fourteen' in most cases for 20–29, about half for months, fails for days and
letters". Here:

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
  target value v − a + b is an item t' of the same task, the edited embedding ``e(t) − f_a +
  f_b`` is decoded through the head's OV circuit and the unembedding
  (:func:`interp.heads.successor.ov_logits`: attention-input norm, ``W_V``, ``W_O``, the final
  norm's linear part, ``W_U``), with the argmax taken over the task's tokens. What counts as
  success depends on what the head does to the token it reads (``expect=``):

  - ``"successor"`` (default; the paper's setting, a successor head): the argmax is
    ``succ(t')``, the head's output for the shifted token (``'fifteen'`` for the example above:
    the edit makes the head read 'fourteen'). Cases whose t' has no successor in the task (the
    last item of a linear task) are skipped.
  - ``"shifted"``: the argmax is t' itself, for a head (or decoder) that maps a token to itself.

  ``baseline`` is the same decoding of the unedited ``e(t)`` on the same cases, scored against
  the expected output for t (``succ(t)`` or ``t``): how well the head handles the token before
  the edit. Chance is 1 / (number of task tokens). The paper's own decoding details (the exact
  readout of its vector-arithmetic figure) could not be checked offline; this follows its stated
  aim, editing the successor head's output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import plotly.graph_objects as go
import torch

from interp import __version__
from interp.heads.checks import check_model
from interp.heads.ordinal_tasks import OrdinalTask, ResolvedTask, resolve_tasks
from interp.heads.successor import EMBEDDINGS, Embedding, effective_embedding, ov_logits
from interp.results import Result

EXPECT = ("successor", "shifted")


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
            "arithmetic e(t) - f_a + f_b through the head: success = the argmax over the task is "
            + (
                "succ(t'), t' the shifted token; baseline = e(t) gives succ(t)"
                if self.settings.get("expect", "successor") == "successor"
                else "t' itself; baseline = e(t) gives t"
            ),
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
    task: ResolvedTask, means: dict[int, torch.Tensor], expect: str
) -> tuple[list[int], list[int], list[int], torch.Tensor | None]:
    """Every (item, digit b) whose target value v - a + b is an item of the task (and, with
    ``expect="successor"``, has a successor there; so must the item itself): the source indices,
    the expected outputs for the edited and for the unedited input, and the shifts
    ``f_b - f_a`` stacked ``[cases, d]`` (None when there is no case)."""
    where = {v: i for i, v in enumerate(task.values)}
    output = dict(task.pairs) if expect == "successor" else {i: i for i in range(len(task.values))}
    source, edited, plain, shifts = [], [], [], []
    for i, v in enumerate(task.values):
        a = v % 10
        for b in means:
            target = where.get(v - a + b)
            if a in means and b != a and target in output and i in output:
                source.append(i)
                edited.append(output[target])
                plain.append(output[i])
                shifts.append(means[b] - means[a])
    return source, edited, plain, torch.stack(shifts) if shifts else None


def mod10_features(
    model,
    head: tuple[int, int],
    *,
    embedding: Embedding = "mlp0",
    tasks: Sequence[OrdinalTask] | None = None,
    folds: int = 5,
    seed: int = 0,
    expect: Literal["successor", "shifted"] = "successor",
) -> Mod10Features:
    """Probe the mod-10 features and run the vector-arithmetic test through ``head``.

    ``tasks`` as in :func:`interp.heads.successor_scores`; the numeric ones (``numeric=True``)
    train the probe and define ``f_k``; every task gets an arithmetic success rate. ``expect``
    says what a successful edit makes the head output (see the module docstring).
    """
    check_model(model, "mod10_features")
    if expect not in EXPECT:
        raise ValueError(f"expect must be one of {EXPECT}, got {expect!r}")
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
        source, edited, unedited, shift = _shift_cases(task, means, expect)
        cases[task.name] = len(source)
        if not source:
            continue
        task_ids = torch.tensor(task.token_ids)
        embeds = effective_embedding(model, task_ids, embedding)
        plain = ov_logits(model, embeds[source], task_ids, layers=[layer])[0, index]
        shifted = ov_logits(model, embeds[source] + shift, task_ids, layers=[layer])[0, index]
        want_edited = torch.tensor(edited, device=plain.device)
        want_plain = torch.tensor(unedited, device=plain.device)
        success[task.name] = float((shifted.argmax(-1) == want_edited).double().mean())
        baseline[task.name] = float((plain.argmax(-1) == want_plain).double().mean())
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
            "expect": expect,
            "decoded_through": "the head's OV circuit, final-norm linear part and W_U; argmax "
            "over the task's tokens",
            "interp_version": __version__,
        },
    )
