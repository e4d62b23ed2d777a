"""Home: what is ready (models, benchmark) and where to go next."""

import pandas as pd
import streamlit as st

from hipp_core import status

st.title("HiPP-Prune")
st.caption(
    "Structured pruning for vision-language models, steered by how much you value task utility, "
    "hallucination robustness and compression."
)

st.subheader("Embedded models")
models = status.embedded_models()
st.dataframe(
    pd.DataFrame(
        [
            {
                "model": m.spec,
                "state": m.origin,
                "parameters": m.parameters,
                "decoder training steps": m.train_steps,
                "path": str(m.path) if m.path else "run `hipp zoo build`",
            }
            for m in models
        ]
    ),
    hide_index=True,
    width="stretch",
)
missing = [m.spec for m in models if m.path is None]
if missing:
    st.warning(f"Not built yet: {', '.join(missing)}. Run `hipp zoo build` in a terminal.")

st.subheader("ShapesWorld benchmark")
if status.benchmark_ready():
    st.success("ShapesPOPE (random / popular / adversarial) and ShapesSQA are built for train, calib, dev and test.")
else:
    st.info("The benchmark is built on first use (a few seconds), or now with `hipp data build`.")

with st.expander("Where things are stored"):
    for name, path in status.locations().items():
        st.text(f"{name}: {path}")

st.subheader("Next")
st.page_link("pages/benchmark.py", label="Evaluate a model on POPE and ScienceQA", icon="📊")
