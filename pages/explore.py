"""Explore: move the preference (utility, robustness, compression) and see the policy's blueprint at once: per-layer
allocation against visual sensitivity, what each layer keeps, its size, and the nearest plans already evaluated."""

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from hipp_core import api
from pages._common import (
    chosen_settings,
    current_model,
    follow_job,
    hand_over_to_app,
    keep_in_url,
    pin_threads,
    remember,
    rerun_fragment,
    restore,
    show_flash,
    store,
    submit_job,
    url_value,
)

hand_over_to_app()

st.title("Explore")
st.caption(
    "One policy call turns your preference into a whole pruning blueprint. Sliders stay on the simplex: moving one "
    "shares the rest between the other two. Lock the sparsity to compare allocations at a matched budget."
)
show_flash()

choice = current_model()
if choice is None:
    st.stop()


@st.cache_resource(show_spinner="Loading model, calibration and policy…", max_entries=4)
def _planner(spec: str, store_path: str, policy_key: str, device: str, dtype: str) -> api.Planner:
    """Cached per model, settings and trained policy version, so a policy finished by a job is picked up on the next
    run."""
    return api.planner(spec, store(), device=device, dtype=dtype)


# Store reads are cached per store version: a slider move opens no database connection unless a job has written.
@st.cache_data(show_spinner=False, max_entries=8)
def _policy_record(model_id: str, path: str, store_path: str, version: tuple[int, ...]) -> api.PolicyRecord | None:
    return api.policy_record(model_id, Path(path), store())


# A resource, not data: st.cache_data would hand every slider move a fresh copy of thousands of rows, and
# `api.nearest_plans` only reads it.
@st.cache_resource(show_spinner=False, max_entries=8)
def _evaluated(model_id: str, store_path: str, version: tuple[int, ...]) -> pd.DataFrame:
    return api.evaluated_preferences(store(), model_id)


latest = _policy_record(choice.model_id, str(choice.path), str(store().path), store().version())
if latest is None:
    st.warning(f"No trained policy for {choice.spec} yet: blueprints come from the policy.")
    if st.button("Train the policy", type="primary"):
        submit_job("train-policy", {"spec": choice.spec}, "policy training")
    st.stop()
try:
    policy_key = f"{latest.policy_id}@{latest.updated_at.isoformat()}"
    planner = _planner(choice.spec, str(store().path), policy_key, **chosen_settings())
except api.USER_ERRORS as exc:
    st.error(str(exc))
    st.stop()

# -- preference and budget ------------------------------------------------------------------------------------------
# Kept in the URL (`w`, `sparsity` when locked, `equal`, `baseline`), so a reload or a shared link shows this plan.
KEYS = tuple(f"w_{name}" for name in api.PREFERENCE_NAMES)
if "preference" not in st.session_state:
    st.session_state["preference"] = api.ui_links.parse_preference(url_value("w")) or (0.34, 0.33, 0.33)
for key, value in zip(KEYS, st.session_state["preference"]):
    st.session_state.setdefault(key, round(value, 2))
LOW, HIGH = 0.05, 0.85  # the sparsity lock's range


def _locked_at(text: str | None) -> float | None:
    value = api.ui_links.parse_fraction(text, LOW, HIGH)
    return None if value is None else round(value, 2)


restore("lock_sparsity", "sparsity", lambda t: True if _locked_at(t) is not None else None, False)
restore("locked_sparsity", "sparsity", _locked_at, 0.3)
restore("equal_counts", "equal", lambda t: True if t == "1" else None, False)
restore("compare_neighbours", "neighbours", lambda t: True if t == "1" else None, False)
if "baseline" not in st.session_state and url_value("baseline") in api.method_names("heuristic"):
    st.session_state["baseline_method"] = url_value("baseline")  # recomputed below for the plan on show


def _moved(index: int) -> None:
    current = tuple(st.session_state[k] for k in KEYS)
    new = api.rebalance(current, index, st.session_state[KEYS[index]])
    for key, value in zip(KEYS, new):
        st.session_state[key] = round(value, 2)
    st.session_state["preference"] = new


@st.fragment
def _blueprint_view(planner: api.Planner, choice: api.ModelChoice) -> None:
    """Everything a preference move changes. A fragment, so a slider move reruns only this: not the navigation, the
    model check and the store lookups above, and the browser redraws only these elements."""
    pin_threads()  # a fragment rerun runs in a thread of its own
    controls, budget = st.columns([3, 1])
    cols = controls.columns(3)
    for i, (col, name) in enumerate(zip(cols, api.PREFERENCE_NAMES)):
        col.slider(name.capitalize(), 0.0, 1.0, step=0.01, key=KEYS[i], on_change=_moved, args=(i,))
    locked = budget.checkbox("Match a sparsity", key="lock_sparsity", help="Override the policy's budget.")
    sparsity = budget.slider(
        "Sparsity",
        LOW,
        HIGH,
        step=0.01,
        key="locked_sparsity",
        disabled=not locked,
        label_visibility="collapsed",
    )
    equal = budget.checkbox(
        "Equal counts",
        key="equal_counts",
        help="Same numbers of query heads, KV groups and MLP channels in every layer, so that stock engines (plain "
        "transformers, vLLM) load the export with nothing padded. Gives up the per-layer allocation for that.",
    )
    weights = tuple(st.session_state[k] for k in KEYS)
    if sum(weights) <= 0:
        st.error("All three weights are 0; give at least one a positive weight.")
        return
    preference = tuple(w / sum(weights) for w in weights)
    remember("lock_sparsity", "locked_sparsity", "equal_counts", "compare_neighbours")
    keep_in_url(
        w=api.ui_links.format_preference(weights),
        sparsity=api.ui_links.format_fraction(sparsity) if locked else None,
        equal="1" if equal else None,
    )
    try:
        blueprint = planner.blueprint(preference, sparsity if locked else None, equal_counts=equal)
    except api.USER_ERRORS as exc:
        st.error(str(exc))
        return

    # -- numbers -------------------------------------------------------------------------------------------------------
    size = api.plan_size(blueprint, planner.shapes)
    m = st.columns(3)
    m[0].metric(
        "Sparsity",
        f"{blueprint.achieved:.1%}",
        f"budget {blueprint.budget:.1%}",
        delta_color="off",
        help="Fraction of decoder-layer parameters removed (achieved after rounding to whole units).",
    )
    m[1].metric(
        "Decoder parameters",
        f"{size.params_kept:,}",
        f"{size.params_kept / size.params_dense - 1:.1%}",
        delta_color="off",
    )
    m[2].metric(
        "Decoder FLOPs", f"{size.flops_kept:.3g}", f"{size.flops_kept / size.flops_dense - 1:.1%}", delta_color="off"
    )
    st.caption(
        f"Plan `{blueprint.plan_id}` · preference w = {' / '.join(f'{w:.2f}' for w in preference)} "
        f"(utility / robustness / compression) · FLOPs for one {api.FLOPS_SEQ_LEN}-token sequence"
    )

    # -- allocation over visual sensitivity ----------------------------------------------------------------------------
    table = api.layer_table(blueprint, planner.shapes)
    baseline = _baseline(choice, blueprint, equal)
    layers = list(table.index)
    v_attn = np.asarray(planner.features.v_attn, dtype=float)
    bars = [
        go.Bar(x=layers, y=table["attention"], name="attention sparsity", marker_color="#1f77b4"),
        go.Bar(x=layers, y=table["mlp"], name="MLP sparsity", marker_color="#ff7f0e"),
    ]
    if baseline:
        bars.append(
            go.Scatter(
                x=layers,
                y=list(baseline[2].sparsities),
                name=f"{baseline[1]} baseline (layer sparsity)",
                mode="lines+markers",
                line={"color": "#2ca02c", "dash": "dash"},
            )
        )
    visual = go.Scatter(
        x=layers,
        y=v_attn,
        name="visual sensitivity (v_attn)",
        mode="lines+markers",
        line={"color": "black"},
        yaxis="y2",
    )
    heads, mlp = api.kept_grid(blueprint, planner.shapes)
    kept = {"colorscale": [[0, "#f0f0f0"], [1, "#08519c"]], "zmin": 0, "zmax": 1, "x": layers, "xaxis": "x"}
    # One figure whose three panels share the layer axis: the allocation over visual sensitivity on top, then which
    # heads and which MLP channel blocks each layer keeps. One chart, built in one constructor call, because each
    # extra Plotly chart and each make_subplots/update_* call showed in the slider latency (docs/design.md, Speed).
    figure = go.Figure(
        data=[
            *bars,
            visual,
            go.Heatmap(z=heads.T, yaxis="y3", showscale=False, name="query heads", **kept),
            go.Heatmap(z=mlp.T, yaxis="y4", colorbar={"title": {"text": "kept"}, "len": 0.45, "y": 0.2}, **kept),
        ],
        layout={
            "barmode": "group",
            "height": 640,
            "margin": {"t": 30},
            "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom"},
            "xaxis": {"title": {"text": "decoder layer"}, "anchor": "y4", "dtick": 1},
            "yaxis": {"title": {"text": "fraction removed"}, "range": [0, 1], "domain": [0.5, 1]},
            "yaxis2": {
                "title": {"text": "attention mass on image tokens"},
                "overlaying": "y",
                "side": "right",
                "rangemode": "tozero",
                "showgrid": False,
            },
            "yaxis3": {"title": {"text": "query head"}, "domain": [0.33, 0.45], "dtick": 1},
            "yaxis4": {"title": {"text": "MLP channel block"}, "domain": [0, 0.28]},
        },
    )
    st.plotly_chart(figure, width="stretch", key="blueprint_chart")

    # Static tables: a handful of rows, drawn with the rest of the run (the interactive grid kept repainting after
    # the run had finished); numbers formatted as text, which is cheaper than a pandas Styler.
    with st.expander("Per-layer numbers"):
        shown = table.assign(**{c: table[c].map("{:.1%}".format) for c in ("attention", "mlp", "sparsity")})
        st.table(shown.reset_index().assign(layer=lambda t: t["layer"].map("layer {}".format)), hide_index=True)

    _neighbours_view(planner, blueprint, preference, sparsity if locked else None, equal)

    # -- nearest evaluated plans ---------------------------------------------------------------------------------------
    st.subheader("Nearest evaluated plans")
    st.caption(
        "Other plans, evaluated earlier, closest to yours in preference and sparsity together: evidence, not this "
        "blueprint's score."
    )
    evaluated = _evaluated(planner.model_id, str(store().path), store().version())
    near = api.nearest_plans(evaluated, preference, blueprint.achieved)
    if near.empty:
        st.info("No evaluated policy plans yet; evaluate this one to start the map.")
    else:
        st.table(near.set_index("plan").map(lambda x: f"{x:.3f}" if isinstance(x, float) else x))

    # -- actions -------------------------------------------------------------------------------------------------------
    # Buttons start jobs without rerunning the page (a full rerun lost the scroll position); the job's live bar is
    # drawn under them until it ends.
    a, b, c, d = st.columns([1, 1, 1, 1])
    if a.button("Save plan", key="save"):
        record = api.save_plan(blueprint, store())
        st.success(f"Saved plan {record.plan_id}; it is listed on Export.")
    evaluating = follow_job("evaluate", "evaluating this plan on dev", plan_id=blueprint.plan_id, split="dev")
    if evaluating is None and b.button("Evaluate this plan", key="evaluate", type="primary"):
        api.save_plan(blueprint, store())
        params = {"spec": choice.spec, "plan_id": blueprint.plan_id, "split": "dev"}
        if submit_job("evaluate", params, "the evaluation", rerun=False, flash=False):
            rerun_fragment()  # this part only: the button becomes the job's bar, the page stays put
    # Heuristics only: they plan in a blink, while search (random) and the peer would hold the page for their runs.
    methods = api.method_names("heuristic")
    method = c.selectbox("Baseline", methods, key="baseline_choice", label_visibility="collapsed")
    if d.button(f"Compare with {method}", key="compare"):
        st.session_state["baseline_method"] = method
        rerun_fragment()
    keep_in_url(baseline=baseline[1] if baseline else None)
    if baseline:
        other = baseline[2]
        st.caption(
            f"{baseline[1]} baseline at the same sparsity ({other.achieved:.1%}): plan {other.plan_id}. "
            "Evaluate both to see them side by side on Pareto."
        )
        if st.button("Evaluate both on dev", key="evaluate_both"):
            for bp in (blueprint, other):
                api.save_plan(bp, store())
                params = {"spec": choice.spec, "plan_id": bp.plan_id, "split": "dev"}
                submit_job("evaluate", params, f"evaluating plan {bp.plan_id}", rerun=False, flash=False)
            rerun_fragment()
        follow_job("evaluate", f"evaluating the {baseline[1]} baseline on dev", plan_id=other.plan_id, split="dev")


def _neighbours_view(
    planner: api.Planner, blueprint: api.Blueprint, preference: tuple, sparsity: float | None, equal: bool
) -> None:
    """What the preference changes: the plan on show against the plans at neighbouring preferences (each weight ±0.1
    as its slider moves it). Behind a toggle, off by default: its up to six policy calls and second chart would
    more than double a slider move's time (docs/design.md, Speed)."""
    st.subheader("What this preference changes")
    on = st.toggle(
        "Compare with neighbouring preferences",
        key="compare_neighbours",
        help="Plan again with each weight moved by ±0.1 (the other two sharing the rest), at the same locked sparsity "
        "and equal-counts setting, and show which layers and unit kinds change.",
    )
    keep_in_url(neighbours="1" if on else None)
    if not on:
        return
    key = (planner.model_id, planner.policy_id, blueprint.plan_id, preference, sparsity, equal)
    kept = st.session_state.get("neighbours")
    if kept is None or kept[0] != key:  # a rerun for another reason (a button) does not plan them again
        try:
            found = api.preference_neighbours(planner, preference, sparsity, equal, shown=blueprint)
        except api.USER_ERRORS as exc:
            st.error(str(exc))
            return
        kept = st.session_state["neighbours"] = (key, found)
    found = kept[1]
    text = found.summary()
    if found.changed:
        text += "\n\n" + "\n".join(f"- {line}" for line in found.lines())
    if found.skipped:
        text += f"\n\nOff the simplex, not compared: {', '.join(found.skipped)}."
    st.markdown(text)
    if not found.changed:
        return
    change = found.frame()
    top = max(float(np.abs(change.to_numpy()).max()), 0.01)
    figure = go.Figure(
        go.Heatmap(
            z=change.to_numpy(),
            x=list(change.columns),
            y=list(change.index),
            zmid=0,
            zmin=-top,
            zmax=top,
            colorscale="RdBu_r",
            text=found.hover_text(),
            hovertemplate="%{text}<extra></extra>",
            colorbar={"title": {"text": "Δ removed"}, "tickformat": "+.0%"},
        ),
        layout={
            "height": 80 + 22 * len(change),
            "margin": {"t": 10, "b": 40},
            "xaxis": {"title": {"text": "decoder layer"}, "dtick": 1},
            "yaxis": {"autorange": "reversed"},
        },
    )
    st.plotly_chart(figure, width="stretch", key="neighbours_chart")
    st.caption("Red: the neighbour removes more of that kind in that layer than the plan on show; blue: less.")


def _baseline(choice: api.ModelChoice, blueprint: api.Blueprint, equal: bool) -> tuple | None:
    """The baseline compared with the plan on show: (plan id, method, blueprint at its sparsity). Made once, when the
    Compare button or a link (`baseline=`) asks for it, and shown while that plan is; a slider move makes none."""
    kept = st.session_state.get("baseline")
    wanted = st.session_state.pop("baseline_method", None)
    if wanted is not None and not (kept and kept[0] == blueprint.plan_id and kept[1] == wanted):
        try:
            other = api.plan_baseline(
                choice.spec, wanted, blueprint.achieved, store=store(), equal_counts=equal, **chosen_settings()
            )
        except api.USER_ERRORS as exc:
            st.error(str(exc))
            return None
        kept = st.session_state["baseline"] = (blueprint.plan_id, wanted, other)
    return kept if kept and kept[0] == blueprint.plan_id else None


_blueprint_view(planner, choice)
