"""HiPP-Prune dashboard entry point: `streamlit run app.py --server.address 127.0.0.1`.

Only navigation lives here; each page is a file in pages/ that draws widgets and calls `hipp_core` (the API, the job
runner, the plan store). The model chosen on Home is kept in `st.session_state` and used by every other page.
"""

import streamlit as st

st.set_page_config(page_title="HiPP-Prune", page_icon="✂️", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/explore.py", title="Explore", icon=":material/tune:"),
    st.Page("pages/pareto.py", title="Pareto", icon=":material/scatter_plot:"),
    st.Page("pages/jobs.py", title="Jobs", icon=":material/work_history:"),
    st.Page("pages/export.py", title="Export", icon=":material/download:"),
    st.Page("pages/benchmark.py", title="Benchmark", icon=":material/analytics:"),
]

st.navigation(PAGES).run()
