"""Activation-capture benchmark: our HookedLM.run vs the plain forward and the peers.

On the embedded SmolLM2-135M (CPU, float32), 512-token inputs, batch 4, every layer's residual
stream captured. Time: all four methods are loaded in one process, warmed up, and timed in
``--repeats`` round-robin rounds (the median per method; interleaving keeps machine-load drift
out of the ratios). Memory: each method runs once more in its own fresh process, which reports
the peak resident memory that call added on top of the loaded, warmed-up process (the kernel's
peak-RSS mark is reset through ``/proc/self/clear_refs`` just before it; where that is refused, a
thread samples the RSS). Every method runs without a KV cache, as ``run()`` does. Ratios are
against the plain Hugging Face forward measured in the same invocation.

    .venv/bin/python analyses/benchmarks/capture.py [--repeats 7] [--tokens 512] [--batch 4]
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


def peak_memory(method: str, tokens_n: int, batch: int) -> dict:
    """Peak resident memory one call adds on top of the loaded, warmed-up process (MiB)."""
    import torch

    torch.set_grad_enabled(False)
    fn = _setup(method, tokens_n, batch)
    fn()  # warm-up
    with PeakRSS() as memory:
        fn()
    return {"method": method, "base_mb": memory.base_mb, "peak_added_mb": memory.added_mb}


def interleaved_times(repeats: int, tokens_n: int, batch: int) -> dict[str, list[float] | str]:
    """Seconds per call of every method, all loaded in this process and timed round-robin.

    Interleaving puts every method under the same machine load (other processes, thermal
    state), so their ratios stay meaningful on a shared CPU where separate runs drift by 10-20%.
    """
    import torch

    torch.set_grad_enabled(False)
    calls: dict[str, Callable[[], object]] = {}
    times: dict[str, list[float] | str] = {}
    for method in METHODS:
        try:
            calls[method] = _setup(method, tokens_n, batch)
            calls[method]()  # warm-up
            times[method] = []
        except Exception as error:  # a failing peer is reported, not fatal
            times[method] = f"{type(error).__name__}: {error}"[:160]
    for _ in range(repeats):
        for method, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[method].append(time.perf_counter() - start)
    return times


def _memory_in_subprocess(method: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--memory-of", method]
    command += ["--tokens", str(args.tokens), "--batch", str(args.batch)]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        errors = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        return {"method": method, "error": errors[-1][:160]}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (all methods each)")
    parser.add_argument("--tokens", type=int, default=512, help="tokens per sequence")
    parser.add_argument("--batch", type=int, default=4, help="sequences per run")
    parser.add_argument("--memory-of", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        print(json.dumps(peak_memory(args.memory_of, args.tokens, args.batch)))
        return
    memory = {m: _memory_in_subprocess(m, args) for m in METHODS}
    times = interleaved_times(args.repeats, args.tokens, args.batch)
    medians = {m: statistics.median(t) for m, t in times.items() if isinstance(t, list)}
    baseline = medians.get("hf_forward")
    print(
        f"Capture of every layer's resid_post, SmolLM2-135M, batch {args.batch} x "
        f"{args.tokens} tokens, CPU, {torch_threads()} thread(s); median of {args.repeats} "
        "interleaved rounds; memory: peak added by one call, each method in a fresh process"
    )
    print(f"{'method':<20}{'median s':>10}{'vs HF forward':>15}{'peak added MB':>15}")
    for method in METHODS:
        if method not in medians:
            print(f"{method:<20} failed: {times[method]}")
            continue
        ratio = f"{medians[method] / baseline:>14.2f}x" if baseline else f"{'n/a':>15}"
        row = memory[method]
        added = f"{row['peak_added_mb']:>15.0f}" if "error" not in row else f"  {row['error']}"
        print(f"{method:<20}{medians[method]:>10.3f}{ratio}{added}")
    if baseline is None:
        print("hf_forward failed, so no ratios: fix it first (its error is above)")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
