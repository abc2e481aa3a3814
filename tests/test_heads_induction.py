"""Induction scores: stats path vs explicit float64 patterns, copying vs a float64 reference,
hand-built targets and ratios, the in-context-learning score, and the embedded model's heads."""

import pytest
import torch

import interp
from interp.heads.copying import copy_ratios, copying_scores
from interp.heads.icl import in_context_learning_score
from interp.heads.induction import induction_scores, induction_targets, repeated_random_tokens
from tests.tiny import tiny_hf_model, word_tokenizer

SEQ, REPEATS = 8, 3


@pytest.fixture(scope="module")
def tiny_run(tiny_lm):
    tokens = repeated_random_tokens(tiny_lm, seq_len=SEQ, repeats=REPEATS, n_examples=3, seed=1)
    scores = induction_scores(tiny_lm, seq_len=SEQ, repeats=REPEATS, tokens=tokens, progress=False)
    _, cache = tiny_lm.run(
        tokens, capture=["blocks.*.attn.hook_pattern", "blocks.*.attn.hook_v"], prepend_bos=False
    )
    return tokens, scores, cache


def test_random_tokens_are_seeded_distinct_mid_vocab_and_repeated(tiny_lm):
    a = repeated_random_tokens(tiny_lm, seq_len=SEQ, repeats=REPEATS, n_examples=4, seed=3)
    b = repeated_random_tokens(tiny_lm, seq_len=SEQ, repeats=REPEATS, n_examples=4, seed=3)
    assert torch.equal(a, b) and a.shape == (4, 1 + SEQ * REPEATS)
    assert (a[:, 0] == tiny_lm.bos_token_id).all()
    r = a[:, 1 : SEQ + 1]
    assert torch.equal(a[:, 1:], r.repeat(1, REPEATS))
    assert all(len(set(row.tolist())) == SEQ for row in r)
    assert r.min() >= int(0.1 * tiny_lm.d_vocab) and r.max() < int(0.9 * tiny_lm.d_vocab)


def test_targets_on_a_hand_written_sequence():
    # BOS a b c a b c   (positions 0..6), seq_len 3
    tokens = torch.tensor([[1, 10, 11, 12, 10, 11, 12]])
    t = induction_targets(tokens, seq_len=3)
    prefix_keys, prefix_mask = t["prefix_matching"]
    # query 4 (a) -> key 2 (b, preceded by a); query 6 (c) -> key 4 (a, preceded by c)
    assert prefix_keys[0, 4].tolist() == [2] and prefix_keys[0, 6].tolist() == [4]
    assert prefix_mask[0].tolist() == [False, False, False, False, True, True, True]
    dup_keys, _ = t["duplicate_token"]
    assert dup_keys[0, 5].tolist() == [2]
    assert t["previous_token"][0][0, :, 0].tolist() == [-1, 0, 1, 2, 3, 4, 5]
    stripe_keys, stripe_mask = t["stripe"]
    assert stripe_mask[0].tolist() == [False] * 4 + [True] * 3
    assert stripe_keys[0, 4:, 0].tolist() == [2, 3, 4]  # i - (3 - 1)


def test_targets_match_brute_force_sets_with_linear_width():
    # many repeats of a few values: every query's key set, checked against explicit loops
    tokens = torch.randint(0, 5, (3, 40), generator=torch.Generator().manual_seed(4))
    t = induction_targets(tokens, seq_len=7)
    for name, strict in (("duplicate_token", True), ("prefix_matching", False)):
        keys, mask = t[name]
        for b in range(3):
            x = tokens[b].tolist()
            for i in range(40):
                if strict:  # x[j] == x[i], j < i
                    want = {j for j in range(i) if x[j] == x[i]}
                else:  # x[j - 1] == x[i], 1 <= j <= i
                    want = {j for j in range(1, i + 1) if x[j - 1] == x[i]}
                got = [k for k in keys[b, i].tolist() if k >= 0]
                assert len(got) == len(set(got)) and set(got) == want, (name, b, i)
                assert bool(mask[b, i]) == bool(want)
    # [BOS] + r repeated n times: S = n - 1 key slots per query, not T
    repeated = torch.cat([torch.tensor([[1]]), torch.arange(10, 30).repeat(1, 5)], dim=1)
    keys, _ = induction_targets(repeated, seq_len=20)["prefix_matching"]
    assert keys.shape == (1, 101, 4)


def _reference_attention_scores(tokens, patterns, seq_len):
    """Explicit loops over the float64 pattern: independent of induction_targets."""
    b, t = tokens.shape
    sums = {
        k: torch.zeros(patterns.shape[0], patterns.shape[2], dtype=torch.float64)
        for k in ("p", "d", "prev", "s")
    }
    counts = dict.fromkeys(sums, 0)
    for e in range(b):
        x = tokens[e].tolist()
        for i in range(t):
            rows = patterns[:, e, :, i].double()  # [L, H, Tk]
            prefix = [j for j in range(1, i + 1) if x[j - 1] == x[i]]
            dup = [j for j in range(i) if x[j] == x[i]]
            for key, keys in (("p", prefix), ("d", dup)):
                if keys:
                    sums[key] += rows[..., keys].sum(-1)
                    counts[key] += 1
            if i >= 1:
                sums["prev"] += rows[..., i - 1]
                counts["prev"] += 1
            if i >= seq_len + 1:
                sums["s"] += rows[..., i - (seq_len - 1)]
                counts["s"] += 1
    return {k: sums[k] / counts[k] for k in sums}


def test_stats_path_equals_explicit_pattern(tiny_run):
    tokens, scores, cache = tiny_run
    patterns = cache.stack("attn.hook_pattern")  # [L, B, H, T, T]
    ref = _reference_attention_scores(tokens, patterns, SEQ)
    for metric, key in (
        ("prefix_matching", "p"),
        ("duplicate_token", "d"),
        ("previous_token", "prev"),
        ("stripe", "s"),
    ):
        torch.testing.assert_close(scores[metric].double(), ref[key], atol=1e-5, rtol=1e-4)


def test_chunked_batches_give_the_same_scores(tiny_lm, tiny_run):
    tokens, scores, _ = tiny_run
    chunked = induction_scores(
        tiny_lm, seq_len=SEQ, repeats=REPEATS, tokens=tokens, batch_size=2, progress=False
    )
    for metric in scores.metrics:
        torch.testing.assert_close(chunked[metric], scores[metric], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(
        chunked.extras["loss_by_repeat"], scores.extras["loss_by_repeat"], atol=1e-5, rtol=1e-5
    )
    with pytest.raises(ValueError, match="batch_size"):
        induction_scores(tiny_lm, seq_len=SEQ, repeats=REPEATS, tokens=tokens, batch_size=0)


def test_copying_matches_float64_reference(tiny_lm, tiny_run):
    tokens, scores, cache = tiny_run
    values = cache.stack("attn.hook_v")[:, :, 1 : SEQ + 1].double()  # [L, B, n, Hkv, dh]
    sample = tokens[:, 1 : SEQ + 1]
    groups = tiny_lm.n_heads // tiny_lm.n_kv_heads
    w_o, w_u = tiny_lm.W_O.double(), tiny_lm.W_U.double()
    gain = tiny_lm.norm_weights()["ln_final"].double()
    eps = tiny_lm.config.rms_norm_eps
    ref = torch.zeros(tiny_lm.n_layers, tiny_lm.n_heads, dtype=torch.float64)
    for layer in range(tiny_lm.n_layers):
        for head in range(tiny_lm.n_heads):
            ratios = []
            for b in range(sample.shape[0]):
                for j in range(SEQ):
                    o = values[layer, b, j, head // groups] @ w_o[layer, head]
                    normed = o / torch.sqrt((o**2).mean() + eps) * gain
                    logits = normed @ w_u[:, sample[b]]
                    d = logits - logits.mean()
                    total = d.abs().sum()
                    ratios.append(float(torch.relu(d[j]) / total) if total > 0 else 0.0)
            ref[layer, head] = 4 * sum(ratios) / len(ratios) - 1
    torch.testing.assert_close(scores["copying"].double(), ref, atol=1e-4, rtol=1e-4)
    assert (scores["copying"] >= -1).all() and (scores["copying"] <= 1).all()


def test_copy_ratio_known_answers():
    # [4, 2, 0, -2]: mean 1, centred [3, 1, -1, -3], total movement 8
    logits = torch.tensor([[4.0, 2.0, 0.0, -2.0]]).expand(3, 4)
    torch.testing.assert_close(
        copy_ratios(logits, torch.tensor([0, 1, 2])), torch.tensor([3 / 8, 1 / 8, 0.0])
    )
    # only the attended token raised: the top of the range, 0.5; nothing moves: 0
    assert copy_ratios(torch.tensor([[5.0, 0.0, 0.0, 0.0]]), torch.tensor([0])).item() == 0.5
    assert copy_ratios(torch.tensor([[2.0, 2.0, 2.0, 2.0]]), torch.tensor([1])).item() == 0.0


N_SAMPLE = 16  # sample tokens w17..w32 (ids 20..35), one per value dimension of a head


@pytest.fixture(scope="module")
def copying_lm():
    """Tiny Llama (head_dim 16) whose layer-0 head 0 copies exactly (its OV circuit maps sample
    token k to the unembedding of token k alone) and head 2 raises the attended token by 3 and
    the next sample token by 1; every other head keeps its random weights."""
    model = tiny_hf_model("llama", hidden_size=64, head_dim=16)  # 4 heads, 2 KV heads
    eye = torch.eye(64)
    ids = torch.arange(20, 20 + N_SAMPLE)
    k = torch.arange(N_SAMPLE)
    with torch.no_grad():
        model.model.embed_tokens.weight[ids] = 4.0 * eye[k]  # token k -> direction k
        model.lm_head.weight[ids] = eye[16 + k]  # unembedding of token k: direction 16 + k
        attn = model.model.layers[0].self_attn
        for group in (0, 1):  # both KV groups read the token direction
            attn.v_proj.weight[group * 16 : (group + 1) * 16] = eye[:16]
        attn.o_proj.weight[:, :16] = eye[:, 16:32]  # head 0: value k -> direction 16 + k
        attn.o_proj.weight[:, 32:48] = 3 * eye[:, 16:32] + eye[:, 16:32].roll(1, dims=1)
    return interp.load_model(model, tokenizer=word_tokenizer(96), device="cpu")


def test_copying_positive_control_and_random_heads_at_chance(copying_lm):
    g = torch.Generator().manual_seed(0)
    r = torch.stack([torch.randperm(N_SAMPLE, generator=g) + 20 for _ in range(6)])
    tokens = torch.cat([torch.ones(6, 1, dtype=torch.long), r, r], dim=1)
    scores = induction_scores(
        copying_lm, seq_len=N_SAMPLE, repeats=2, tokens=tokens, copy_tokens=N_SAMPLE, progress=False
    )
    copying = scores["copying"].double()
    assert copying[0, 0] == pytest.approx(1.0, abs=1e-4)  # only the attended token is raised
    # head 2 raises the attended token by 3 and one other by 1: centred [2.75, 0.75, -0.25 x 14],
    # share 2.75 / 7 of the total movement, score 4 * 2.75 / 7 - 1 = 4 / 7
    assert copying[0, 2] == pytest.approx(4 / 7, abs=1e-4)
    assert scores.top(1, "copying")[0][:2] == (0, 0)
    # a random OV circuit gives the attended token its chance share 1 / n: score 2 / n - 1
    random_heads = torch.cat([copying[0, [1, 3]], copying[1]])
    assert float(random_heads.mean()) == pytest.approx(2 / N_SAMPLE - 1, abs=0.03)


def test_bad_inputs(tiny_lm):
    with pytest.raises(ValueError, match="seq_len"):
        repeated_random_tokens(tiny_lm, seq_len=1)
    with pytest.raises(ValueError, match="vocab_range"):
        repeated_random_tokens(tiny_lm, vocab_range=(0.9, 0.1))
    with pytest.raises(ValueError, match="tokens must be"):
        induction_scores(tiny_lm, seq_len=5, repeats=2, tokens=torch.ones(2, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="distinct"):
        copying_scores(tiny_lm, torch.zeros(2, 1, 3, 2, 8), torch.tensor([[5, 5, 6]]))
    with pytest.raises(ValueError, match="early < late"):
        in_context_learning_score(tiny_lm, ["w1 w2"], early=10, late=5)


def test_icl_score_is_late_minus_early_loss(tiny_lm):
    words = [" ".join(f"w{(7 * i + k) % 90}" for i in range(70)) for k in range(3)]
    result = in_context_learning_score(
        tiny_lm, words, context=64, early=5, late=40, batch_size=2, band=2
    )
    tokens = torch.stack([tiny_lm.to_tokens(w)[0, :64] for w in words])
    logp = torch.log_softmax(tiny_lm(tokens, prepend_bos=False).double(), -1)
    loss = -logp[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)  # loss of token t at index t-1
    expected = float(loss[:, 39].mean() - loss[:, 4].mean())
    assert result.score == pytest.approx(expected, abs=1e-4)
    banded = float(loss[:, 37:42].mean() - loss[:, 2:7].mean())  # tokens 38..42 minus 3..7
    assert result.band_score == pytest.approx(banded, abs=1e-4)
    assert "score" in result.table() and len(result.figure().data) == 1


@pytest.mark.embedded
def test_embedded_induction_heads_and_repeat_loss(embedded):
    # DESIGN.md (an earlier independent measurement): strong prefix matchers L18H6, L17H3-5;
    # OV copying at L23H0/2, L24H5
    scores = induction_scores(embedded, progress=False)
    prefix = scores["prefix_matching"]
    assert scores.top(1)[0][:2] == (18, 6) and float(prefix[18, 6]) > 0.8
    assert all(float(prefix[17, h]) > 0.7 for h in (3, 4, 5))
    assert float(prefix.median()) < 0.05  # most heads do not prefix-match
    copiers = {(layer, head) for layer, head, _ in scores.top(3, "copying")}
    assert copiers == {(23, 0), (23, 2), (24, 5)}, copiers
    assert float(scores["copying"].median()) == pytest.approx(2 / 25 - 1, abs=0.05)  # chance
    loss = scores.extras["loss_by_repeat"]
    assert loss[0] > 10.0 and loss[1] < 0.5 * loss[0]  # the repeat becomes predictable
