"""Extract a DFA from a trained RNN: by quantizing its state space, or by L* with queries.

``method="lstar"`` learns the automaton with Angluin's L*, the RNN answering the queries (Weiss et
al. 2018; :mod:`interp.rnn.lstar`); it returns the same :class:`Extraction` and is evaluated the
same way (last paragraph). The quantization pipeline (``kmeans``, ``centroids``;
:mod:`interp.rnn.extraction_quantize`; Omlin & Giles 1996; Weiss et al. 2018 and Dave et al. 2024
for the evaluation): (Omlin & Giles 1996; Weiss et al. 2018 and Dave et al. 2024 for the evaluation):

1. **States.** Run the RNN (batched over strings) on every string up to ``exhaustive_length`` plus
   ``n_strings`` sampled strings and keep its state after every prefix, together with its own
   accept/reject decision there (``readout(h) > 0`` on the single logit).
2. **Cluster.** k-means over the distinct states (or, for a state-regularized net, the argmax of
   its centroid attention α, ``method="centroids"``).
3. **Transitions.** Tally (cluster, symbol) -> next cluster over all observed prefixes and keep the
   majority; the *conflict rate* is the fraction of observations that disagree with it. A pair never
   observed gets the cluster of ``step(centre, symbol)``.
4. **Accepting clusters** by majority of the RNN's own decisions on the states in them (the
   *label conflict rate* is the minority fraction); for centroids, the readout of the centroid
   (the conflict rate then counts RNN decisions that disagree with their centroid's).
5. **Start** = cluster of the state after the begin-of-string input; Hopcroft minimization drops
   unreachable states and merges equivalent ones (one sink at most).

**Choice of k** (``method="kmeans"``, ``n_clusters=None``): the smallest k in 2..``max_clusters``
whose minimized DFA agrees with the RNN on at least ``fidelity_target`` of a validation set of
strings (a separate draw with lengths 0..``test_length``: long strings are needed to tell apart
states that differ only in the far future, like depth 6 vs the sink of bounded parentheses); if
none does, the k with the best validation fidelity. Why fidelity and not a geometric criterion
(silhouette, elbow): an RNN often keeps several separated clouds for one automaton state (e.g. drifting with length), so geometry
alone over-counts; what we want is the smallest automaton that *behaves* like the RNN, which is
what fidelity measures. Minimization afterwards merges clusters that turned out to be equivalent.

String draws (state sample, validation, test) come from all strings, not from a training task's
disjoint splits: extraction compares the DFA with the RNN, so what matters is that the three draws
are independent (one seeded stream), not which strings the RNN was trained on.

**Evaluation** on fresh strings of every length 0..``test_length`` (default twice the sample
length): fidelity (DFA vs RNN), accuracy of the DFA and of the RNN against the ground truth, and
exact equivalence with the ground-truth DFA with a shortest counterexample. Matching state counts
prove little (a published Tomita-3 extraction had 5 states but agreed on only 92% of strings up to
length 15), so equivalence is decided on the automata themselves.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from interp import __version__
from interp.errors import InputTypeError, InvalidArgumentError
from interp.rnn.automata import DFA
from interp.rnn.extraction_result import Extraction
from interp.rnn.grammars import GrammarTask, SymbolEncoding
from interp.rnn.protocol import Recurrent, check_recurrent, unroll
from interp.rnn.tasks import Task

METHODS = ("kmeans", "centroids", "lstar")


def _encoding(alphabet: Sequence[str] | SymbolEncoding | GrammarTask) -> SymbolEncoding:
    if isinstance(alphabet, GrammarTask):
        return alphabet.encoding
    if isinstance(alphabet, SymbolEncoding):
        return alphabet
    if isinstance(alphabet, Task):
        raise InputTypeError(
            f"extract_automaton needs a grammar task (tomita1..tomita7, parens), a SymbolEncoding "
            f"or one-character symbols; {alphabet.name!r} ({type(alphabet).__name__}) is not a "
            "grammar task: its outputs are not accept/reject decisions on strings"
        )
    if (
        isinstance(alphabet, str)
        or not isinstance(alphabet, Sequence)
        or not alphabet
        or not all(isinstance(s, str) and len(s) == 1 for s in alphabet)
    ):
        raise InputTypeError(
            "alphabet must be a GrammarTask, a SymbolEncoding or a sequence of one-character "
            f"symbols like ['0', '1'], got {alphabet!r}"
        )
    return SymbolEncoding(tuple(alphabet), bos=False)


def check_extractable(model: Recurrent, encoding: SymbolEncoding) -> None:
    """Refuse, before any work, a model whose inputs do not match the alphabet's encoding or whose
    readout is not a single accept logit.

    Accepted readouts: exactly one output, read as an accept logit (``> 0`` accepts), which is what
    the grammar tasks train (``output_size=1``, BCE). A two-class readout is refused rather than
    guessed at: wrap it so ``readout`` returns ``logit[1] - logit[0]``.
    """
    size = getattr(model, "input_size", None)
    with torch.no_grad():
        h0 = model.initial_state(1)
        if isinstance(size, int) and size != encoding.input_size:
            raise InvalidArgumentError(_input_mismatch(encoding, size))
        try:
            model.step(h0, torch.zeros(1, encoding.input_size, dtype=h0.dtype))
        except RuntimeError as error:  # a torch shape error: the model takes another input size
            raise InvalidArgumentError(_input_mismatch(encoding, None)) from error
        outputs = model.readout(h0).shape[-1]
    if outputs != 1:
        raise InvalidArgumentError(
            f"extraction reads accept/reject from a single output logit (> 0 accepts); the model "
            f"has {outputs} outputs (for a two-class readout, wrap it so readout returns "
            "logit[1] - logit[0])"
        )


def _input_mismatch(encoding: SymbolEncoding, size: int | None) -> str:
    bos = " plus begin-of-string" if encoding.bos else ""
    takes = f"the model takes inputs of size {size}" if size else "the model rejects them"
    return (
        f"alphabet {list(encoding.alphabet)}{bos} is encoded as one-hot inputs of size "
        f"{encoding.input_size}, but {takes}"
    )


class _Strings:
    """A padded batch of strings: symbol ids ``[N, T]`` and lengths ``[N]``."""

    def __init__(self, codes: Tensor, lengths: Tensor) -> None:
        self.codes, self.lengths = codes.long(), lengths.long()

    @classmethod
    def cat(cls, parts: Sequence[_Strings]) -> _Strings:
        width = max(p.codes.shape[1] for p in parts)
        codes = torch.cat(
            [torch.nn.functional.pad(p.codes, (0, width - p.codes.shape[1])) for p in parts]
        )
        return cls(codes, torch.cat([p.lengths for p in parts]))

    @classmethod
    def exhaustive(cls, n_symbols: int, max_length: int) -> _Strings:
        rows = [
            w for n in range(max_length + 1) for w in itertools.product(range(n_symbols), repeat=n)
        ]
        codes = torch.zeros(len(rows), max_length, dtype=torch.long)
        for i, w in enumerate(rows):
            codes[i, : len(w)] = torch.tensor(w, dtype=torch.long)
        return cls(codes, torch.tensor([len(w) for w in rows]))

    @classmethod
    def draw(
        cls,
        task: GrammarTask | None,
        n_symbols: int,
        count: int,
        generator: torch.Generator,
        *,
        max_length: int,
        length: int | None = None,
    ) -> _Strings:
        """Half uniform random strings, half the task's balanced sampler (all uniform without one)."""
        n_task = count // 2 if task is not None else 0
        parts = []
        if n_task:
            split_task = GrammarTask(task.dfa, train_length=max_length, min_length=0)
            codes, lengths, _ = split_task.sample_codes(
                n_task, generator, split=None, length=length
            )
            parts.append(cls(codes, lengths))
        n_uniform = count - n_task
        if length is None:
            lengths = torch.randint(0, max_length + 1, (n_uniform,), generator=generator)
        else:
            lengths = torch.full((n_uniform,), length)
        width = max(int(lengths.max()) if n_uniform else 0, 1)
        codes = torch.randint(0, n_symbols, (n_uniform, width), generator=generator)
        parts.append(cls(codes, lengths))
        return cls.cat(parts)


class _Run:
    """The RNN's states, decisions and (for centroid nets) centroid ids after every prefix."""

    def __init__(
        self, model: Recurrent, encoding: SymbolEncoding, strings: _Strings, *, centroids: bool
    ) -> None:
        n = strings.codes.shape[0]
        x = encoding.one_hot(strings.codes)
        h0 = model.initial_state(n)
        x = x.to(h0.dtype)
        if centroids:
            states, ids = _unroll_centroids(model, x, h0)
        else:
            states, ids = unroll(model, x, h0), None
        if not encoding.bos:  # the start state is h0 itself
            states = torch.cat([h0[:, None], states], dim=1)
            if ids is not None:
                ids = torch.cat([_nearest(h0, model.centroids)[:, None], ids], dim=1)
        self.states = states  # [N, T+1, H], column t = after t symbols
        self.ids = ids
        self.accept = _decide(model.readout(states))  # [N, T+1]
        self.strings = strings
        steps = torch.arange(states.shape[1])
        self.valid = steps[None, :] <= strings.lengths[:, None]

    def final_accept(self) -> np.ndarray:
        rows = torch.arange(self.states.shape[0])
        return self.accept[rows, self.strings.lengths].numpy()


def _decide(logits: Tensor) -> Tensor:
    if logits.shape[-1] != 1:
        raise InvalidArgumentError(
            f"extraction reads accept/reject from a single output logit (> 0 accepts); the model "
            f"has {logits.shape[-1]} outputs"
        )
    return logits[..., 0] > 0


def _nearest(points: Tensor, centres: Tensor) -> Tensor:
    return torch.cdist(points.to(centres.dtype), centres).argmin(dim=-1)


def _unroll_centroids(model: Any, x: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
    if not callable(getattr(model, "step_with_attention", None)) or not hasattr(model, "centroids"):
        raise InputTypeError(
            "method='centroids' needs a state-regularized net (interp.rnn.state_regularized) with "
            "step_with_attention() and centroids; use method='kmeans' for other RNNs"
        )
    h, states, ids = h0, [], []
    for t in range(x.shape[1]):
        h, alpha = model.step_with_attention(h, x[:, t])
        states.append(h)
        ids.append(alpha.argmax(dim=-1))
    return torch.stack(states, dim=1), torch.stack(ids, dim=1)


def _fidelity(dfa: DFA, strings: _Strings, rnn_accept: np.ndarray) -> float:
    return float((_dfa_accepts(dfa, strings) == rnn_accept).mean())


def _dfa_accepts(dfa: DFA, strings: _Strings) -> np.ndarray:
    lengths = strings.lengths.numpy()
    final = dfa.run(strings.codes.numpy(), lengths)[np.arange(len(lengths)), lengths]
    return dfa.accepting[final]


def evaluate(
    model: Recurrent,
    encoding: SymbolEncoding,
    task: GrammarTask | None,
    target: DFA | None,
    dfa: DFA,
    generator: torch.Generator,
    *,
    test_length: int,
    n_test_per_length: int,
) -> dict[str, Any]:
    """The fields of :class:`Extraction` that judge an extracted ``dfa`` (any method): agreement
    with the RNN and with ``target`` by length on fresh strings of every length 0..``test_length``,
    and exact equivalence with ``target`` with a shortest counterexample."""
    n_symbols = len(encoding.alphabet)
    test = _Strings.cat(
        [
            _Strings.draw(
                task, n_symbols, n_test_per_length, generator, max_length=test_length, length=n
            )
            for n in range(test_length + 1)
        ]
    )
    with torch.no_grad():
        rnn_test = _Run(model, encoding, test, centroids=False).final_accept()
    dfa_test = _dfa_accepts(dfa, test)
    by_length = test.lengths.numpy()
    lengths_axis = np.arange(test_length + 1)

    def per_length(hit: np.ndarray) -> np.ndarray:
        return np.array([hit[by_length == n].mean() for n in lengths_axis])

    truth = _dfa_accepts(target, test) if target is not None else None
    equivalent, counterexample = dfa.equivalent(target) if target is not None else (None, None)
    return {
        "alphabet": list(encoding.alphabet),
        "transitions": dfa.transitions,
        "accepting": dfa.accepting,
        "start": dfa.start,
        "target_transitions": target.transitions if target is not None else None,
        "target_accepting": target.accepting if target is not None else None,
        "target_start": target.start if target is not None else None,
        "target_name": target.name if target is not None else None,
        "lengths": lengths_axis,
        "fidelity_by_length": per_length(dfa_test == rnn_test),
        "accuracy_by_length": per_length(dfa_test == truth) if truth is not None else None,
        "rnn_accuracy_by_length": per_length(rnn_test == truth) if truth is not None else None,
        "fidelity": float((dfa_test == rnn_test).mean()),
        "accuracy": float((dfa_test == truth).mean()) if truth is not None else None,
        "equivalent": equivalent,
        "counterexample": counterexample,
    }


def validation_draw(
    model: Recurrent,
    encoding: SymbolEncoding,
    task: GrammarTask | None,
    generator: torch.Generator,
    *,
    n_strings: int,
    test_length: int,
) -> tuple[_Strings, np.ndarray]:
    """``n_strings`` strings of lengths 0..``test_length`` and the RNN's decisions on them."""
    strings = _Strings.draw(
        task, len(encoding.alphabet), n_strings, generator, max_length=test_length
    )
    with torch.no_grad():
        return strings, _Run(model, encoding, strings, centroids=False).final_accept()


def _check_positive(**values: int | float | None) -> None:
    for name, value in values.items():
        if value is not None and not value > 0:
            raise InvalidArgumentError(f"{name} must be > 0, got {value}")


def _checked_target(
    target: DFA | None, task: GrammarTask | None, encoding: SymbolEncoding
) -> DFA | None:
    """The DFA to compare with: ``target``, else the task's; its alphabet must be the model's."""
    if target is None and task is not None:
        target = task.dfa
    if target is not None and list(target.alphabet) != list(encoding.alphabet):
        raise InvalidArgumentError(
            f"target alphabet {target.alphabet} differs from {list(encoding.alphabet)}"
        )
    return target


def extract_automaton(
    model: Recurrent,
    alphabet: Sequence[str] | SymbolEncoding | GrammarTask,
    *,
    target: DFA | None = None,
    method: str = "kmeans",
    n_clusters: int | None = None,
    max_clusters: int = 20,
    fidelity_target: float = 0.999,
    exhaustive_length: int = 7,
    n_strings: int = 1000,
    max_length: int | None = None,
    test_length: int | None = None,
    n_test_per_length: int = 200,
    seed: int = 0,
    equivalence: str = "abstraction",
    max_states: int | None = 200,
    max_membership_queries: int | None = 200_000,
    max_equivalence_queries: int | None = 200,
    time_limit: float | None = 60.0,
    epsilon: float = 0.01,
    delta: float = 0.01,
) -> Extraction:
    """Extract a DFA from ``model``: by quantizing its states (``kmeans``, ``centroids``; see the
    module docstring) or by L* with the RNN as the teacher (``lstar``; see :mod:`interp.rnn.lstar`).

    Args:
        model: a :class:`~interp.rnn.protocol.Recurrent` with a single output logit (> 0 accepts;
            see :func:`check_extractable`).
        alphabet: a :class:`~interp.rnn.grammars.GrammarTask` (its encoding with begin-of-string,
            its balanced sampler and its ground-truth DFA), a :class:`SymbolEncoding`, or plain
            one-character symbols (one-hot inputs, start state = ``model.initial_state``).
        target: ground-truth DFA to compare with (default: the task's).
        method: ``"kmeans"``, ``"centroids"`` (state-regularized nets: argmax of α) or ``"lstar"``.
        n_clusters: fix k instead of searching 2..``max_clusters`` (kmeans).
        fidelity_target: validation fidelity at which the search over k stops (kmeans).
        exhaustive_length: every string up to this length is in the state sample (quantization).
        n_strings: sampled strings (lengths 0..``max_length``) added to the state sample; also the
            size of the validation set (lengths 0..``test_length``).
        max_length: longest sampled string (default: the task's ``train_length``, else 10); for
            ``lstar`` with ``equivalence="pac"``, the longest string the sampling oracle draws.
        test_length: longest test string (default ``2 * max_length``).
        n_test_per_length: test strings per length (half uniform, half balanced by the task).
        seed: seeds the string samples, k-means and the PAC oracle.
        equivalence: ``lstar`` only: ``"abstraction"`` (Weiss et al. 2018) or ``"pac"``
            (Angluin's sampling oracle with ``epsilon``, ``delta``).
        max_states, max_membership_queries, max_equivalence_queries, time_limit: ``lstar`` only:
            limits (None = none; each must be > 0). When one stops the run the result holds the
            hypothesis so far with ``complete=False`` and ``stopped_by`` naming the limit.
        epsilon, delta: the PAC oracle's error and confidence, in (0, 1).
    """
    started = time.perf_counter()
    model = check_recurrent(model)
    encoding = _encoding(alphabet)
    check_extractable(model, encoding)
    task = alphabet if isinstance(alphabet, GrammarTask) else None
    target = _checked_target(target, task, encoding)
    if method not in METHODS:
        raise InvalidArgumentError(f"method must be one of {METHODS}, got {method!r}")
    _check_positive(
        n_clusters=n_clusters,
        max_clusters=max_clusters,
        n_strings=n_strings,
        max_length=max_length,
        test_length=test_length,
        n_test_per_length=n_test_per_length,
    )
    if not 0.0 < fidelity_target <= 1.0:
        raise InvalidArgumentError(f"fidelity_target must be in (0, 1], got {fidelity_target}")
    lstar_options = None
    if method == "lstar":
        from interp.rnn.lstar import LStarOptions

        lstar_options = LStarOptions(
            equivalence=equivalence,
            max_states=max_states,
            max_membership_queries=max_membership_queries,
            max_equivalence_queries=max_equivalence_queries,
            time_limit=time_limit,
            epsilon=epsilon,
            delta=delta,
        )
    max_length = max_length or (task.train_length if task is not None else 10)
    test_length = test_length or 2 * max_length
    generator = torch.Generator().manual_seed(seed)
    settings: dict[str, Any] = {
        "method": method,
        "n_strings": n_strings,
        "max_length": max_length,
        "test_length": test_length,
        "n_test_per_length": n_test_per_length,
        "seed": seed,
        "begin_of_string": encoding.bos,
        "interp_version": __version__,
    }
    if lstar_options is not None:
        from interp.rnn.lstar import run_lstar

        fields = run_lstar(model, encoding, lstar_options, generator, max_length=max_length)
        validation, val_accept = validation_draw(
            model, encoding, task, generator, n_strings=n_strings, test_length=test_length
        )
        fields["validation_fidelity"] = _fidelity(fields["minimal"], validation, val_accept)
    else:
        from interp.rnn.extraction_quantize import quantize

        with torch.no_grad():
            fields = quantize(
                model, encoding, task, generator, method=method, test_length=test_length, n_clusters=n_clusters, max_clusters=max_clusters,
                fidelity_target=fidelity_target, exhaustive_length=exhaustive_length,
                n_strings=n_strings, max_length=max_length, seed=seed,
            )  # fmt: skip
        settings.update(
            n_clusters=n_clusters,
            max_clusters=max_clusters,
            fidelity_target=fidelity_target,
            exhaustive_length=exhaustive_length,
        )
    raw, minimal = fields.pop("raw"), fields.pop("minimal")
    settings.update(fields.pop("settings"))
    judged = evaluate(
        model, encoding, task, target, minimal, generator,
        test_length=test_length, n_test_per_length=n_test_per_length,
    )  # fmt: skip
    return Extraction(
        **judged,
        **fields,
        raw_transitions=raw.transitions,
        raw_accepting=raw.accepting,
        raw_start=raw.start,
        settings=settings,
        seconds=time.perf_counter() - started,
    )
