"""A model split across devices: every capture, statistic, weight and the induction finder
against an unsharded float32 load of the same folder.

Run through gpu_sharded.sh on a CUDA machine: a tiny random-init Llama (4 layers, GQA) is saved to
a temporary folder and loaded twice, once on the CPU and once with ``device_map`` putting the
embedding and layers 0-1 on ``cuda:0`` and layers 2-3, the final norm and the head on the CPU (so
the residual stream crosses from the GPU to the CPU mid-model), then with layer 3 offloaded to
disk. For each split it prints one line per check (PASS/FAIL with the largest difference) and
the devices the captures came back on (the one-device rule: everything on ``lm.device``). Then a
bfloat16 load on ``cuda:0`` against float32 at 8 bf16 roundoffs of the values' magnitude.

``--devices cpu disk`` runs the same checks without a GPU (tests/test_models_sharded.py runs it
so on the CPU). The script needs torch, transformers and accelerate, not plotly.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

import interp
from interp.heads.induction import induction_scores, repeated_random_tokens
from interp.models.tiny import tiny_model, word_tokenizer

LAYERS = 4
TEXTS = ["w5 w9 w14 w5 w9 w30 w31 w7 w8 w20 w21", "w3 w4 w5 w6"]
CAPTURE = [
    "hook_embed",
    "blocks.*.hook_resid_pre",
    "blocks.*.hook_resid_post",
    "blocks.*.hook_attn_out",
    "blocks.*.hook_mlp_out",
    "blocks.*.attn.hook_q",
    "blocks.*.attn.hook_k",
    "blocks.*.attn.hook_z",
    "ln_final.hook_normalized",
]
WEIGHTS = ("W_Q", "W_K", "W_V", "W_O", "b_O")


def split_map(first: str, second: str, offload_last: bool = False) -> dict[str, str]:
    """Embedding and the first half of the layers on ``first``; the rest and the head on
    ``second`` (the last layer on ``"disk"`` when ``offload_last``; the head stays on ``first``
    when ``second`` is the disk)."""
    half = LAYERS // 2
    device_map = {"model.embed_tokens": first, "model.rotary_emb": first}
    for layer in range(LAYERS):
        device_map[f"model.layers.{layer}"] = first if layer < half else second
    if offload_last:
        device_map[f"model.layers.{LAYERS - 1}"] = "disk"
    # W_U and the norm scales are read from the modules directly: keep them resident (the native
    # backend does not yet load offloaded embedding/head weights in for W_E/W_U/norm_weights).
    head = first if second == "disk" else second
    return device_map | {"model.norm": head, "lm_head": head}


def write_folder(folder: Path) -> Path:
    tokenizer = word_tokenizer(96)
    tiny_model("llama", vocab_size=len(tokenizer), layers=LAYERS).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _difference(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.detach().cpu().float() - want.detach().cpu().float()).abs().max())


def compare(lm, reference, tolerance: float = 1e-4) -> list[tuple[str, bool, str]]:
    """(check, ok, detail) rows: logits, captures, statistics, weights, finder, one device."""
    rows = []
    logits, cache = lm.run(TEXTS, capture=CAPTURE, attention_stats=True)
    ref_logits, ref = reference.run(TEXTS, capture=CAPTURE, attention_stats=True)
    mask = reference._as_tokens(TEXTS, None, True)[1].bool()

    def add(name: str, got: torch.Tensor, want: torch.Tensor, real: bool = True) -> None:
        if real and got.dim() >= 2 and got.shape[:2] == mask.shape:
            got, want = got.cpu()[mask], want.cpu()[mask]
        error = _difference(got, want)
        rows.append((name, error <= tolerance, f"max |diff| {error:.2e}"))

    add("logits", logits, ref_logits)
    for name in ref:
        add(name, cache[name], ref[name])

    def queries(stats: torch.Tensor) -> torch.Tensor:  # [L, B, H, T] at the real queries
        return stats.cpu().permute(1, 3, 0, 2)[mask]

    for field in ("lse", "max_prob"):
        add(f"stats {field}", queries(cache.stats(field)), queries(ref.stats(field)), real=False)
    argmax_equal = torch.equal(queries(cache.stats("argmax")), queries(ref.stats("argmax")))
    rows.append(("stats argmax", argmax_equal, "equal" if argmax_equal else "differs"))
    for name in WEIGHTS:
        add(name, getattr(lm, name), getattr(reference, name), real=False)
    tokens = repeated_random_tokens(reference, seq_len=6, repeats=3, n_examples=2, seed=1)
    got = induction_scores(lm, seq_len=6, repeats=3, tokens=tokens, progress=False)
    want = induction_scores(reference, seq_len=6, repeats=3, tokens=tokens, progress=False)
    add("induction prefix_matching", got.scores["prefix_matching"], want.scores["prefix_matching"])
    devices = sorted({str(v.device) for v in cache.values()} | {str(logits.device)})
    stats_devices = sorted({str(cache.stats(f).device) for f in ("lse", "argmax")})
    one = devices == stats_devices == [str(lm.device)]
    rows.append(("one device", one, f"captures {devices}, stats {stats_devices}, lm {lm.device}"))
    return rows


def format_rows(title: str, rows: list[tuple[str, bool, str]]) -> str:
    lines = [title]
    lines += [f"  {'PASS' if ok else 'FAIL'}  {name:<36} {detail}" for name, ok, detail in rows]
    return "\n".join(lines)


def half_precision(folder: Path, device: str, reference) -> list[tuple[str, bool, str]]:
    """bf16 on ``device`` against float32: within 8 roundoffs (2**-8 each) of the magnitude."""
    lm = interp.load_model(folder, device=device, dtype=torch.bfloat16)
    logits, cache = lm.run(TEXTS[0], capture="blocks.*.hook_resid_post", attention_stats=True)
    ref_logits, ref = reference.run(
        TEXTS[0], capture="blocks.*.hook_resid_post", attention_stats=True
    )
    rows = []
    pairs = [("logits", logits, ref_logits)] + [(n, cache[n], ref[n]) for n in ref]
    pairs.append(("stats lse", cache.stats("lse"), ref.stats("lse")))
    for name, got, want in pairs:
        bound = 8 * 2.0**-8 * float(want.abs().max())
        error = _difference(got, want)
        rows.append((f"bf16 {name}", error <= bound, f"{error:.2e} <= {bound:.2e}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--devices",
        nargs=2,
        default=["cuda:0", "cpu"],
        metavar=("FIRST", "SECOND"),
        help="devices for the two halves of the model (default: cuda:0 cpu)",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp) / "tiny-llama")
        reference = interp.load_model(folder, device="cpu")
        first, second = args.devices
        splits = [(f"{first} + {second}", split_map(first, second))]
        if second != "disk":
            splits.append((f"{first} + {second} + disk", split_map(first, second, True)))
        for title, device_map in splits:
            lm = interp.load_model(
                folder, device_map=device_map, offload_folder=Path(tmp) / "offload"
            )
            rows = compare(lm, reference)
            failures += sum(not ok for _, ok, _ in rows)
            print(format_rows(f"split {title}: {lm.model.hf_device_map}", rows), flush=True)
        if first.startswith("cuda"):
            rows = half_precision(folder, first, reference)
            failures += sum(not ok for _, ok, _ in rows)
            print(format_rows(f"bfloat16 on {first}", rows), flush=True)
    print(f"{failures} failed checks in {time.perf_counter() - start:.1f} s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
