"""A self-contained HTML report: headings, text, tables and plotly figures in one file.

plotly.js is embedded once (no network needed to open the file); every later figure reuses it.
The file is written atomically and carries ``<meta name="generator" content="interp ...">``, which
is how ``--overwrite`` recognizes a report interp wrote (it replaces nothing else).
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go

from interp import __version__
from interp.outputs import write_atomically


class Report:
    """Collects sections, then writes one HTML file.

    >>> report = Report("Heads of SmolLM2")
    >>> report.heading("Induction")
    >>> report.figure(fig)
    >>> report.write("report.html")
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = []
        self._figures = 0

    def heading(self, text: str, level: int = 2) -> None:
        self._parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def text(self, text: str) -> None:
        self._parts.append(f"<p>{html.escape(text)}</p>")

    def preformatted(self, text: str) -> None:
        self._parts.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
            for row in rows
        )
        self._parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figure(self, fig: go.Figure) -> None:
        include = "inline" if self._figures == 0 else False
        self._parts.append(fig.to_html(full_html=False, include_plotlyjs=include))
        self._figures += 1

    def html(self) -> str:
        style = (
            "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
            "text-align:right}th{background:#f4f4f4}pre{background:#f8f8f8;padding:1em;overflow:auto}"
        )
        body = "\n".join(self._parts)
        return (
            f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f'<meta name="generator" content="interp {__version__}">'
            "<meta name='viewport' content='width=device-width, initial-scale=1'><title>"
            f"{html.escape(self.title)}"
            f"</title><style>{style}</style></head><body><h1>{html.escape(self.title)}</h1>\n"
            f"{body}\n</body></html>"
        )

    def write(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the HTML file atomically; ``overwrite`` replaces only a report interp wrote."""
        content = self.html()
        return write_atomically(path, lambda tmp: tmp.write_text(content), overwrite=overwrite)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
