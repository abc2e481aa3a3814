"""Head finders: induction, successor and retrieval heads, each returning a :class:`HeadScores`."""

from interp.heads.mod10 import Mod10Features, mod10_features
from interp.heads.ordinal_tasks import OrdinalTask
from interp.heads.scores import HeadScores
from interp.heads.successor import successor_report_sections, successor_scores

__all__ = [
    "HeadScores",
    "Mod10Features",
    "OrdinalTask",
    "mod10_features",
    "successor_report_sections",
    "successor_scores",
]
