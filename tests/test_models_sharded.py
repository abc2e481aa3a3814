"""Models bigger than one device: ``load_model(..., device_map=...)`` through accelerate.

The reference is an unsharded float32 load of the same folder. On the CPU the test map keeps the
embedding, layer 0, the final norm and the head on ``"cpu"`` and offloads layers 1-2 to
``"disk"`` (accelerate loads their weights in for each forward), so every capture, the attention
statistics, per-head weights and the induction finder run across an offload boundary. Half
precision is compared with float32 at a tolerance fitted to its rounding. Bad placements fail in
one line before anything is read (the spec named is a folder that does not exist, so reaching
the loader would raise another error).
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest
import torch

import interp
from interp.errors import DeviceError, InputTypeError, InvalidArgumentError
from interp.heads.induction import induction_scores, repeated_random_tokens
from interp.models import StatsRequest
from tests.tiny import tiny_hf_model

TEXT = "w5 w9 w14 w5 w9 w30 w31 w7 w8 w20 w21"
BATCH = [TEXT, "w3 w4 w5 w6"]
CAPTURE = [
    "hook_embed",
    "blocks.*.hook_resid_pre",
    "blocks.*.hook_resid_mid",
    "blocks.*.hook_resid_post",
    "blocks.*.hook_attn_out",
    "blocks.*.hook_mlp_out",
    "blocks.*.attn.hook_q",
    "blocks.*.attn.hook_k",
    "blocks.*.attn.hook_v",
    "blocks.*.attn.hook_z",
    "ln_final.hook_normalized",
]
DISK_MAP = {
    "model.embed_tokens": "cpu",
    "model.rotary_emb": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.layers.2": "disk",
    "model.norm": "cpu",
    "lm_head": "cpu",
}
WEIGHTS = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O")


@pytest.fixture(scope="module")
def folder(tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_hf_model("llama", vocab_size=len(tokenizer), layers=3).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def reference(folder):
    return interp.load_model(folder, device="cpu")


@pytest.fixture(scope="module")
def offloaded(folder, tmp_path_factory):
    return interp.load_model(
        folder, device_map=DISK_MAP, offload_folder=tmp_path_factory.mktemp("offload")
    )


def _stats_request(lm, inputs) -> StatsRequest:
    tokens, _ = lm._as_tokens(inputs, None, True)
    batch, length = tokens.shape
    previous = (torch.arange(length) - 1).expand(batch, length)
    return StatsRequest(
        targets=previous[..., None], key_ranges=torch.tensor([[0, 3]]).expand(batch, 1, 2)
    )


@pytest.mark.parametrize("inputs", [TEXT, BATCH], ids=["single", "padded"])
def test_disk_offloaded_layers_match_an_unsharded_load(offloaded, reference, inputs):
    assert offloaded.model.hf_device_map["model.layers.1"] == "disk"
    assert next(offloaded.model.model.layers[1].parameters()).is_meta  # really offloaded
    stats = _stats_request(reference, inputs)
    logits, cache = offloaded.run(inputs, capture=CAPTURE, attention_stats=stats)
    ref_logits, ref = reference.run(inputs, capture=CAPTURE, attention_stats=stats)
    # One device: every capture and statistic comes back where the logits are.
    devices = {v.device for v in cache.values()} | {logits.device}
    assert devices == {offloaded.device}
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=0)
    assert sorted(cache) == sorted(ref)
    for name, value in ref.items():
        torch.testing.assert_close(cache[name], value, atol=1e-5, rtol=0, msg=name)
    for field in ("lse", "max_prob", "target_prob", "range_mass"):
        torch.testing.assert_close(cache.stats(field), ref.stats(field), atol=1e-5, rtol=0)
    assert torch.equal(cache.stats("argmax"), ref.stats("argmax"))


def test_offloaded_weights_helpers_and_head_finder_match(offloaded, reference):
    for name in WEIGHTS:
        value = getattr(offloaded, name)
        assert not value.is_meta and value.device == offloaded.device, name
        assert torch.equal(value, getattr(reference, name)), name
    x = torch.randn(2, 3, reference.d_model, generator=torch.Generator().manual_seed(0))
    for layer in (0, 2):  # a resident layer and an offloaded one
        torch.testing.assert_close(
            offloaded.mlp(layer, offloaded.norm(layer, "mlp", x)),
            reference.mlp(layer, reference.norm(layer, "mlp", x)),
            atol=1e-6,
            rtol=0,
        )
    tokens = repeated_random_tokens(reference, seq_len=6, repeats=3, n_examples=2, seed=1)
    got = induction_scores(offloaded, seq_len=6, repeats=3, tokens=tokens, progress=False)
    want = induction_scores(reference, seq_len=6, repeats=3, tokens=tokens, progress=False)
    for key in ("prefix_matching", "copying"):
        torch.testing.assert_close(
            torch.as_tensor(got.scores[key]), torch.as_tensor(want.scores[key]), atol=1e-5, rtol=0
        )


def test_auto_map_and_a_dispatched_model_object(folder, reference, tokenizer):
    auto = interp.load_model(folder, device_map="auto", max_memory={"cpu": "1GiB"})
    # transformers records no map when everything fits on one device
    assert set(getattr(auto.model, "hf_device_map", {"": "cpu"}).values()) == {"cpu"}
    torch.testing.assert_close(auto(TEXT), reference(TEXT), atol=1e-6, rtol=0)
    model = tiny_hf_model("llama", vocab_size=len(tokenizer), layers=3)
    placed = interp.load_model(
        model, tokenizer=tokenizer, device_map={"model": "cpu", "lm_head": "cpu"}
    )
    assert placed.model.hf_device_map == {"model": "cpu", "lm_head": "cpu"}
    torch.testing.assert_close(placed(TEXT), reference(TEXT), atol=1e-6, rtol=0)
    # an already-dispatched model is wrapped where it is; moving it again is refused, not ignored
    assert interp.load_model(model, tokenizer=tokenizer).model is model
    with pytest.raises(ValueError, match="already placed by accelerate"):
        interp.load_model(model, tokenizer=tokenizer, device="cpu")


# bf16 keeps 8 significant bits (unit roundoff u = 2**-8 = 3.9e-3), fp16 11 (u = 4.9e-4). Weights,
# every matmul output and every norm are rounded once each; measured on this 3-layer model the
# largest error is ~2 u of the reference's largest magnitude (logits, residual stream, z) and
# ~0.02 u for the log-sum-exp (statistics are computed in float32 from half q/k). The tolerance is
# 8 u of that magnitude: 0.031 x max|value| for bf16, 0.0039 x for fp16 - four times the rounding
# seen, far below the difference between two different models.
HALF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, "bfloat16"], ids=str)
def test_half_precision_loads_match_float32_within_rounding(folder, reference, dtype):
    lm = interp.load_model(folder, device="cpu", dtype=dtype)
    torch_dtype = dtype if isinstance(dtype, torch.dtype) else torch.bfloat16
    assert lm.dtype == torch_dtype
    names = ["blocks.*.hook_resid_post", "blocks.*.attn.hook_z"]
    logits, cache = lm.run(TEXT, capture=names, attention_stats=True)
    ref_logits, ref = reference.run(TEXT, capture=names, attention_stats=True)
    assert logits.dtype == torch_dtype
    tolerance = 8 * HALF[torch_dtype]
    for name, got, want in [("logits", logits, ref_logits)] + [(n, cache[n], ref[n]) for n in ref]:
        scale = want.abs().max().item()
        error = (got.float() - want).abs().max().item()
        assert error <= tolerance * scale, f"{name}: {error:.3g} > {tolerance * scale:.3g}"
        assert error > 0 or name.endswith("hook_z"), "a half-precision run equal to float32?"
    assert torch.equal(cache.stats("argmax"), ref.stats("argmax")) or torch_dtype == torch.bfloat16
    lse_error = (cache.stats("lse").float() - ref.stats("lse")).abs().max().item()
    assert lse_error <= tolerance * ref.stats("lse").abs().max().item()


MISSING = "/nonexistent/interp-model-folder"  # reaching the loader would raise MissingInputError


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"device_map": {"model.layers.0": "cuda:3"}},
            DeviceError,
            r"device_map\['model.layers.0'\] names 'cuda:3', which this machine does not have; "
            r"available here: cpu, disk",
        ),
        (
            {"device_map": {"model.layers.0": "npu"}},
            DeviceError,
            r"device_map\['model.layers.0'\] names 'npu', which",
        ),
        ({"device_map": {"model": 3}}, DeviceError, r"names 3, which this machine does not have"),
        ({"device": "cuda:3"}, DeviceError, r"device names 'cuda:3', which this machine"),
        ({"device_map": "everywhere"}, InvalidArgumentError, r"device_map must be one of auto"),
        (
            {"device_map": {"model.layers.1": "disk"}},
            InvalidArgumentError,
            r"offloads modules to 'disk': pass offload_folder",
        ),
        ({"device": "cpu", "device_map": "auto"}, InvalidArgumentError, r"not both"),
        ({"max_memory": {"cpu": "1GiB"}}, InvalidArgumentError, r"apply to a device_map"),
        (
            {"dtype": torch.float8_e4m3fn},
            DeviceError,
            r"dtype torch.float8_e4m3fn cannot run on cpu \(\".+\" not implemented for "
            r"'Float8_e4m3fn'\); use float32",
        ),
        ({"dtype": torch.int8}, InvalidArgumentError, r"torch.int8 is not a floating-point dtype"),
        ({"dtype": "float17"}, InvalidArgumentError, r"unknown dtype 'float17'; accepted"),
        ({"dtype": 16}, InputTypeError, r"dtype must be a torch dtype or its name, got int"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_placements_fail_in_one_line_before_loading(kwargs, error, message):
    if torch.cuda.device_count() > 3 and "cuda:3" in str(kwargs):
        pytest.skip("this machine has a cuda:3")
    with pytest.raises(error, match=message) as caught:
        interp.load_model(MISSING, **kwargs)
    assert "\n" not in str(caught.value)


BENCH = Path(__file__).resolve().parents[1] / "analyses" / "benchmarks"


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_sharded_script_runs_its_checks_on_cpu_and_disk(capsys):
    """The GPU script splits cuda:0 / cpu where a GPU is lent; here its python part runs the
    same checks with the halves on the CPU and the disk, and its shell wrapper parses."""
    script = _load_script("gpu_sharded")
    assert script.split_map("cuda:0", "cpu")["model.layers.1"] == "cuda:0"
    assert script.split_map("cuda:0", "cpu", offload_last=True)["model.layers.3"] == "disk"
    assert script.main(["--devices", "cpu", "disk"]) == 0
    out = capsys.readouterr().out
    assert "0 failed checks" in out and "FAIL" not in out and "PASS  one device" in out
    shell = subprocess.run(["bash", "-n", str(BENCH / "gpu_sharded.sh")], capture_output=True)
    assert shell.returncode == 0, shell.stderr


def test_gpu_sharded_checks_catch_a_different_model(reference, tokenizer):
    script = _load_script("gpu_sharded")
    other = interp.load_model(
        tiny_hf_model("llama", vocab_size=len(tokenizer), layers=3, seed=1),
        tokenizer=tokenizer,
        device="cpu",
    )
    rows = {name: ok for name, ok, _ in script.compare(other, reference)}
    assert not rows["logits"] and not rows["W_Q"] and rows["one device"]
