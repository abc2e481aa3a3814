"""SSM capture benchmark: MambaLM.run with its hooks vs the plain Hugging Face forward.

A random-init Mamba and Mamba-2 (d_model 256, 4 layers, state 16; CPU, float32, one thread) on
``--tokens`` tokens, batch 2. Methods, timed in ``--repeats`` round-robin rounds (median per
method; interleaving keeps load drift out of the ratios), ratios against the plain forward
measured in the same run:

- ``hf_forward``: ``model(input_ids)``, no hooks;
- ``run``: ``lm.run`` capturing nothing;
- ``run_residual``: every layer's ``hook_resid_post``;
- ``run_params``: every layer's Delta, B, C and scan input (recomputed from the mixer input);
- ``run_state``: every layer's ``mixer.hook_state`` (interp's sequential recurrence).

    .venv/bin/python analyses/benchmarks/ssm_capture.py [--tokens 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

CAPTURES = {
    "hf_forward": None,
    "run": [],
    "run_residual": ["blocks.*.hook_resid_post"],
    "run_params": [f"blocks.*.mixer.hook_{k}" for k in ("delta", "B", "C", "x")],
    "run_state": ["blocks.*.mixer.hook_state"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import interp
    from interp.models.ssm_tiny import tiny_ssm
    from interp.models.tiny import word_tokenizer

    sizes = {"layers": 4, "d_model": 256, "d_state": 16, "vocab": 96}
    extra = {
        "mamba": {"intermediate_size": 512, "time_step_rank": 16},
        "mamba2": {"num_heads": 8, "head_dim": 64, "n_groups": 1, "chunk_size": 64},
    }
    tokens = torch.randint(0, 96, (2, args.tokens), generator=torch.Generator().manual_seed(0))
    print(f"{'model':8s} {'method':14s} {'median s':>9s} {'x hf_forward':>13s}")
    for variant in ("mamba", "mamba2"):
        model = tiny_ssm(variant, **sizes, **extra[variant])
        lm = interp.load_model(model, tokenizer=word_tokenizer(96), device="cpu")

        def call(method: str, model=model, lm=lm) -> None:
            if CAPTURES[method] is None:
                with torch.inference_mode():
                    model(tokens)
            else:
                lm.run(tokens, capture=CAPTURES[method] or None, prepend_bos=False)

        times: dict[str, list[float]] = {m: [] for m in CAPTURES}
        for method in CAPTURES:  # warm-up
            call(method)
        for _ in range(args.repeats):
            for method in CAPTURES:
                start = time.perf_counter()
                call(method)
                times[method].append(time.perf_counter() - start)
        base = statistics.median(times["hf_forward"])
        for method, values in times.items():
            median = statistics.median(values)
            print(f"{variant:8s} {method:14s} {median:9.3f} {median / base:13.2f}")


if __name__ == "__main__":
    main()
