"""Activation-capture benchmark: our HookedLM.run vs the plain forward and the peers.

On the embedded SmolLM2-135M (CPU, float32), 512-token inputs, batch 4, every layer's residual
stream captured. Each method runs in its own fresh process (so peak memory is its own): it loads
the model, warms up, then times ``--repeats`` runs and reports the median and the peak resident
memory added during the timed runs. Ratios are against the plain Hugging Face forward measured
in the same invocation.

    .venv/bin/python analyses/benchmarks/capture.py [--repeats 5] [--tokens 512] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

METHODS = ("hf_forward", "interp_run", "transformer_bridge", "nnsight_trace")


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _setup(method: str, tokens_n: int, batch: int):
    import torch

    from interp.models.registry import converted_gguf, embedded_gguf

    torch.manual_seed(0)
    folder = converted_gguf(embedded_gguf())
    tokens = torch.randint(1000, 20000, (batch, tokens_n))
    if method == "hf_forward":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        return lambda: model(tokens).logits
    if method == "interp_run":
        import interp

        lm = interp.load_model(device="cpu")
        return lambda: lm.run(tokens, capture="blocks.*.hook_resid_post")
    if method == "transformer_bridge":
        from transformer_lens.model_bridge import TransformerBridge
        from transformers import AutoTokenizer

        bridge = TransformerBridge.boot_transformers(
            str(folder), tokenizer=AutoTokenizer.from_pretrained(folder), device="cpu"
        )
        names = [f"blocks.{layer}.hook_resid_post" for layer in range(30)]
        return lambda: bridge.run_with_cache(tokens, names_filter=lambda name: name in names)
    if method == "nnsight_trace":
        from nnsight import LanguageModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        hf = AutoModelForCausalLM.from_pretrained(folder).eval()
        lm = LanguageModel(hf, tokenizer=AutoTokenizer.from_pretrained(folder))

        import nnsight

        def trace():
            saved: list = []
            with lm.trace(tokens):
                for layer in lm.model.layers:
                    saved.append(nnsight.save(layer.output))
            return saved

        return trace
    raise ValueError(method)


def measure(method: str, repeats: int, tokens_n: int, batch: int) -> dict:
    import torch

    torch.set_grad_enabled(False)
    fn = _setup(method, tokens_n, batch)
    fn()  # warm-up
    base = _rss_mb()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "method": method,
        "median_s": statistics.median(times),
        "peak_mb": peak,
        "base_mb": base,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        print(json.dumps(measure(args.method, args.repeats, args.tokens, args.batch)))
        return
    rows = []
    for method in METHODS:
        command = [
            sys.executable,
            __file__,
            "--method",
            method,
            "--repeats",
            str(args.repeats),
            "--tokens",
            str(args.tokens),
            "--batch",
            str(args.batch),
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            rows.append({"method": method, "error": done.stderr.strip().splitlines()[-1][:120]})
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    baseline = next(r["median_s"] for r in rows if r["method"] == "hf_forward")
    print(
        f"Capture of every layer's resid_post, SmolLM2-135M, batch {args.batch} x {args.tokens} tokens, CPU"
    )
    print(f"{'method':<20}{'median s':>10}{'vs HF forward':>15}{'peak RSS MB':>13}")
    for row in rows:
        if "error" in row:
            print(f"{row['method']:<20} failed: {row['error']}")
            continue
        print(
            f"{row['method']:<20}{row['median_s']:>10.3f}{row['median_s'] / baseline:>14.2f}x{row['peak_mb']:>13.0f}"
        )


if __name__ == "__main__":
    main()
