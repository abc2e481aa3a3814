"""RNN mechanics: tasks, small trainable nets, training, fixed points and automata.

The step-by-step protocol (:class:`Recurrent`) is what every analysis here consumes; wrap torch's
``nn.RNN``/``nn.GRU``/``nn.LSTM`` with :func:`as_recurrent` to analyse them with the same weights.
Names are imported on first use (see :mod:`interp._lazy`).
"""

from __future__ import annotations

from interp._lazy import lazy_exports

_EXPORTS = {
    "as_recurrent": "interp.models.recurrent",
    "Recurrent": "interp.rnn.protocol",
    "unroll": "interp.rnn.protocol",
    "RecurrentNet": "interp.rnn.nets",
    "make_net": "interp.rnn.nets",
    "register_net": "interp.rnn.nets",
    "StateRegularizedNet": "interp.rnn.state_regularized",
    "Task": "interp.rnn.tasks",
    "TaskBatch": "interp.rnn.tasks",
    "make_task": "interp.rnn.tasks",
    "register_task": "interp.rnn.tasks",
    "split_generator": "interp.rnn.tasks",
    "TrainResult": "interp.rnn.training",
    "load_run": "interp.rnn.training",
    "save_run": "interp.rnn.training",
    "train": "interp.rnn.training",
    "FixedPoints": "interp.rnn.fixed_points_result",
    "find_fixed_points": "interp.rnn.fixed_points",
    "DFA": "interp.rnn.automata",
    "grammar_dfa": "interp.rnn.grammars",
    "grammar_task": "interp.rnn.grammars",
    "Extraction": "interp.rnn.extraction_result",
    "extract_automaton": "interp.rnn.extraction",
    "LStarOptions": "interp.rnn.lstar",
    "pac_sample_size": "interp.rnn.lstar_oracles",
    "HMM": "interp.rnn.hmm",
    "make_hmm": "interp.rnn.hmm",
    "output_statistics": "interp.rnn.hmm",
    "NoiseRNN": "interp.rnn.hmm_net",
    "train_hmm": "interp.rnn.hmm_net",
    "NoiseDynamics": "interp.rnn.dynamics_result",
    "analyze_noise_rnn": "interp.rnn.dynamics_analysis",
    "TimescaleRNN": "interp.rnn.timescales_net",
    "CurriculumResult": "interp.rnn.timescales_training",
    "train_curriculum": "interp.rnn.timescales_training",
    "network_timescales": "interp.rnn.timescales",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
