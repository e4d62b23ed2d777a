"""Jobs: background work (evaluate, calibrate, train-policy, materialize, recover, export) with progress, log tail and
cancel. Everything shown is read from the plan store, so a reload or a restarted dashboard shows the same jobs."""

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from hipp_core import api
from pages._common import store

st.title("Jobs")
st.caption(
    "Jobs run in their own processes: closing the tab or restarting the dashboard does not stop them. "
    "Cancelling is cooperative: a job stops at its next progress report."
)

REFRESH_S = 2.0


def _params(job: api.JobRecord) -> str:
    return ", ".join(f"{k}={v}" for k, v in job.params.items() if v is not None)


def _duration(job: api.JobRecord) -> str:
    if job.started_at is None:
        return ""
    end = job.finished_at or datetime.now(UTC)
    return f"{(end - job.started_at).total_seconds():.0f} s"


def _active(job: api.JobRecord) -> None:
    with st.container(border=True):
        head, button = st.columns([5, 1])
        head.markdown(f"**{job.kind}** · `{job.job_id[:8]}` · {job.status} · {_duration(job)}")
        head.caption(_params(job))
        if job.cancel_requested:
            button.caption("cancel requested")
        elif button.button("Cancel", key=f"cancel-{job.job_id}"):
            try:
                api.cancel_job(job.job_id, store())
            except api.USER_ERRORS as exc:
                st.error(str(exc))
            else:
                st.rerun(scope="app")
        st.progress(job.progress, text=job.message or job.status)
        if job.log_tail:
            with st.expander("Log tail"):
                st.code(job.log_tail, language=None)


def _recent(jobs: list[api.JobRecord]) -> None:
    table = pd.DataFrame(
        [
            {
                "job": j.job_id[:8],
                "kind": j.kind,
                "status": j.status,
                "result": j.error if j.status == "failed" else j.message,
                "parameters": _params(j),
                "created (UTC)": f"{j.created_at:%Y-%m-%d %H:%M:%S}",
                "took": _duration(j),
            }
            for j in jobs
        ]
    )
    st.dataframe(table, width="stretch", hide_index=True)
    pick = st.selectbox("Log of job", [j.job_id for j in jobs], format_func=lambda i: f"{i[:8]} ({_kind(jobs, i)})")
    job = next(j for j in jobs if j.job_id == pick)
    if job.status == "failed":
        st.error(job.error or "failed")
    st.code(job.log_tail or "(no log lines)", language=None)


def _kind(jobs: list[api.JobRecord], job_id: str) -> str:
    return next(j.kind for j in jobs if j.job_id == job_id)


def _jobs() -> list[api.JobRecord]:
    s = store()
    s.reap_dead_jobs()
    return s.list_jobs(limit=100)


jobs = _jobs()
any_active = any(j.status in ("queued", "running") for j in jobs)


@st.fragment(run_every=REFRESH_S if any_active else None)
def _live() -> None:
    """Redrawn every few seconds while jobs run; once the last one ends the whole page reruns so others update too."""
    current = _jobs()
    active = [j for j in current if j.status in ("queued", "running")]
    if any_active and not active:
        st.rerun(scope="app")
    st.subheader(f"Running ({len(active)})")
    if not active:
        st.info("Nothing is running. Start jobs from Home, Explore, Pareto or Export.")
    for job in active:
        _active(job)
    finished = [j for j in current if j.status not in ("queued", "running")]
    st.subheader(f"Finished ({len(finished)})")
    if finished:
        _recent(finished)


_live()
