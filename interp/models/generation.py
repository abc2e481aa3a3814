"""Generation with the KV cache, edits and captures at every step.

``lm.generate(inputs, max_new_tokens=...)`` runs the prompt once (the prefill) and then one token
at a time through the model's KV cache, with the same ``edits`` and ``capture`` as ``run``
applied at every step. Greedy by default; ``do_sample=True`` samples from the softmax at
``temperature``, optionally restricted to the ``top_k`` tokens and the ``top_p`` nucleus. A batch
of prompts is left-padded so that every row continues from its own last token; a row stops at an
end-of-sequence token (``eos_token_ids``) and is padded afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from interp.errors import InvalidArgumentError


@dataclass
class Generation:
    """``tokens [batch, prompt + new]`` (prompt left-padded, finished rows padded with
    ``pad_token_id``), ``new_tokens [batch, new]``, ``attention_mask`` over ``tokens``, and
    ``caches``: the prefill's and each step's :class:`ActivationCache` (captures, statistics)."""

    tokens: torch.Tensor
    new_tokens: torch.Tensor
    attention_mask: torch.Tensor
    caches: list = field(default_factory=list)

    def activations(self, name: str) -> torch.Tensor:
        """One captured hook over the prompt and every generated step, along the position axis."""
        return torch.cat([cache[name] for cache in self.caches], dim=1)


def _check(max_new_tokens: object, temperature: float, top_k: int | None, top_p: float | None):
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 1
    ):
        raise InvalidArgumentError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    if not temperature > 0:
        raise InvalidArgumentError(f"temperature must be > 0, got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise InvalidArgumentError(f"top_k must be a positive int or None, got {top_k!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise InvalidArgumentError(f"top_p must lie in (0, 1] or be None, got {top_p!r}")


def _next_token(
    logits: torch.Tensor,
    do_sample: bool,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The next token ``[batch]`` from last-position logits ``[batch, vocab]``."""
    if not do_sample:
        return logits.argmax(-1)
    scores = logits.float() / temperature
    if top_k is not None:
        kth = scores.topk(min(top_k, scores.shape[-1]), dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, -torch.inf)
    if top_p is not None:
        ordered, order = scores.sort(dim=-1, descending=True)
        cumulative = ordered.softmax(-1).cumsum(-1)
        drop = cumulative - ordered.softmax(-1) >= top_p  # keep the smallest prefix reaching p
        scores = scores.scatter(-1, order, ordered.masked_fill(drop, -torch.inf))
    probs = scores.softmax(-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)


def generate(
    lm,
    inputs: str | Sequence[str] | torch.Tensor,
    *,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    edits: dict | None = None,
    capture: str | Sequence[str] | None = None,
    attention_mask: torch.Tensor | None = None,
    prepend_bos: bool = True,
    stop_at_eos: bool = True,
) -> Generation:
    """Continue ``inputs`` by up to ``max_new_tokens`` tokens (see the module docstring)."""
    _check(max_new_tokens, temperature, top_k, top_p)
    tokens, mask = lm._as_tokens(inputs, attention_mask, prepend_bos, "left")
    batch = tokens.shape[0]
    mask = mask if mask is not None else torch.ones_like(tokens)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    run = {"edits": edits, "capture": capture, "use_cache": True, "logits_to_keep": 1}
    logits, cache = lm.run(tokens, attention_mask=mask, prepend_bos=False, **run)
    prompt_mask = mask
    caches, new, valid = [cache], [], []
    pad = getattr(lm.tokenizer, "pad_token_id", None)
    pad = pad if pad is not None else 0
    eos = torch.tensor(lm.eos_token_ids if stop_at_eos else [], dtype=torch.long)
    done = torch.zeros(batch, dtype=torch.bool)
    for step in range(max_new_tokens):
        token = _next_token(logits[:, -1], do_sample, temperature, top_k, top_p, generator).cpu()
        token = torch.where(done, torch.full_like(token, pad), token)
        new.append(token)
        valid.append(~done)
        done |= torch.isin(token, eos)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
        logits, cache = lm.run(
            token[:, None],
            attention_mask=mask,
            prepend_bos=False,
            past_key_values=cache.past_key_values,
            **run,
        )
        caches.append(cache)
    new_tokens = torch.stack(new, dim=1)
    final_mask = torch.cat([prompt_mask, torch.stack(valid, dim=1).long()], dim=1)
    return Generation(
        tokens=torch.cat([tokens, new_tokens], dim=1),
        new_tokens=new_tokens,
        attention_mask=final_mask,
        caches=caches,
    )
