"""Write ``data/hmm_definitions.json``: every named HMM with its exact stationary statistics.

For each HMM of :func:`interp.rnn.hmm.named_hmms`: ``T``, ``E``, the stationary distribution and
the exact stationary output frequencies, output transition matrix and volatility (switch rate)
that a trained RNN's outputs are compared with.

    .venv/bin/python analyses/hmm_definitions.py [--out data/hmm_definitions.json] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from interp import __version__
from interp.outputs import write_atomically
from interp.rnn.hmm import make_hmm, named_hmms


def table() -> dict:
    rows = {}
    for name in named_hmms():
        hmm = make_hmm(name)
        exact = hmm.exact_statistics()
        rows[name] = {
            "transition": hmm.transition.round(6).tolist(),
            "emission": hmm.emission.round(6).tolist(),
            "stationary": hmm.stationary().round(6).tolist(),
            "output_frequencies": exact["frequencies"].round(6).tolist(),
            "output_transitions": exact["transitions"].round(6).tolist(),
            "volatility": round(exact["volatility"], 6),
        }
    return {"interp_version": __version__, "made_by": "analyses/hmm_definitions.py", "hmms": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/hmm_definitions.json"))
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    text = json.dumps(table(), indent=1)
    write_atomically(args.out, lambda tmp: tmp.write_text(text + "\n"), overwrite=args.overwrite)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
