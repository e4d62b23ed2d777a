"""The Pareto page's figures, built from the frames `hipp_core.api` returns: the cloud of evaluated plans, parallel
coordinates, and the per-layer comparison split by attention and MLP. Not a page: app.py registers only pages."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hipp_core import api

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#e377c2", "#7f7f7f"]
BINS = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"]  # viridis, low to high mean POPE accuracy


def _fmt(value, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.1%}" if percent else f"{value:.3f}"


def hover_text(rows: pd.DataFrame, x: api.Objective, y: api.Objective) -> list[str]:
    """Every value a person compares plans on, at the point: the two axes first, then the rest."""
    texts = []
    for r in rows.to_dict("records"):
        texts.append(
            f"<b>{r['label']}</b><br>{x.label}: {_fmt(r.get(x.column))}<br>{y.label}: {_fmt(r.get(y.column))}"
            f"<br>POPE mean {_fmt(r.get('pope_balanced_accuracy'))} · ScienceQA {_fmt(r.get('sqa.accuracy'))}"
            f" · yes-ratio {_fmt(r.get('yes_ratio'))}"
            f"<br>sparsity {_fmt(r.get('sparsity'), True)} · {r['mode']} · "
            + ("non-dominated" if r.get("front") else "dominated")
        )
    return texts


def _axis(objective: api.Objective) -> dict:
    axis = {"title": {"text": objective.label}}
    if objective.axis_range:
        axis["range"] = list(objective.axis_range)
    return axis


def cloud_figure(
    frame: pd.DataFrame,
    x: api.Objective,
    y: api.Objective,
    colour_by: str,
    selected: Sequence[str],
    dense: dict | None,
) -> go.Figure:
    """Evaluated plans on two objectives: the matched-sparsity front large and outlined, dominated plans faded,
    selected plans ringed, the dense model as a star; values on hover; bounded objectives on fixed [0, 1] axes."""
    traces = []
    front_rows = frame[frame["front"]].sort_values(x.column)
    traces.append(
        go.Scatter(
            x=front_rows[x.column],
            y=front_rows[y.column],
            mode="lines",
            line={"color": "rgba(0,0,0,0.35)", "dash": "dot"},
            name="non-dominated",
            hoverinfo="skip",
        )
    )

    def points(rows: pd.DataFrame, name: str, on_front: bool, colour, legend: str, colour_axis: bool = False):
        marker = {"size": 13 if on_front else 8, "opacity": 1.0 if on_front else 0.4, "color": colour}
        if on_front:
            marker["line"] = {"width": 1.5, "color": "black"}
        if colour_axis:
            marker["coloraxis"] = "coloraxis"
        return go.Scatter(
            x=rows[x.column],
            y=rows[y.column],
            mode="markers",
            name=name,
            legendgroup=legend,
            marker=marker,
            customdata=rows["plan_id"],
            hovertext=hover_text(rows, x, y),
            hoverinfo="text",
        )

    layout: dict = {}
    if colour_by == "robustness weight":
        for on_front in (False, True):
            rows = frame[frame["front"] == on_front]
            name = "non-dominated" if on_front else "dominated"
            traces.append(points(rows, name, on_front, rows["robustness weight"], name, colour_axis=True))
        layout["coloraxis"] = {"colorscale": "Viridis", "colorbar": {"title": {"text": "robustness w"}}}
        layout["coloraxis"] |= {"cmin": 0, "cmax": 1}
    else:
        column = "source" if colour_by == "source" else "mode"
        for i, value in enumerate(sorted(frame[column].unique())):
            for on_front in (False, True):
                rows = frame[(frame[column] == value) & (frame["front"] == on_front)]
                if len(rows):
                    name = f"{value} ({'non-dominated' if on_front else 'dominated'})"
                    traces.append(points(rows, name, on_front, PALETTE[i % len(PALETTE)], f"{value}-{on_front}"))
    picked = frame[frame["plan_id"].isin(list(selected))]
    if len(picked):
        traces.append(
            go.Scatter(
                x=picked[x.column],
                y=picked[y.column],
                mode="markers",
                name="selected",
                marker={"size": 20, "symbol": "circle-open", "color": "#d62728", "line": {"width": 2.5}},
                customdata=picked["plan_id"],
                hovertext=hover_text(picked, x, y),
                hoverinfo="text",
            )
        )
    if dense and dense.get(x.column) is not None and dense.get(y.column) is not None:
        traces.append(
            go.Scatter(
                x=[dense[x.column]],
                y=[dense[y.column]],
                mode="markers",
                name="dense model",
                marker={"symbol": "star", "size": 18, "color": "gold", "line": {"width": 1, "color": "black"}},
                hovertext=[
                    f"<b>dense model</b><br>{x.label}: {_fmt(dense[x.column])}<br>{y.label}: {_fmt(dense[y.column])}"
                ],
                hoverinfo="text",
            )
        )
    layout |= {
        "xaxis": _axis(x),
        "yaxis": _axis(y),
        "height": 540,
        "legend": {"orientation": "h", "y": -0.18},
        "margin": {"t": 30},
        # No drag mode of our own: Streamlit then makes a click select the point (with select or lasso as the drag
        # mode it turns click selection off); box and lasso stay in the chart's toolbar.
    }
    return go.Figure(data=traces, layout=layout)


def parallel_figure(frame: pd.DataFrame, selected: Sequence[str]) -> go.Figure:
    """One line per plan across the shared [0, 1] axes, coloured by mean POPE accuracy; a box (or lasso) over an
    axis brushes: the page selects the plans whose line crosses it on every axis the box covers."""
    bins = api.line_colours(frame)
    traces = []
    for b, colour in enumerate(BINS):
        rows = frame[bins == b]
        if not len(rows):
            continue
        data = api.parallel_data(rows)
        traces.append(
            go.Scatter(
                x=data.line_x,
                y=data.line_y,
                mode="lines",
                line={"color": colour, "width": 1.2},
                opacity=0.45,
                name=f"POPE mean {b / len(BINS):.1f}–{(b + 1) / len(BINS):.1f}",
                hoverinfo="skip",
            )
        )
    everything = api.parallel_data(frame)
    axes = everything.axes
    labels = dict(zip(frame["plan_id"], frame["label"]))
    traces.append(
        go.Scatter(
            x=everything.point_x,
            y=everything.point_y,
            mode="markers",
            marker={"size": 6, "color": "rgba(0,0,0,0.35)"},
            customdata=everything.point_plan,
            hovertext=[
                f"{labels[p]}<br>{axes[x]}: {y:.3f}"
                for x, y, p in zip(everything.point_x, everything.point_y, everything.point_plan)
            ],
            hoverinfo="text",
            name="values (box-select to brush)",
        )
    )
    if selected:
        picked = api.parallel_data(frame, selected)
        traces.append(
            go.Scatter(
                x=picked.line_x,
                y=picked.line_y,
                mode="lines",
                line={"color": "#d62728", "width": 3},
                name="selected",
                hoverinfo="skip",
            )
        )
    layout = {
        "height": 460,
        "margin": {"t": 30},
        "dragmode": "select",
        "legend": {"orientation": "h", "y": -0.15},
        "xaxis": {
            "tickvals": list(range(len(axes))),
            "ticktext": axes,
            "range": [-0.3, len(axes) - 0.7],
            "showgrid": True,
            "gridcolor": "#888",
            "gridwidth": 2,
            "zeroline": False,
        },
        "yaxis": {"range": [-0.02, 1.02], "title": {"text": "value (every axis is a fraction)"}},
    }
    return go.Figure(data=traces, layout=layout)


def compare_figure(allocation: pd.DataFrame) -> go.Figure:
    """Per-layer fraction removed, attention on top and MLP below on the same layer axis, one colour per plan."""
    traces = []
    for i, plan in enumerate(dict.fromkeys(allocation["plan"])):
        colour = PALETTE[i % len(PALETTE)]
        for part, axis in (("attention", "y"), ("mlp", "y2")):
            rows = allocation[(allocation["plan"] == plan) & (allocation["part"] == part)]
            traces.append(
                go.Scatter(
                    x=rows["layer"],
                    y=rows["removed"],
                    yaxis=axis,
                    mode="lines+markers",
                    name=plan,
                    legendgroup=plan,
                    showlegend=part == "attention",
                    line={"color": colour},
                    hovertemplate=f"{plan}<br>layer %{{x}}: %{{y:.1%}} of {part} removed<extra></extra>",
                )
            )
    layers = np.unique(allocation["layer"]) if len(allocation) else []
    layout = {
        "height": 480,
        "margin": {"t": 30},
        "legend": {"orientation": "h", "y": -0.2},
        "xaxis": {"title": {"text": "decoder layer"}, "dtick": 1 if len(layers) <= 40 else None, "anchor": "y2"},
        "yaxis": {"title": {"text": "attention removed"}, "range": [0, 1], "domain": [0.55, 1], "tickformat": ".0%"},
        "yaxis2": {"title": {"text": "MLP removed"}, "range": [0, 1], "domain": [0, 0.45], "tickformat": ".0%"},
    }
    return go.Figure(data=traces, layout=layout)


if __name__ == "__main__":  # opened as a page by the legacy mode: the app's navigation instead
    from pages._common import hand_over_to_app

    hand_over_to_app()
