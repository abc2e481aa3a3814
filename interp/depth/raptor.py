"""Raptor: rewrite an L-block network as k weight-tied blocks applied recurrently (Jacobs et al. 2025).

This module holds the surrogate, its training loop and the vision path (linear-probe evaluation);
:mod:`interp.depth.raptor_lm` adds causal language models (Llama-style decoder layers, next-token
evaluation). :func:`fit_raptor` takes either.

For each phase [a..b] found by :func:`interp.depth.segment_phases`, one block of the original's
type (a copy of the phase's middle layer, a good starting point) is applied b - a + 1 times. The
layer index t = l / L enters through a small MLP (1 -> 16 -> 3·dim, SiLU) whose last layer starts
at zero weight and bias 1, so every scale starts at 1 and the surrogate starts as "the middle
layer, repeated":

    (t1, t2, t3) = MLP(t);   x <- x + t1 ⊙ Attn-branch(x);   x <- x + t2 ⊙ MLP-branch(x);   x <- t3 ⊙ x

(the branches include the block's own pre-norms and LayerScales, arXiv 2512.19941 §Raptor).

Training follows the paper: per-token MSE to the teacher's block outputs (vision: CLS / registers /
patch tokens weighted 0.45 / 0.10 / 0.45, patches and registers sharing their weight equally;
language models: see :mod:`interp.depth.raptor_lm`), AdamW
(lr 3e-4, weight decay 1e-4) with a cosine schedule. Stage 1 trains each phase's block from the
teacher's state at the phase start, the input of every step mixing teacher state and the block's
own previous output with a teacher-forcing weight that decays linearly from 1 to 0 over the first
quarter of the stage-1 steps; stage 2 trains the whole surrogate end to end autoregressively from
the embedding. The phases' blocks train together in stage 1 (they are independent given the
teacher's states, so this equals training them one after another).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import nn

from interp import __version__
from interp.depth.phases import Phases
from interp.depth.probe import probe_accuracies
from interp.depth.views import branches, is_language_model, view_of
from interp.results import Result


class DepthConditioning(nn.Module):
    """t -> (t1, t2, t3), each [dim]: Linear(1, 16) - SiLU - Linear(16, 3·dim), outputs start at 1."""

    def __init__(self, dim: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, 3 * dim))
        nn.init.zeros_(self.net[2].weight)
        nn.init.ones_(self.net[2].bias)

    def forward(self, t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scales = self.net(
            torch.tensor([[t]], dtype=self.net[0].weight.dtype, device=self.net[0].weight.device)
        )
        return scales[0].chunk(3)


class RaptorBlock(nn.Module):
    """A copy of one original block whose two residual branches and output are scaled by t."""

    def __init__(self, layer: nn.Module, dim: int) -> None:
        super().__init__()
        self.layer = copy.deepcopy(layer)
        branches(self.layer)  # fail early for block types Raptor cannot split
        self.conditioning = DepthConditioning(dim)

    def forward(
        self, x: torch.Tensor, t: float, context: dict[str, Any] | None = None
    ) -> torch.Tensor:
        attention, mlp = branches(self.layer, context)  # per call: survives copies of the module
        t1, t2, t3 = self.conditioning(t)
        x = x + t1 * attention(x)
        x = x + t2 * mlp(x)
        return t3 * x


class Raptor(nn.Module):
    """k weight-tied blocks; block p is applied once per layer of phase p (in depth order).

    ``layers``: the original's L blocks (block l is ``layers[l-1]``); phase [a..b] starts from a
    copy of block (a + b) // 2.
    """

    def __init__(self, layers: Sequence[nn.Module], spans: list[tuple[int, int]], dim: int) -> None:
        super().__init__()
        self.spans = [tuple(span) for span in spans]
        self.n_layers = len(layers)
        self.blocks = nn.ModuleList(
            RaptorBlock(layers[(a + b) // 2 - 1], dim) for a, b in self.spans
        )
        self.schedule = [p for p, (a, b) in enumerate(self.spans) for _ in range(a, b + 1)]
        self.starts = {a for a, _ in self.spans}

    def context(self, x0: torch.Tensor) -> dict[str, Any] | None:
        """What the blocks need besides the state (nothing for vision blocks)."""
        return None

    def forward(
        self,
        x0: torch.Tensor,
        teacher: torch.Tensor | None = None,
        forcing: float = 0.0,
        restart_phases: bool = False,
    ) -> torch.Tensor:
        """Block outputs [L, N, T, D] from the embedding x0 [N, T, D].

        With ``teacher`` states [L+1, N, T, D]: each step's input is
        ``forcing * teacher[l-1] + (1 - forcing) * own previous output``, and with
        ``restart_phases`` every phase starts from the teacher's state (stage 1).
        """
        context = self.context(x0)
        x, outputs = x0, []
        for layer in range(1, self.n_layers + 1):  # the recurrence is sequential in depth
            if teacher is not None and (restart_phases and layer in self.starts):
                x = teacher[layer - 1]
            elif teacher is not None and forcing > 0.0:
                x = forcing * teacher[layer - 1] + (1.0 - forcing) * x
            x = self.blocks[self.schedule[layer - 1]](x, layer / self.n_layers, context)
            outputs.append(x)
        return torch.stack(outputs)


def forcing_weight(step: int, steps: int, fraction: float = 0.25) -> float:
    """Teacher-forcing weight of stage-1 step ``step``: 1 at step 0, falling linearly to 0 at
    ``fraction * steps`` and 0 after (the paper's schedule: the first quarter of the steps)."""
    return max(0.0, 1.0 - step / max(1.0, fraction * steps))


Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def train_raptor(
    raptor: Raptor,
    teacher: torch.Tensor,
    loss: Loss,
    *,
    phase_steps: int,
    end_to_end_steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    generator: torch.Generator,
) -> list[float]:
    """The two training stages (module docstring) on teacher states [L+1, N, T, D]; the loss curve."""
    raptor.train()
    optimizer = torch.optim.AdamW(raptor.parameters(), lr=lr, weight_decay=weight_decay)
    curve: list[float] = []
    for stage, steps in (("phases", phase_steps), ("end-to-end", end_to_end_steps)):
        for group in optimizer.param_groups:
            group["lr"] = lr
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
        for step in range(steps):
            idx = torch.randint(0, teacher.shape[1], (batch_size,), generator=generator)
            target = teacher[:, idx.to(teacher.device)]
            if stage == "phases":
                forcing = forcing_weight(step, steps)
                pred = raptor(target[0], target, forcing=forcing, restart_phases=True)
            else:
                pred = raptor(target[0])
            value = loss(pred, target[1:])
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            schedule.step()
            curve.append(value.item())
    return curve


def rollout(raptor: Raptor, x0: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Autoregressive block outputs [L, N, T, D] from the embedding, in eval mode, in chunks."""
    raptor.eval()
    with torch.no_grad():
        return torch.cat([raptor(x0[i : i + chunk]) for i in range(0, len(x0), chunk)], 1)


def check_steps(phase_steps: int, end_to_end_steps: int) -> None:
    if phase_steps < 0 or end_to_end_steps < 0 or phase_steps + end_to_end_steps == 0:
        raise ValueError("phase_steps and end_to_end_steps must be >= 0 and not both 0")


@dataclasses.dataclass
class RaptorFit(Result):
    """A trained Raptor surrogate and how well it reproduces the original.

    ``layer_error[l-1]``: the surrogate's relative error at block l on the evaluation inputs
    (autoregressive from the embedding): vision, mean ||s_l - t_l||² / mean ||t_l||²; language,
    the squared error standardized per channel, as in the training loss
    (:func:`interp.depth.raptor_lm.standardized_error`).

    Vision, with labels: ``teacher_accuracy`` of a linear probe on the original's final features
    (CLS and mean patch token after the final norm), ``surrogate_accuracy`` of that same probe on
    the surrogate's features, ``retrained_accuracy`` of a probe refitted on the surrogate's
    features, and ``recovery`` = surrogate / teacher accuracy.

    Language: ``next_token`` (see :func:`interp.depth.raptor_lm.next_token_metrics`) holds the
    top-1 agreement with the original and the losses of the original, the surrogate and the
    untrained surrogate, and ``recovery`` = the share of the loss gap between a uniform guess
    (ln V) and the original that the surrogate closes.
    """

    spans: list[list[int]]
    layer_error: torch.Tensor
    loss_curve: torch.Tensor
    surrogate_state: dict[str, torch.Tensor]
    teacher_accuracy: float | None
    surrogate_accuracy: float | None
    retrained_accuracy: float | None
    recovery: float | None
    n_params_original: int
    n_params_surrogate: int
    source: str
    next_token: dict[str, float] | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    version: str = __version__

    @property
    def k(self) -> int:
        return len(self.spans)

    def surrogate(self, model: Any) -> Raptor:
        """Rebuild the trained surrogate (needs the original model for the block type)."""
        spans = [tuple(s) for s in self.spans]
        if self.settings.get("kind") == "language":
            from interp.depth.raptor_lm import LanguageRaptor

            # fit_language_raptor trains in float32 on the model's device; rebuild it the same way
            raptor: Raptor = LanguageRaptor(model, spans).to(model.device, torch.float32)
        else:
            raptor = Raptor(view_of(model).layers, spans, self.settings["dim"])
        raptor.load_state_dict(self.surrogate_state)
        return raptor.eval()

    def table(self) -> str:
        spans = "".join(f"[{a}-{b}]" for a, b in self.spans)
        error = "standardized error" if self.next_token is not None else "relative error"
        lines = [
            f"Raptor surrogate of {self.source}: {self.k} blocks {spans}, "
            f"{self.n_params_surrogate:,} block parameters (original {self.n_params_original:,})",
            f"final-layer {error} {float(self.layer_error[-1]):.4f}, "
            f"mean over layers {float(self.layer_error.mean()):.4f}"
            + (" (1 = no better than each channel's zero)" if self.next_token is not None else ""),
        ]
        if self.teacher_accuracy is not None:
            lines.append(
                f"linear probe: original {self.teacher_accuracy:.4f}, surrogate {self.surrogate_accuracy:.4f} "
                f"(refitted probe {self.retrained_accuracy:.4f}); recovery {self.recovery:.1%}"
            )
        if self.next_token is not None:
            m = self.next_token
            lines += [
                f"next token on {self.settings['n_eval']} "
                f"{'held-out' if self.settings.get('held_out') else 'training'} windows: "
                "top-1 agreement with the "
                f"original {m['agreement']:.4f} (untrained surrogate {m['agreement_init']:.4f})",
                f"loss (nats/token): original {m['loss_original']:.4f}, surrogate "
                f"{m['loss_surrogate']:.4f} (untrained {m['loss_init']:.4f}), uniform guess "
                f"{m['loss_uniform']:.4f}; loss gap recovered "
                + (f"{self.recovery:.1%}" if self.recovery is not None else "n/a (no gap)"),
            ]
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        fig = make_subplots(
            rows=1, cols=2, subplot_titles=("relative error per layer", "training loss")
        )
        layers = list(range(1, len(self.layer_error) + 1))
        fig.add_trace(
            go.Scatter(x=layers, y=self.layer_error.tolist(), mode="lines+markers", name="error"),
            1,
            1,
        )
        fig.add_trace(go.Scatter(y=self.loss_curve.tolist(), mode="lines", name="loss"), 1, 2)
        for a, _ in self.spans[1:]:
            fig.add_vline(x=a - 0.5, line={"dash": "dot", "color": "red"}, row=1, col=1)
        fig.update_yaxes(type="log")
        fig.update_xaxes(title_text="layer", row=1, col=1)
        fig.update_xaxes(title_text="step", row=1, col=2)
        fig.update_layout(
            title=f"Raptor ({self.k} blocks) of {self.source}", template="plotly_white"
        )
        return fig


def phase_spans(phases: Phases | list, n_layers: int) -> list[tuple[int, int]]:
    """Check that phases cover blocks 1..L in contiguous runs; return their (first, last) spans."""
    if isinstance(phases, Phases):
        spans = phases.spans
    else:
        spans = [(p[0], p[-1]) if len(p) else (0, -1) for p in phases]
    expected = 1
    for a, b in spans:
        if a != expected or b < a:
            raise ValueError(
                f"phases must be contiguous runs covering blocks 1..{n_layers} in order, got {spans}; "
                "pass segment_phases(...) output or [(first, last), ...] spans"
            )
        expected = b + 1
    if expected != n_layers + 1:
        raise ValueError(f"phases {spans} do not cover all {n_layers} blocks")
    return [(int(a), int(b)) for a, b in spans]


def token_weights(n_tokens: int, n_prefix: int, device: torch.device | None = None) -> torch.Tensor:
    """Per-token loss weights summing to 1, as in the paper.

    CLS 0.45, registers 0.10 in all, patches 0.45 in all (``n_prefix`` = 1 + registers > 1);
    CLS 0.5 and patches 0.5 without registers (``n_prefix`` = 1); every token alike without a
    CLS token (``n_prefix`` = 0).
    """
    if not 0 <= n_prefix < n_tokens:
        raise ValueError(
            f"need 0 <= n_prefix < n_tokens (prefix tokens = CLS + registers), got {n_prefix}, {n_tokens}"
        )
    if n_prefix == 0:
        return torch.full((n_tokens,), 1.0 / n_tokens, device=device)
    registers = n_prefix - 1
    cls_weight, register_weight = (0.45, 0.10) if registers else (0.5, 0.0)
    weights = torch.full(
        (n_tokens,), (1.0 - cls_weight - register_weight) / (n_tokens - n_prefix), device=device
    )
    weights[0] = cls_weight
    weights[1:n_prefix] = register_weight / max(registers, 1)
    return weights


def weighted_mse(weights: torch.Tensor) -> Loss:
    """Per-token MSE over [L, N, T, D], tokens weighted by ``weights`` [T]."""

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_token = (pred - target).pow(2).mean(dim=(0, 1, 3))  # over layers, samples, features
        return (per_token * weights).sum()

    return loss


def fit_raptor(
    model: Any,
    inputs: torch.Tensor,
    phases: Phases | list,
    *,
    labels: torch.Tensor | None = None,
    eval_inputs: torch.Tensor | None = None,
    eval_labels: torch.Tensor | None = None,
    phase_steps: int = 300,
    end_to_end_steps: int = 300,
    batch_size: int = 64,
    lr: float = 3e-4,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> RaptorFit:
    """Fit a Raptor surrogate of ``model`` on ``inputs`` and evaluate it (see module docstring).

    ``phases``: a contiguous :class:`Phases` over blocks 1..L or ``[(first, last), ...]``.
    Vision models: ``labels`` / ``eval_labels`` enable the linear-probe evaluation; evaluation
    uses ``eval_inputs`` (default: the training inputs). Language models (a HookedLM): ``inputs``
    and ``eval_inputs`` are token windows [N, T] (e.g. :func:`interp.depth.views.corpus_windows`),
    evaluated by next-token agreement and loss (:func:`interp.depth.raptor_lm.fit_language_raptor`).
    """
    check_steps(phase_steps, end_to_end_steps)
    if is_language_model(model):
        if labels is not None or eval_labels is not None:
            raise ValueError("labels are for vision models; a language model is scored on its text")
        from interp.depth.raptor_lm import fit_language_raptor

        return fit_language_raptor(
            model,
            inputs,
            phases,
            eval_inputs=eval_inputs,
            phase_steps=phase_steps,
            end_to_end_steps=end_to_end_steps,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            seed=seed,
        )
    view = view_of(model)
    spans = phase_spans(phases, view.n_layers)
    if (eval_labels is not None and labels is None) or (
        labels is not None and eval_inputs is not None and eval_labels is None
    ):
        raise ValueError("linear-probe evaluation needs labels and, with eval_inputs, eval_labels")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    teacher = view.states(inputs)  # [L+1, N, T, D]
    dim = teacher.shape[-1]
    raptor = Raptor(view.layers, spans, dim)
    weights = token_weights(teacher.shape[2], view.n_prefix)
    curve = train_raptor(
        raptor,
        teacher,
        weighted_mse(weights),
        phase_steps=phase_steps,
        end_to_end_steps=end_to_end_steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        generator=generator,
    )
    reference = view.states(eval_inputs) if eval_inputs is not None else teacher
    states = rollout(raptor, reference[0])
    error = (states - reference[1:]).pow(2).mean(dim=(1, 2, 3)) / reference[1:].pow(2).mean(
        dim=(1, 2, 3)
    )
    accuracies: dict[str, float | None] = dict.fromkeys(
        ("teacher", "surrogate", "retrained", "recovery")
    )
    if labels is not None:
        accuracies = probe_accuracies(
            view,
            train=(teacher[-1], rollout(raptor, teacher[0])[-1], labels),
            test=(reference[-1], states[-1], eval_labels if eval_labels is not None else labels),
        )
    n_original = sum(p.numel() for layer in view.layers for p in layer.parameters())
    return RaptorFit(
        spans=[list(span) for span in spans],
        layer_error=error,
        loss_curve=torch.tensor(curve),
        surrogate_state={k: v.detach().clone() for k, v in raptor.state_dict().items()},
        teacher_accuracy=accuracies["teacher"],
        surrogate_accuracy=accuracies["surrogate"],
        retrained_accuracy=accuracies["retrained"],
        recovery=accuracies["recovery"],
        n_params_original=n_original,
        n_params_surrogate=sum(p.numel() for p in raptor.parameters()),
        source=view.name,
        settings={
            "kind": "vision",
            "dim": dim,
            "phase_steps": phase_steps,
            "end_to_end_steps": end_to_end_steps,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "seed": seed,
            "n_train": int(teacher.shape[1]),
            "n_eval": int(reference.shape[1]),
            "init": "copy of each phase's middle layer",
            "depth_input": "t = l / L",
            "forcing_decay": "linear 1 -> 0 over the first 25% of phase steps",
        },
    )
