"""Benchmark: activation patching of every head's output at every position vs TransformerLens.

Task: IOI-style prompt pair on the embedded SmolLM2-135M (CPU, float32, 2 threads):
clean "When Mary and John went to the store, John gave a drink to" (answer " Mary"), corrupted
"... Mary gave a drink to" (answer " John"); metric: logit(" Mary") - logit(" John") at the last
position. Cells: ``attn.hook_z`` of every (layer, position, head).

- Ours: ``interp.patching.activation_patching(lm, clean, corrupted, logit_diff(...),
  sites="z")`` over ALL cells: the patched runs are stacked along the batch axis (as many
  cells per forward as the default 1 GiB budget allows), logits of the last position only.
- TransformerLens 4.3: ``transformer_lens.patching.get_act_patch_attn_head_out_by_pos`` on a
  ``TransformerBridge`` booted offline from the same converted checkpoint: one forward pass per
  cell. On a shared 2-core CPU a full grid (30 x 15 x 9 = 4050 forwards) would take far too long,
  so it runs the cells of ``--tl-layers`` only (its cost per cell does not depend on the layer:
  every cell is one full forward pass) and the ratio is seconds per cell; its full-grid time is
  extrapolated and labelled so. Values are compared on the cells both computed.

Peak memory: the resident-set growth during each call (sampled every 2 ms from /proc), the
TransformerLens call first, in this one process. The printout goes to ``--out``.

    .venv/bin/python analyses/benchmarks/patching.py [--tl-layers 15 24] [--out FILE]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
from peak_memory import measure

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
ANSWER, WRONG = " Mary", " John"
OUT = Path(__file__).resolve().parents[1] / "results" / "bench_patching.txt"


def boot_bridge():
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    from interp.models.registry import converted_gguf, embedded_gguf

    folder = converted_gguf(embedded_gguf())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_transformers(
            str(folder), tokenizer=AutoTokenizer.from_pretrained(folder), device="cpu"
        )
    return bridge.eval()


def transformer_lens_patching(bridge, clean, corrupt, answer: int, wrong: int, layers):
    """``get_act_patch_attn_head_out_by_pos`` restricted to ``layers``: ``[layers, pos, heads]``."""
    import pandas as pd
    from transformer_lens import patching

    n_pos, n_heads = clean.shape[1], bridge.cfg.n_heads
    index = pd.DataFrame(
        [(layer, pos, head) for layer in layers for pos in range(n_pos) for head in range(n_heads)],
        columns=["layer", "pos", "head"],
    )

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[0, -1, answer] - logits[0, -1, wrong]

    def run() -> torch.Tensor:
        with torch.no_grad():
            _, cache = bridge.run_with_cache(clean)
            flat = patching.get_act_patch_attn_head_out_by_pos(
                bridge, corrupt, cache, metric, index_axis_names=None, index_df=index
            )
        return flat.reshape(len(layers), n_pos, n_heads)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tl-layers", type=int, nargs="+", default=[15, 24])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(2)

    import interp
    from interp.patching import activation_patching, logit_diff

    lm = interp.load_model(device="cpu")
    bridge = boot_bridge()
    clean, corrupt = lm.to_tokens(CLEAN), lm.to_tokens(CORRUPT)
    answer, wrong = (lm.tokenizer.encode(t, add_special_tokens=False)[0] for t in (ANSWER, WRONG))
    metric = logit_diff(lm, answer, wrong)
    # warm-up both (first calls allocate and dispatch)
    activation_patching(lm, clean, corrupt, metric, sites="z", layers=[0], positions=[0])
    with torch.no_grad():
        bridge(corrupt)

    tl_run = transformer_lens_patching(bridge, clean, corrupt, answer, wrong, args.tl_layers)
    theirs, tl_s, tl_mb = measure(tl_run)
    ours, our_s, our_mb = measure(
        lambda: activation_patching(lm, clean, corrupt, metric, sites="z")
    )
    n_cells = ours.values.numel()
    tl_cells = theirs.numel()
    same = ours.values[args.tl_layers]
    diff = (same - theirs).abs().max().item()
    spread = ours.effects.abs().max().item()
    per_ours, per_tl = our_s / n_cells, tl_s / tl_cells
    lines = [
        f"Activation patching of attn.hook_z per (layer, position, head), SmolLM2-135M, IOI pair "
        f"of {clean.shape[1]} tokens, CPU float32, {torch.get_num_threads()} threads; one run",
        f"clean logit diff {ours.clean_metric.item():.4f}, corrupted "
        f"{ours.corrupted_metric.item():.4f}; largest |effect| of a cell {spread:.4f}",
        f"{'method':<44}{'cells':>7}{'seconds':>10}{'ms/cell':>9}{'peak MB':>9}",
        f"{'interp activation_patching (batched)':<44}{n_cells:>7}{our_s:>10.1f}"
        f"{1e3 * per_ours:>9.2f}{our_mb:>9.0f}",
        f"{'TL get_act_patch_attn_head_out_by_pos':<44}{tl_cells:>7}{tl_s:>10.1f}"
        f"{1e3 * per_tl:>9.2f}{tl_mb:>9.0f}",
        f"  (TL layers {args.tl_layers} only; full grid extrapolated: {per_tl * n_cells:.0f} s)",
        f"speed-up per cell: {per_tl / per_ours:.1f}x; cells per forward (interp): "
        f"{ours.settings['cells_per_forward']}",
        f"max |interp - TL| over the {tl_cells} shared cells: {diff:.2e} (logit-diff units)",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
