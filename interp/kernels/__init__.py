"""Attention statistics without materializing the [T, T] attention matrix.

:func:`attention_stats` returns per-query log-sum-exp, top-1 key, top-1 probability, the
probability on chosen keys and the mass on key ranges, from a Triton kernel on CUDA or a chunked
torch implementation elsewhere, with causal and padding masks, sliding windows (Mistral, Gemma 2/3,
GPT-OSS), attention logit softcapping (Gemma 2) and learned attention sinks (GPT-OSS). :func:`reference_attention_stats` is the materialized float64
yardstick used by the tests and benchmarks.
"""

from interp.kernels.api import AttentionStats, attention_stats
from interp.kernels.reference import reference_attention_stats

__all__ = ["AttentionStats", "attention_stats", "reference_attention_stats"]
