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
def server():
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
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
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
def page(server):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield tab
        browser.close()


def _settle(tab) -> None:
    """Wait until Streamlit has finished the script run (its status widget is gone)."""
    tab.wait_for_timeout(500)
    tab.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=120_000)


def test_home_page_renders_model_table(page, server):
    page.goto(server)
    page.get_by_role("heading", name="HiPP-Prune").wait_for(timeout=60_000)
    _settle(page)
    # Tables and links are lazily loaded components: wait until they are really drawn, not skeletons.
    page.locator('[data-testid="stTable"] table').wait_for(timeout=30_000)
    page.locator('[data-testid="stPageLink"]').wait_for(timeout=30_000)
    assert page.locator('[data-testid="stTable"]').get_by_text("embedded:qwen2_5_vl").count() == 1
    assert page.get_by_text("Traceback").count() == 0
    page.screenshot(path=str(ARTIFACTS / "home.png"), full_page=True)


def test_benchmark_page_evaluates_and_draws_chart(page, server):
    page.goto(f"{server}/benchmark")
    page.get_by_role("heading", name="Benchmark").wait_for(timeout=60_000)
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
