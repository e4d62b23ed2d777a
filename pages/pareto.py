"""Pareto: every evaluated plan as a point on two chosen objectives, the non-dominated ones highlighted; select
points (click, box or lasso) or pick plans to compare their allocations and metrics side by side."""

import plotly.graph_objects as go
import streamlit as st

from hipp_core import api
from pages._common import current_model, show_flash, store, submit_job

st.title("Pareto")
st.caption(
    "Each point is one evaluation of a plan. Points no other plan beats on both axes (the non-dominated front) are "
    "drawn large and joined; dominated ones are faded. Compare plans only within one measurement and sparsity band."
)
show_flash()

choice = current_model()
if choice is None:
    st.stop()
cloud = api.cloud_frame(store().list_evaluations(choice.model_id))
if cloud.empty:
    st.info("No evaluated plans for this model yet. Evaluate one from Explore, or train the policy on Home.")
    st.stop()

# -- what to plot ---------------------------------------------------------------------------------------------------
counts = cloud["measurement"].value_counts()
options = list(counts.index)
left, mid, right = st.columns(3)
measure = left.selectbox(
    "Measurement",
    options,
    index=options.index(cloud["measurement"].iloc[-1]),  # the newest evaluation's: a finished job shows up at once
    format_func=lambda m: f"{m} ({counts[m]} points)",
    help="Points are comparable only when measured on the same questions.",
)
frame = cloud[cloud["measurement"] == measure].reset_index(drop=True)
objectives = api.objectives_for(frame)
labels = [o.label for o in objectives]
by_label = {o.label: o for o in objectives}
x_label = mid.selectbox("X axis", labels, index=labels.index("sparsity") if "sparsity" in labels else 0)
y_default = "mean POPE balanced accuracy"
y_label = right.selectbox("Y axis", labels, index=labels.index(y_default) if y_default in labels else 0)
left, right = st.columns([1, 2])
colour_by = left.radio("Colour by", ["source", "robustness weight", "mode"], horizontal=True)
low, high = right.slider(
    "Sparsity band", 0.0, 1.0, (0.0, 1.0), step=0.01, help="Keep plans in this band: matched-sparsity comparisons."
)
frame = frame[(frame["sparsity"] >= low - 1e-9) & (frame["sparsity"] <= high + 1e-9)].reset_index(drop=True)
x_obj, y_obj = by_label[x_label], by_label[y_label]
axes = [x_obj] if x_obj == y_obj else [x_obj, y_obj]
frame = frame[frame[[o.column for o in axes]].notna().all(axis=1)].reset_index(drop=True)
if frame.empty:
    st.info("No plan in this measurement and sparsity band has both values; widen the band or change the axes.")
    st.stop()
frame["front"] = api.front_mask(frame, axes)

# -- the cloud ------------------------------------------------------------------------------------------------------
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]


def _hover(rows) -> list[str]:
    return [
        f"plan {r.plan_id}<br>{r.source} · {r.mode}<br>sparsity {r.sparsity:.1%}"
        + (f"<br>w = {r.preference}" if r.preference else "")
        for r in rows.itertuples()
    ]


def _trace(rows, name: str, on_front: bool, colour, group: str, legend: bool, colour_axis: bool = False) -> go.Scatter:
    marker = {"size": 13 if on_front else 8, "opacity": 1.0 if on_front else 0.35, "color": colour}
    if on_front:
        marker["line"] = {"width": 1.5, "color": "black"}
    if colour_axis:
        marker["coloraxis"] = "coloraxis"
    return go.Scatter(
        x=rows[x_obj.column],
        y=rows[y_obj.column],
        mode="markers",
        name=name,
        legendgroup=group,
        showlegend=legend,
        marker=marker,
        customdata=rows["plan_id"],
        hovertext=_hover(rows),
        hoverinfo="text",
    )


fig = go.Figure()
front_rows = frame[frame["front"]].sort_values(x_obj.column)
fig.add_trace(
    go.Scatter(
        x=front_rows[x_obj.column],
        y=front_rows[y_obj.column],
        mode="lines",
        line={"color": "rgba(0,0,0,0.35)", "dash": "dot"},
        name="non-dominated front",
        hoverinfo="skip",
    )
)
if colour_by == "robustness weight":
    for on_front in (False, True):
        rows = frame[frame["front"] == on_front]
        name = "non-dominated" if on_front else "dominated"
        fig.add_trace(_trace(rows, name, on_front, rows["robustness weight"], name, True, colour_axis=True))
    fig.update_layout(coloraxis={"colorscale": "Viridis", "colorbar": {"title": "robustness w"}, "cmin": 0, "cmax": 1})
else:
    column = "source" if colour_by == "source" else "mode"
    for i, value in enumerate(sorted(frame[column].unique())):
        colour = PALETTE[i % len(PALETTE)]
        for on_front in (False, True):
            rows = frame[(frame[column] == value) & (frame["front"] == on_front)]
            if len(rows):
                name = f"{value} ({'non-dominated' if on_front else 'dominated'})"
                fig.add_trace(_trace(rows, name, on_front, colour, f"{value}-{on_front}", True))
dense = api.dense_point(store(), choice.model_id, frame.iloc[0].to_dict())
if dense and dense.get(x_obj.column) is not None and dense.get(y_obj.column) is not None:
    fig.add_trace(
        go.Scatter(
            x=[dense[x_obj.column]],
            y=[dense[y_obj.column]],
            mode="markers",
            name="dense model",
            marker={"symbol": "star", "size": 16, "color": "gold", "line": {"width": 1, "color": "black"}},
            hoverinfo="name",
        )
    )
fig.update_layout(
    xaxis_title=x_label,
    yaxis_title=y_label,
    height=520,
    legend={"orientation": "h", "y": -0.18},
    margin={"t": 30},
    dragmode="lasso",
)
event = st.plotly_chart(
    fig, key="pareto_chart", on_select="rerun", selection_mode=("points", "box", "lasso"), width="stretch"
)
st.caption(f"{len(frame)} points, {int(frame['front'].sum())} non-dominated.")

# -- selection → side-by-side ---------------------------------------------------------------------------------------
picked_on_chart = []
for point in (event.selection.points if event else []) or []:
    plan_id = point.get("customdata")
    plan_id = plan_id[0] if isinstance(plan_id, list) else plan_id
    if isinstance(plan_id, str) and plan_id not in picked_on_chart:
        picked_on_chart.append(plan_id)
ordered = list(frame.sort_values("front", ascending=False)["plan_id"].drop_duplicates())
picked = st.multiselect("Compare plans (or select points on the chart)", ordered)
selected = picked_on_chart + [p for p in picked if p not in picked_on_chart]
if not selected:
    st.info("Select points (click, box or lasso on the chart) or pick plans above to compare them.")
    st.stop()

st.subheader(f"Comparing {len(selected)} plan{'s' if len(selected) > 1 else ''}")
allocation, metrics = api.comparison(store(), frame, selected)
left, right = st.columns([3, 2])
alloc_fig = go.Figure(
    [go.Scatter(x=allocation.index, y=allocation[c], mode="lines+markers", name=c) for c in allocation.columns]
)
alloc_fig.update_layout(
    xaxis_title="decoder layer",
    yaxis_title="sparsity of the layer",
    yaxis_range=[0, 1],
    height=360,
    margin={"t": 30},
    legend={"orientation": "h", "y": -0.25},
)
left.plotly_chart(alloc_fig, width="stretch", key="compare_allocation")
right.dataframe(metrics, width="stretch")

target = st.selectbox("Act on plan", selected)
buttons = st.columns(3)
if buttons[0].button("Evaluate on test split", help="All test questions, masked view: the reporting split."):
    submit_job("evaluate", {"spec": choice.spec, "plan_id": target, "split": "test", "limit": None}, "evaluation")
if buttons[1].button("Recover with LoRA", help="300 steps of LoRA on the pruned decoder, then evaluated."):
    submit_job("recover", {"spec": choice.spec, "plan_id": target}, "recovery")
if buttons[2].button("Materialize", help="Build the physically pruned checkpoint inside the store."):
    submit_job("materialize", {"spec": choice.spec, "plan_id": target}, "materialization")
