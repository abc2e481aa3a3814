"""Write ``data/timescales_task_specs.json``: the N-parity / N-DMS specifications per N.

For N = 1..20: the sequence-length range ``{N+2, …, N+2+3N−1}`` (one length per batch), the
input statistics and the label rule, as implemented by :mod:`interp.rnn.timescales_tasks`.

    .venv/bin/python analyses/timescales_task_specs.py [--out data/timescales_task_specs.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from interp import __version__
from interp.outputs import write_atomically
from interp.rnn.tasks import make_task

RULES = {
    "nparity": "bits ~ Bernoulli(p), p ~ U(0, 1) per sequence; label = (sum of the last N bits) mod 2",
    "ndms": "bits ~ Bernoulli(0.5); label = 1[x[-N] == x[-1]]",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/timescales_task_specs.json"))
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    specs = {}
    for name, rule in RULES.items():
        rows = {}
        for n in range(1, 21):
            task = make_task(name, n=n)
            low, high = task.lengths
            rows[str(n)] = {"min_length": low, "max_length": high - 1}
        specs[name] = {"rule": rule, "input_size": 1, "classes_per_head": 2, "lengths": rows}
    document = {
        "interp_version": __version__,
        "made_by": "analyses/timescales_task_specs.py",
        "tasks": specs,
    }
    text = json.dumps(document, indent=1)
    write_atomically(args.out, lambda tmp: tmp.write_text(text + "\n"), overwrite=args.overwrite)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
