"""Activation-capture benchmark: our HookedLM.run vs the plain forward and the peers.

On the embedded SmolLM2-135M (CPU, float32), 512-token inputs, batch 4, every layer's residual
stream captured. Each method runs in its own fresh process: it loads the model, warms up, then
times ``--repeats`` runs and reports the median and the peak resident memory those timed runs
added on top of the loaded, warmed-up process (the kernel's peak-RSS mark is reset through
``/proc/self/clear_refs`` just before them; where that is refused, a thread samples the RSS).
Every method runs without a KV cache, as ``run()`` does. Ratios are against the plain Hugging
Face forward measured in the same invocation.

    .venv/bin/python analyses/benchmarks/capture.py [--repeats 5] [--tokens 512] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

METHODS = ("hf_forward", "interp_run", "transformer_bridge", "nnsight_trace")


def _status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field} (needs Linux)")


class PeakRSS:
    """Peak resident memory inside a ``with`` block, relative to the RSS on entry (MiB)."""

    def __enter__(self) -> PeakRSS:
        self.base_mb = _status_mb("VmRSS")
        self._sampler = None
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")  # resets VmHWM (the peak-RSS mark) to the current RSS
        except OSError:
            self._samples = [self.base_mb]
            self._stop = threading.Event()
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._samples.append(_status_mb("VmRSS"))

    def __exit__(self, *exc: object) -> None:
        if self._sampler is None:
            peak = _status_mb("VmHWM")
        else:
            self._stop.set()
            self._sampler.join()
            peak = max(self._samples)
        self.added_mb = peak - self.base_mb


def _setup(method: str, tokens_n: int, batch: int) -> Callable[[], object]:
    import torch

    from interp.models.registry import converted_gguf, embedded_gguf

    torch.manual_seed(0)
    folder = converted_gguf(embedded_gguf())
    tokens = torch.randint(1000, 20000, (batch, tokens_n))
    if method == "hf_forward":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        return lambda: model(tokens, use_cache=False).logits
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
        names = {f"blocks.{layer}.hook_resid_post" for layer in range(bridge.cfg.n_layers)}
        return lambda: bridge.run_with_cache(tokens, names_filter=lambda name: name in names)
    if method == "nnsight_trace":
        import nnsight
        from nnsight import LanguageModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        hf = AutoModelForCausalLM.from_pretrained(folder).eval()
        lm = LanguageModel(hf, tokenizer=AutoTokenizer.from_pretrained(folder))

        def trace() -> list:
            saved: list = []
            with lm.trace(tokens, use_cache=False):
                for layer in lm.model.layers:
                    saved.append(nnsight.save(layer.output))
            return saved

        return trace
    raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")


def measure(method: str, repeats: int, tokens_n: int, batch: int) -> dict:
    """Median seconds of ``repeats`` timed runs and the peak memory they added."""
    import torch

    torch.set_grad_enabled(False)
    fn = _setup(method, tokens_n, batch)
    fn()  # warm-up
    times = []
    with PeakRSS() as memory:
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return {
        "method": method,
        "median_s": statistics.median(times),
        "base_mb": memory.base_mb,
        "peak_added_mb": memory.added_mb,
    }


def _run_in_subprocess(method: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--method", method]
    command += ["--repeats", str(args.repeats), "--tokens", str(args.tokens)]
    command += ["--batch", str(args.batch)]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        errors = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        return {"method": method, "error": errors[-1][:160]}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method")
    parser.add_argument("--tokens", type=int, default=512, help="tokens per sequence")
    parser.add_argument("--batch", type=int, default=4, help="sequences per run")
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        print(json.dumps(measure(args.method, args.repeats, args.tokens, args.batch)))
        return
    rows = [_run_in_subprocess(method, args) for method in METHODS]
    baseline = next(
        (r["median_s"] for r in rows if r["method"] == "hf_forward" and "error" not in r), None
    )
    print(
        f"Capture of every layer's resid_post, SmolLM2-135M, batch {args.batch} x "
        f"{args.tokens} tokens, CPU, median of {args.repeats}"
    )
    print(f"{'method':<20}{'median s':>10}{'vs HF forward':>15}{'peak added MB':>15}")
    for row in rows:
        if "error" in row:
            print(f"{row['method']:<20} failed: {row['error']}")
            continue
        ratio = f"{row['median_s'] / baseline:>14.2f}x" if baseline else f"{'n/a':>15}"
        print(f"{row['method']:<20}{row['median_s']:>10.3f}{ratio}{row['peak_added_mb']:>15.0f}")
    if baseline is None:
        print("hf_forward failed, so no ratios: fix it first (its error is above)")


if __name__ == "__main__":
    main()
