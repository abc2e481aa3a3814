"""Plotly figure builders and the self-contained HTML report writer."""

from interp.viz.figures import heatmap, line_chart
from interp.viz.report import Report

__all__ = ["Report", "heatmap", "line_chart"]
