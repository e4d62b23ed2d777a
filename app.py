"""HiPP-Prune dashboard entry point: `streamlit run app.py --server.address 127.0.0.1`.

Only navigation lives here; each page is a file in pages/ that draws widgets and calls `hipp_core.api`.
"""

import streamlit as st

st.set_page_config(page_title="HiPP-Prune", page_icon="✂️", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/benchmark.py", title="Benchmark", icon=":material/analytics:"),
]

st.navigation(PAGES).run()
