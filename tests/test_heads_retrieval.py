"""Retrieval heads: ROUGE-1, needle insertion, span rule, copy-paste rule, decode argmax vs the
explicit float64 pattern, head masking, aggregation, the length grid and its recorded settings, a
hand-built copy-paste model run end to end (synthetic needle), and one short embedded test."""

from types import SimpleNamespace

import pytest
import torch

import interp
from interp.heads import HeadScores
from interp.heads.decoding import greedy_decode
from interp.heads.haystack import assemble, find_span, insertion_point
from interp.heads.masking import masking_conditions, masking_experiment
from interp.heads.needles import Needle, load_needles, rouge1_recall, synthetic_needle
from interp.heads.retrieval import (
    RetrievalGrid,
    copy_paste_scores,
    default_lengths,
    retrieval_grid,
    retrieval_report_sections,
)
from interp.viz import Report
from tests.tiny import tiny_hf_model, word_tokenizer


def copy_paste_model(seed: int = 0) -> torch.nn.Module:
    """A 2-layer GPT-2 (no position embeddings, tied unembedding) that repeats the seed-``seed``
    synthetic code of the 96-word tokenizer through exactly one head, L0H0.

    Every weight is zero but the token embeddings (orthogonal, mean-free, unit-RMS directions for
    BOS, <unk> and the six code words), the norm gains, and L0H0: its QK circuit sends a query
    holding <unk> to the first code word, code word m to code word m + 1 and the last one to BOS;
    its OV circuit writes 10x the attended code word's embedding. The prompt ends in <unk>
    (every English word is <unk> to this tokenizer), so greedy decoding reads off the code one
    word per step, each step's top-1 key being the code word it emits: six copies over a
    six-token answer span, a retrieval score of exactly 1 for L0H0 and 0 for the other heads.
    """
    tok = word_tokenizer(96)
    code = [tok.convert_tokens_to_ids(w) for w in synthetic_needle(tok, seed=seed).answer.split()]
    d, dh = 32, 8
    model = tiny_hf_model("gpt2", vocab_size=96, n_embd=d, tie_word_embeddings=True)  # 4 heads of 8
    g = torch.Generator().manual_seed(0)
    start = torch.cat([torch.ones(d, 1), torch.randn(d, d - 1, generator=g)], dim=1)
    basis = torch.linalg.qr(start)[0][:, 1:] * d**0.5  # orthogonal to the all-ones vector
    special = [1, 0, *code]  # BOS, <unk>, code words
    direction = {t: basis[:, i] for i, t in enumerate(special)}
    others = torch.randn(96, d - 1 - len(special), generator=g) @ basis[:, len(special) :].T
    others = (others - others.mean(1, keepdim=True)) / others.std(1, keepdim=True)

    def reads(t):  # x @ reads(t) = 1 for x = the normed embedding of t, 0 for the other tokens
        return direction[t] / d

    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        for block in model.transformer.h:
            block.ln_1.weight.fill_(1.0)
            block.ln_2.weight.fill_(1.0)
        model.transformer.ln_f.weight.fill_(1.0)
        model.transformer.wte.weight.copy_(others)
        for t in special:
            model.transformer.wte.weight[t] = direction[t]
        w_q, w_k, w_v = torch.zeros(3, d, dh)
        w_o = torch.zeros(dh, d)
        w_k[:, 0] = 7.5 * reads(1)
        w_q[:, 1] = 7.5 * reads(0)
        w_q[:, 0] = 7.5 * reads(code[-1])
        for m, t in enumerate(code):
            w_k[:, m + 1] = 7.5 * reads(t)
            w_v[:, m + 1] = reads(t)
            w_o[m + 1] = 10 * direction[t]
        for m, t in enumerate(code[:-1]):
            w_q[:, m + 2] = 7.5 * reads(t)
        attn = model.transformer.h[0].attn
        attn.c_attn.weight[:, :dh] = w_q
        attn.c_attn.weight[:, d : d + dh] = w_k
        attn.c_attn.weight[:, 2 * d : 2 * d + dh] = w_v
        attn.c_proj.weight[:dh] = w_o
    return model


@pytest.fixture(scope="module")
def copy_lm():
    return interp.load_model(copy_paste_model(), tokenizer=word_tokenizer(96), device="cpu")


def test_rouge1_recall_counts_clipped_unigrams():
    assert rouge1_recall("a green teapot", "It is in a GREEN teapot!") == pytest.approx(1.0)
    assert rouge1_recall("the cat the hat", "the cat") == pytest.approx(
        0.5
    )  # "the" clipped to 1 of 2
    assert rouge1_recall("blue giraffe seven", "blue seven") == pytest.approx(2 / 3)
    assert rouge1_recall("blue giraffe", "") == 0.0
    with pytest.raises(ValueError, match="no words"):
        rouge1_recall("...", "x")


def test_needles_validate_and_ship():
    needles = load_needles()
    assert len(needles) >= 3 and all(n.answer.lower() in n.needle.lower() for n in needles)
    with pytest.raises(ValueError, match="substring"):
        Needle("The sky is green.", "What colour is the sky?", "blue")


def test_insertion_snaps_back_to_a_sentence_end():
    ends = torch.zeros(20, dtype=torch.bool)
    ends[[4, 11]] = True  # tokens 4 and 11 end sentences
    assert insertion_point(ends, 0.5) == 5  # int(20 * 0.5) = 10 -> after token 4
    assert insertion_point(ends, 0.6) == 12  # 12: token 11 ends a sentence
    assert insertion_point(ends, 0.1) == 0  # no sentence end before 2
    assert insertion_point(ends, 1.0) == 20
    with pytest.raises(ValueError, match="depth"):
        insertion_point(ends, 1.5)


def test_span_rule_and_assembly():
    tokens = torch.tensor([9, 9, 5, 6, 7, 8, 9])
    assert find_span(tokens, [5, 6, 7], 0, 7) == (2, 5)
    with pytest.raises(ValueError, match="not found"):
        find_span(tokens, [5, 6, 40], 0, 7)  # overlap 2/3 <= 0.9
    haystack = torch.arange(50, 80)
    ends = torch.zeros(30, dtype=torch.bool)
    ends[[9, 19]] = True
    prompt = assemble(
        [1], haystack, [30, 31, 32, 33], [40, 41], [31, 32], length=20, depth=0.5, sentence_end=ends
    )
    # room = 20 - 1 - 2 - 4 = 13 haystack tokens; int(13 * 0.5) = 6 -> back to 0 (no end before 6)
    assert prompt.tokens.numel() == 20 and prompt.needle == (1, 5) and prompt.span == (2, 4)
    deep = assemble(
        [1], haystack, [30, 31, 32, 33], [40, 41], [31, 32], length=20, depth=0.9, sentence_end=ends
    )
    assert deep.needle == (11, 15) and int(deep.tokens[10]) == 59  # right after the sentence end 59
    with pytest.raises(ValueError, match="no room"):
        assemble([1], haystack, [30] * 10, [40] * 9, [30], length=20, depth=0.5, sentence_end=ends)


def test_copy_paste_rule_on_a_synthetic_trace():
    # one test, 2 layers x 2 heads, 4 steps; prompt tokens 0..9, answer span [3, 6) holds 13 14 15
    prompt = torch.tensor([[10, 11, 12, 13, 14, 15, 16, 17, 18, 19]])
    generated = torch.tensor([[13, 14, 14, 15]])
    argmax = torch.zeros(4, 2, 1, 2, dtype=torch.long)
    argmax[:, 0, 0, 0] = torch.tensor([3, 4, 4, 5])  # copies at every step (repeat counts again)
    argmax[:, 0, 0, 1] = torch.tensor(
        [3, 3, 3, 8]
    )  # copies at step 0 only (then token differs / out of span)
    argmax[:, 1, 0, 0] = torch.tensor([0, 1, 2, 5])  # in span only at step 3: copies once
    argmax[:, 1, 0, 1] = torch.tensor(
        [13, 14, 4, 5]
    )  # keys past the prompt never count; steps 2-3 copy
    active = torch.tensor([[True], [True], [True], [False]])  # the row stopped before step 3
    scores = copy_paste_scores(argmax, generated, active, prompt, torch.tensor([[3, 6]]))
    expected = torch.tensor([[[3, 1], [0, 1]]], dtype=torch.float64) / 3
    torch.testing.assert_close(scores, expected)


def test_decode_argmax_matches_explicit_pattern(tiny_lm):
    torch.manual_seed(0)
    prompts = torch.randint(3, 90, (2, 12))
    trace = greedy_decode(
        tiny_lm, prompts, max_new_tokens=4, suppress_steps=0, stop_ids=[], suppress_ids=[]
    )
    steps = trace.generated.shape[1]
    full = torch.cat([prompts, trace.generated[:, :-1]], dim=1)
    logits, cache = tiny_lm.run(full, capture="blocks.*.attn.hook_pattern", prepend_bos=False)
    pattern = cache.stack("attn.hook_pattern").double()  # [L, B, H, T, T]
    rows = torch.arange(prompts.shape[1] - 1, full.shape[1])  # the query of each decode step
    expected = pattern[:, :, :, rows].argmax(-1).permute(3, 0, 1, 2)  # [S, L, B, H]
    assert torch.equal(trace.argmax, expected)
    assert torch.equal(trace.generated, logits[:, rows].argmax(-1))  # greedy
    assert trace.active.all() and steps == 4


def test_decode_stops_rows_and_suppresses(tiny_lm):
    prompts = torch.randint(3, 90, (2, 10), generator=torch.Generator().manual_seed(1))
    free = greedy_decode(
        tiny_lm, prompts, max_new_tokens=3, stop_ids=[], suppress_ids=[], record_argmax=False
    )
    first = free.generated[:, 0]
    stopped = greedy_decode(
        tiny_lm, prompts, max_new_tokens=3, stop_ids=first.tolist(), suppress_ids=[]
    )
    assert stopped.generated.shape[1] == 1 and stopped.active.shape == (1, 2)
    banned = greedy_decode(
        tiny_lm,
        prompts,
        max_new_tokens=3,
        stop_ids=[],
        suppress_ids=first.tolist(),
        suppress_steps=1,
    )
    assert not torch.isin(banned.generated[:, 0], first).any()


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox"])
def test_masked_head_attends_uniformly(tiny_models, tokenizer, family):
    import interp

    lm = interp.load_model(tiny_models[family], tokenizer=tokenizer, device="cpu")
    tokens = torch.randint(3, 90, (1, 9), generator=torch.Generator().manual_seed(2))
    _, plain = lm.run(tokens, capture="blocks.1.attn.hook_pattern", prepend_bos=False)
    with lm.ablate_heads([(1, 2)]):
        _, masked = lm.run(tokens, capture="blocks.1.attn.hook_pattern", prepend_bos=False)
    uniform = torch.tril(torch.ones(9, 9)) / torch.arange(1, 10)[:, None]
    torch.testing.assert_close(
        masked["blocks.1.attn.hook_pattern"][0, 2].float(), uniform, atol=1e-6, rtol=1e-5
    )
    keep = [0, 1, 3]
    torch.testing.assert_close(
        masked["blocks.1.attn.hook_pattern"][0, keep], plain["blocks.1.attn.hook_pattern"][0, keep]
    )
    _, after = lm.run(tokens, capture="blocks.1.attn.hook_pattern", prepend_bos=False)
    assert torch.equal(
        after["blocks.1.attn.hook_pattern"], plain["blocks.1.attn.hook_pattern"]
    )  # hooks removed
    with pytest.raises(ValueError, match="outside"), lm.ablate_heads([(5, 0)]):
        pass
    with (
        pytest.raises(ValueError, match="accepted: uniform, zero"),
        lm.ablate_heads([(1, 2)], "mean"),
    ):
        pass


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox"])
def test_zero_ablation_removes_exactly_the_heads_direct_output(tiny_models, tokenizer, family):
    import interp

    lm = interp.load_model(tiny_models[family], tokenizer=tokenizer, device="cpu")
    tokens = torch.randint(3, 90, (1, 7), generator=torch.Generator().manual_seed(3))
    names = ["blocks.1.attn.hook_z", "blocks.1.hook_attn_out"]
    _, plain = lm.run(tokens, capture=names, prepend_bos=False)
    with lm.ablate_heads([(1, 0), (1, 3)], method="zero"):
        _, ablated = lm.run(tokens, capture=names, prepend_bos=False)
    z = plain["blocks.1.attn.hook_z"][0].double()  # [T, heads, d_head]
    w_o = lm.W_O[1].double()  # [heads, d_head, d_model]
    removed = torch.einsum("thd,hdm->tm", z[:, [0, 3]], w_o[[0, 3]])
    want = plain["blocks.1.hook_attn_out"][0].double() - removed
    torch.testing.assert_close(
        ablated["blocks.1.hook_attn_out"][0].double(), want, atol=1e-5, rtol=1e-4
    )


def test_grid_scores_average_successful_tests_only(tmp_path):
    heads = torch.zeros(1, 1, 3, 2, 2)
    heads[0, 0, 0] = torch.tensor([[0.4, 0.0], [0.1, 0.0]])
    heads[0, 0, 1] = torch.tensor([[0.2, 0.0], [0.2, 0.0]])
    heads[0, 0, 2] = torch.tensor([[9.0, 9.0], [9.0, 9.0]])  # failed test: ignored
    grid = RetrievalGrid(
        recall=torch.tensor([[[1.0, 0.6, 0.2]]]),
        success=torch.tensor([[[True, True, False]]]),
        head_scores=heads,
        lengths=[100],
        depths=[0.0, 0.5, 1.0],
        questions=["q"],
        answers=["a"],
        responses=[[["a", "a", "b"]]],
        model="toy",
    )
    scores = grid.scores()
    torch.testing.assert_close(scores["retrieval"], torch.tensor([[0.3, 0.0], [0.15, 0.0]]))
    assert scores.heads() == [(0, 0), (1, 0)]  # strict: > 0.1
    assert scores.settings["successful_tests"] == 2
    loaded = RetrievalGrid.load(grid.save(tmp_path / "grid"))
    assert loaded.responses == grid.responses and torch.equal(loaded.head_scores, grid.head_scores)
    assert (
        "2 of 3 retrieved" in grid.table()
        and "1/1     1/1     0/1" in grid.table()
        and grid.figure().data[0].z.shape == (1, 3)
    )


def test_synthetic_needle_is_seeded(tokenizer):
    a, b = (
        synthetic_needle(tokenizer, n_words=4, seed=5),
        synthetic_needle(tokenizer, n_words=4, seed=5),
    )
    assert a == b and len(a.answer.split()) == 4 and a.answer in a.needle


@pytest.mark.embedded
def test_embedded_needle_is_retrieved_by_known_heads(embedded):
    grid = retrieval_grid(
        embedded, lengths=[200], depths=[0.5], n_needles=1, max_new_tokens=30, progress=False
    )
    assert bool(grid.success.all()), grid.responses
    top = {(layer, head) for layer, head, _ in grid.scores().top(8)}
    assert top & {(18, 7), (23, 2), (20, 6), (17, 3), (18, 6)}, top


def test_synthetic_grid_finds_the_hand_built_copy_paste_head(copy_lm, tmp_path):
    grid = retrieval_grid(
        copy_lm,
        synthetic=True,
        n_needles=1,
        lengths=[60],
        depths=[0.0, 0.5, 1.0],
        max_new_tokens=10,
        progress=False,
    )
    code = synthetic_needle(copy_lm.tokenizer, seed=0).answer
    assert all(r.startswith(code) for r in grid.responses[0][0]), grid.responses
    assert bool(grid.success.all())
    scores = grid.scores()
    assert scores.top(1)[0] == (0, 0, 1.0)  # six copies over the six-token span, every test
    others = scores["retrieval"].clone()
    others[0, 0] = 0
    assert float(others.max()) == 0.0 and scores.heads() == [(0, 0)]
    # the settings say what produced the grid, and survive a save/load round trip
    settings = HeadScores.load(scores.save(tmp_path / "scores")).settings
    assert settings["lengths"] == [60] and settings["depths"] == [0.0, 0.5, 1.0]
    assert settings["needle_source"] == "synthetic" and settings["n_needles"] == 1
    assert settings["needles"] == [
        {
            "needle": f"The special magic code is: {code} (remember it).",
            "question": "What is the special magic code? Repeat it exactly.",
            "answer": code,
        }
    ]
    assert settings["max_new_tokens"] == 10 and settings["successful_tests"] == 3
    assert RetrievalGrid.load(grid.save(tmp_path / "grid")).settings == grid.settings


def test_masking_the_copy_paste_head_breaks_retrieval_and_a_random_head_does_not(copy_lm):
    grid = retrieval_grid(
        copy_lm,
        synthetic=True,
        n_needles=1,
        lengths=[60],
        depths=[0.5],
        max_new_tokens=8,
        progress=False,
    )
    result = masking_experiment(
        copy_lm,
        grid.scores(),
        k=1,
        n_random=2,
        lengths=[60],
        depths=[0.0, 1.0],
        n_needles=1,
        synthetic=True,
        max_new_tokens=8,
        progress=False,
    )
    assert result.masked[1] == [[0, 0]] and all([0, 0] not in m for m in result.masked[2:])
    torch.testing.assert_close(result.accuracy(), torch.tensor([1.0, 0.0, 1.0, 1.0]))
    assert "top 1 retrieval" in result.table()


def test_masking_pool_excludes_the_top_k_and_nan_scores_raise():
    # threshold 0.1: retrieval heads L0H0 (0.5) and L1H1 (0.2); the top 3 adds L0H1 (0.05), which
    # is at or below the threshold but must not be drawn as a random non-retrieval head
    values = torch.tensor([[0.5, 0.05], [0.0, 0.2], [0.01, 0.0]])
    scores = HeadScores(
        {"retrieval": values},
        primary="retrieval",
        thresholds={"retrieval": 0.1},
        strict={"retrieval": True},
    )
    names, masked = masking_conditions(scores, k=3, n_random=6, seed=0)
    assert masked[0] == [] and masked[1] == [(0, 0), (1, 1), (0, 1)]
    assert all(sorted(m) == [(1, 0), (2, 0), (2, 1)] for m in masked[2:])
    assert names[1] == "top 3 retrieval" and len(names) == 8
    with pytest.raises(ValueError, match="only 2 non-retrieval heads outside the top 4"):
        masking_conditions(scores, k=4, n_random=1, seed=0)
    nan = HeadScores({"retrieval": torch.full((3, 2), float("nan"))}, primary="retrieval")
    with pytest.raises(ValueError, match="NaN: no needle test was retrieved"):
        masking_conditions(nan, k=1, n_random=1, seed=0)


def test_default_length_grid_doubles_up_to_max_length(copy_lm):
    smol = SimpleNamespace(n_ctx=8192, name="m")
    assert default_lengths(smol) == (2048, [256, 512, 1024, 2048])
    assert default_lengths(SimpleNamespace(n_ctx=1000, name="m")) == (951, [256, 512, 951])
    assert default_lengths(smol, 700, max_new_tokens=20) == (700, [256, 512, 700])
    assert default_lengths(copy_lm) == (
        79,
        [79],
    )  # context 128 leaves 79 prompt tokens for 50 steps
    with pytest.raises(ValueError, match="max_length <= 79"):
        default_lengths(copy_lm, 100)
    with pytest.raises(ValueError, match=r"lengths must be prompt token counts in \[2, 79\]"):
        retrieval_grid(copy_lm, synthetic=True, n_needles=1, lengths=[64, 80], progress=False)
    grid = retrieval_grid(
        copy_lm,
        synthetic=True,
        n_needles=1,
        max_length=64,
        depths=[1.0],
        max_new_tokens=4,
        progress=False,
    )
    assert grid.lengths == [64] and grid.settings["max_length"] == 64


def test_report_has_the_per_test_grid(copy_lm):
    grid = retrieval_grid(
        copy_lm,
        synthetic=True,
        n_needles=1,
        lengths=[50, 60],
        depths=[0.0, 1.0],
        max_new_tokens=7,
        progress=False,
    )
    rows = grid.test_rows()
    assert [(r[1], r[2]) for r in rows] == [(50, 0.0), (50, 1.0), (60, 0.0), (60, 1.0)]
    assert all(r[3] == 1.0 and r[4] == "yes" and r[6] == "L0H0 1.00" for r in rows)
    report = Report("retrieval")
    retrieval_report_sections(grid.scores(), grid, report)
    html = report.html()
    assert "Every test" in html and html.count("L0H0 1.00") == 4
    assert grid.responses[0][1][0] in html and "<td>yes</td>" in html
