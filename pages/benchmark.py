"""Benchmark: evaluate a dense model on POPE and ScienceQA, next to its image-free baseline."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from hipp_core import api
from pages._common import chosen_settings, hand_over_to_app, pin_threads

hand_over_to_app()

EMBEDDED = {"Embedded LLaVA": "embedded:llava", "Embedded Qwen2.5-VL": "embedded:qwen2_5_vl"}

st.title("Benchmark")
st.caption(
    "Dense model quality on ShapesPOPE and ShapesSQA. The image-free baseline asks the same questions "
    "over a blank image: the gap between the two is what the model gets from looking."
)

left, mid, right = st.columns([2, 1, 1])
choice = left.selectbox("Model", [*EMBEDDED, "Local checkpoint directory"])
spec = EMBEDDED.get(choice) or left.text_input("Checkpoint directory", placeholder="/models/llava-1.5-7b-hf")
split = mid.selectbox("Split", api.SPLITS, index=api.SPLITS.index("test"))
limit = right.number_input("Questions per part", min_value=10, max_value=5000, value=200, step=10)

settings = chosen_settings()
st.caption(f"Runs on {settings['device']} · {settings['dtype']} (chosen on Home).")
if st.button("Evaluate", type="primary", disabled=not spec):
    pin_threads()
    bar = st.progress(0.0, text="loading model")

    def on_progress(stage: str, done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"{stage}: {done}/{total}")

    try:
        result = api.evaluate_model(spec, "all", split, int(limit), progress=on_progress, **chosen_settings())
    except api.USER_ERRORS as exc:
        bar.empty()
        st.error(str(exc))
    else:
        bar.empty()
        st.session_state["benchmark_result"] = (spec, split, result)

if "benchmark_result" in st.session_state:
    spec_done, split_done, result = st.session_state["benchmark_result"]
    st.subheader(f"{spec_done} on {split_done}")
    cats = list(result.pope)
    fig = go.Figure(
        [
            go.Bar(name="with image", x=cats, y=[result.pope[c].balanced_accuracy for c in cats]),
            go.Bar(name="blank image", x=cats, y=[result.pope_image_free[c].balanced_accuracy for c in cats]),
        ]
    )
    fig.update_layout(barmode="group", yaxis_title="POPE balanced accuracy", yaxis_range=[0, 1], height=360)
    st.plotly_chart(fig, width="stretch")
    st.dataframe(pd.DataFrame({c: vars(m) for c, m in result.pope.items()}).T.round(3), width="stretch")
    if result.sqa:
        cols = st.columns(4)
        cols[0].metric("ScienceQA accuracy", f"{result.sqa.accuracy:.3f}")
        cols[1].metric("with image", f"{result.sqa.accuracy_image:.3f}")
        cols[2].metric("text only", f"{result.sqa.accuracy_text:.3f}")
        cols[3].metric("with image, blank image", f"{result.sqa_image_free.accuracy_image:.3f}")
    st.caption(f"{result.questions} questions in {result.seconds:.1f} s · model id {result.model_id}")
