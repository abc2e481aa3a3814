"""causal_check: ablate the top-k heads vs random heads and measure each kind's behaviour.

References: an independent ablation (an edit zeroing the heads' ``attn.hook_z`` instead of the
ablation context manager) and an independent loss / accuracy computation; the pool rule checked
head by head; the retrieval branch is masking_experiment's numbers.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import interp
from interp.errors import InvalidArgumentError
from interp.heads import HeadScores
from interp.heads.causal import CausalCheck, ablation_sets, causal_check, increment_prompts
from interp.heads.ordinal_tasks import OrdinalTask
from tests.tiny import tiny_hf_model


@pytest.fixture(scope="module")
def lm(tokenizer):
    model = tiny_hf_model("llama", vocab_size=len(tokenizer), layers=3)
    return interp.load_model(model, tokenizer=tokenizer)


def scores_of(values: torch.Tensor, primary: str, threshold: float) -> HeadScores:
    return HeadScores(scores={primary: values}, primary=primary, thresholds={primary: threshold})


def zeroing_edits(heads):
    """Edits that zero the heads' z (a different mechanism from ablate_heads('zero'))."""
    by_layer = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def make(chosen):
        def zero(z, ctx):
            z = z.clone()
            z[..., chosen, :] = 0
            return z

        return zero

    return {f"blocks.{layer}.attn.hook_z": make(chosen) for layer, chosen in by_layer.items()}


def test_ablation_sets_pool_excludes_top_and_classified():
    values = torch.arange(12.0).reshape(3, 4)  # classified: >= 7 -> 5 heads; top 3: 11, 10, 9
    scores = scores_of(values, "prefix_matching", 7.0)
    top, randoms = ablation_sets(scores, 3, draws=4, seed=1)
    assert top == [(2, 3), (2, 2), (2, 1)]
    for heads in randoms:
        assert len(set(heads)) == 3
        assert all(values[layer, head] < 7 for layer, head in heads)
    assert ablation_sets(scores, 3, draws=4, seed=1) == (top, randoms)
    with pytest.raises(InvalidArgumentError, match="only 4 heads outside the top 8"):
        ablation_sets(scores, 8, draws=1, seed=0)


def test_induction_branch_is_the_repeated_half_loss_under_ablation(lm):
    values = torch.rand(3, 4, generator=torch.Generator().manual_seed(0))
    scores = scores_of(values, "prefix_matching", 0.95)
    check = causal_check(lm, scores, k=2, draws=2, seq_len=10, n_examples=4)
    tokens = interp.heads.induction.repeated_random_tokens(lm, seq_len=10, repeats=2, n_examples=4)

    def loss(heads):
        logits, _ = lm.run(tokens, prepend_bos=False, edits=zeroing_edits(heads))
        return float(
            F.cross_entropy(logits[:, 10:-1].flatten(0, 1).double(), tokens[:, 11:].flatten())
        )

    assert check.baseline == pytest.approx(loss([]), abs=1e-6)
    assert check.top == pytest.approx(loss([tuple(h) for h in check.top_heads]), abs=1e-6)
    for value, heads in zip(check.random, check.random_heads, strict=True):
        assert float(value) == pytest.approx(loss([tuple(h) for h in heads]), abs=1e-6)
    assert check.top != pytest.approx(check.baseline, abs=1e-4)  # ablating did something
    assert check.kind == "induction" and not check.higher_is_better


def test_successor_branch_is_increment_accuracy(lm, tmp_path):
    task = OrdinalTask("words", tuple(f"w{i}" for i in range(3, 30)))
    prompts, answers = increment_prompts(lm, [task], per_task=50, n_items=3, separator="w90")
    ids = lambda text: int(lm.to_tokens(text, prepend_bos=False)[0, 0])  # noqa: E731
    sep = ids("w90")
    assert prompts[0].tolist() == [lm.bos_token_id, ids("w3"), sep, ids("w4"), sep, ids("w5"), sep]
    assert int(answers[0]) == ids("w6") and len(prompts) == 24
    values = torch.rand(3, 4, generator=torch.Generator().manual_seed(3))
    check = causal_check(
        lm, scores_of(values, "succession", 0.9), k=2, draws=1, tasks=[task], per_task=50,
        n_items=3, separator="w90",
    )  # fmt: skip
    for heads, value in [([], check.baseline), (check.top_heads, check.top)]:
        logits, _ = lm.run(
            prompts, prepend_bos=False, edits=zeroing_edits([tuple(h) for h in heads])
        )
        expected = (logits[:, -1].argmax(-1) == answers).double().mean()
        assert value == pytest.approx(float(expected))
    loaded = CausalCheck.load(check.save(tmp_path / "check"))
    assert loaded.top_heads == check.top_heads and "top 2 ablated" in check.table()
    assert len(check.figure().data[0].y) == 3


def test_retrieval_branch_is_the_masking_experiment(lm, monkeypatch):
    from interp.heads import masking

    recall = torch.tensor([1.0, 0.0, 1.0, 0.6]).reshape(4, 1, 1, 1).expand(4, 2, 1, 1)
    fake = masking.MaskingResult(
        conditions=["none", "top", "r1", "r2"],
        masked=[[], [[0, 1]], [[1, 1]], [[2, 0]]],
        recall=recall.clone(),
        settings={"k": 1},
    )
    seen = {}

    def masking_experiment(model, scores, **kwargs):
        seen.update(kwargs)
        return fake

    monkeypatch.setattr(masking, "masking_experiment", masking_experiment)
    values = torch.rand(3, 4)
    check = causal_check(lm, scores_of(values, "retrieval", 0.5), k=1, draws=2, lengths=(64,))
    assert (check.baseline, check.top) == (1.0, 0.0)
    assert check.random.tolist() == [1.0, 1.0] and check.top_heads == [[0, 1]]
    assert seen == {"k": 1, "n_random": 2, "seed": 0, "lengths": (64,)}


def test_unknown_kind_is_refused(lm):
    scores = scores_of(torch.rand(3, 4), "stripe", 0.5)
    with pytest.raises(InvalidArgumentError, match="kind="):
        causal_check(lm, scores, k=1)
