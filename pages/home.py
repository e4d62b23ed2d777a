"""Home: choose the model every page works on, see what is ready for it, start the missing steps as jobs."""

from pathlib import Path

import pandas as pd
import streamlit as st

from hipp_core import api
from pages._common import (
    AUTO,
    DATA_KEY,
    DEVICE_KEY,
    DTYPE_KEY,
    MODEL_KEY,
    chosen_data,
    chosen_settings,
    chosen_spec,
    follow_job,
    hand_over_to_app,
    keep_in_url,
    show_flash,
    store,
    submit_job,
)

hand_over_to_app()

st.title("HiPP-Prune")
st.caption(
    "Structured pruning for vision-language models, steered by how much you value task utility, "
    "hallucination robustness and compression."
)
show_flash()

# -- model choice ---------------------------------------------------------------------------------------------------
st.subheader("Model")
spec_now = chosen_spec()
labels = [*api.EMBEDDED_CHOICES, api.LOCAL_CHOICE]
by_spec = {v: k for k, v in api.EMBEDDED_CHOICES.items()}
choice_label = st.radio(
    "Model to prune", labels, index=labels.index(by_spec.get(spec_now, api.LOCAL_CHOICE)), horizontal=True
)
if choice_label == api.LOCAL_CHOICE:
    # A stable key: with only `value=` the field was a new widget whenever the accepted path changed, and the
    # next path typed was dropped.
    st.session_state.setdefault("checkpoint_path", "" if spec_now in by_spec else spec_now)
    typed = st.text_input(
        "Checkpoint directory",
        key="checkpoint_path",
        placeholder="/models/llava-1.5-7b-hf",
        help="A Hugging Face LLaVA or Qwen2.5-VL checkpoint (config.json + *.safetensors); no code in it is run.",
    )
    candidate = typed.strip()
else:
    candidate = api.EMBEDDED_CHOICES[choice_label]

choice = None
if candidate:
    try:
        choice = api.check_model(candidate)
    except api.USER_ERRORS as exc:
        st.error(str(exc))
    else:
        st.session_state[MODEL_KEY] = choice.spec
        keep_in_url(model=choice.spec)
        st.success(f"Using **{choice.spec}**: {choice.family}, model id `{choice.model_id}`, from {choice.path}")

# -- where it runs ----------------------------------------------------------------------------------------------------
DEVICES, DTYPES = (AUTO, "cpu", "cuda"), (AUTO, "float32", "bfloat16", "float16")
settings_now = chosen_settings()
left, right = st.columns(2)
device = left.selectbox(
    "Device",
    DEVICES,
    index=DEVICES.index(settings_now["device"]) if settings_now["device"] in DEVICES else 0,
    help="auto: the GPU when torch sees one, else the CPU. Every page and background job of this session uses it.",
)
dtype = right.selectbox(
    "Number format",
    DTYPES,
    index=DTYPES.index(settings_now["dtype"]) if settings_now["dtype"] in DTYPES else 0,
    help="auto: bfloat16 on a GPU, float32 on the CPU. Results are stored per device type and number format.",
)
try:
    placement = api.placement(device, dtype)
except api.USER_ERRORS as exc:
    st.error(f"{exc} — pages keep using {settings_now['device']} · {settings_now['dtype']}.")
else:
    st.session_state[DEVICE_KEY], st.session_state[DTYPE_KEY] = device, dtype
    st.caption(f"Models run on **{placement.device}** in **{placement.dtype}**.")

# -- what calibration and rewards read --------------------------------------------------------------------------------
st.subheader("Tuning data")
embedded = (choice.spec if choice else spec_now) in api.EMBEDDED_ALIASES
data_now = chosen_data()
st.caption(
    "What calibration and the policy's rewards read, for every job of this session. "
    + (
        "The embedded models tune on ShapesWorld by default."
        if embedded
        else "A local checkpoint tunes on your own dev data, kept apart from the test files you report on; "
        "ShapesWorld only for a copy of an embedded model."
    )
)
SHAPES, OWN = "ShapesWorld", "Your own POPE / ScienceQA files"
source_kind = st.radio(
    "Calibration and rewards read",
    (SHAPES, OWN),
    index=1 if data_now and not data_now.get("shapesworld") else 0 if data_now or embedded else None,
    horizontal=True,
    key=f"data_source_{'embedded' if embedded else 'local'}",  # a local model starts with nothing picked
)
if source_kind == SHAPES and (data_now or not embedded) and data_now != {"shapesworld": True}:
    st.session_state[DATA_KEY] = data_now = {"shapesworld": True}  # asked for by name
elif source_kind == OWN:
    # The fields start from the data in use; nothing is kept until the whole combination is valid.
    FIELDS = {
        "pope": (
            "POPE dev set (--pope-dir)",
            "A folder of *_pope_<category>.json files or one question file, e.g. made by `hipp data pope-build`.",
        ),
        "pope_images": ("Its images (--pope-images)", "Default: images/ beside the questions."),
        "sqa": ("ScienceQA root (--sqa-dir)", "The folder with problems.json, pid_splits.json and images/."),
        "sqa_images": ("Its images (--sqa-images)", "Default: images/ in the ScienceQA root."),
        "split": ("ScienceQA split to tune on (--split)", "Empty: val (minival is smaller)."),
        "test_split": ("ScienceQA split you report on (--test-split)", "Empty: test."),
        "pope_labels": (
            "POPE labels (--pope-labels)",
            "Only for LLaVA's llava_pope_test.jsonl (it has no answers): the official coco_pope_*.json folder.",
        ),
    }
    for name in FIELDS:
        st.session_state.setdefault(f"data_{name}", data_now.get(name, ""))
    st.session_state.setdefault("data_test_pope", "\n".join(data_now.get("test_pope", [])))
    st.session_state.setdefault("data_test_pope_images", data_now.get("test_pope_images", ""))
    with st.form("tuning_data_form"):
        columns = st.columns(2)
        typed = {
            name: columns[i % 2].text_input(label, key=f"data_{name}", help=help_text).strip()
            for i, (name, (label, help_text)) in enumerate(FIELDS.items())
        }
        test_pope = st.text_area(
            "POPE test files you report on (--test-pope), one path per line",
            key="data_test_pope",
            help="Tuning data sharing an image with them is refused; recovery is scored on them (one file or folder).",
        )
        test_images = st.text_input(
            "Images of the POPE test files (--test-pope-images)",
            key="data_test_pope_images",
            help="Default: images/ beside them.",
        ).strip()
        use = st.form_submit_button("Use these files", type="primary", key="use_data")
    if use:
        paths = {
            name: Path(typed[name]) if typed[name] else None
            for name in ("pope", "pope_images", "pope_labels", "sqa", "sqa_images")
        }
        try:
            source = api.DataSource(
                **paths,
                split=typed["split"] or None,
                test_split=typed["test_split"] or None,
                test_pope=tuple(Path(line.strip()) for line in test_pope.splitlines() if line.strip()),
                test_pope_images=Path(test_images) if test_images else None,
            )
            if not source.real:
                raise api.HippError("give at least the POPE dev set or the ScienceQA root")
            kept = api.data_params(source)
        except api.USER_ERRORS as exc:
            st.error(f"{exc} — jobs keep using {api.describe_data(data_now, embedded)}.")
        else:
            st.session_state[DATA_KEY] = data_now = kept
if source_kind is None:
    st.warning("Choose what this local checkpoint tunes on before calibrating or training its policy.")
else:
    st.caption(f"Calibration and rewards read **{api.describe_data(data_now, embedded)}**.")

# -- api.readiness of the chosen model -----------------------------------------------------------------------------------
if choice is not None:
    ready = api.readiness(store(), choice)
    cal, pol, sto = st.columns(3)
    cal.metric("Calibration", "done" if ready.calibrated else "missing")
    if ready.policy is not None:
        curve = ready.policy.curve
        pol.metric("Policy", f"{len(curve)} iterations", help=f"policy {ready.policy.policy_id}")
    else:
        pol.metric("Policy", "not trained")
    sto.metric("Plan store", f"{ready.plans} plans")
    sto.caption(f"{ready.evaluations} evaluations of them")

    steps = [
        ("calibrate", "Calibrate", not ready.calibrated, "calibration"),
        ("train-policy", "Train policy", ready.policy is None, "policy training"),
    ]
    for col, (kind, label, missing, what) in zip(st.columns(len(steps)), steps):
        with col:
            started = follow_job(kind, what, spec=choice.spec)
        if started is None and missing and col.button(label, key=f"start-{kind}", type="primary"):
            submit_job(kind, {"spec": choice.spec}, what)  # on the device and dtype chosen above
    if ready.policy is not None and ready.policy.curve:
        with st.expander("Policy training curve"):
            curve = pd.DataFrame(ready.policy.curve)
            cols = [c for c in ("reward_mean", "front_size") if c in curve]
            if "iter" in curve and cols:
                st.line_chart(curve.set_index("iter")[cols])

# -- what ships with the tool ----------------------------------------------------------------------------------------


def _scores(m: api.status.ModelStatus) -> dict[str, str]:
    """Test-split quality when the plan store already has it (run `hipp eval` to fill it)."""
    metrics = api.status.stored_test_scores(m.path) if m.path else None
    if not metrics:
        return {"POPE balanced acc (test)": "not evaluated", "ScienceQA acc (test)": ""}
    return {
        "POPE balanced acc (test)": f"{metrics['pope_balanced_accuracy']:.3f}",
        "ScienceQA acc (test)": f"{metrics['sqa.accuracy']:.3f}",
    }


st.subheader("Embedded models")
models = api.status.embedded_models()
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
if api.status.benchmark_ready():
    st.success("ShapesPOPE (random / popular / adversarial) and ShapesSQA are built for train, calib, dev and test.")
else:
    st.info("The benchmark is built on first use (a few seconds), or now with `hipp data build`.")

with st.expander("Where things are stored"):
    for name, path in api.status.locations().items():
        st.text(f"{name}: {path}")

st.subheader("Next")
st.page_link("pages/explore.py", label="Explore preferences and their blueprints", icon=":material/tune:")
st.page_link("pages/pareto.py", label="Browse the Pareto cloud of evaluated plans", icon=":material/scatter_plot:")
st.page_link("pages/jobs.py", label="Follow background jobs", icon=":material/work_history:")
st.page_link("pages/export.py", label="Export a pruned model", icon=":material/download:")
st.page_link("pages/benchmark.py", label="Evaluate a dense model on POPE and ScienceQA", icon=":material/analytics:")
