"""Activation patching and ablations on a tiny random-init Llama (GQA: 4 query heads, 2 KV heads).

References: the clean run's own metric (patching it with its own activations, or patching every
position of the layer-0 residual), a Python loop of single patched runs written here from
``lm.run(edits=...)`` alone (the batched runs must give the same numbers to 1e-5 for every site
and for batch sizes that split the cells unevenly), per-example answers, the nnsight backend.
"""

from __future__ import annotations

import warnings

import plotly.graph_objects as go
import pytest
import torch

import interp
from interp.errors import InputTypeError, InvalidArgumentError, UnknownNameError
from interp.patching import PatchingResult, activation_patching, logit_diff
from tests.tiny import tiny_hf_model

CLEAN = ["w5 w9 w14 w5 w9 w30 w31 w7", "w8 w9 w14 w8 w9 w30 w31 w7"]
CORRUPT = ["w6 w9 w14 w6 w9 w30 w31 w7", "w11 w9 w14 w11 w9 w30 w31 w7"]
ANSWERS, WRONG = ["w5", "w8"], ["w6", "w11"]
ALL_SITES = ["resid_pre", "resid_post", "attn_out", "mlp_out", "z", "q", "k", "v"]


@pytest.fixture(scope="module")
def lm(tokenizer):
    return interp.load_model(tiny_hf_model("llama", vocab_size=len(tokenizer)), tokenizer=tokenizer)


@pytest.fixture(scope="module")
def metric(lm):
    return logit_diff(lm, ANSWERS, WRONG)


def _diff(lm, logits):
    right = torch.tensor([lm.tokenizer.convert_tokens_to_ids(t) for t in ANSWERS])
    wrong = torch.tensor([lm.tokenizer.convert_tokens_to_ids(t) for t in WRONG])
    last = logits[:, -1]
    rows = torch.arange(len(last))
    return last[rows, right] - last[rows, wrong]


def loop_reference(lm, base, sources, site, layers=None):
    """One ``lm.run`` per cell: the base inputs with one (layer, position, head) replaced."""
    suffix = interp.patching.SITES[site]
    heads = {"k": lm.n_kv_heads, "v": lm.n_kv_heads}.get(site, lm.n_heads)
    per_head = site in ("z", "q", "k", "v")
    length = lm.to_tokens(base).shape[1]
    layers = range(lm.n_layers) if layers is None else layers
    out = torch.empty(len(layers), length, *([heads] if per_head else []), 2)
    for row, layer in enumerate(layers):
        hook = f"blocks.{layer}.{suffix}"
        for pos in range(length):
            for head in range(heads) if per_head else [None]:
                cell = (slice(None), pos) if head is None else (slice(None), pos, head)

                def patch(x, ctx, cell=cell, hook=hook):
                    x = x.clone()
                    x[cell] = sources[hook][cell]
                    return x

                logits, _ = lm.run(base, edits={hook: patch})
                out[(row, pos) + ((head,) if per_head else ())] = _diff(lm, logits)
    return out


def clean_sources(lm, site):
    names = f"blocks.*.{interp.patching.SITES[site]}"
    return lm.run(CLEAN, capture=names)[1]


def test_patching_the_clean_run_with_itself_changes_nothing(lm, metric):
    results = activation_patching(lm, CLEAN, CLEAN, metric, sites=ALL_SITES, batch_size=7)
    clean = _diff(lm, lm.run(CLEAN)[0])
    for site, result in results.items():
        expected = clean.expand_as(result.per_example)
        torch.testing.assert_close(result.per_example, expected, atol=1e-5, rtol=0, msg=site)
        torch.testing.assert_close(result.clean_metric, clean, atol=1e-6, rtol=0)


def test_every_position_of_layer0_resid_pre_gives_the_clean_metric(lm, metric):
    result = activation_patching(
        lm, CLEAN, CORRUPT, metric, sites="resid_pre", layers=[0], positions="all", batch_size=1
    )
    clean, corrupt = _diff(lm, lm.run(CLEAN)[0]), _diff(lm, lm.run(CORRUPT)[0])
    assert result.per_example.shape == (1, 2) and result.axes == ["layer"]
    torch.testing.assert_close(result.per_example[0], clean, atol=1e-6, rtol=0)
    torch.testing.assert_close(result.corrupted_metric, corrupt, atol=1e-6, rtol=0)
    assert (clean - corrupt).abs().min() > 1e-3  # the corruption matters
    torch.testing.assert_close(result.recovered(), torch.ones(1), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("site", "batch_size"),
    [("resid_pre", 4), ("attn_out", 5), ("mlp_out", 13), ("z", 7), ("q", 11), ("k", 5)]
    + [("v", 3), ("resid_post", 100)],
)
def test_batched_patching_equals_a_loop_of_single_runs(lm, metric, site, batch_size):
    result = activation_patching(lm, CLEAN, CORRUPT, metric, sites=site, batch_size=batch_size)
    expected = loop_reference(lm, CORRUPT, clean_sources(lm, site), site)
    assert result.per_example.shape == expected.shape
    torch.testing.assert_close(result.per_example, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.values, expected.mean(-1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", ["right", "left"])
def test_ragged_batches_patch_each_row_as_if_alone(lm, side):
    clean = ["w5 w9 w14 w5 w7", CLEAN[1]]
    corrupt = ["w6 w9 w14 w6 w7", CORRUPT[1]]
    options = {"sites": "z", "layers": [1], "positions": "all", "padding_side": side}
    both = activation_patching(lm, clean, corrupt, logit_diff(lm, ANSWERS, WRONG), **options)
    for i in range(2):
        alone = activation_patching(
            lm, clean[i], corrupt[i], logit_diff(lm, ANSWERS[i], WRONG[i]), **options
        )
        torch.testing.assert_close(both.per_example[..., i], alone.per_example[..., 0], atol=1e-5, rtol=0)  # fmt: skip
        torch.testing.assert_close(both.baseline[i], alone.baseline[0], atol=1e-5, rtol=0)


def test_memory_budget_sets_the_chunk_and_not_the_numbers(lm, metric):
    small = activation_patching(lm, CLEAN, CORRUPT, metric, sites="z", max_bytes=200_000)
    big = activation_patching(lm, CLEAN, CORRUPT, metric, sites="z")
    assert 1 <= small.settings["cells_per_forward"] < big.settings["cells_per_forward"]
    torch.testing.assert_close(small.per_example, big.per_example, atol=1e-5, rtol=0)


def test_chosen_layers_positions_and_heads(lm, metric):
    full = activation_patching(lm, CLEAN, CORRUPT, metric, sites="z")
    part = activation_patching(
        lm, CLEAN, CORRUPT, metric, sites="z", layers=[1], positions=[-1, 3], heads=[2, 0]
    )
    assert part.axes == ["layer", "position", "head"] and part.positions == [8, 3]
    expected = full.per_example[1:2][:, [8, 3]][:, :, [2, 0]]
    torch.testing.assert_close(part.per_example, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("ablation", ["zero", "mean", "resample"])
def test_ablations_equal_a_loop_of_single_runs(lm, metric, ablation):
    site = "z"
    result = activation_patching(
        lm, CLEAN, None, metric, sites=site, ablation=ablation, batch_size=6
    )
    captured = clean_sources(lm, site)
    if ablation == "zero":
        sources = {h: torch.zeros_like(v) for h, v in captured.items()}
    elif ablation == "mean":  # over both examples and every position
        sources = {h: v.mean((0, 1), keepdim=True).expand_as(v) for h, v in captured.items()}
    else:  # two inputs: each takes the other's values
        sources = {h: v.flip(0) for h, v in captured.items()}
    expected = loop_reference(lm, CLEAN, sources, site)
    torch.testing.assert_close(result.per_example, expected, atol=1e-5, rtol=0)
    assert result.method == f"{ablation} ablation" and result.corrupted_metric.isnan().all()
    torch.testing.assert_close(result.baseline, _diff(lm, lm.run(CLEAN)[0]), atol=1e-6, rtol=0)


def test_mean_ablation_over_a_reference_batch(lm, metric):
    reference = ["w20 w21 w22", "w23 w24 w25 w26 w27"]  # ragged: the mean skips padding
    result = activation_patching(
        lm, CLEAN, None, metric, sites="mlp_out", layers=[0], ablation="mean", reference=reference
    )
    _, cache = lm.run(reference, capture="blocks.0.hook_mlp_out")
    values = cache["blocks.0.hook_mlp_out"]
    mean = torch.cat([values[0, :4], values[1, :6]]).mean(0)
    sources = {"blocks.0.hook_mlp_out": mean.expand(2, 9, -1)}
    expected = loop_reference(lm, CLEAN, sources, "mlp_out", layers=[0])
    torch.testing.assert_close(result.per_example, expected, atol=1e-5, rtol=0)


def test_native_and_nnsight_give_the_same_patching(lm, metric, tokenizer):
    from nnsight import LanguageModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LanguageModel(
            tiny_hf_model("llama", vocab_size=len(tokenizer)), tokenizer=tokenizer
        )
    other = interp.load_model(model)
    sites = ["resid_pre", "z", "k", "mlp_out"]
    mine = activation_patching(lm, CLEAN, CORRUPT, metric, sites=sites, batch_size=9)
    theirs = activation_patching(
        other, CLEAN, CORRUPT, logit_diff(other, ANSWERS, WRONG), sites=sites, batch_size=9
    )
    for site in sites:
        torch.testing.assert_close(
            theirs[site].per_example, mine[site].per_example, atol=1e-5, rtol=0
        )


def test_transformer_lens_bridge_gives_the_same_patching(lm, metric, tokenizer, tmp_path):
    from tests.test_models_adapters import _boot_bridge

    bridge = interp.load_model(
        _boot_bridge(tiny_hf_model("llama", vocab_size=len(tokenizer)), tokenizer, tmp_path)
    )
    sites = ["resid_pre", "attn_out", "mlp_out", "z", "q", "k", "v"]
    mine = activation_patching(lm, CLEAN, CORRUPT, metric, sites=sites, batch_size=9)
    theirs = activation_patching(
        bridge, CLEAN, CORRUPT, logit_diff(bridge, ANSWERS, WRONG), sites=sites, batch_size=9
    )
    for site in sites:
        torch.testing.assert_close(
            theirs[site].per_example, mine[site].per_example, atol=1e-4, rtol=0
        )


def test_result_table_figure_and_round_trip(lm, metric, tmp_path):
    result = activation_patching(lm, CLEAN, CORRUPT, metric, sites="z", layers=[1])
    loaded = PatchingResult.load(result.save(tmp_path / "z"))
    assert torch.equal(loaded.per_example, result.per_example) and loaded.heads == [0, 1, 2, 3]
    assert loaded.positions == list(range(9)) and loaded.tokens == result.tokens
    best = result.effects.abs().argmax()
    layer, pos, head = (int(i) for i in torch.unravel_index(best, result.values.shape))
    first_row = result.table(3).splitlines()[2].split()
    assert first_row[:3] == [f"L{layer + 1}", f"{pos}:{result.tokens[pos]!r}", f"H{head}"]
    figure = result.figure()
    heat = figure.data[0]
    assert isinstance(figure, go.Figure) and heat.zmin == -heat.zmax
    assert (
        "activation patching" in figure.layout.title.text
        and "summed over positions" in figure.layout.title.text
    )
    torch.testing.assert_close(torch.tensor(heat.z), result.effects.sum(1).double())
    at = result.figure(position=pos).data[0].z
    torch.testing.assert_close(torch.tensor(at), result.effects[:, pos].double())
    assert result.figure(by="position").layout.xaxis.title.text == "position"


def test_bad_input_is_one_clear_line(lm, metric):
    with pytest.raises(
        InvalidArgumentError, match="same number of tokens .* clean has 9, corrupted 8"
    ):
        activation_patching(lm, CLEAN[0], "w6 w9 w14 w6 w9 w30 w7", metric)
    with pytest.raises(UnknownNameError, match="unknown patching site 'attn_outt'.*'attn_out'"):
        activation_patching(lm, CLEAN, CORRUPT, metric, sites="attn_outt")
    with pytest.raises(InvalidArgumentError, match=r"metric must return one value per row.*\(2,\)"):
        activation_patching(lm, CLEAN, CORRUPT, lambda logits, ctx: logits[:, -1])
    with pytest.raises(InputTypeError, match="metric must be a function"):
        activation_patching(lm, CLEAN, CORRUPT, "logit_diff")
    with pytest.raises(InvalidArgumentError, match="unknown ablation 'noise'"):
        activation_patching(lm, CLEAN, None, metric, ablation="noise")
    with pytest.raises(InvalidArgumentError, match="pass the inputs .* as reference="):
        activation_patching(lm, CLEAN, CORRUPT, metric, ablation="zero")
    with pytest.raises(InvalidArgumentError, match="clean has 2 inputs but corrupted has 1"):
        activation_patching(lm, CLEAN, CORRUPT[0], metric)
    with pytest.raises(InvalidArgumentError, match="heads \\[4\\] outside the 2 KV heads"):
        activation_patching(lm, CLEAN, CORRUPT, metric, sites="k", heads=[4])
    with pytest.raises(InvalidArgumentError, match="positions \\[9\\] outside an input of 9"):
        activation_patching(lm, CLEAN, CORRUPT, metric, positions=[9])
    with pytest.raises(InvalidArgumentError, match="answer has 3 tokens for 2 inputs"):
        activation_patching(lm, CLEAN, CORRUPT, logit_diff(lm, ["w5", "w8", "w9"], "w6"))
    with pytest.raises(InvalidArgumentError, match="answer 'w5 w6' is 2 tokens"):
        logit_diff(lm, "w5 w6", "w7")
