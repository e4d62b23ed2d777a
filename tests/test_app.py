"""Page logic through Streamlit's AppTest (no browser): what each page shows and how it reports bad input."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

TIMEOUT = 120
ROOT = Path(__file__).resolve().parents[1]


def test_home_lists_both_embedded_models_and_links_on():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.title[0].value == "HiPP-Prune"
    table = at.table[0].value
    assert list(table.index) == ["embedded:llava", "embedded:qwen2_5_vl"]
    assert set(table["state"]) <= {"shipped", "retrained", "missing"}


def test_benchmark_bad_local_path_shows_error_not_traceback(tmp_path):
    at = AppTest.from_file(str(ROOT / "pages" / "benchmark.py"), default_timeout=TIMEOUT).run()
    at.selectbox[0].select("Local checkpoint directory").run()
    at.text_input[0].input(str(tmp_path / "nowhere")).run()
    at.button[0].click().run()
    assert not at.exception
    assert len(at.error) == 1 and "does not exist" in at.error[0].value


def test_benchmark_evaluates_a_local_checkpoint(tiny_qwen):
    at = AppTest.from_file(str(ROOT / "pages" / "benchmark.py"), default_timeout=TIMEOUT).run()
    at.selectbox[0].select("Local checkpoint directory").run()
    at.text_input[0].input(str(tiny_qwen)).run()
    at.selectbox[1].select("dev").run()
    at.number_input[0].set_value(10).run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert "on dev" in at.subheader[0].value
    frame = at.dataframe[0].value
    assert list(frame.index) == ["random", "popular", "adversarial"]
    assert ((frame["balanced_accuracy"] >= 0) & (frame["balanced_accuracy"] <= 1)).all()
    assert len(at.metric) == 4
