"""Home: what is ready (models, benchmark) and where to go next."""

import pandas as pd
import streamlit as st

from hipp_core import status

st.title("HiPP-Prune")
st.caption(
    "Structured pruning for vision-language models, steered by how much you value task utility, "
    "hallucination robustness and compression."
)


def _scores(m: status.ModelStatus) -> dict[str, str]:
    """Test-split quality when the plan store already has it (run `hipp eval` to fill it)."""
    metrics = status.stored_test_scores(m.path) if m.path else None
    if not metrics:
        return {"POPE balanced acc (test)": "not evaluated", "ScienceQA acc (test)": ""}
    return {
        "POPE balanced acc (test)": f"{metrics['pope_balanced_accuracy']:.3f}",
        "ScienceQA acc (test)": f"{metrics['sqa.accuracy']:.3f}",
    }


st.subheader("Embedded models")
models = status.embedded_models()
st.table(
    pd.DataFrame(
        [
            {
                "model": m.spec,
                "state": m.origin,
                "parameters": m.parameters,
                "decoder training steps": m.train_steps,
                **_scores(m),
                "path": str(m.path) if m.path else "run `hipp zoo build`",
            }
            for m in models
        ]
    ).set_index("model"),
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
st.page_link("pages/benchmark.py", label="Evaluate a model on POPE and ScienceQA", icon=":material/analytics:")
