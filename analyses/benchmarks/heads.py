"""Benchmark: head finders vs their usual implementations, same model and inputs, one run.

1. Induction scan. Ours: ``induction_scores`` on ``[BOS] + 4 copies of r`` (one sequence of the
   given length) — one forward pass with fused attention statistics (prefix matching,
   duplicate, previous-token, stripe) plus the copying evaluator. Baseline: TransformerLens
   ``detect_head(bridge, seq, "induction_head")`` on a TransformerBridge booted offline from the
   embedded model's converted HF weights (TransformerLens 4 removed HookedTransformer; the
   bridge is its replacement): ``run_with_cache`` stores every activation including all
   ``[H, T, T]`` patterns, then a Python loop scores each head. The baseline computes one metric,
   ours five.
2. Retrieval scoring of one needle test. Ours: prefill + greedy decoding with the KV cache, one
   fused top-1-key statistic per step for all heads, vectorized copy-paste scoring. Baseline: a
   faithful port of Wu et al.'s reference code — an eager-attention copy of the HF model,
   ``output_attentions=True`` at every decode step, and a Python loop over every (layer, head)
   taking ``topk(1)`` of its attention row and comparing tokens with ``.item()``. Both decode the
   same fixed number of steps (no early stop). Ours prefills with ``logits_to_keep=1`` (only
   the last position's logits are needed to start decoding); the port computes them all, as the
   reference code does. A second table splits each test into its prefill (timed separately) and
   its decode steps: on a CPU the prefill, a forward pass both sides must run, bounds the
   whole-test ratio.

Each measurement runs in its own subprocess (model loaded, one short warm-up call); time is the
wall-clock of the call,
memory is the peak resident-set growth during the call (sampled every 2 ms from /proc). CPU
timings on a shared machine are noisy; the ratios are what matter.

    .venv/bin/python analyses/benchmarks/heads.py [--lengths 512 1024 2048] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

import torch
from peak_memory import measure


def word_tokens(tokenizer, n: int, seed: int) -> list[int]:
    """``n`` distinct ids of ' word' tokens that re-tokenize to themselves (string round trip)."""
    vocab = tokenizer.get_vocab()
    candidates = sorted(
        i for t, i in vocab.items() if re.fullmatch(r"\u0120[a-z]{3,}", t) and 1000 < i < 40000
    )
    order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed)).tolist()
    chosen = []
    for k in order:
        token = candidates[k]
        if tokenizer.encode(tokenizer.decode([token]), add_special_tokens=False) == [token]:
            chosen.append(token)
        if len(chosen) == n:
            return chosen
    raise ValueError(f"only {len(chosen)} round-tripping word tokens")


def induction_inputs(lm, length: int) -> tuple[torch.Tensor, int]:
    seq_len = (length - 1) // 4
    r = torch.tensor(word_tokens(lm.tokenizer, seq_len, seed=0))
    return torch.cat([torch.tensor([lm.bos_token_id]), r.repeat(4)])[None], seq_len


def worker(task: str, method: str, length: int, steps: int) -> dict:
    torch.set_num_threads(1)
    import interp
    from interp.models.registry import converted_gguf, embedded_gguf

    lm = interp.load_model(device="cpu")
    folder = str(converted_gguf(embedded_gguf()))
    if task == "induction":
        tokens, seq_len = induction_inputs(lm, length)
        if method == "ours":
            from interp.heads.induction import induction_scores

            induction_scores(
                lm, seq_len=4, repeats=4, tokens=tokens[:, :17], progress=False
            )  # warm-up
            return dict(
                zip(
                    ("s", "mib"),
                    measure(
                        lambda: induction_scores(lm, seq_len=seq_len, tokens=tokens, progress=False)
                    )[1:],
                    strict=True,
                )
            )
        from transformer_lens.head_detector import detect_head
        from transformer_lens.model_bridge import TransformerBridge

        bridge = TransformerBridge.boot_transformers(
            folder, hf_model=lm.model, tokenizer=lm.tokenizer, device="cpu"
        )
        text = lm.tokenizer.decode(tokens[0, 1:].tolist())
        assert torch.equal(bridge.to_tokens(text)[0].cpu(), tokens[0]), (
            "string round trip changed the tokens"
        )
        with torch.no_grad():
            return dict(
                zip(
                    ("s", "mib"),
                    measure(lambda: detect_head(bridge, text, "induction_head"))[1:],
                    strict=True,
                )
            )
    from interp.heads.haystack import build_prompts
    from interp.heads.needles import load_needles

    prompt = build_prompts(lm, load_needles()[0], [length], [0.5])[0][0]
    prompts = prompt.tokens[None]
    if method == "ours":
        from interp.heads.decoding import greedy_decode
        from interp.heads.retrieval import copy_paste_scores

        greedy_decode(lm, prompts[:, :64], max_new_tokens=2, stop_ids=[])  # warm-up

        def ours() -> None:
            trace = greedy_decode(lm, prompts, max_new_tokens=steps, stop_ids=[])
            copy_paste_scores(
                trace.argmax, trace.generated, trace.active, prompts, torch.tensor([prompt.span])
            )

        def prefill() -> None:
            lm.run(prompts[:, :-1], prepend_bos=False, use_cache=True, logits_to_keep=1)

        return timed(ours, prefill)
    from transformers import AutoModelForCausalLM

    eager = AutoModelForCausalLM.from_pretrained(
        folder, attn_implementation="eager", dtype=torch.float32
    ).eval()

    @torch.no_grad()
    def eager_prefill() -> None:
        eager(input_ids=prompts[:, :-1], use_cache=True)

    return timed(lambda: reference_retrieval(eager, prompts, prompt.span, steps), eager_prefill)


def timed(whole, prefill) -> dict:
    """Seconds and MiB of the whole test, and seconds of its prefill alone (measured apart)."""
    _, seconds, mib = measure(whole)
    return {"s": seconds, "mib": mib, "prefill_s": measure(prefill)[1]}


@torch.no_grad()
def reference_retrieval(model, prompts: torch.Tensor, span: tuple[int, int], steps: int) -> list:
    """Wu et al.'s loop: per decode step, per (layer, head), topk(1) of the attention row."""
    layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
    score = [[0.0] * heads for _ in range(layers)]
    out = model(input_ids=prompts[:, :-1], use_cache=True)
    past, token = out.past_key_values, prompts[:, -1]
    start, end = span
    ids = prompts[0]
    for _ in range(steps):
        out = model(
            input_ids=token.view(1, 1), past_key_values=past, use_cache=True, output_attentions=True
        )
        past = out.past_key_values
        token = out.logits[0, -1].argmax()
        for layer in range(layers):
            for head in range(heads):
                _, index = out.attentions[layer][0][head][-1].topk(1)
                i = int(index[0])
                if start <= i < end and token.item() == ids[i].item():
                    score[layer][head] += 1 / (end - start)
    return score


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=[512, 1024, 2048],
        help="sequence / prompt lengths",
    )
    parser.add_argument("--steps", type=int, default=20, help="decode steps per retrieval test")
    parser.add_argument(
        "--tasks", nargs="+", default=["induction", "retrieval"], help="which benchmarks"
    )
    parser.add_argument(
        "--worker", nargs=3, metavar=("TASK", "METHOD", "LENGTH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        task, method, length = args.worker
        print(json.dumps(worker(task, method, int(length), args.steps)))
        return
    baselines = {"induction": "tl_detect_head", "retrieval": "eager_reference"}
    rows = []
    for task in args.tasks:
        for length in args.lengths:
            result = {}
            for method in ("ours", baselines[task]):
                command = [
                    sys.executable,
                    __file__,
                    "--steps",
                    str(args.steps),
                    "--worker",
                    task,
                    method,
                    str(length),
                ]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode:
                    raise RuntimeError(f"{task}/{method}/{length} failed:\n{done.stderr[-3000:]}")
                result[method] = json.loads(done.stdout.strip().splitlines()[-1])
            ours, base = result["ours"], result[baselines[task]]
            rows.append((task, length, ours, base, baselines[task]))
            print(
                f"{task:<10}{length:>6}  ours {ours['s']:7.2f} s {ours['mib']:8.1f} MiB   {baselines[task]} "
                f"{base['s']:7.2f} s {base['mib']:8.1f} MiB",
                flush=True,
            )
    print(
        f"\n{'task':<10}{'length':>7}{'ours s':>9}{'base s':>9}{'speedup':>9}{'ours MiB':>10}{'base MiB':>10}{'mem ratio':>10}  baseline"
    )
    for task, length, ours, base, name in rows:
        print(
            f"{task:<10}{length:>7}{ours['s']:>9.2f}{base['s']:>9.2f}{base['s'] / ours['s']:>8.1f}x"
            f"{ours['mib']:>10.1f}{base['mib']:>10.1f}{base['mib'] / max(ours['mib'], 1e-3):>9.1f}x  {name}"
        )
    split = [row for row in rows if "prefill_s" in row[2]]
    if split:
        print(
            f"\nretrieval split: prefill (one forward over the prompt, which both must run) vs the "
            f"{args.steps} decode steps that do the scoring"
        )
        print(
            f"{'length':>7}{'ours prefill':>14}{'base prefill':>14}{'ours decode':>13}"
            f"{'base decode':>13}{'decode speedup':>16}"
        )
        for _, length, ours, base, _ in split:
            ours_decode, base_decode = ours["s"] - ours["prefill_s"], base["s"] - base["prefill_s"]
            print(
                f"{length:>7}{ours['prefill_s']:>14.2f}{base['prefill_s']:>14.2f}{ours_decode:>13.2f}"
                f"{base_decode:>13.2f}{base_decode / max(ours_decode, 1e-9):>15.1f}x"
            )


if __name__ == "__main__":
    main()
