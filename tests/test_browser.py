"""Real-browser checks: the dashboard served on 127.0.0.1, driven in Debian's headless Chromium.

Deep links come first and on fresh servers: a server nobody has opened yet is where Streamlit's legacy multipage mode
shows. Screenshots of every page land in test-artifacts/ for a person to look at.
"""

import csv
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
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
PAGES = {"": "HiPP-Prune", "explore": "Explore", "pareto": "Pareto", "jobs": "Jobs", "export": "Export"}
PAGES |= {"benchmark": "Benchmark"}
NAVIGATION = ["Home", "Explore", "Pareto", "Jobs", "Export", "Benchmark"]

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


def _start_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    streamlit = shutil.which("streamlit", path=str(Path(sys.executable).parent)) or "streamlit"
    cmd = [streamlit, "run", str(ROOT / "app.py"), "--server.address", "127.0.0.1", "--server.port", str(port)]
    cmd += ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
    env = {**os.environ, "HIPP_HOME": str(home)}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail("the dashboard did not answer on 127.0.0.1 within 90 s")


def _stop(proc: subprocess.Popen) -> None:
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


@pytest.fixture(scope="module")
def server(server_home, shapes_world):
    proc, url = _start_server(server_home)
    yield url
    _stop(proc)


@pytest.fixture
def page(browser, server):
    """A tab of its own (a new Streamlit session: no widget state from another test). Tests open their page by its
    deep link, as a shared link does: the pages hand over to app.py's navigation even on a fresh server."""
    context = browser.new_context(viewport={"width": 1400, "height": 1800})  # tall: Streamlit scrolls inside the page
    tab = context.new_page()
    yield tab
    context.close()


def _settle(tab) -> None:
    """Wait until Streamlit has finished the script run (its status widget is gone)."""
    tab.wait_for_timeout(500)
    tab.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=120_000)


def _open(tab, url: str, title: str) -> None:
    tab.goto(url)
    tab.get_by_role("heading", name=title, exact=True).wait_for(timeout=120_000)
    _settle(tab)


def _navigation(tab) -> list[str]:
    links = tab.locator('[data-testid="stSidebarNav"] a')
    links.first.wait_for(timeout=30_000)
    return [text.split("\n")[-1].strip() for text in links.all_inner_texts()]


# -- 1. deep links and URL state ------------------------------------------------------------------------------------
# A fresh server costs ~8 s (its first run imports the whole API), so two of them prove the hand-over: a page with a
# query string and the helper module legacy mode also serves; test_architecture checks every page hands over first.
@pytest.mark.parametrize("path", ["explore?w=0.2,0.2,0.6", "common"])
def test_a_deep_link_on_a_fresh_server_shows_the_apps_navigation_and_the_page(browser, shapes_world, tmp_path, path):
    proc, url = _start_server(tmp_path)
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        name = path.split("?")[0]
        _open(tab, f"{url}/{path}", PAGES.get(name, "HiPP-Prune"))  # `common` is no page: Home opens
        assert _navigation(tab) == NAVIGATION, "the app's own navigation, not the pages/ file names"
        assert tab.get_by_text("Traceback").count() == 0
        if "?" in path:
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(tab.url).query))
            weights = [float(w) for w in query["w"].split(",")]
            assert weights == [0.2, 0.2, 0.6], "the query string survives the hand-over"
        layout = tab.evaluate(
            "() => getComputedStyle(document.querySelector('[data-testid=\"stMainBlockContainer\"]')).maxWidth"
        )
        assert layout in ("none", "initial") or float(layout.rstrip("px")) > 900, f"wide layout, got {layout}"
    finally:
        tab.close()
        _stop(proc)


def test_home_page_renders_model_table(page, server):
    _open(page, server, "HiPP-Prune")
    # Tables and links are lazily loaded components: wait until they are really drawn, not skeletons.
    page.locator('[data-testid="stTable"] table').wait_for(timeout=30_000)
    page.locator('[data-testid="stPageLink"]').last.wait_for(timeout=30_000)
    assert page.locator('[data-testid="stTable"]').get_by_text("embedded:qwen2_5_vl").count() == 1
    assert "model=embedded%3Allava" in page.url
    assert page.get_by_text("Traceback").count() == 0
    page.screenshot(path=str(ARTIFACTS / "home.png"), full_page=True)


def test_home_refuses_junk_weights_and_takes_a_second_path(page, server, tmp_path_factory):
    from conftest import save_tiny

    good = save_tiny("llava", tmp_path_factory.mktemp("ckpt") / "llava-tiny")
    junk = Path(shutil.copytree(good, tmp_path_factory.mktemp("ckpt") / "junk"))
    for shard in junk.glob("*.safetensors*"):
        shard.unlink()
    (junk / "model.safetensors").write_bytes(b"junk" * 300)
    _open(page, server, "HiPP-Prune")
    page.get_by_text("Local checkpoint directory").click()
    field = page.get_by_role("textbox", name="Checkpoint directory")
    field.wait_for(timeout=30_000)
    field.fill(str(junk))
    field.press("Enter")
    page.get_by_text("is not a valid safetensors file").wait_for(timeout=60_000)
    assert page.get_by_text(re.compile(r"^Using ")).count() == 0, "refused before it is used"
    field.fill(str(good))
    field.press("Enter")
    page.get_by_text(re.compile(r"^Using .*llava-tiny")).wait_for(timeout=60_000)
    _settle(page)
    assert field.input_value() == str(good), "the second path typed is kept"
    page.get_by_text("Embedded LLaVA").click()  # back to the embedded model for the tests below
    _settle(page)


# -- the pruning pages ----------------------------------------------------------------------------------------------
# Every Plotly chart's trace values (y and z) as the browser holds them. plotly sends numpy arrays base64-encoded
# ({dtype, bdata}), so the values are compared in that form: Array.from() of one gives [] and never changes.
CHART_DATA = (
    "() => JSON.stringify(Array.from(document.querySelectorAll('.js-plotly-plot'))"
    ".map(el => (el.data || []).map(trace => [trace.y, trace.z])))"
)
SHOWN_PLAN = """() => {
  const c = Array.from(document.querySelectorAll('[data-testid="stCaptionContainer"]'))
    .find(e => e.innerText.startsWith('Plan '));
  return c ? c.innerText.split(' ')[1] : '';
}"""


def _chart_data(tab) -> str:
    return tab.evaluate(CHART_DATA)


@pytest.fixture(scope="module")
def embedded_policy(server_home) -> str:
    """The embedded LLaVA with a quickly trained, preference-steered policy in the server's store."""
    from conftest import hipp_home, steered_policy

    with hipp_home(server_home):
        return steered_policy("embedded:llava")


def test_explore_slider_redraws_the_blueprint_and_the_url_follows(page, server, embedded_policy):
    _open(page, f"{server}/explore", "Explore")
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
    page.wait_for_function("() => location.search.includes('w=')", timeout=30_000)
    page.get_by_role("button", name="Evaluate this plan").wait_for(timeout=30_000)
    page.locator('[data-testid="stTable"], [data-testid="stAlert"]').last.wait_for(timeout=30_000)
    _settle(page)
    assert page.get_by_text("Traceback").count() == 0
    page.get_by_text("Compare with neighbouring preferences").click()  # what the preference changes, on demand
    summary = page.get_by_text(re.compile(r"neighbouring preferences? \(each weight ±")).first
    summary.wait_for(timeout=60_000)
    _settle(page)
    if "change the plan" in summary.inner_text():
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=30_000)
    page.wait_for_function("() => location.search.includes('neighbours=1')", timeout=30_000)
    assert page.get_by_text("Traceback").count() == 0
    page.screenshot(path=str(ARTIFACTS / "explore.png"), full_page=True)


def test_reload_and_shared_link_show_the_same_explore_view(browser, page, server, embedded_policy):
    _open(page, f"{server}/explore?w=0.10,0.10,0.80&sparsity=0.45", "Explore")
    page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
    _settle(page)
    plan = page.evaluate(SHOWN_PLAN)
    assert plan and page.get_by_role("checkbox", name="Match a sparsity").is_checked()
    page.reload()
    page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
    _settle(page)
    assert page.evaluate(SHOWN_PLAN) == plan, "a reload shows the same plan"
    other = browser.new_page(viewport={"width": 1400, "height": 1000})  # a new tab: a shared link, a new session
    try:
        _open(other, page.url, "Explore")
        other.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
        _settle(other)
        assert other.evaluate(SHOWN_PLAN) == plan
    finally:
        other.close()


SCROLLED = """() => {
  const b = Array.from(document.querySelectorAll('button')).find(e => e.innerText.includes('Evaluate this plan'))
    || document.querySelector('[data-testid="stProgress"]');
  let el = b; while (el && !(el.scrollHeight > el.clientHeight + 10 && getComputedStyle(el).overflowY !== 'visible'))
    el = el.parentElement;
  return el ? el.scrollTop : window.scrollY;
}"""


def test_evaluate_keeps_the_scroll_position_and_shows_live_progress(browser, server, embedded_policy):
    from plan_store import PlanStore

    tab = browser.new_page(viewport={"width": 1400, "height": 700})  # short: Explore has to scroll
    try:
        _open(tab, f"{server}/explore?w=0.30,0.30,0.40&sparsity=0.35", "Explore")
        tab.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
        _settle(tab)
        button = tab.get_by_role("button", name="Evaluate this plan")
        button.scroll_into_view_if_needed()
        tab.wait_for_timeout(500)
        before = tab.evaluate(SCROLLED)
        assert before > 100, "the button is below the fold"
        button.click()
        bar = tab.locator('[data-testid="stProgress"]').filter(has_text="evaluating this plan")
        bar.wait_for(timeout=60_000)
        texts = {bar.inner_text()}
        assert abs(tab.evaluate(SCROLLED) - before) < 60, "the page stayed where it was"
        store = PlanStore()
        job = next(j for j in store.list_jobs() if j.kind == "evaluate" and j.params.get("plan_id"))  # the newest
        deadline = time.time() + 240
        while store.get_job(job.job_id).status in ("queued", "running") and time.time() < deadline:
            if bar.count():
                texts.add(bar.first.inner_text())
            time.sleep(0.2)  # the bar is redrawn every second; an evaluation on the test data lasts a few
        assert store.get_job(job.job_id).status == "done", store.get_job(job.job_id).error
        assert any(re.search(r"\d+% · POPE (random|popular|adversarial)|ScienceQA", t) for t in texts), texts
        assert len(texts) >= 2, f"the bar moved: {texts}"
        tab.get_by_role("button", name="Evaluate this plan").wait_for(timeout=30_000)  # bar gone, button back
    finally:
        tab.close()


def test_evaluation_job_finishes_and_appears_on_pareto(page, server, embedded_policy):
    from plan_store import PlanStore

    _open(page, f"{server}/explore", "Explore")
    page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
    _settle(page)
    store = PlanStore()
    earlier = {j.job_id for j in store.list_jobs()}
    page.get_by_role("button", name="Evaluate this plan").click()
    page.locator('[data-testid="stProgress"]').first.wait_for(timeout=60_000)
    job = next(j for j in store.list_jobs() if j.kind == "evaluate" and j.job_id not in earlier)
    _open(page, f"{server}/jobs", "Jobs")
    deadline = time.time() + 240
    while store.get_job(job.job_id).status in ("queued", "running") and time.time() < deadline:
        time.sleep(1)
    assert store.get_job(job.job_id).status == "done", store.get_job(job.job_id).error
    page.get_by_text("Finished (").wait_for(timeout=30_000)
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=30_000)
    _settle(page)
    page.screenshot(path=str(ARTIFACTS / "jobs.png"), full_page=True)

    _open(page, f"{server}/pareto", "Pareto")
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"\d+ points, \d+ non-dominated")).wait_for(timeout=30_000)
    _settle(page)
    assert page.get_by_text("Traceback").count() == 0
    page.screenshot(path=str(ARTIFACTS / "pareto.png"), full_page=True)


# -- Pareto: values, selection, brushing, table ---------------------------------------------------------------------
POINT_XY = """([chart, trace, index]) => {
  const gd = document.querySelectorAll('.js-plotly-plot')[chart];
  const t = gd._fullData.find(d => d.name && d.name.includes(trace)) || gd._fullData[trace];
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
  const x = Array.from(t.x)[index], y = Array.from(t.y)[index];
  return [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(y), t.customdata ? t.customdata[index] : null];
}"""
AXIS_X = """([chart, axis, low, high]) => {
  const gd = document.querySelectorAll('.js-plotly-plot')[chart];
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
  return [box.left + xa._offset + xa.l2p(axis), box.top + ya._offset + ya.l2p(high), box.top + ya._offset + ya.l2p(low)];
}"""


@pytest.fixture(scope="module")
def made_up_cloud(embedded_policy, server_home) -> list[str]:
    """Four uniform plans with made-up scores (plan i better on POPE, worse on ScienceQA) on one measurement."""
    from conftest import hipp_home

    from hipp_core import api
    from hipp_core.ui_state import check_model
    from plan_store import EvalKey, PlanStore

    ids = []
    with hipp_home(server_home):
        store, model_id = PlanStore(), check_model(embedded_policy).model_id
        for i in range(4):
            blueprint = api.plan_baseline(embedded_policy, "uniform", 0.1 + 0.2 * i, store=store)
            plan = store.put_plan(api.plan_draft(blueprint))
            metrics = {"sqa.accuracy": 0.9 - 0.1 * i, "pope_balanced_accuracy": 0.5 + 0.1 * i}
            metrics |= {f"pope.{c}.balanced_accuracy": 0.5 + 0.1 * i for c in ("random", "popular", "adversarial")}
            metrics |= {f"pope.{c}.yes_ratio": 0.5 for c in ("random", "popular", "adversarial")}
            key = EvalKey(model_id, plan.plan_id, "browser-bench", "dev", "masked", "logits", 9)
            store.put_evaluation(key, metrics, 9, 1)
            ids.append(plan.plan_id)
    return ids


def _pareto(page, server, query: str = "") -> None:
    _open(page, f"{server}/pareto?m=dev+·+first+9+·+logits+·+browser-bench{query}", "Pareto")
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    page.get_by_text("4 points, ").wait_for(timeout=30_000)
    _settle(page)


def test_pareto_hover_shows_values_and_a_click_selects_the_plan(page, server, made_up_cloud):
    _pareto(page, server, "&x=sparsity&y=sqa.accuracy")
    x, y, plan_id = page.evaluate(POINT_XY, [0, "non-dominated)", 0])
    page.mouse.move(x, y)
    hover = page.locator(".hoverlayer .hovertext")
    hover.first.wait_for(timeout=10_000)
    text = hover.first.text_content()
    assert "ScienceQA" in text and "POPE mean" in text and "sparsity" in text, text
    assert re.search(r"uniform|baseline/\w+ · \d+\.\d%", text), "a readable plan label, not a bare id"
    page.mouse.click(x, y)
    page.get_by_text("Comparing 1 plan").wait_for(timeout=60_000)
    _settle(page)
    assert f"plans={plan_id}" in page.url
    rows = page.locator('[data-testid="stDataFrame"]').last
    rows.scroll_into_view_if_needed()  # the grid draws only the cells in view, and it may sit below the window
    rows.get_by_text(plan_id).first.wait_for(state="attached", timeout=30_000)  # the compare table shows the plan
    page.screenshot(path=str(ARTIFACTS / "pareto-selected.png"), full_page=True)


def test_pareto_brushing_an_axis_selects_the_plans_crossing_it(page, server, made_up_cloud):
    _pareto(page, server)
    page.get_by_role("tab", name="Parallel coordinates").click()
    page.wait_for_timeout(1000)
    axis = 3  # sparsity: plans at 0.1, 0.3, 0.5, 0.7; brush 0.25 .. 0.55
    x, top, bottom = page.evaluate(AXIS_X, [1, axis, 0.25, 0.55])
    page.mouse.move(x - 25, top)
    page.mouse.down()
    page.mouse.move(x + 25, bottom, steps=8)
    page.mouse.up()
    page.get_by_text("Comparing 2 plans").wait_for(timeout=60_000)
    _settle(page)
    chosen = re.search(r"plans=([0-9a-f,%C]+)", page.url).group(1).replace("%2C", ",").split(",")
    assert sorted(chosen) == sorted(made_up_cloud[1:3])
    page.screenshot(path=str(ARTIFACTS / "pareto-parallel.png"), full_page=True)


def test_pareto_table_of_all_plans_downloads_as_csv(page, server, made_up_cloud):
    _pareto(page, server)
    page.get_by_role("tab", name=re.compile(r"All plans")).click()
    with page.expect_download() as download:
        page.get_by_role("button", name=re.compile(r"Download these 4 rows as CSV")).click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert sorted(r["id"] for r in rows) == sorted(made_up_cloud)
    assert {"plan", "ScienceQA", "POPE random", "yes-ratio", "non-dominated"} <= set(rows[0])


# -- Jobs, Export, Benchmark -----------------------------------------------------------------------------------------
def test_jobs_page_shows_the_end_of_a_failed_jobs_traceback(page, server):
    from hipp_core import jobs
    from plan_store import PlanStore

    store = PlanStore()
    job_id = store.create_job("evaluate", {"spec": "/models/broken"})
    store.start_job(job_id, os.getpid())
    log = jobs.log_path(store, job_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("failed with a traceback:\nTraceback (most recent call last):\nSafetensorError: header too large\n")
    store.finish_job(job_id, "failed", "SafetensorError: header too large")
    _open(page, f"{server}/jobs?job={job_id}", "Jobs")
    page.locator('[data-testid="stCode"]').filter(has_text="Traceback (most recent call last)").wait_for(timeout=30_000)
    assert page.locator('[data-testid="stCode"]').filter(has_text="SafetensorError: header too large").count() == 1


def _selected(tab, label: str) -> str:
    """What a selectbox shows as chosen."""
    box = tab.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    return box.evaluate("e => e.innerText + ' ' + Array.from(e.querySelectorAll('input')).map(i => i.value).join(' ')")


def test_export_page_keeps_the_plan_of_its_link(page, server, made_up_cloud):
    older = made_up_cloud[0]
    _open(page, f"{server}/export?plan={older}", "Export")
    page.get_by_role("button", name="Download plan JSON").wait_for(timeout=60_000)
    _settle(page)
    assert older[:6] in _selected(page, "Plan")
    page.reload()
    page.get_by_role("button", name="Download plan JSON").wait_for(timeout=60_000)
    _settle(page)
    assert older[:6] in _selected(page, "Plan"), "a reload keeps the plan"
    assert page.get_by_text("Traceback").count() == 0
    page.screenshot(path=str(ARTIFACTS / "export.png"), full_page=True)


def test_benchmark_page_evaluates_and_draws_chart(page, server):
    _open(page, f"{server}/benchmark", "Benchmark")
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
