"""Export: write a plan (pruned from the base model, or its LoRA-recovered weights) as a checkpoint plain transformers
loads; show and download its model card and plan JSON."""

import json
from pathlib import Path

import pandas as pd
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
)

hand_over_to_app()

FORMAT_HELP = {
    "exact": (
        "exact (pruned shapes)",
        "exact: every layer keeps its own sizes; loads with trust_remote_code=True or hipp_core.load_pruned.",
    ),
    "stock": (
        "stock (plain transformers, vLLM)",
        (
            "stock: one set of sizes for every layer in a stock config, loaded without remote code; layers are "
            "zero-padded up to the largest, which gives back part of the saving unless the plan keeps equal counts "
            "(Explore)."
        ),
    ),
}

st.title("Export")
st.caption(
    "An export is a Hugging Face checkpoint with the pruned shapes, its plan and a model card. It is verified by "
    "reloading before it is moved into place, and an existing directory is replaced only when you ask."
)
show_flash()

choice = current_model()
if choice is None:
    st.stop()
plans = list(reversed(store().list_plans(choice.model_id)))
if not plans:
    st.info("No plans for this model yet: save one on Explore, or evaluate some to see them on Pareto.")
    st.stop()

by_id = {p.plan_id: p for p in plans}
# The plan is kept in the URL (`plan=`): a reload must not fall back to the newest plan and export another one.
restore("export_plan", "plan", lambda t: t if t in by_id else None, plans[0].plan_id)
if st.session_state["export_plan"] not in by_id:  # kept from another model's list
    st.session_state["export_plan"] = plans[0].plan_id
plan_id = st.selectbox("Plan", list(by_id), key="export_plan", format_func=lambda i: api.plan_label(by_id[i]))
remember("export_plan")
keep_in_url(plan=plan_id)
plan = by_id[plan_id]
artifacts = store().list_artifacts(plan_id)
recovered = [a.path for a in artifacts if a.kind == "recovered" and Path(a.path).is_dir()]

evaluations = store().plan_evaluations(plan_id)
if evaluations:
    st.dataframe(
        pd.DataFrame(
            [
                {"split": e.key.split, "questions": e.sample_count, "mode": e.key.mode, **api.headline(e.metrics)}
                for e in evaluations
            ]
        ),
        width="stretch",
        hide_index=True,
    )
else:
    st.caption("This plan has not been evaluated yet.")
plan_json = json.dumps(plan.blueprint, indent=2)
left, right = st.columns([1, 3])
left.download_button(
    "Download plan JSON", plan_json, file_name=f"plan-{plan_id}.json", mime="application/json", key="plan-json"
)
with right.expander("Plan JSON"):
    st.code(plan_json, language="json")

# -- recovery -------------------------------------------------------------------------------------------------------
with st.expander("LoRA recovery" + (f" ({len(recovered)} recovered)" if recovered else "")):
    a, b, c = st.columns(3)
    steps = a.number_input("Steps", min_value=1, max_value=100_000, value=300, step=50)
    rank = b.number_input("LoRA rank", min_value=1, max_value=1024, value=8)
    instructions = instruction_file("recover_instructions")
    with c:
        running = follow_job("recover", "LoRA recovery", plan_id=plan_id)
    if running is None and c.button("Recover this plan"):
        params = {"spec": choice.spec, "plan_id": plan_id, "steps": int(steps), "rank": int(rank)}
        submit_job("recover", params | {"instructions": instructions}, "LoRA recovery")

# -- export ---------------------------------------------------------------------------------------------------------
st.subheader("Export to a directory")
variants = {"pruned weights (from the base model)": None} | {f"recovered: {p}": p for p in recovered}
variant = st.radio("Weights", list(variants), horizontal=True)
out_dir = st.text_input("Directory to create", value=str(Path.home() / f"hipp-{choice.family}-{plan_id}"))
export_format = st.radio(
    "Format",
    list(FORMAT_HELP),
    horizontal=True,
    key="export_format",
    format_func=lambda f: FORMAT_HELP[f][0],
    help=" ".join(text for _, text in FORMAT_HELP.values()),
)
overwrite = st.checkbox("Replace it if it already holds an export", value=False)
active = follow_job("export", "export", plan_id=plan_id)
if active is None and st.button("Export", type="primary"):
    params = {"spec": choice.spec, "plan_id": plan_id, "out_dir": out_dir, "overwrite": overwrite}
    params["export_format"] = export_format
    submit_job("export", params | {"artifact": variants[variant]}, "the export")

# -- what was exported ----------------------------------------------------------------------------------------------
exported = [a.path for a in reversed(artifacts) if a.kind == "exported" and (Path(a.path) / "README.md").exists()]
if exported:
    st.subheader("Exports of this plan")
    where = Path(st.selectbox("Export", exported))
    card = (where / "README.md").read_text()
    left, right = st.columns(2)
    left.download_button("Download model card", card, file_name="README.md", mime="text/markdown", key="card")
    right.download_button(
        "Download exported plan.json",
        (where / api.PLAN_FILE).read_text(),
        file_name=f"plan-{plan_id}.json",
        mime="application/json",
        key="export-plan",
    )
    with st.container(border=True):
        st.markdown(card.split("---\n", 2)[-1])  # without the YAML front matter
