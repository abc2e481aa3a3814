"""Build and execute the notebooks under notebooks/ from their cell lists in this folder.

Each ``analyses/notebooks/<name>.py`` holds ``CELLS``: a list of ``("markdown" | "code", source)``.
The notebook is executed here (outputs, plotly figures included, are kept in the file) and written
atomically to ``notebooks/<name>.ipynb``; CI re-executes it with nbmake.

    .venv/bin/python analyses/notebooks/build.py depth_phases [rnn_mechanics ...]
    .venv/bin/python analyses/notebooks/build.py --all
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
NOTEBOOKS = HERE.parents[1] / "notebooks"


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


def execute_and_write(name: str) -> Path:
    notebook = build(cells_of(name))
    NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    ).execute()
    target = NOTEBOOKS / f"{name}.ipynb"
    handle, tmp = tempfile.mkstemp(dir=NOTEBOOKS, suffix=".ipynb.tmp")
    with os.fdopen(handle, "w") as stream:
        nbformat.write(notebook, stream)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600 files; notebooks are meant to be read by all
    os.replace(tmp, target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--all", action="store_true")
    args = parser.parse_args()
    names = (
        sorted(p.stem for p in HERE.glob("*.py") if p.stem != "build") if args.all else args.names
    )
    if not names:
        parser.error("name a notebook or pass --all")
    for name in names:
        print(f"wrote {execute_and_write(name)}")


if __name__ == "__main__":
    main()
