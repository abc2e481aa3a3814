"""Build and execute the notebooks under notebooks/ from their cell lists in this folder.

Each ``analyses/notebooks/<name>.py`` holds ``CELLS``: a list of ``("markdown" | "code", source)``.
The notebook is executed here (outputs, plotly figures included, are kept in the file) and written
atomically to ``notebooks/<name>.ipynb``; CI re-executes it with nbmake.

Static fallback: every plotly output (``application/vnd.plotly.v1+json``, which only a viewer
running JavaScript draws) also gets an ``image/png`` rendering of the same figure, so GitHub,
nbviewer without JS or a PDF export show the plot. PNG rather than ``text/html``: an HTML div
needs plotly.js to draw anything, and viewers that strip JavaScript are exactly the ones that need
the fallback. The PNGs come from kaleido (``pip install kaleido``, in the ``notebook`` extra),
which drives a local Chrome or Chromium (``apt-get install chromium``; no download needed).

    .venv/bin/python analyses/notebooks/build.py depth_phases [rnn_mechanics ...]
    .venv/bin/python analyses/notebooks/build.py --all
    .venv/bin/python analyses/notebooks/build.py --static-only --all   # add PNGs, no re-run
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import os
import tempfile
import warnings
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
NOTEBOOKS = HERE.parents[1] / "notebooks"
PLOTLY = "application/vnd.plotly.v1+json"
DEFAULT_SIZE = (900, 500)  # plotly's own default is 700 x 450; notebooks are wider


def cells_of(name: str) -> list[tuple[str, str]]:
    path = HERE / f"{name}.py"
    if not path.is_file() or name == "build":
        known = sorted(p.stem for p in HERE.glob("*.py") if p.stem != "build")
        raise SystemExit(f"no notebook {name!r}; known: {', '.join(known)}")
    spec = importlib.util.spec_from_file_location(f"notebook_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CELLS


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for kind, source in cells:
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        notebook.cells.append(make(source))
    return notebook


def plotly_outputs(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """Every output that holds a plotly figure."""
    return [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if PLOTLY in output.get("data", {})
    ]


def _png(go, pio, spec: dict) -> str:
    """The base64 PNG of one stored plotly figure, at its own size (or :data:`DEFAULT_SIZE`)."""
    fig = go.Figure(data=spec.get("data", []), layout=spec.get("layout", {}))
    width = fig.layout.width or DEFAULT_SIZE[0]
    height = fig.layout.height or DEFAULT_SIZE[1]
    png = pio.to_image(fig, format="png", width=width, height=height)
    return base64.b64encode(png).decode("ascii")


def add_static_fallbacks(notebook: nbformat.NotebookNode) -> int:
    """Add an ``image/png`` rendering next to every plotly output; returns how many.

    One kaleido server (one browser) renders them all. Raises SystemExit naming what to install
    when kaleido or a browser is missing, rather than writing notebooks without the fallback.
    """
    outputs = plotly_outputs(notebook)
    if not outputs:
        return 0
    try:
        import kaleido
        import plotly.graph_objects as go
        import plotly.io as pio

        kaleido.start_sync_server(silence_warnings=True)
    except Exception as error:  # ImportError, or no Chrome/Chromium for kaleido to drive
        raise SystemExit(
            f"static figure fallbacks need kaleido and a Chrome/Chromium ({error}); install them "
            "with `.venv/bin/pip install kaleido` and `apt-get install chromium`"
        ) from error
    try:
        with warnings.catch_warnings():
            # plotly passes kaleido options that a running server ignores; the result is the same
            warnings.filterwarnings("ignore", message="The kopts argument is ignored")
            for output in outputs:
                output["data"]["image/png"] = _png(go, pio, output["data"][PLOTLY])
    finally:
        kaleido.stop_sync_server(silence_warnings=True)
    return len(outputs)


def write(notebook: nbformat.NotebookNode, target: Path) -> Path:
    """Write ``notebook`` to ``target`` atomically, readable by all."""
    handle, tmp = tempfile.mkstemp(dir=target.parent, suffix=".ipynb.tmp")
    with os.fdopen(handle, "w") as stream:
        nbformat.write(notebook, stream)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600 files; notebooks are meant to be read by all
    os.replace(tmp, target)
    return target


def execute_and_write(name: str, *, static: bool = True) -> Path:
    notebook = build(cells_of(name))
    NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    ).execute()
    if static:
        add_static_fallbacks(notebook)
    return write(notebook, NOTEBOOKS / f"{name}.ipynb")


def add_fallbacks_to_stored(name: str) -> Path:
    """Add the PNG fallbacks to the stored ``notebooks/<name>.ipynb`` without re-running it."""
    cells_of(name)  # the name check
    target = NOTEBOOKS / f"{name}.ipynb"
    notebook = nbformat.read(target, as_version=4)
    add_static_fallbacks(notebook)
    return write(notebook, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--all", action="store_true")
    parser.add_argument(
        "--static-only",
        action="store_true",
        help="add PNG fallbacks to the stored notebooks without re-executing them",
    )
    parser.add_argument(
        "--no-static", action="store_true", help="skip the PNG fallbacks (no kaleido needed)"
    )
    args = parser.parse_args()
    names = (
        sorted(p.stem for p in HERE.glob("*.py") if p.stem != "build") if args.all else args.names
    )
    if not names:
        parser.error("name a notebook or pass --all")
    for name in names:
        if args.static_only:
            print(f"added PNG fallbacks to {add_fallbacks_to_stored(name)}")
        else:
            print(f"wrote {execute_and_write(name, static=not args.no_static)}")


if __name__ == "__main__":
    main()
