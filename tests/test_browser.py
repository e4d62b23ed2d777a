"""Real-browser checks: the dashboard served on 127.0.0.1, driven in Debian's headless Chromium.

Screenshots of every page land in test-artifacts/ for a person to look at.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (apt-get install chromium)"
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_home(tmp_path_factory) -> Path:
    """The store the dashboard server and these tests share: what a test writes there is what the browser shows."""
    return tmp_path_factory.mktemp("browser_home")


@pytest.fixture(autouse=True)
def use_server_store(server_home, monkeypatch) -> None:
    monkeypatch.setenv("HIPP_HOME", str(server_home))


@pytest.fixture(scope="module")
def server(server_home, shapes_world):
    port = _free_port()
    streamlit = shutil.which("streamlit", path=str(Path(sys.executable).parent)) or "streamlit"
    cmd = [
        streamlit,
        "run",
        str(ROOT / "app.py"),
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    env = {**os.environ, "HIPP_HOME": str(server_home)}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the dashboard did not answer on 127.0.0.1 within 90 s")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server):
    """A tab of its own (a new Streamlit session: no widget state from another test), opened at the app's root."""
    context = browser.new_context(viewport={"width": 1400, "height": 1800})  # tall: Streamlit scrolls inside the page
    tab = context.new_page()
    # Open the app at its root first: while a server has not yet run app.py (and its st.navigation), Streamlit
    # serves a deep link from the pages/ folder in its legacy mode, bypassing app.py.
    tab.goto(server)
    tab.get_by_role("heading", name="HiPP-Prune", exact=True).wait_for(timeout=60_000)
    yield tab
    context.close()


def _settle(tab) -> None:
    """Wait until Streamlit has finished the script run (its status widget is gone)."""
    tab.wait_for_timeout(500)
    tab.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=120_000)


def test_home_page_renders_model_table(page, server):
    page.goto(server)
    page.get_by_role("heading", name="HiPP-Prune", exact=True).wait_for(timeout=60_000)
    _settle(page)
    # Tables and links are lazily loaded components: wait until they are really drawn, not skeletons.
    page.locator('[data-testid="stTable"] table').wait_for(timeout=30_000)
    page.locator('[data-testid="stPageLink"]').last.wait_for(timeout=30_000)
    assert page.locator('[data-testid="stTable"]').get_by_text("embedded:qwen2_5_vl").count() == 1
    assert page.get_by_text("Traceback").count() == 0
    page.screenshot(path=str(ARTIFACTS / "home.png"), full_page=True)


def test_benchmark_page_evaluates_and_draws_chart(page, server):
    page.goto(f"{server}/benchmark")
    page.get_by_role("heading", name="Benchmark", exact=True).wait_for(timeout=60_000)
    _settle(page)
    limit = page.get_by_label("Questions per part")
    limit.fill("20")
    limit.press("Enter")
    _settle(page)
    page.get_by_role("button", name="Evaluate").click()
    page.locator(".js-plotly-plot").first.wait_for(timeout=180_000)
    _settle(page)
    assert page.get_by_text("ScienceQA accuracy").count() == 1
    assert page.get_by_text("Traceback").count() == 0
    page.screenshot(path=str(ARTIFACTS / "benchmark.png"), full_page=True)


# -- the pruning pages ----------------------------------------------------------------------------------------------
# Every Plotly chart's trace values (y and z) as the browser holds them. plotly sends numpy arrays base64-encoded
# ({dtype, bdata}), so the values are compared in that form: Array.from() of one gives [] and never changes.
CHART_DATA = (
    "() => JSON.stringify(Array.from(document.querySelectorAll('.js-plotly-plot'))"
    ".map(el => (el.data || []).map(trace => [trace.y, trace.z])))"
)


def _chart_data(tab) -> str:
    return tab.evaluate(CHART_DATA)


@pytest.fixture(scope="module")
def embedded_policy(server_home) -> str:
    """The embedded LLaVA with a quickly trained, preference-steered policy in the server's store."""
    from conftest import hipp_home, steered_policy

    with hipp_home(server_home):
        return steered_policy("embedded:llava")


def test_explore_slider_redraws_the_blueprint(page, server, embedded_policy):
    page.goto(f"{server}/explore")
    page.get_by_role("heading", name="Explore", exact=True).wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
    _settle(page)
    before = _chart_data(page)
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text="Compression").get_by_role("slider")
    thumb.focus()
    for _ in range(30):
        thumb.press("ArrowRight")
    _settle(page)
    page.wait_for_function(f"before => ({CHART_DATA})() !== before", arg=before, timeout=30_000)
    assert _chart_data(page) != before
    page.get_by_role("button", name="Evaluate this plan").wait_for(timeout=30_000)
    page.locator('[data-testid="stTable"], [data-testid="stAlert"]').last.wait_for(timeout=30_000)
    _settle(page)
    assert page.get_by_text("Traceback").count() == 0
    page.screenshot(path=str(ARTIFACTS / "explore.png"), full_page=True)


def test_evaluation_job_finishes_and_appears_on_pareto(page, server, embedded_policy):
    from plan_store import PlanStore

    page.goto(f"{server}/explore")
    page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
    _settle(page)
    store = PlanStore()
    earlier = {j.job_id for j in store.list_jobs()}
    page.get_by_role("button", name="Evaluate this plan").click()
    page.get_by_text("Started the evaluation").wait_for(timeout=60_000)
    job = next(j for j in store.list_jobs() if j.kind == "evaluate" and j.job_id not in earlier)
    page.goto(f"{server}/jobs")
    page.get_by_role("heading", name="Jobs", exact=True).wait_for(timeout=60_000)
    deadline = time.time() + 240
    while store.get_job(job.job_id).status in ("queued", "running") and time.time() < deadline:
        time.sleep(1)
    assert store.get_job(job.job_id).status == "done", store.get_job(job.job_id).error
    page.get_by_text("Finished (").wait_for(timeout=30_000)
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=30_000)
    _settle(page)
    page.screenshot(path=str(ARTIFACTS / "jobs.png"), full_page=True)

    page.goto(f"{server}/pareto")
    page.get_by_role("heading", name="Pareto", exact=True).wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    page.get_by_text("1 points, 1 non-dominated").wait_for(timeout=30_000)  # the newest measurement: the job's
    _settle(page)
    assert page.get_by_text("Traceback").count() == 0
    page.screenshot(path=str(ARTIFACTS / "pareto.png"), full_page=True)


def test_export_page_lists_a_saved_plan(page, server):
    from hipp_core import api
    from plan_store import PlanStore

    blueprint = api.plan_baseline("embedded:llava", "uniform", 0.3)
    plan_id = PlanStore().put_plan(api.plan_draft(blueprint)).plan_id
    page.goto(f"{server}/export")
    page.get_by_role("heading", name="Export", exact=True).wait_for(timeout=60_000)
    page.get_by_role("button", name="Download plan JSON").wait_for(timeout=60_000)
    _settle(page)
    assert page.get_by_role("combobox", name="Plan").input_value().startswith(plan_id)  # the newest plan is chosen
    assert page.get_by_text("Traceback").count() == 0
    page.screenshot(path=str(ARTIFACTS / "export.png"), full_page=True)
