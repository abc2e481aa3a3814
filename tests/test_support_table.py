"""The README's family support table is what ``analyses/support_table.py`` measures now."""

from __future__ import annotations

from pathlib import Path

from interp.models.adapters_tl import tl_status
from interp.models.families import FAMILIES
from interp.models.support import measure_family, support_markdown


def test_readme_support_table_is_regenerated_from_measurements():
    rows = [measure_family(name) for name in sorted(FAMILIES)]
    table = support_markdown(rows, tl_status)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert table in readme, "README support table is stale: run python analyses/support_table.py"
    assert all("| yes | yes | yes | yes | yes |" in line for line in table.splitlines()[2:])
