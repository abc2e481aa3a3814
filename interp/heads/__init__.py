"""Head finders: induction, successor and retrieval heads, each returning a :class:`HeadScores`.

- :func:`induction_scores` (Olsson et al. 2022): prefix matching, copying, previous-token,
  duplicate-token and stripe scores from repeated random tokens; :func:`in_context_learning_score`.
- :func:`successor_scores` (Gould et al. 2023): effective OV circuit on ordinal token tasks;
  :func:`mod10_features` for the mod-10 probe and vector arithmetic.
- :func:`retrieval_scores` / :func:`retrieval_grid` (Wu et al. 2024): copy-paste attention in
  needle-in-a-haystack tests; :func:`masking_experiment` ablates the found heads.
- :func:`causal_check`: ablate the top-k heads of any of them vs random heads and measure the
  behaviour the kind exists for (repeated-half loss, ordinal increments, needle accuracy).

Names are imported on first use (see :mod:`interp._lazy`).
"""

from __future__ import annotations

from interp._lazy import lazy_exports

_EXPORTS = {
    "HeadScores": "interp.heads.scores",
    "OrdinalTask": "interp.heads.ordinal_tasks",
    "Mod10Features": "interp.heads.mod10",
    "mod10_features": "interp.heads.mod10",
    "successor_scores": "interp.heads.successor",
    "successor_report_sections": "interp.heads.successor",
    "induction_scores": "interp.heads.induction",
    "induction_report_sections": "interp.heads.induction",
    "InContextLearning": "interp.heads.icl",
    "in_context_learning_score": "interp.heads.icl",
    "RetrievalGrid": "interp.heads.retrieval",
    "retrieval_grid": "interp.heads.retrieval",
    "retrieval_scores": "interp.heads.retrieval",
    "retrieval_report_sections": "interp.heads.retrieval",
    "MaskingResult": "interp.heads.masking",
    "masking_experiment": "interp.heads.masking",
    "CausalCheck": "interp.heads.causal",
    "causal_check": "interp.heads.causal",
    "Needle": "interp.heads.needles",
    "load_needles": "interp.heads.needles",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
