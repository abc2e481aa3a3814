"""Induction heads (Olsson et al. 2022): prefix matching and copying on repeated random tokens.

Input: ``[BOS] + r + r + ... + r`` with ``r`` a sequence of ``seq_len`` distinct random tokens
drawn from the middle of the vocabulary (no special tokens, neither the most nor the least
common ids: the central 80% of ids, BPE ids being ordered roughly by frequency), repeated
``repeats`` times, ``n_examples`` sequences, seeded. One forward pass (per chunk of
``batch_size`` sequences) gives every score: the attention probabilities on chosen keys come from
the fused attention-statistics path (``StatsRequest(targets=...)``), never from a stored
``[T, T]`` pattern, and the target keys are built as ``[B, T, S]`` index tensors (``S`` = the
most earlier copies of a token, ``repeats - 1`` here), so memory stays linear in ``T``.

Scores, one ``[n_layers, n_heads]`` map each (query ``i``, key ``j``, tokens ``x``):

- ``prefix_matching``: attention mass from ``i`` to the keys ``j <= i`` whose *previous* token
  equals the current one (``x[j-1] == x[i]``), averaged over the queries that have such keys
  (every query after the first copy of ``r``).
- ``duplicate_token``: mass on earlier keys holding the same token (``x[j] == x[i]``, ``j < i``).
- ``previous_token``: mass on key ``i - 1`` (every query but BOS). The reference measures it on
  natural text; here it is measured on the same random-token batch.
- ``stripe``: the ARENA induction score, mean attention on key ``i - (seq_len - 1)`` (the stripe
  of the ``[BOS] r r`` pattern; threshold 0.3-0.4), computed on this same default batch (4
  copies of ``r``, not ARENA's 2) over the queries in the second and later copies. ARENA averages
  the whole diagonal, which also takes in the first copy's last two rows, where the stripe means
  nothing; for a perfect induction head the two differ by about ``2 / (seq_len + 2)``.
- ``copying``: see :mod:`interp.heads.copying`; measured on the first ``copy_tokens`` (25)
  positions of the first copy of ``r`` (Olsson et al.'s sample of 25 random tokens).

An induction head is ``prefix_matching >= 0.4`` and ``copying >= -0.5`` (both thresholds stay in
the result and never change the raw scores). Why -0.5: copying is ``2 q - 1`` with ``q`` the
attended token's share of the raise; a head that raises logits at random gets ``q = 1/n``, about
``2/25 - 1 = -0.92`` (the median SmolLM2-135M head measures -0.91), and -0.5 means ``q >= 1/4``,
6x the chance share. On SmolLM2-135M exactly three heads pass it, the best copiers L23H2 (-0.34),
L23H0 (-0.36) and L24H5 (-0.40), with the runner-up L23H1 at -0.52: in a deep model real copying
heads also raise tokens related to the attended one, so the ideal +1 is far away. Extra:
``loss_by_repeat`` ``[repeats]`` is the mean next-token loss on each copy of ``r`` (the first
copy cannot be predicted; later ones can, via induction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from interp.heads.checks import check_model
from interp.heads.copying import copying_ratio_sums, score_from_ratios
from interp.heads.scores import HeadScores
from interp.models import StatsRequest

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel

PREFIX_THRESHOLD = 0.4
COPYING_THRESHOLD = -0.5
VOCAB_RANGE = (0.1, 0.9)
COPY_TOKENS = 25


def repeated_random_tokens(
    model: LanguageModel,
    *,
    seq_len: int = 25,
    repeats: int = 4,
    n_examples: int = 10,
    seed: int = 0,
    vocab_range: tuple[float, float] = VOCAB_RANGE,
) -> torch.Tensor:
    """``[n_examples, 1 + seq_len * repeats]`` token ids: BOS then ``repeats`` copies of ``r``.

    ``r`` holds ``seq_len`` distinct ids drawn uniformly from ``[lo, hi)`` = ``vocab_range`` of
    the vocabulary, special tokens removed; the draw is seeded (``torch.Generator``).
    """
    for name, value, least in (
        ("seq_len", seq_len, 2),
        ("repeats", repeats, 2),
        ("n_examples", n_examples, 1),
    ):
        if not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    lo_frac, hi_frac = vocab_range
    if not 0.0 <= lo_frac < hi_frac <= 1.0:
        raise ValueError(f"vocab_range must be fractions 0 <= lo < hi <= 1, got {vocab_range}")
    if model.bos_token_id is None:
        raise ValueError(f"{model.name} has no BOS token; induction inputs start with BOS")
    lo, hi = int(lo_frac * model.d_vocab), int(hi_frac * model.d_vocab)
    special = set(getattr(model.tokenizer, "all_special_ids", []) or []) | {model.bos_token_id}
    pool = torch.tensor([i for i in range(lo, hi) if i not in special], dtype=torch.long)
    if len(pool) < seq_len:
        raise ValueError(
            f"only {len(pool)} usable token ids in vocab_range {vocab_range}; need seq_len={seq_len}"
        )
    generator = torch.Generator().manual_seed(seed)
    keys = torch.rand(n_examples, len(pool), generator=generator)
    r = pool[keys.argsort(dim=1)[:, :seq_len]]  # distinct tokens per example
    bos = torch.full((n_examples, 1), model.bos_token_id, dtype=torch.long)
    return torch.cat([bos, r.repeat(1, repeats)], dim=1)


def earlier_occurrences(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query ``i``, the earlier positions ``p < i`` holding the same token.

    Returns keys ``[B, T, S]`` (latest first, -1 padded; ``S`` = the largest count, at least 1)
    and counts ``[B, T]``. Built by a stable sort of each row (equal tokens become contiguous, in
    position order), so memory is ``O(B T S)``: for ``[BOS] + r`` repeated ``n`` times, ``S = n - 1``.
    """
    b, t = tokens.shape
    order = torch.sort(tokens, dim=1, stable=True).indices  # positions grouped by token
    grouped = tokens.gather(1, order)
    k = torch.arange(t).expand(b, t)
    starts = torch.ones(b, t, dtype=torch.bool)
    starts[:, 1:] = grouped[:, 1:] != grouped[:, :-1]
    rank = k - torch.where(starts, k, 0).cummax(dim=1).values  # earlier copies of the same token
    width = max(1, int(rank.max()))
    offsets = torch.arange(width)
    source = (k[..., None] - 1 - offsets).clamp_min(0)  # [B, T, S] in sorted order
    keys = order.gather(1, source.reshape(b, -1)).view(b, t, width)
    keys = torch.where(offsets < rank[..., None], keys, -1)
    out_keys = torch.empty_like(keys).scatter_(1, order[..., None].expand(b, t, width), keys)
    return out_keys, torch.empty_like(rank).scatter_(1, order, rank)


def induction_targets(
    tokens: torch.Tensor, seq_len: int
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per metric: target keys ``[B, T, S]`` (-1 = none) and a ``[B, T]`` mask of counted queries.

    Built from the tokens alone (token-level comparisons, no attention), in memory linear in
    ``T``: duplicate ``x[j] == x[i], j < i``; prefix ``x[j-1] == x[i], 1 <= j <= i`` (the
    duplicate keys shifted right by one); previous ``i - 1``; stripe ``i - (seq_len - 1)`` for
    queries past the first copy.
    """
    b, t = tokens.shape
    duplicate, count = earlier_occurrences(tokens)
    prefix = torch.where(duplicate >= 0, duplicate + 1, -1)
    out = {
        "prefix_matching": (prefix, count > 0),
        "duplicate_token": (duplicate, count > 0),
    }
    position = torch.arange(t).expand(b, t)
    prev_key = position - 1
    out["previous_token"] = (prev_key[..., None], prev_key >= 0)
    stripe_key = position - (seq_len - 1)
    stripe_ok = position >= seq_len + 1
    out["stripe"] = (torch.where(stripe_ok, stripe_key, -1)[..., None], stripe_ok)
    return out


def _chunk_sums(
    model: LanguageModel, tokens: torch.Tensor, seq_len: int, n_copy: int
) -> dict[str, torch.Tensor]:
    """One forward pass of a chunk: per metric the summed mass ``[L, H]`` and counted queries,
    the summed copying ratios and the summed next-token loss per position."""
    targets = induction_targets(tokens, seq_len)
    names = list(targets)
    widths = [targets[n][0].shape[-1] for n in names]
    request = StatsRequest(
        targets=torch.cat([targets[n][0] for n in names], dim=-1).to(model.device)
    )
    logits, cache = model.run(
        tokens, capture="blocks.*.attn.hook_v", attention_stats=request, prepend_bos=False
    )
    probs = cache.stats("target_prob").double().cpu()  # [L, B, H, T, S]
    sums = {}
    for name, part in zip(names, probs.split(widths, dim=-1), strict=True):
        mask = targets[name][1].double()  # [B, T] counted queries
        sums[name] = (part.sum(-1) * mask[None, :, None]).sum((1, 3))  # [L, H]
        sums[f"{name}/count"] = mask.sum()
    values = cache.stack("attn.hook_v")[:, :, 1 : n_copy + 1]  # first copy: [L, B, n, Hkv, dh]
    sums["copying"] = copying_ratio_sums(model, values, tokens[:, 1 : n_copy + 1])
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(),
        tokens[:, 1:].flatten().to(logits.device),
        reduction="none",
    )
    sums["loss"] = loss.view(tokens.shape[0], -1).cpu().double().sum(0)  # [T - 1]
    return sums


def induction_scores(
    model: LanguageModel,
    *,
    seq_len: int = 25,
    repeats: int = 4,
    n_examples: int = 10,
    seed: int = 0,
    vocab_range: tuple[float, float] = VOCAB_RANGE,
    prefix_threshold: float = PREFIX_THRESHOLD,
    copying_threshold: float = COPYING_THRESHOLD,
    copy_tokens: int = COPY_TOKENS,
    tokens: torch.Tensor | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> HeadScores:
    """Prefix-matching, copying, previous-token, duplicate-token and stripe scores of every head.

    ``tokens`` overrides the random batch (``[B, 1 + seq_len * repeats]`` of BOS + repeats of
    ``r``; ``r`` must not repeat a token within one copy). ``batch_size`` runs the examples in
    chunks of that many sequences (default: all at once; the scores are the same), with a
    progress bar over chunks when ``progress``. Returns a :class:`HeadScores` with primary
    ``prefix_matching`` and the rule ``prefix_matching >= prefix_threshold AND copying >=
    copying_threshold``.
    """
    check_model(model, "induction_scores")
    user_tokens = tokens is not None
    if tokens is None:
        tokens = repeated_random_tokens(
            model,
            seq_len=seq_len,
            repeats=repeats,
            n_examples=n_examples,
            seed=seed,
            vocab_range=vocab_range,
        )
    elif tokens.dim() != 2 or tokens.shape[1] != 1 + seq_len * repeats or len(tokens) < 1:
        raise ValueError(
            f"tokens must be [batch, 1 + seq_len * repeats] = [B, {1 + seq_len * repeats}], got {tuple(tokens.shape)}"
        )
    total = int(tokens.shape[0])
    size = total if batch_size is None else batch_size
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    n_copy = min(copy_tokens, seq_len)
    sums: dict[str, torch.Tensor] = {}
    for chunk in tqdm(tokens.split(size), desc="induction", unit="batch", disable=not progress):
        for key, value in _chunk_sums(model, chunk, seq_len, n_copy).items():
            sums[key] = sums[key] + value if key in sums else value
    order = ["prefix_matching", "copying", "previous_token", "duplicate_token", "stripe"]
    scores = {k: sums[k] / sums[f"{k}/count"] for k in order if k != "copying"}
    scores["copying"] = score_from_ratios(sums["copying"], total * n_copy)
    loss_by_repeat = (sums["loss"] / total).view(repeats, seq_len).mean(1)
    return HeadScores(
        scores={k: scores[k].float() for k in order},
        primary="prefix_matching",
        thresholds={"prefix_matching": prefix_threshold, "copying": copying_threshold},
        extras={"loss_by_repeat": loss_by_repeat.float()},
        settings={
            "seq_len": seq_len,
            "repeats": repeats,
            "n_examples": total,
            "seed": seed,
            "vocab_range": list(vocab_range),
            "inputs": "user tokens"
            if user_tokens
            else "BOS + r repeated; r = distinct random mid-vocabulary tokens",
            "copy_tokens": n_copy,
            "copying": "Olsson OV copying on the first copy_tokens of r: 4 * mean(u_a / sum|d|) - 1",
            "stripe": "mean attention on key i - (seq_len - 1) over queries past the first copy, "
            "on this same batch",
        },
        model=model.name,
        title="induction heads",
        metrics=order,
    )


def induction_report_sections(scores: HeadScores, report, icl=None) -> None:
    """Add the induction section to an :class:`interp.viz.Report`: rule, tables, maps, losses."""
    import plotly.graph_objects as go

    report.heading("Induction heads")
    rule = " AND ".join(f"{m} >= {t:g}" for m, t in scores.thresholds.items())
    found = scores.heads()
    report.text(
        f"Rule: {rule}. {len(found)} of {scores.n_layers * scores.n_heads} heads pass: "
        + (", ".join(f"L{layer}H{head}" for layer, head in found) or "none")
        + f". Inputs: {scores.settings.get('n_examples')} x [BOS] + {scores.settings.get('repeats')} "
        f"copies of {scores.settings.get('seq_len')} random tokens."
    )
    report.preformatted(scores.table(k=10))
    for metric in ("prefix_matching", "copying"):
        report.figure(scores.figure(metric))
    prefix, copying = scores["prefix_matching"].reshape(-1), scores["copying"].reshape(-1)
    labels = [f"L{i // scores.n_heads}H{i % scores.n_heads}" for i in range(prefix.numel())]
    fig = go.Figure(go.Scatter(x=prefix.numpy(), y=copying.numpy(), mode="markers", text=labels))
    fig.update_layout(
        title="prefix matching vs copying (each point a head)",
        xaxis_title="prefix matching",
        yaxis_title="copying",
        template="plotly_white",
    )
    report.figure(fig)
    losses = scores.extras.get("loss_by_repeat")
    if losses is not None:
        report.table(
            ["copy of r", "mean loss (nats)"], [[i + 1, float(v)] for i, v in enumerate(losses)]
        )
    if icl is not None:
        report.preformatted(icl.table())
        report.figure(icl.figure())
