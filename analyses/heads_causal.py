"""Causal check of the head finders on a pretrained model (default: embedded SmolLM2-135M).

For induction and successor heads: ablate (zero) the top-k heads found by the finder vs several
draws of k random heads (from heads outside the top k that the thresholds do not classify) and
measure the behaviour the kind exists for — loss on the repeated half of [BOS] r r (50 random
tokens, 20 sequences) and accuracy on the ordinal increment prompts ([BOS] + five consecutive
items each followed by a comma, " one, two, three, four, five," -> " six"; the next item must be
the argmax over the whole vocabulary). For the random draw that changes the behaviour most, each
of its heads is then ablated alone (which head of it matters). Writes the tables to
analyses/results/heads_causal.txt.

    .venv/bin/python analyses/heads_causal.py [--model SPEC] [--k 10] [--draws 5] [--retrieval]
"""

from __future__ import annotations

import argparse
import io
import time
from contextlib import redirect_stdout
from pathlib import Path

import torch

import interp
from interp.heads import causal_check, induction_scores, successor_scores

OUT = Path(__file__).parent / "results" / "heads_causal.txt"


def explain_worst_draw(lm, check) -> None:
    """Ablate each head of the random draw that moved the behaviour most, alone."""
    from interp.heads.causal import increment_accuracy, increment_prompts, repeated_half_loss
    from interp.heads.induction import repeated_random_tokens

    worst = int(check.random_change.abs().argmax())
    settings = check.settings
    if check.kind == "induction":
        seq = settings["seq_len"]
        tokens = repeated_random_tokens(
            lm, seq_len=seq, repeats=2, n_examples=settings["n_examples"], seed=settings["seed"]
        )
        measure = lambda: repeated_half_loss(lm, tokens, seq)  # noqa: E731
    else:
        prompts, answers = increment_prompts(lm, None, settings["per_task"])
        measure = lambda: increment_accuracy(lm, prompts, answers)  # noqa: E731
    print(f"random draw #{worst + 1}, each head ablated alone (change from none ablated):")
    for layer, head in check.random_heads[worst]:
        with lm.ablate_heads([(layer, head)], method=settings["method"]):
            print(f"  L{layer}H{head}: {measure() - check.baseline:+.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model spec (default: embedded)")
    parser.add_argument("--k", type=int, default=10, help="heads ablated per condition")
    parser.add_argument("--draws", type=int, default=5, help="random sets of k heads")
    parser.add_argument("--retrieval", action="store_true", help="also rerun needle masking")
    parser.add_argument("--out", type=Path, default=OUT, help="text file for the tables")
    args = parser.parse_args()
    torch.set_num_threads(2)
    buffer = io.StringIO()
    lm = interp.load_model(args.model, device="cpu")
    with redirect_stdout(buffer):
        print(lm)
        print(f"python analyses/heads_causal.py --k {args.k} --draws {args.draws}\n")
    finders = [("induction", lambda: induction_scores(lm, progress=False))]
    finders.append(("successor", lambda: successor_scores(lm)))
    if args.retrieval:
        from interp.heads import retrieval_scores

        finders.append(("retrieval", lambda: retrieval_scores(lm)))
    for name, find in finders:
        start = time.perf_counter()
        scores = find()
        check = causal_check(lm, scores, k=args.k, draws=args.draws)
        with redirect_stdout(buffer):
            print(check.table())
            if name != "retrieval":
                explain_worst_draw(lm, check)
            print(f"({name}: {time.perf_counter() - start:.0f} s)\n")
        print(buffer.getvalue(), flush=True)
    args.out.write_text(buffer.getvalue())
    print("wrote", args.out)


if __name__ == "__main__":
    main()
