"""Train a small RNN on a grammar task with a length curriculum (short strings first).

Tomita-style languages are learned much faster and generalize to longer strings more reliably when
training starts on short strings (every automaton state is reachable within a few symbols) and
then widens to the full length; each stage is one :func:`interp.rnn.training.train` call on the same
net, stopping early at ``target_accuracy``.
"""

from __future__ import annotations

from collections.abc import Sequence

from interp.rnn.grammars import GrammarTask, grammar_task
from interp.rnn.nets import RecurrentNet, make_net
from interp.rnn.training import TrainResult, train


def train_grammar_net(
    grammar: str | GrammarTask,
    *,
    kind: str = "gru",
    hidden_size: int = 10,
    curriculum: Sequence[int] = (4, 8, 12),
    steps_per_stage: int = 600,
    batch_size: int = 64,
    lr: float = 1e-2,
    target_accuracy: float = 0.999,
    seed: int = 0,
    progress: bool = False,
    **net_options: object,
) -> tuple[RecurrentNet, GrammarTask, TrainResult]:
    """Build a ``kind`` net and train it on ``grammar`` over increasing maximum string lengths.

    Args:
        grammar: a grammar name (``tomita1``..``tomita7``, ``parens``) or a :class:`GrammarTask`
            (its ``labels`` and ``min_length`` are kept; ``train_length`` follows the curriculum).
        curriculum: the maximum string length of each stage, increasing; the last one is the task's
            ``train_length`` (extraction tests up to twice it).
        steps_per_stage: Adam steps per stage at most (each stage stops at ``target_accuracy``).
        net_options: extra options of the net kind (e.g. ``n_centroids`` for state_regularized).

    Returns:
        ``(net, task, result)``: the trained net (eval mode), the task at the final length and the
        training history of the last stage (``result.settings["curriculum"]`` lists all stages).
    """
    if not curriculum or any(b <= a for a, b in zip(curriculum, curriculum[1:], strict=False)):
        raise ValueError(
            f"curriculum must be a non-empty increasing list of lengths, got {list(curriculum)}"
        )
    base = grammar if isinstance(grammar, GrammarTask) else grammar_task(grammar)
    net = make_net(kind, base.input_size, hidden_size, 1, seed=seed, **net_options)
    stages = []
    result = None
    for stage, length in enumerate(curriculum):
        task = GrammarTask(
            base.dfa,
            train_length=length,
            labels=base.labels,
            min_length=min(base.min_length, length),
        )
        result = train(
            net,
            task,
            steps=steps_per_stage,
            batch_size=batch_size,
            lr=lr,
            seed=seed + stage,
            target_accuracy=target_accuracy,
            progress=progress,
        )
        stages.append(
            {
                "train_length": length,
                "steps_run": result.steps_run,
                "accuracy": result.final_accuracy,
            }
        )
    result.settings["curriculum"] = stages
    net.eval()
    return net, task, result
