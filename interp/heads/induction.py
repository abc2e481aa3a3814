"""Induction heads (Olsson et al. 2022): prefix matching and copying on repeated random tokens.

Input: ``[BOS] + r + r + ... + r`` with ``r`` a sequence of ``seq_len`` distinct random tokens
drawn from the middle of the vocabulary (no special tokens, neither the most nor the least
common ids: the central 80% of ids, BPE ids being ordered roughly by frequency), repeated
``repeats`` times, ``n_examples`` sequences, seeded. One forward pass of the whole batch gives
every score: the attention probabilities on chosen keys come from the fused attention-statistics
path (``StatsRequest(targets=...)``), never from a stored ``[T, T]`` pattern.

Scores, one ``[n_layers, n_heads]`` map each (query ``i``, key ``j``, tokens ``x``):

- ``prefix_matching``: attention mass from ``i`` to the keys ``j <= i`` whose *previous* token
  equals the current one (``x[j-1] == x[i]``), averaged over the queries that have such keys
  (every query after the first copy of ``r``).
- ``duplicate_token``: mass on earlier keys holding the same token (``x[j] == x[i]``, ``j < i``).
- ``previous_token``: mass on key ``i - 1`` (every query but BOS). The reference measures it on
  natural text; here it is measured on the same random-token batch.
- ``stripe``: the ARENA induction score, mean attention on key ``i - (seq_len - 1)`` over queries in
  the second and later copies (the stripe of the ``[BOS] r r`` pattern); threshold 0.3-0.4.
- ``copying``: see :mod:`interp.heads.copying`; measured on the first ``copy_tokens`` (25)
  positions of the first copy of ``r`` (Olsson et al.'s sample of 25 random tokens).

An induction head is ``prefix_matching >= 0.4`` and ``copying >= -0.5`` (both thresholds stay in
the result and never change the raw scores). Why -0.5: with ``n = 25`` sample tokens a head that
raises logits at random scores about ``4 / (n + 1) - 1 = -0.85`` (the median SmolLM2 head: -0.84);
-0.5 means the attended token receives at least 1/7 of all the raise, 3.5x its chance share. On
SmolLM2-135M the best copiers (L23H2, L23H0, L24H5) reach -0.04 to -0.11: in a deep model, real
copying heads also raise tokens related to the attended one, so the ideal +1 is far away. Extra: ``loss_by_repeat`` ``[repeats]`` is the mean
next-token loss on each copy of ``r`` (the first copy cannot be predicted; later ones can, via
induction).
"""

from __future__ import annotations

import torch

from interp.heads.copying import copying_scores
from interp.heads.scores import HeadScores
from interp.models import StatsRequest

PREFIX_THRESHOLD = 0.4
COPYING_THRESHOLD = -0.5
VOCAB_RANGE = (0.1, 0.9)
COPY_TOKENS = 25


def repeated_random_tokens(
    model,
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


def _matching_keys(match: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean ``[B, Tq, Tk]`` -> key indices ``[B, Tq, S]`` (-1 padded) and ``[B, Tq]`` counts."""
    tk = match.shape[-1]
    count = match.sum(-1)
    width = max(1, int(count.max()))
    index = torch.where(match, torch.arange(tk), -1)
    return index.sort(dim=-1, descending=True).values[..., :width], count


def induction_targets(
    tokens: torch.Tensor, seq_len: int
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per metric: target keys ``[B, T, S]`` (-1 = none) and a ``[B, T]`` mask of counted queries.

    Built from the tokens alone (token-level comparisons, no attention):
    prefix ``x[j-1] == x[i], 1 <= j <= i``; duplicate ``x[j] == x[i], j < i``; previous ``i - 1``;
    stripe ``i - (seq_len - 1)`` for queries past the first copy.
    """
    b, t = tokens.shape
    i = torch.arange(t)[:, None]
    j = torch.arange(t)[None, :]
    previous = torch.cat([torch.full((b, 1), -1), tokens[:, :-1]], dim=1)  # x[j-1]; -1 at j = 0
    prefix = (previous[:, None, :] == tokens[:, :, None]) & (j <= i) & (j >= 1)
    duplicate = (tokens[:, None, :] == tokens[:, :, None]) & (j < i)
    out = {}
    for name, match in (("prefix_matching", prefix), ("duplicate_token", duplicate)):
        keys, count = _matching_keys(match)
        out[name] = (keys, count > 0)
    position = torch.arange(t).expand(b, t)
    prev_key = position - 1
    out["previous_token"] = (prev_key[..., None], prev_key >= 0)
    stripe_key = position - (seq_len - 1)
    stripe_ok = position >= seq_len + 1
    out["stripe"] = (torch.where(stripe_ok, stripe_key, -1)[..., None], stripe_ok)
    return out


def induction_scores(
    model,
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
) -> HeadScores:
    """Prefix-matching, copying, previous-token, duplicate-token and stripe scores of every head.

    ``tokens`` overrides the random batch (``[B, 1 + seq_len * repeats]`` of BOS + repeats of
    ``r``; ``r`` must not repeat a token within one copy). Returns a :class:`HeadScores` with
    primary ``prefix_matching`` and the rule ``prefix_matching >= prefix_threshold AND copying >=
    copying_threshold``.
    """
    if tokens is None:
        tokens = repeated_random_tokens(
            model,
            seq_len=seq_len,
            repeats=repeats,
            n_examples=n_examples,
            seed=seed,
            vocab_range=vocab_range,
        )
    elif tokens.dim() != 2 or tokens.shape[1] != 1 + seq_len * repeats:
        raise ValueError(
            f"tokens must be [batch, 1 + seq_len * repeats] = [B, {1 + seq_len * repeats}], got {tuple(tokens.shape)}"
        )
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
    scores = {}
    for name, part in zip(names, probs.split(widths, dim=-1), strict=True):
        mask = targets[name][1].double()  # [B, T] counted queries
        mass = part.sum(-1)  # [L, B, H, T]
        scores[name] = (mass * mask[None, :, None]).sum((1, 3)) / mask.sum()
    n_copy = min(copy_tokens, seq_len)
    values = cache.stack("attn.hook_v")[:, :, 1 : n_copy + 1]  # first copy: [L, B, n, Hkv, dh]
    scores["copying"] = copying_scores(model, values, tokens[:, 1 : n_copy + 1])
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(),
        tokens[:, 1:].flatten().to(logits.device),
        reduction="none",
    ).view(tokens.shape[0], -1)
    loss_by_repeat = loss.cpu().double().mean(0).view(repeats, seq_len).mean(1)
    order = ["prefix_matching", "copying", "previous_token", "duplicate_token", "stripe"]
    return HeadScores(
        scores={k: scores[k].float() for k in order},
        primary="prefix_matching",
        thresholds={"prefix_matching": prefix_threshold, "copying": copying_threshold},
        extras={"loss_by_repeat": loss_by_repeat.float()},
        settings={
            "seq_len": seq_len,
            "repeats": repeats,
            "n_examples": int(tokens.shape[0]),
            "seed": seed,
            "vocab_range": list(vocab_range),
            "inputs": "BOS + r repeated; r = distinct random mid-vocabulary tokens",
            "copy_tokens": n_copy,
            "copying": "Olsson OV copying on the first copy_tokens of r, 4 * mean ratio - 1",
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
