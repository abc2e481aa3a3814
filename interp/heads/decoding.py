"""Batched greedy decoding with the KV cache, recording every head's top-1 key at each step.

Wu et al. 2024's procedure: prefill all prompt tokens but the last, then decode greedily up to
``max_new_tokens``; each step feeds one token, so each head has a single query row, and its top-1
attended key (softmax is monotone: the argmax of the masked logits) comes from the fused
attention statistics of that step, ``cache.stats("argmax") -> [L, B, H, 1]``: one vectorized
argmax for every head, no loop over heads. A row stops after generating a newline (as the
reference) or an end-of-sequence / end-of-turn token; the stopping step still counts. Instruct
models tend to end their turn at once on long prompts, so end-of-turn tokens are suppressed in
the first ``suppress_steps`` steps (newlines are not: the reference stops on them).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from interp.models import StatsRequest

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel

END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>", "</s>")


@dataclasses.dataclass
class DecodeTrace:
    """``generated [B, S]`` tokens (-1 after a row stopped), ``argmax [S, L, B, H]`` top-1 keys of
    each step's query, ``active [S, B]`` whether the row was still decoding at that step."""

    generated: torch.Tensor
    argmax: torch.Tensor | None
    active: torch.Tensor


def end_of_turn_ids(model: LanguageModel) -> list[int]:
    """EOS plus the chat end-of-turn tokens this tokenizer knows."""
    tokenizer = model.tokenizer
    ids = set(model.eos_token_ids)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN if t in vocab)
    return sorted(i for i in ids if i is not None and 0 <= i < model.d_vocab)


def newline_ids(model: LanguageModel) -> list[int]:
    """Tokens whose text contains a newline (BPE 'Ċ', SentencePiece '<0x0A>', ...)."""
    tokenizer = model.tokenizer
    pieces = tokenizer.convert_ids_to_tokens(list(range(min(len(tokenizer), model.d_vocab))))
    hints = ("\u010a", "\n", "<0x0A>")
    return [
        i
        for i, p in enumerate(pieces)
        if p and any(h in p for h in hints) and "\n" in tokenizer.decode([i])
    ]


def greedy_decode(
    model: LanguageModel,
    prompts: torch.Tensor,
    *,
    max_new_tokens: int = 50,
    suppress_steps: int = 3,
    record_argmax: bool = True,
    stop_ids: list[int] | None = None,
    suppress_ids: list[int] | None = None,
) -> DecodeTrace:
    """Decode ``prompts [B, T]`` (equal lengths, no padding) greedily with the KV cache.

    ``stop_ids`` default: newline tokens + :func:`end_of_turn_ids`; ``suppress_ids`` default:
    :func:`end_of_turn_ids`, masked out of the first ``suppress_steps`` steps.
    ``record_argmax=False`` skips the attention statistics (for accuracy-only runs).
    """
    if prompts.dim() != 2 or prompts.shape[1] < 2:
        raise ValueError(
            f"prompts must be [batch, tokens] with at least 2 tokens, got {tuple(prompts.shape)}"
        )
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    model.check_length(prompts.shape[1] + max_new_tokens - 1)
    eot = end_of_turn_ids(model)
    stop = torch.tensor(
        sorted(set(newline_ids(model) + eot) if stop_ids is None else stop_ids), dtype=torch.long
    )
    suppress = torch.tensor(eot if suppress_ids is None else suppress_ids, dtype=torch.long)
    device = model.device
    _, cache = model.run(prompts[:, :-1], prepend_bos=False, use_cache=True, logits_to_keep=1)
    past = cache.past_key_values
    current = prompts[:, -1:]
    batch = prompts.shape[0]
    alive = torch.ones(batch, dtype=torch.bool)
    generated, argmaxes, active = [], [], []
    request = StatsRequest() if record_argmax else None
    for step in range(max_new_tokens):
        logits, cache = model.run(
            current,
            attention_stats=request,
            prepend_bos=False,
            past_key_values=past,
            use_cache=True,
        )
        past = cache.past_key_values
        last = logits[:, -1].float().clone()
        if step < suppress_steps and len(suppress):
            last[:, suppress.to(device)] = -torch.inf
        token = last.argmax(-1).cpu()
        if record_argmax:
            argmaxes.append(cache.stats("argmax")[..., -1].cpu())  # [L, B, H]
        active.append(alive.clone())
        generated.append(torch.where(alive, token, -1))
        alive &= ~torch.isin(token, stop)
        if not bool(alive.any()):
            break
        current = token[:, None]
    return DecodeTrace(
        generated=torch.stack(generated, dim=1),
        argmax=torch.stack(argmaxes) if record_argmax else None,
        active=torch.stack(active),
    )


def responses(model: LanguageModel, trace: DecodeTrace) -> list[str]:
    """Decoded text of each row (special tokens dropped, stripped)."""
    out = []
    for row in trace.generated:
        ids = [i for i in row.tolist() if i >= 0]
        out.append(model.tokenizer.decode(ids, skip_special_tokens=True).strip())
    return out
