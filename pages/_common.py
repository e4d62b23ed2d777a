"""Drawing helpers every page shares: the chosen model (kept in `st.session_state` by Home), the plan store handle,
and how a started job is announced. Not a page itself: app.py registers only the page files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from hipp_core import api


def hand_over_to_app() -> None:
    """Run this page inside app.py's navigation, even when a fresh server was opened at this page's own URL.

    A server whose first request is a deep link (`/explore`) has not run app.py's `st.navigation` yet, so Streamlit
    serves the page in its legacy multipage mode (raw file names in the sidebar, narrow layout, app.py skipped). The
    mode is one process-wide flag that `st.navigation` clears. Here the page clears it and runs app.py in its place,
    in the same script run: app.py's navigation replaces the legacy one and opens the page the URL names (a page is
    known by its URL path in both modes) with the query string intact, and this outer run then stops. A rerun would
    do the same but lose the widget event that started this run (AppTest starts every run in the legacy mode).
    Every page calls this first; otherwise it costs one attribute read."""
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        exec(compile(APP.read_text(), str(APP), "exec"), {"__name__": "__main__", "__file__": str(APP)})  # noqa: S102
        st.stop()


APP = Path(__file__).resolve().parents[1] / "app.py"


MODEL_KEY = "model_spec"  # a plain session key, not a widget key: it survives pages that do not draw the picker
# Device and dtype chosen on Home (plain session keys too), used by every model call and job of the session.
DEVICE_KEY, DTYPE_KEY = "model_device", "model_dtype"
# The tuning data chosen on Home (`api.data_params` of a checked `api.DataSource`), read by calibration and rewards.
DATA_KEY = "tuning_data"
AUTO = "auto"


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
    """The model of this session; a new session (a reload, a shared link) starts from the URL's `model`."""
    if MODEL_KEY not in st.session_state and url_value("model"):
        return url_value("model")
    return st.session_state.get(MODEL_KEY, api.DEFAULT_SPEC)


# -- URL state ------------------------------------------------------------------------------------------------------
# A reload or a shared link is a new session: what a page shows lives in its query parameters as well. Streamlit
# clears them when the sidebar switches pages, so every page writes its own back on each run.
def url_value(name: str) -> str | None:
    return st.query_params.get(name)


def keep_in_url(**values: str | None) -> None:
    """Set (or, for None, remove) query parameters; unchanged ones are not sent again."""
    for name, value in values.items():
        if value is None:
            if name in st.query_params:
                del st.query_params[name]
        elif st.query_params.get(name) != value:
            st.query_params[name] = value


def restore(key: str, url_name: str, parse, fallback) -> None:
    """Give widget `key` its starting value before it is drawn: what this session last had (kept across pages,
    whose widgets Streamlit forgets), else the URL's `url_name` parsed by `parse` (None: malformed), else `fallback`."""
    if key in st.session_state:
        return
    kept = st.session_state.get(KEPT_KEY, {})
    if key in kept:
        st.session_state[key] = kept[key]
        return
    parsed = parse(url_value(url_name))
    st.session_state[key] = fallback if parsed is None else parsed


def remember(*keys: str) -> None:
    """Keep widget values for `restore` when the user comes back to the page in this session."""
    kept = st.session_state.setdefault(KEPT_KEY, {})
    for key in keys:
        if key in st.session_state:
            kept[key] = st.session_state[key]


KEPT_KEY = "_kept_widgets"


def chosen_settings() -> dict[str, str]:
    """The device and dtype chosen on Home (auto until then), as the API and the jobs take them."""
    return {"device": st.session_state.get(DEVICE_KEY, AUTO), "dtype": st.session_state.get(DTYPE_KEY, AUTO)}


def chosen_data() -> dict:
    """The tuning data chosen on Home, as the jobs take it: {} until then (ShapesWorld for an embedded model, a
    refusal for a local checkpoint), {"shapesworld": True}, or the user's own files."""
    return dict(st.session_state.get(DATA_KEY, {}))


def instruction_file(key: str) -> str | None:
    """The LoRA recovery's instruction file, as the recover job takes it (None: ShapesWorld train). Export and Pareto
    both start recoveries, and a real checkpoint needs its own instructions on either."""
    path = st.text_input(
        "Instruction file",
        key=key,
        placeholder="empty: ShapesWorld train (the embedded models' own data)",
        help="A LLaVA-format JSON file the LoRA trains on: what a real checkpoint needs, since ShapesWorld's toy "
        "questions would teach it shapes. Images are read relative to the file.",
    )
    return path.strip() or None


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
    keep_in_url(model=choice.spec)
    settings = chosen_settings()
    data = api.describe_data(chosen_data(), choice.spec in api.EMBEDDED_ALIASES)
    st.caption(
        f"Model **{choice.spec}** ({choice.family}, id `{choice.model_id}`) on {settings['device']} · "
        f"{settings['dtype']} · tuned on {data} · change them on Home"
    )
    return choice


FLASH_KEY = "_flash"


def submit_job(kind: str, params: dict, what: str, rerun: bool = True, flash: bool = True) -> str | None:
    """Start a background job on the device and dtype chosen on Home (and, for the kinds that read data, on the
    tuning data chosen there); a parameter error is shown in the page, not raised. On success the page reruns (so the button that started the job becomes its progress bar) and says so
    at the top (`show_flash`); a page that draws the job's bar where its button was passes `rerun=False,
    flash=False`."""
    try:
        data = {"data": chosen_data()} if kind in api.JOB_DATA_KINDS else {}
        job_id = api.submit_job(kind, {**chosen_settings(), **data, **params}, store())
    except api.USER_ERRORS as exc:
        st.error(str(exc))
        return None
    if flash:
        st.session_state.setdefault(FLASH_KEY, []).append(
            f"Started {what} (job `{job_id[:8]}`); follow it on the Jobs page."
        )
    if rerun:
        st.rerun()
    return job_id


# -- live job progress ----------------------------------------------------------------------------------------------
REFRESH_S = 1.0  # how often a running job's bar is redrawn from the store


def follow_job(kind: str, what: str, **params) -> api.JobRecord | None:
    """The newest job of `kind` whose parameters include `params`. While it runs, its live bar is drawn here (overall
    percentage, phase and category, time left; redrawn every `REFRESH_S`) and the page reruns once it ends; after
    it failed, its error. Returns it while it runs, so the page shows no second start button."""
    job = _newest_job(kind, params)
    if job is None:
        return None
    if job.status in ("queued", "running"):
        _live_bar(job.job_id, what)
        return job
    if job.status == "failed" and job.finished_at and (datetime.now(UTC) - job.finished_at).total_seconds() < 900:
        st.error(f"The last {what} failed: {job.error}. The Jobs page has its log.")
    return None


# Read once per store version: a slider move that redraws a page with job buttons (a new plan id each time) reads
# nothing unless a job has written. A resource, not data: job records are frozen, and copying them costs.
@st.cache_resource(show_spinner=False, max_entries=4)
def _recent_jobs(store_path: str, version: tuple[int, ...]) -> list[api.JobRecord]:
    return store().list_jobs(limit=500)


def _newest_job(kind: str, params: dict) -> api.JobRecord | None:
    """What `api.find_jobs(..., active_only=False)` finds first, from the cached job list."""
    return next(
        (
            job
            for job in _recent_jobs(str(store().path), store().version())
            if job.kind == kind and all(job.params.get(k) == v for k, v in params.items())
        ),
        None,
    )


@st.fragment(run_every=REFRESH_S)
def _live_bar(job_id: str, what: str) -> None:
    job = store().get_job(job_id)
    if job is None or job.status not in ("queued", "running"):
        st.rerun(scope="app")  # finished: the page shows its result (and its button again)
    progress = api.job_progress(job)
    st.progress(progress.fraction, text=f"{what} (job `{job_id[:8]}`): {progress.text}")


def rerun_fragment() -> None:
    """Rerun only the fragment this is called from (the rest of the page stays, scroll position included); a run of
    the whole script (AppTest, a page's first run) reruns it all."""
    try:
        st.rerun(scope="fragment")
    except st.errors.StreamlitAPIException:
        st.rerun()


def show_flash() -> None:
    """Messages from the previous run (jobs just started), shown once."""
    for message in st.session_state.pop(FLASH_KEY, []):
        st.success(message)


if __name__ == "__main__":  # opened as a page by the legacy mode (its URL is /common): the app's navigation instead
    hand_over_to_app()
