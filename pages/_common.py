"""Drawing helpers every page shares: the chosen model (kept in `st.session_state` by Home), the plan store handle,
and how a started job is announced. Not a page itself: app.py registers only the page files."""

from __future__ import annotations

import streamlit as st

from hipp_core import api

MODEL_KEY = "model_spec"  # a plain session key, not a widget key: it survives pages that do not draw the picker


@st.cache_resource(show_spinner=False)
def _store(path: str) -> api.PlanStore:
    return api.open_store(path)


def store() -> api.PlanStore:
    """One handle per store file ($HIPP_HOME decides which); it holds no connection, so sharing it is safe."""
    return _store(str(api.default_store_path()))


@st.cache_data(show_spinner=False, ttl=30)
def _checked(spec: str) -> api.ModelChoice:
    return api.check_model(spec)


def chosen_spec() -> str:
    return st.session_state.get(MODEL_KEY, api.DEFAULT_SPEC)


def pin_threads() -> None:
    """Torch's thread count as the CLI sets it ($HIPP_THREADS, else one core left free), for this script run.

    Call it at the start of every run that may call torch, fragment reruns included: Streamlit gives each run a new OS
    thread, and OpenMP keeps its thread count per thread, so a count set once at import holds only in the first run's
    thread (docs/design.md, Speed, has what it cost)."""
    api.set_threads()


def current_model() -> api.ModelChoice | None:
    """The model chosen on Home (embedded LLaVA until then), validated; None after showing why it is unusable."""
    pin_threads()
    spec = chosen_spec()
    try:
        choice = _checked(spec)
    except api.USER_ERRORS as exc:
        st.error(f"{exc} — choose another model on Home.")
        return None
    st.caption(f"Model **{choice.spec}** ({choice.family}, id `{choice.model_id}`) · change it on Home")
    return choice


FLASH_KEY = "_flash"


def submit_job(kind: str, params: dict, what: str, rerun: bool = True) -> str | None:
    """Start a background job; a parameter error is shown in the page, not raised. On success the page reruns (so
    the button that started the job becomes its progress bar) and says so at the top (`show_flash`)."""
    try:
        job_id = api.submit_job(kind, params, store())
    except api.USER_ERRORS as exc:
        st.error(str(exc))
        return None
    st.session_state.setdefault(FLASH_KEY, []).append(
        f"Started {what} (job `{job_id[:8]}`); follow it on the Jobs page."
    )
    if rerun:
        st.rerun()
    return job_id


def show_flash() -> None:
    """Messages from the previous run (jobs just started), shown once."""
    for message in st.session_state.pop(FLASH_KEY, []):
        st.success(message)
