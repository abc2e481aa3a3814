"""One conformance suite over every :class:`~interp.results.Result` subclass in the package
(scikit-learn's ``check_estimator`` idea): save/load round trip, ``table()`` a str, ``figure()``
a plotly Figure, ``repr`` short.

Subclasses are discovered by importing every module of ``interp`` and walking
``Result.__subclasses__()``; each needs a factory below that builds a real instance from a tiny
computation. A new Result without a factory fails :func:`test_every_result_has_a_factory`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import pkgutil
from collections.abc import Callable
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

import interp
from interp.heads import HeadScores
from interp.results import Result


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


@functools.cache
def discovered() -> dict[str, type]:
    """Every Result subclass defined in interp, by class name (all modules imported first)."""
    for module in pkgutil.walk_packages(interp.__path__, "interp."):
        importlib.import_module(module.name)
    return {c.__name__: c for c in _all_subclasses(Result) if c.__module__.startswith("interp.")}


# ----------------------------------------------------------------- shared tiny models
@functools.cache
def _copy_lm():
    from tests.test_heads_retrieval import copy_paste_model
    from tests.tiny import word_tokenizer

    return interp.load_model(copy_paste_model(), tokenizer=word_tokenizer(96), device="cpu")


@functools.cache
def _grid():
    from interp.heads import retrieval_grid

    return retrieval_grid(
        _copy_lm(), synthetic=True, n_needles=1, lengths=[60], depths=[0.0, 1.0],
        max_new_tokens=8, progress=False,
    )  # fmt: skip


@functools.cache
def _ensemble():
    from interp.degeneracy.ensemble import train_ensemble

    return train_ensemble(
        "flipflop", "rnn_tanh", 3, hidden_size=6, steps=5, batch_size=4, eval_batch=8,
        task_options={"bits": 1, "steps": 8}, progress=False,
    )  # fmt: skip


@functools.cache
def _llama():
    """A tiny random-init Llama (3 layers) with the 96-word tokenizer, as the patching tests use."""
    from tests.tiny import tiny_hf_model, word_tokenizer

    tokenizer = word_tokenizer(96)
    torch.manual_seed(0)
    model = tiny_hf_model("llama", vocab_size=len(tokenizer), layers=3)
    return interp.load_model(model, tokenizer=tokenizer)


CLEAN = ["w5 w9 w14 w5 w9 w30", "w8 w9 w14 w8 w9 w30"]
CORRUPT = ["w6 w9 w14 w6 w9 w30", "w11 w9 w14 w11 w9 w30"]


def _states() -> torch.Tensor:
    """Per-token states ``[layers + 1, samples, tokens, dim]`` of a tiny ViT on random images."""
    from interp.depth.views import view_of
    from interp.depth.vit import DigitsViT, ViTConfig

    torch.manual_seed(0)
    vit = DigitsViT(ViTConfig(depth=4, dim=16, heads=2, layerscale=0.5)).eval()
    images = torch.rand(6, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return view_of(vit).states(images)


# ----------------------------------------------------------------- factories
def _head_scores():
    from interp.heads import induction_scores

    return induction_scores(_copy_lm(), seq_len=8, repeats=2, n_examples=2, progress=False)


def _icl():
    from interp.heads import in_context_learning_score

    words = [" ".join(f"w{(7 * i + k) % 90}" for i in range(30)) for k in range(2)]
    return in_context_learning_score(_copy_lm(), words, context=24, early=3, late=20, band=1)


def _masking():
    from interp.heads import masking_experiment

    return masking_experiment(
        _copy_lm(), _grid().scores(), k=1, n_random=1, lengths=[60], depths=[0.5], n_needles=1,
        synthetic=True, max_new_tokens=8, progress=False,
    )  # fmt: skip


def _mod10():
    from interp.heads import mod10_features
    from tests.test_heads_successor import mod10_lm

    lm, tasks = mod10_lm(successor=True)
    return mod10_features(lm, (1, 0), embedding="raw", tasks=tasks, folds=2)


def _causal_check():
    from interp.heads.causal import causal_check

    values = torch.rand(3, 4, generator=torch.Generator().manual_seed(0))
    scores = HeadScores(
        scores={"prefix_matching": values}, primary="prefix_matching",
        thresholds={"prefix_matching": 0.95},
    )  # fmt: skip
    return causal_check(_llama(), scores, k=2, draws=2, seq_len=6, n_examples=2)


def _patching():
    from interp.patching import activation_patching, logit_diff

    metric = logit_diff(_llama(), ["w5", "w8"], ["w6", "w11"])
    return activation_patching(_llama(), CLEAN, CORRUPT, metric, sites="z", layers=[1])


def _dla():
    from interp.patching.dla import direct_logit_attribution

    return direct_logit_attribution(_llama(), CLEAN, "w14", "w3", positions=[2, -1])


def _lens():
    from interp.patching.lens import logit_lens

    return logit_lens(_llama(), CLEAN[0], targets=["w14"], k=3)


def _steering():
    from interp.patching.steering import steer

    vector = torch.randn(_llama().d_model, generator=torch.Generator().manual_seed(1))
    return steer(_llama(), CLEAN[0], vector, "w14", "w3", layers=[0, 1], scales=[0.0, 2.0])


def _splice():
    from interp.patching.splice import splice_module

    torch.manual_seed(0)
    probe = torch.nn.Linear(_llama().d_model, _llama().d_model).double()
    return splice_module(_llama(), CLEAN[0], "blocks.0.hook_resid_post", probe)


def _train_result():
    from interp.rnn import make_net, make_task, train

    task = make_task("flipflop", bits=1, steps=8)
    net = make_net("gru", task.input_size, 4, task.output_size, seed=0)
    return train(net, task, steps=3, batch_size=4, eval_every=2, eval_batch=8, progress=False)


def _fixed_points():
    from interp.rnn.fixed_points import find_fixed_points
    from tests.test_reliability_api_rnn import GatedTanh, _gated_states

    return find_fixed_points(
        GatedTanh(), inputs=torch.zeros(1, dtype=torch.float64),
        initial_states=_gated_states()[190:], n_starts=30, noise=0.0,
    )  # fmt: skip


def _dfa():
    from interp.rnn.grammars import grammar_dfa

    return grammar_dfa("tomita3").minimize()


def _extraction():
    from interp.rnn.extraction import extract_automaton
    from interp.rnn.grammars import grammar_dfa
    from tests.test_rnn_automata_extraction import SecondOrderDFA

    dfa = grammar_dfa("tomita6")
    return extract_automaton(SecondOrderDFA(dfa, bos=False), ["0", "1"], target=dfa, n_strings=60)


def _hmm_train():
    from interp.rnn import make_task
    from interp.rnn.hmm_net import NoiseRNN, train_hmm

    torch.manual_seed(0)
    task = make_task("hmm", hmm="linear2", steps=6, noise_size=2)
    return train_hmm(
        NoiseRNN(2, 4, 3), task, steps=2, batch_size=16, n_sequences=32, progress=False
    )


def _noise_dynamics():
    from interp.rnn.dynamics_analysis import analyze_noise_rnn
    from interp.rnn.hmm_net import NoiseRNN

    torch.manual_seed(1)
    net = NoiseRNN(4, 10, 3).double()
    return analyze_noise_rnn(
        net, steps=30, n_continuations=3, horizon=5, kick_starts=4, kick_steps=5, n_random=2,
        fixed_point_starts=16,
    )  # fmt: skip


def _curriculum():
    from interp.rnn.timescales_net import TimescaleRNN
    from interp.rnn.timescales_training import train_curriculum

    torch.manual_seed(0)
    return train_curriculum(
        TimescaleRNN(1, 6, 4), "nparity", "multi", epochs=1, steps_per_epoch=2, batch_size=8,
        eval_batches=1, start_n=1, progress=False,
    )  # fmt: skip


def _timescales():
    from interp.rnn.timescales_net import TimescaleRNN
    from interp.rnn.timescales_result import analyze_timescales

    torch.manual_seed(0)
    net = TimescaleRNN(1, 6, 4)
    return analyze_timescales(net, n=2, steps=600, burn_in=20, trials=2, fixed_point_starts=8)


def _degeneracy():
    from interp.degeneracy import measure_degeneracy

    return measure_degeneracy(_ensemble(), n_trials=4, metrics=["cka", "weights"])


def _sweep():
    from interp.degeneracy.sweep import degeneracy_sweep

    return degeneracy_sweep(
        "flipflop", {"hidden_size": [4, 6]},
        base={"n_models": 2, "steps": 3, "hidden_size": 4, "batch_size": 4, "eval_batch": 8},
        task_options={"bits": 1, "steps": 8}, measure={"n_trials": 4, "metrics": ["weights"]},
    )  # fmt: skip


def _similarity():
    from interp.depth.similarity import similarity_from_states

    return similarity_from_states(_states(), source="tiny ViT")


def _phases():
    from interp.depth.phases import segment_phases

    return segment_phases(_similarity(), k=2)


def _trajectories():
    from interp.depth.trajectory import trajectories_from_states

    return trajectories_from_states(_states(), labels=torch.arange(6) % 2, source="tiny ViT")


def _raptor():
    from interp.depth import DigitsViT, ViTConfig, fit_raptor

    torch.manual_seed(0)
    vit = DigitsViT(ViTConfig(depth=4, dim=16, heads=2, layerscale=0.5)).eval()
    images = torch.rand(16, 8, 8, generator=torch.Generator().manual_seed(1))
    return fit_raptor(
        vit, images, [(1, 2), (3, 4)], labels=torch.arange(16) % 2, phase_steps=2,
        end_to_end_steps=2, batch_size=8,
    )  # fmt: skip


def _interaction_rank():
    from interp.mixers import LinearSSM, interaction_operators, interaction_rank

    return interaction_rank(interaction_operators(LinearSSM.random(3), 8))


def _gradient_paths():
    from interp.mixers import LinearSSM, gradient_paths

    return gradient_paths(LinearSSM.random(2, 2, 2), torch.randn(6, 2, dtype=torch.float64))


def _head_count():
    from interp.mixers import head_count_table

    return head_count_table((1, 2), (1, 2, 3), length=6)


def _mixer_analysis():
    from interp.mixers import analyze_mixers
    from interp.models.ssm_tiny import tiny_ssm
    from tests.tiny import word_tokenizer

    lm = interp.load_model(tiny_ssm("mamba2"), tokenizer=word_tokenizer(96), device="cpu")
    return analyze_mixers(lm, torch.tensor([[1, 2, 3, 4, 5]]))


FACTORIES: dict[str, Callable[[], Result]] = {
    "HeadScores": _head_scores,
    "RetrievalGrid": _grid,
    "InContextLearning": _icl,
    "MaskingResult": _masking,
    "Mod10Features": _mod10,
    "TrainResult": _train_result,
    "FixedPoints": _fixed_points,
    "DFA": _dfa,
    "Extraction": _extraction,
    "HMMTrainResult": _hmm_train,
    "NoiseDynamics": _noise_dynamics,
    "CurriculumResult": _curriculum,
    "CausalCheck": _causal_check,
    "PatchingResult": _patching,
    "DLAResult": _dla,
    "LogitLens": _lens,
    "SteeringResult": _steering,
    "SpliceResult": _splice,
    "Timescales": _timescales,
    "Ensemble": _ensemble,
    "Degeneracy": _degeneracy,
    "DegeneracySweep": _sweep,
    "LayerSimilarity": _similarity,
    "Phases": _phases,
    "Trajectories": _trajectories,
    "RaptorFit": _raptor,
    "InteractionRank": _interaction_rank,
    "GradientPaths": _gradient_paths,
    "HeadCountFit": _head_count,
    "MixerAnalysis": _mixer_analysis,
}


# ----------------------------------------------------------------- equality after a round trip
def assert_same(a: Any, b: Any, where: str) -> None:
    """Equal up to what JSON cannot tell apart (tuples read back as lists; NaN equals NaN)."""
    if isinstance(a, torch.Tensor | np.ndarray):
        assert type(a) is type(b), f"{where}: {type(a).__name__} read back as {type(b).__name__}"
        ta, tb = torch.as_tensor(a), torch.as_tensor(b)
        assert ta.dtype == tb.dtype and ta.shape == tb.shape, where
        assert torch.equal(ta.isnan() if ta.is_floating_point() else ta, tb.isnan() if tb.is_floating_point() else tb), where  # fmt: skip
        if ta.is_floating_point() or ta.is_complex():
            ok = ~ta.isnan()
            assert torch.equal(ta[ok], tb[ok]), where
    elif isinstance(a, dict):  # order aside: safetensors stores array dicts sorted by key
        assert isinstance(b, dict) and sorted(map(str, a)) == sorted(map(str, b)), where
        for key, va in a.items():
            assert_same(va, b[str(key)] if str(key) in b else b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (va, vb) in enumerate(zip(a, b, strict=True)):
            assert_same(va, vb, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_every_result_has_a_factory():
    missing = sorted(set(discovered()) - set(FACTORIES))
    assert not missing, (
        f"Result subclasses without a factory in tests/test_results_contract.py: {missing}"
    )


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_result_contract(name, tmp_path):
    cls = discovered().get(name)
    if cls is None:
        pytest.fail(f"{name} has a factory but is no Result subclass in interp any more")
    result = FACTORIES[name]()
    assert type(result) is cls
    loaded = cls.load(result.save(tmp_path / name))
    for field in dataclasses.fields(result):
        assert_same(
            getattr(result, field.name), getattr(loaded, field.name), f"{name}.{field.name}"
        )
    table = result.table()
    assert isinstance(table, str) and table.strip()
    assert isinstance(result.figure(), go.Figure)
    text = repr(result)
    assert len(text) < 2000 and text.startswith(name) and str(result) == text
    assert "tensor(" not in text and "array(" not in text
