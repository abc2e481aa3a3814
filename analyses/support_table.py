"""The README's family support table: every family row measured on its tiny random-init model.

Run: ``python analyses/support_table.py`` (about 20 s on 2 cores). Prints the markdown table for
the README and writes it, with the raw differences, to ``analyses/results/support_table.md``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from interp.models.adapters_tl import tl_status
from interp.models.families import FAMILIES
from interp.models.support import TOLERANCE, measure_family, support_markdown


def main() -> None:
    warnings.filterwarnings("ignore")
    rows = [measure_family(name) for name in sorted(FAMILIES)]
    table = support_markdown(rows, tl_status)
    raw = ["| family | logits | q/k pattern | stats argmax mismatch | stats max-prob | W_V |"]
    raw.append("|---|---|---|---|---|---|")
    for row in rows:
        raw.append(
            f"| {row.family} | {row.logits:.1e} | {row.pattern:.1e} | {row.stats_argmax:.2f} | "
            f"{row.stats_max_prob:.1e} | {row.values:.1e} |"
        )
    text = f"{table}\n\nMaximum absolute differences (tolerance {TOLERANCE}):\n\n" + "\n".join(raw)
    print(text)
    out = Path(__file__).parent / "results" / "support_table.md"
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
