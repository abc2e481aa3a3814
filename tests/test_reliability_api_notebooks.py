"""The notebook builder gives every plotly output a static PNG twin (issue 14)."""

from __future__ import annotations

import base64
import importlib.util
import shutil
from pathlib import Path

import nbformat
import plotly.graph_objects as go
import pytest

BUILD = Path(__file__).resolve().parents[1] / "analyses" / "notebooks" / "build.py"


def _builder():
    spec = importlib.util.spec_from_file_location("notebook_build", BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _notebook(*figures: go.Figure) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("fig")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="hello\n"),
        *(
            nbformat.v4.new_output(
                "display_data", data={"application/vnd.plotly.v1+json": f.to_plotly_json()}
            )
            for f in figures
        ),
    ]
    notebook.cells.append(cell)
    return notebook


def test_plotly_outputs_are_found_and_other_outputs_left_alone():
    build = _builder()
    notebook = _notebook(go.Figure(go.Bar(y=[1, 2])), go.Figure(go.Scatter(y=[3, 1])))
    assert len(build.plotly_outputs(notebook)) == 2
    assert build.add_static_fallbacks(nbformat.v4.new_notebook()) == 0  # nothing to render


@pytest.mark.skipif(
    importlib.util.find_spec("kaleido") is None
    or not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
    reason="kaleido and a Chrome/Chromium render the PNGs",
)
def test_every_plotly_output_gets_a_png_of_its_own_size():
    build = _builder()
    sized = go.Figure(go.Heatmap(z=[[1, 2], [3, 4]]), layout={"width": 320, "height": 200})
    notebook = _notebook(sized, go.Figure(go.Scatter(y=[3, 1, 2])))
    assert build.add_static_fallbacks(notebook) == 2
    outputs = build.plotly_outputs(notebook)
    sizes = []
    for output in outputs:
        png = base64.b64decode(output["data"]["image/png"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        sizes.append((int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")))
        assert "application/vnd.plotly.v1+json" in output["data"]  # the live figure stays
    assert sizes == [(320, 200), build.DEFAULT_SIZE]
    nbformat.validate(notebook)
