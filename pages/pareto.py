"""Pareto: every evaluated plan on two chosen objectives with the matched-sparsity front and the dense model as
reference, the same plans as parallel coordinates and as a table; select plans on any of them (click, box, lasso,
brush, rows) to compare their allocations and metrics side by side. The view lives in the URL."""

import streamlit as st

from hipp_core import api
from pages._common import (
    current_model,
    follow_job,
    hand_over_to_app,
    instruction_file,
    keep_in_url,
    remember,
    restore,
    show_flash,
    store,
    submit_job,
    url_value,
)
from pages._pareto_charts import cloud_figure, compare_figure, parallel_figure

hand_over_to_app()

st.title("Pareto")
st.caption(
    "Each point is one evaluation of a plan. A plan is beaten only by one at a matched sparsity (within the "
    "tolerance) that is no worse on both axes: the non-dominated ones are drawn large and joined, the rest faded. "
    "Compare plans within one measurement."
)
show_flash()

choice = current_model()
if choice is None:
    st.stop()
cloud = api.cloud_frame(store().list_evaluations(choice.model_id))
if cloud.empty:
    st.info("No evaluated plans for this model yet. Evaluate one from Explore, or train the policy on Home.")
    st.stop()
links = api.ui_links

# -- what to plot (each control restored from the session, else the URL) ---------------------------------------------
counts = cloud["measurement"].value_counts()
options = list(counts.index)
# The newest evaluation's measurement by default: a finished job shows up at once.
restore("pareto_measure", "m", lambda t: links.parse_choice(t, options), cloud["measurement"].iloc[-1])
if st.session_state["pareto_measure"] not in options:
    st.session_state["pareto_measure"] = cloud["measurement"].iloc[-1]
left, mid, right = st.columns(3)
measure = left.selectbox(
    "Measurement",
    options,
    key="pareto_measure",
    format_func=lambda m: f"{m} ({counts[m]} points)",
    help="Points are comparable only when measured on the same questions.",
)
measured = cloud[cloud["measurement"] == measure].reset_index(drop=True)
objectives = api.objectives_for(measured)
by_column = {o.column: o for o in objectives}
columns = list(by_column)
restore("pareto_x", "x", lambda t: links.parse_choice(t, columns), "sparsity" if "sparsity" in columns else columns[0])
y_default = "pope_balanced_accuracy" if "pope_balanced_accuracy" in columns else columns[0]
restore("pareto_y", "y", lambda t: links.parse_choice(t, columns), y_default)
for key, fallback in (("pareto_x", columns[0]), ("pareto_y", y_default)):
    if st.session_state[key] not in columns:
        st.session_state[key] = fallback
x_col = mid.selectbox("X axis", columns, key="pareto_x", format_func=lambda c: by_column[c].label)
y_col = right.selectbox("Y axis", columns, key="pareto_y", format_func=lambda c: by_column[c].label)
left, mid, right = st.columns([2, 2, 1])
COLOURS = ["source", "robustness weight", "mode"]
restore("pareto_colour", "colour", lambda t: links.parse_choice(t, COLOURS), "source")
colour_by = left.radio("Colour by", COLOURS, horizontal=True, key="pareto_colour")


def _band(text: str | None) -> tuple[float, float] | None:
    low, _, high = (text or "").partition("-")
    a, b = links.parse_fraction(low), links.parse_fraction(high)
    return None if a is None or b is None or a > b else (a, b)


restore("pareto_band", "band", _band, (0.0, 1.0))
low, high = mid.slider("Sparsity band", 0.0, 1.0, step=0.01, key="pareto_band", help="Keep plans in this band.")
restore("pareto_tol", "tol", lambda t: links.parse_fraction(t, 0.0, 0.1), api.SPARSITY_TOLERANCE)
tolerance = right.number_input(
    "Matched within ±",
    0.0,
    0.1,
    step=0.005,
    format="%.3f",
    key="pareto_tol",
    help="Two plans compete only when their sparsities differ by at most this much (0.01 = one point).",
)
remember("pareto_measure", "pareto_x", "pareto_y", "pareto_colour", "pareto_band", "pareto_tol")
x_obj, y_obj = by_column[x_col], by_column[y_col]
axes = [x_obj] if x_obj == y_obj else [x_obj, y_obj]
frame = measured[measured["sparsity"].between(low - 1e-9, high + 1e-9)]
frame = frame[frame[[o.column for o in axes]].notna().all(axis=1)].reset_index(drop=True)
if frame.empty:
    st.info("No plan in this measurement and sparsity band has both values; widen the band or change the axes.")
    st.stop()
frame["front"] = api.front_mask(frame, axes, tolerance)
measured = measured.merge(frame[["plan_id", "mode", "front"]], on=["plan_id", "mode"], how="left")
measured["front"] = measured["front"].fillna(False).astype(bool)

# -- the selection: one list, fed by the cloud, the parallel coordinates, the table and the picker -------------------
SELECTED = "pareto_selected"
known = set(measured["plan_id"])
if SELECTED not in st.session_state:
    st.session_state[SELECTED] = [p for p in links.parse_plan_ids(url_value("plans")) if p in known]
table = api.plans_table(measured)
sources = sorted(table["source"].unique())
st.session_state.setdefault("plans_sources", sources)
st.session_state["plans_sources"] = [s for s in st.session_state["plans_sources"] if s in sources] or sources
shown = api.filter_plans(table, st.session_state["plans_sources"], (low, high), st.session_state.get("plans_text", ""))


def _chart_points(key: str) -> list[tuple[int, str]]:
    """The (x, plan id) of the points selected on chart `key` in the browser (its state as of this run)."""
    event = st.session_state.get(key) or {}
    picked = []
    for point in (event.get("selection") or {}).get("points") or []:
        plan_id = point.get("customdata")
        plan_id = plan_id[0] if isinstance(plan_id, list) else plan_id
        if isinstance(plan_id, str):
            picked.append((point.get("x"), plan_id))
    return picked


def _table_rows() -> list[str]:
    event = st.session_state.get("plans_table") or {}
    rows = (event.get("selection") or {}).get("rows") or []
    return [shown["id"].iloc[i] for i in rows if i < len(shown)]


incoming = {
    "cloud": list(dict.fromkeys(p for _, p in _chart_points("pareto_chart"))),
    "parallel": api.brushed_plans(_chart_points("parallel_chart")),
    "table": _table_rows(),
}
seen = st.session_state.setdefault("_selection_seen", {})
for source, ids in incoming.items():
    if ids and ids != seen.get(source):  # a new selection on that view replaces the current one
        st.session_state[SELECTED] = ids
    seen[source] = ids
selected = st.session_state[SELECTED]

# -- the dense reference ----------------------------------------------------------------------------------------------
reference = frame.iloc[0].to_dict()
dense = api.dense_point(store(), choice.model_id, reference)
if dense is None:
    params = api.dense_job_params(choice.spec, reference)
    if params is None:
        st.caption("No dense-model evaluation on these questions, and a job cannot repeat this measurement.")
    elif follow_job("evaluate", "evaluating the dense model as reference", **params) is None:
        done = api.find_jobs(store(), "evaluate", active_only=False, **params)
        if not done and submit_job("evaluate", params, "the dense reference", rerun=False, flash=False):
            st.rerun()  # its bar replaces this line; the star appears when it is done
        elif done:
            st.caption("The dense model's evaluation did not land on these questions; see the Jobs page.")

# -- the three views ------------------------------------------------------------------------------------------------
cloud_tab, parallel_tab, table_tab = st.tabs(["Cloud", "Parallel coordinates", f"All plans ({len(measured)})"])
with cloud_tab:
    st.plotly_chart(
        cloud_figure(frame, x_obj, y_obj, colour_by, selected, dense),
        key="pareto_chart",
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
        width="stretch",
    )
    st.caption(
        f"{len(frame)} points, {int(frame['front'].sum())} non-dominated at ±{tolerance:.1%} sparsity. "
        "Click a point to select its plan (Shift-click for more); box and lasso selection are in the chart's toolbar."
    )
with parallel_tab:
    st.plotly_chart(
        parallel_figure(measured, selected),
        key="parallel_chart",
        on_select="rerun",
        selection_mode=("box", "lasso"),
        width="stretch",
    )
    st.caption(
        "Brush: draw a box over an axis to select the plans whose line crosses it there; a box spanning several axes "
        "(or Shift + more boxes) keeps the plans inside on each of them. Baselines have no preference weights."
    )
with table_tab:
    f1, f2 = st.columns([2, 3])
    f1.multiselect("Sources", sources, key="plans_sources")
    f2.text_input("Filter", key="plans_text", placeholder="part of a label or id, e.g. policy or w 0.80")
    st.dataframe(
        shown,
        key="plans_table",
        on_select="rerun",
        selection_mode="multi-row",
        hide_index=True,
        width="stretch",
        column_config={
            c: st.column_config.NumberColumn(format="%.3f") for c in shown.columns if shown[c].dtype == float
        }
        | {"sparsity": st.column_config.NumberColumn(format="percent")},
    )
    st.download_button(
        f"Download these {len(shown)} rows as CSV",
        shown.to_csv(index=False),
        file_name="hipp-plans.csv",
        mime="text/csv",
        key="plans_csv",
    )
    st.caption("Sort by clicking a column; select rows to compare them below.")

# -- selection → side-by-side ---------------------------------------------------------------------------------------
labels = dict(zip(measured["plan_id"], measured["label"]))
ordered = list(measured.sort_values("front", ascending=False)["plan_id"].drop_duplicates())
st.session_state["pareto_pick"] = [p for p in selected if p in labels]


def _picked() -> None:
    st.session_state[SELECTED] = list(st.session_state["pareto_pick"])


pick_col, clear_col = st.columns([5, 1])
pick_col.multiselect(
    "Compare plans (or select them on a chart or in the table)",
    ordered,
    key="pareto_pick",
    format_func=lambda p: labels.get(p, p),
    on_change=_picked,
)
if clear_col.button("Clear selection", disabled=not selected):
    st.session_state[SELECTED] = []
    st.rerun()
keep_in_url(
    m=measure,
    colour=None if colour_by == "source" else colour_by,
    x=x_col,
    y=y_col,
    band=None if (low, high) == (0.0, 1.0) else f"{low:.2f}-{high:.2f}",
    tol=None if tolerance == api.SPARSITY_TOLERANCE else links.format_fraction(tolerance),
    plans=links.format_plan_ids(selected) or None,
)
if not selected:
    st.info("Select points on a chart, rows in the table, or pick plans above to compare them.")
    st.stop()

st.subheader(f"Comparing {len(selected)} plan{'s' if len(selected) > 1 else ''}")
allocation, compared = api.comparison(store(), measured, selected, api.dense_counts(choice.path))
st.plotly_chart(compare_figure(allocation), width="stretch", key="compare_allocation")
st.dataframe(
    compared,
    hide_index=True,
    width="stretch",
    column_config={"sparsity": st.column_config.NumberColumn(format="percent")}
    | {c: st.column_config.NumberColumn(format="%.3f") for c in compared.columns[6:]},
)

target = st.selectbox("Act on plan", selected, format_func=lambda p: labels.get(p, p), key="pareto_target")
instructions = instruction_file("pareto_recover_instructions")
buttons = st.columns(3)
actions = (
    ("evaluate", "Evaluate on test split", "All test questions, masked view: the reporting split.", {"split": "test"}),
    (
        "recover",
        "Recover with LoRA",
        "300 steps of LoRA on the pruned decoder (on the instruction file above), then evaluated.",
        {},
    ),
    ("materialize", "Materialize", "Build the physically pruned checkpoint inside the store.", {}),
)
# Sent with a job, but not what follow_job matches it by.
submitted = {"evaluate": {"limit": None}, "recover": {"instructions": instructions}}
for col, (kind, label, help_text, extra) in zip(buttons, actions):
    with col:
        running = follow_job(kind, label.lower(), plan_id=target, **extra)
    if running is None and col.button(label, help=help_text, key=f"act-{kind}"):
        params = {"spec": choice.spec, "plan_id": target, **extra} | submitted.get(kind, {})
        submit_job(kind, params, label.lower())
