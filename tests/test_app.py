"""Page logic through Streamlit's AppTest (no browser): what each page shows, how it reports bad input, and that
its widgets drive what it draws (sliders change the blueprint, a selection fills the comparison)."""

import json
import os
from pathlib import Path

import pytest
from conftest import copy_home, hipp_home, steered_policy
from streamlit.testing.v1 import AppTest

from hipp_core import api, job_runner, jobs
from hipp_core.ui_state import check_model
from plan_store import EvalKey, PlanStore

TIMEOUT = 120
ROOT = Path(__file__).resolve().parents[1]


def test_home_lists_both_embedded_models_and_links_on():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.title[0].value == "HiPP-Prune"
    table = at.table[0].value
    assert list(table.index) == ["embedded:llava", "embedded:qwen2_5_vl"]
    assert list(table["state"]) == ["shipped", "shipped"]  # the session's cache holds no retrained zoo


def test_benchmark_bad_local_path_shows_error_not_traceback(tmp_path):
    at = AppTest.from_file(str(ROOT / "pages" / "benchmark.py"), default_timeout=TIMEOUT).run()
    at.selectbox[0].select("Local checkpoint directory").run()
    at.text_input[0].input(str(tmp_path / "nowhere")).run()
    at.button[0].click().run()
    assert not at.exception
    assert len(at.error) == 1 and "does not exist" in at.error[0].value


def test_benchmark_evaluates_a_local_checkpoint(tiny_qwen, tmp_path):
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
    fresh = api.evaluate_model(str(tiny_qwen), "all", "dev", 10, store=PlanStore(tmp_path / "fresh.duckdb"))
    assert not fresh.cached  # recomputed in this test, not read back from what the page stored
    for column in ("balanced_accuracy", "yes_ratio", "accuracy"):
        expected = [getattr(fresh.pope[c], column) for c in frame.index]
        assert frame[column].tolist() == pytest.approx(expected, abs=5e-4), column
    assert at.metric[0].value == f"{fresh.sqa.accuracy:.3f}"
    assert len(at.metric) == 4


# -- shared set-up for the pruning pages ----------------------------------------------------------------------------


def page(name: str, spec: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=TIMEOUT)
    if spec is not None:
        at.session_state["model_spec"] = spec
    return at.run()


def shown_plan(at: AppTest) -> str:
    """The plan id Explore shows in its caption."""
    return next(c.value for c in at.caption if c.value.startswith("Plan `")).split("`")[1]


def chart_specs(at: AppTest) -> list[str]:
    return [chart.proto.spec for chart in at.get("plotly_chart")]


@pytest.fixture(scope="module")
def trained_home(tiny_llava, tmp_path_factory) -> Path:
    """A store holding a quickly trained, preference-steered policy for the tiny random LLaVA (see
    `conftest.steered_policy`), trained once for the module."""
    with hipp_home(tmp_path_factory.mktemp("trained")) as home:
        steered_policy(str(tiny_llava))
    return home


@pytest.fixture
def trained(trained_home, tiny_llava) -> str:
    """The tiny LLaVA's spec, with this test's own store starting from `trained_home`."""
    copy_home(trained_home)
    return str(tiny_llava)


@pytest.fixture
def no_spawn(monkeypatch) -> list[str]:
    """Record job submissions without starting workers (the worker itself is tested in test_jobs.py)."""
    started: list[str] = []
    monkeypatch.setattr(jobs, "_spawn", lambda job_id, store: started.append(job_id) or os.getpid())
    return started


def evaluated_plans(spec: str, n: int = 4) -> list[str]:
    """`n` baseline plans of the model at different sparsities, with made-up dev metrics (plan i better on POPE,
    worse on ScienceQA), so the Pareto cloud has a known front: every plan trades one metric against the other."""
    store, model_id = PlanStore(), check_model(spec).model_id
    ids = []
    for i in range(n):
        bp = api.plan_baseline(spec, "uniform", 0.1 + 0.15 * i, store=store)
        plan = store.put_plan(api.plan_draft(bp))
        metrics = {"sqa.accuracy": 0.9 - 0.1 * i, "pope_balanced_accuracy": 0.5 + 0.1 * i, "questions": 8}
        metrics |= {f"pope.{c}.yes_ratio": 0.5 for c in ("random", "popular", "adversarial")}
        store.put_evaluation(
            EvalKey(model_id, plan.plan_id, "all:test-bench", "dev", "masked", "logits", 4), metrics, 8, 1
        )
        ids.append(plan.plan_id)
    return ids


# -- Home -----------------------------------------------------------------------------------------------------------
def test_home_bad_local_path_shows_error_and_keeps_the_model(tmp_path):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.radio[0].set_value("Local checkpoint directory").run()
    at.text_input[0].input(str(tmp_path / "nowhere")).run()
    assert not at.exception
    assert len(at.error) == 1 and "does not exist" in at.error[0].value
    assert at.session_state["model_spec"] == "embedded:llava"  # the last valid choice stays in use
    (tmp_path / "notes.txt").write_text("x")
    at.text_input[0].input(str(tmp_path)).run()
    assert "no config.json" in at.error[0].value


def test_home_local_model_is_used_by_other_pages_and_starts_missing_steps(tiny_qwen, no_spawn):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.radio[0].set_value("Local checkpoint directory").run()
    at.text_input[0].input(str(tiny_qwen)).run()
    assert not at.exception and not at.error
    assert at.session_state["model_spec"] == str(tiny_qwen)
    assert [m.value for m in at.metric][:2] == ["missing", "not trained"]
    at.radio(key="data_source_local").set_value("ShapesWorld").run()  # a tiny random model: ShapesWorld by name
    at.button(key="start-calibrate").click().run()
    assert not at.error and len(no_spawn) == 1
    job = PlanStore().get_job(no_spawn[0])
    assert (job.kind, job.params["spec"], job.status) == ("calibrate", str(tiny_qwen), "running")
    assert job.params["data"] == {"shapesworld": True}
    assert at.get("progress"), "the running calibration replaces its button"
    at.switch_page("pages/pareto.py").run()
    assert not at.exception
    assert str(tiny_qwen) in at.caption[1].value
    PlanStore().finish_job(job.job_id, "cancelled")


def test_home_refuses_junk_weights_before_using_and_takes_a_second_path(tiny_llava, tiny_qwen, tmp_path):
    import shutil

    junk = Path(shutil.copytree(tiny_llava, tmp_path / "junk"))
    for shard in junk.glob("*.safetensors*"):
        shard.unlink()
    (junk / "model.safetensors").write_bytes(b"not a tensor file" * 64)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.radio[0].set_value("Local checkpoint directory").run()
    at.text_input(key="checkpoint_path").input(str(junk)).run()
    assert not at.exception
    assert "model.safetensors is not a valid safetensors file" in at.error[0].value
    assert not any(m.value.startswith("Using") for m in at.success), "refused before Using"
    at.text_input(key="checkpoint_path").input(str(tiny_llava)).run()
    assert at.session_state["model_spec"] == str(tiny_llava)
    at.text_input(key="checkpoint_path").input(str(tiny_qwen)).run()  # the second path typed is taken too
    assert not at.error and at.session_state["model_spec"] == str(tiny_qwen)
    assert at.query_params["model"] == str(tiny_qwen)


def test_home_device_and_dtype_are_chosen_once_and_used_by_jobs_and_pages(tiny_qwen, no_spawn):
    import torch

    from hipp_core.models.device import dtype_runs

    dtype = "bfloat16" if dtype_runs("cpu", "bfloat16") else "float32"
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.radio[0].set_value("Local checkpoint directory").run()
    at.text_input[0].input(str(tiny_qwen)).run()
    box = lambda label: next(s for s in at.selectbox if s.label == label)  # fresh after every run
    if not torch.cuda.is_available():
        box("Device").set_value("cuda").run()
        assert len(at.error) == 1 and "'cuda' was asked for but" in at.error[0].value
        assert at.session_state["model_device"] == "auto"  # the refused choice is not kept
    box("Device").set_value("cpu").run()
    box("Number format").set_value(dtype).run()
    assert not at.error and f"Models run on **cpu** in **{dtype}**." in [c.value for c in at.caption]
    at.radio(key="data_source_local").set_value("ShapesWorld").run()
    at.button(key="start-calibrate").click().run()
    job = PlanStore().get_job(no_spawn[0])
    assert (job.params["device"], job.params["dtype"]) == ("cpu", dtype)
    at.switch_page("pages/pareto.py").run()
    assert not at.exception and f"on cpu · {dtype}" in at.caption[1].value
    PlanStore().finish_job(job.job_id, "cancelled")


def test_home_tuning_data_is_checked_before_it_is_kept_and_jobs_then_use_it(tiny_qwen, no_spawn, tmp_path):
    for name in ("pope_dev", "coco", "scienceqa"):
        (tmp_path / name).mkdir()
    (tmp_path / "coco_pope_random.json").write_text("")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert any("tune on ShapesWorld by default" in c.value for c in at.caption)  # said for the embedded models
    at.radio[0].set_value("Local checkpoint directory").run()
    at.text_input(key="checkpoint_path").input(str(tiny_qwen)).run()
    assert "Choose what this local checkpoint tunes on" in at.warning[0].value
    at.button(key="start-calibrate").click().run()  # no data yet: refused in the page, nothing started
    assert "local checkpoint, so its calibration must come from your own data" in at.error[0].value
    assert not no_spawn

    at.radio(key="data_source_local").set_value("Your own POPE / ScienceQA files").run()
    at.text_input(key="data_split").input("minival")  # a ScienceQA split without ScienceQA
    at.button(key="use_data").click().run()
    assert "--split minival picks a ScienceQA split; pass --sqa-dir with it" in at.error[0].value
    assert "tuning_data" not in at.session_state, "nothing is kept until the combination is valid"
    at.text_input(key="data_split").input("")
    at.text_input(key="data_pope").input(str(tmp_path / "pope_typo"))
    at.button(key="use_data").click().run()
    assert f"--pope-dir {tmp_path / 'pope_typo'} does not exist" in at.error[0].value
    assert "tuning_data" not in at.session_state

    at.text_input(key="data_pope").input(str(tmp_path / "pope_dev"))
    at.text_input(key="data_pope_images").input(str(tmp_path / "coco"))
    at.text_input(key="data_sqa").input(str(tmp_path / "scienceqa"))
    at.text_input(key="data_pope_labels").input(str(tmp_path / "labels_typo"))
    at.text_area(key="data_test_pope").input(str(tmp_path / "coco_pope_random.json"))
    at.button(key="use_data").click().run()
    assert f"--pope-labels {tmp_path / 'labels_typo'} does not exist" in at.error[0].value
    at.text_input(key="data_pope_labels").input(str(tmp_path / "pope_dev"))  # the folder labelling LLaVA's jsonl
    at.button(key="use_data").click().run()
    assert not at.error
    kept = {
        "pope": str(tmp_path / "pope_dev"),
        "pope_images": str(tmp_path / "coco"),
        "pope_labels": str(tmp_path / "pope_dev"),
        "sqa": str(tmp_path / "scienceqa"),
        "test_pope": [str(tmp_path / "coco_pope_random.json")],
    }
    assert at.session_state["tuning_data"] == kept
    described = "your data: POPE pope_dev, ScienceQA val, apart from 1 POPE test path(s)"
    assert f"Calibration and rewards read **{described}**." in [c.value for c in at.caption]
    at.button(key="start-calibrate").click().run()  # accepted now, with the chosen data
    assert not at.error and len(no_spawn) == 1
    job = PlanStore().get_job(no_spawn[0])
    assert (job.kind, job.params["data"]) == ("calibrate", kept)
    at.switch_page("pages/pareto.py").run()
    assert f"tuned on {described}" in at.caption[1].value
    PlanStore().finish_job(job.job_id, "cancelled")


# -- Explore --------------------------------------------------------------------------------------------------------
def test_explore_sliders_stay_on_simplex_and_change_the_blueprint(trained):
    at = page("explore", trained)
    assert not at.exception and not at.error
    before_plan, before_charts = shown_plan(at), chart_specs(at)
    assert len(before_charts) == 1  # allocation over sensitivity above the kept-units heatmaps, on one layer axis
    traces = [trace.get("type", "scatter") for trace in json.loads(before_charts[0])["data"]]
    assert traces == ["bar", "bar", "scatter", "heatmap", "heatmap"]
    at.slider(key="w_compression").set_value(0.9).run()
    weights = [at.slider(key=k).value for k in ("w_utility", "w_robustness", "w_compression")]
    assert weights[2] == 0.9 and abs(sum(weights) - 1) < 0.02 and weights[0] > 0 and weights[1] > 0
    assert shown_plan(at) != before_plan
    assert chart_specs(at)[0] != before_charts[0]
    high = float(at.metric[0].value.rstrip("%"))
    at.slider(key="w_compression").set_value(0.0).run()
    assert float(at.metric[0].value.rstrip("%")) < high, "more weight on compression prunes more"


def test_explore_locked_sparsity_is_matched_and_plan_saved(trained):
    at = page("explore", trained)
    at.checkbox(key="lock_sparsity").check().run()
    at.slider(key="locked_sparsity").set_value(0.5).run()
    assert abs(float(at.metric[0].value.rstrip("%")) - 50) <= 0.5 + 0.05
    plan_id = shown_plan(at)
    at.button(key="save").click().run()
    assert not at.error and PlanStore().get_plan(plan_id) is not None
    at.selectbox[0].select("uniform").run()
    at.button(key="compare").click().run()
    assert not at.exception and not at.error
    assert "uniform baseline (layer sparsity)" in chart_specs(at)[0]


def test_explore_equal_counts_toggle_gives_one_layer_shape(trained):
    at = page("explore", trained)
    at.checkbox(key="lock_sparsity").check().run()
    at.slider(key="locked_sparsity").set_value(0.4).run()
    at.checkbox(key="equal_counts").check().run()
    assert not at.exception and not at.error
    at.button(key="save").click().run()
    layers = PlanStore().get_plan(shown_plan(at)).blueprint["layers"]
    counts = {(len(x["kv_groups"]), len(x["heads"]), len(x["mlp"])) for x in layers}
    assert len(counts) == 1 and len(layers) > 1
    assert abs(float(at.metric[0].value.rstrip("%")) - 40) <= 2.5  # the closest a tiny model's units reach


def test_explore_link_restores_preference_and_lock_and_the_url_follows_the_sliders(trained):
    at = AppTest.from_file(str(ROOT / "pages" / "explore.py"), default_timeout=TIMEOUT)
    at.session_state["model_spec"] = trained
    at.query_params.update({"w": "0.10,0.10,0.80", "sparsity": "0.5"})
    at.run()
    assert not at.exception and not at.error
    assert [at.slider(key=k).value for k in ("w_utility", "w_robustness", "w_compression")] == [0.1, 0.1, 0.8]
    assert at.checkbox(key="lock_sparsity").value and at.slider(key="locked_sparsity").value == 0.5
    assert abs(float(at.metric[0].value.rstrip("%")) - 50) <= 0.55
    plan = shown_plan(at)
    again = AppTest.from_file(str(ROOT / "pages" / "explore.py"), default_timeout=TIMEOUT)
    again.session_state["model_spec"] = trained
    again.query_params.update(at.query_params)
    assert shown_plan(again.run()) == plan, "a reload of the link shows the same plan"
    at.slider(key="w_compression").set_value(0.5).run()
    assert at.query_params["w"] == "0.25,0.25,0.50" and at.query_params["model"] == trained
    layers = next(t for t in at.table if "layer" in t.value.columns).value
    assert list(layers["layer"])[:2] == ["layer 0", "layer 1"]


def test_explore_compares_the_plan_with_neighbouring_preferences_on_demand(trained):
    at = page("explore", trained)
    assert len(chart_specs(at)) == 1, "off by default: a slider move plans nothing more"
    at.toggle(key="compare_neighbours").set_value(True).run()
    assert not at.exception and not at.error
    assert at.query_params["neighbours"] == "1"
    text = next(m.value for m in at.markdown if "neighbouring preference" in m.value)
    # Without a lock the compression weight moves the budget, so its neighbours change the plan.
    assert "change the plan" in text and "compression +0.1: " in text and "sparsity +" in text
    heatmap = json.loads(chart_specs(at)[1])["data"][0]
    assert heatmap["type"] == "heatmap" and "compression +0.1 · MLP" in heatmap["y"]
    at.checkbox(key="lock_sparsity").check().run()
    assert not at.exception and not at.error
    text = next(m.value for m in at.markdown if "neighbouring preference" in m.value)
    assert "at sparsity 30%" in text, "the neighbours share the locked sparsity"


def test_explore_without_policy_offers_training(tiny_qwen, no_spawn):
    at = AppTest.from_file(str(ROOT / "pages" / "explore.py"), default_timeout=TIMEOUT)
    at.session_state["model_spec"] = str(tiny_qwen)
    at.session_state["tuning_data"] = {"shapesworld": True}  # as Home keeps it
    at.run()
    assert "No trained policy" in at.warning[0].value
    at.button[0].click().run()
    job = PlanStore().get_job(no_spawn[-1])
    assert (job.kind, job.params["data"]) == ("train-policy", {"shapesworld": True})
    PlanStore().finish_job(no_spawn[-1], "cancelled")


# -- Pareto ---------------------------------------------------------------------------------------------------------
def caption_with(at: AppTest, text: str) -> str:
    return next(c.value for c in at.caption if text in c.value)


def test_pareto_marks_front_and_selection_fills_comparison(trained):
    ids = evaluated_plans(trained)
    at = page("pareto", trained)
    assert not at.exception and not at.error
    at.selectbox(key="pareto_measure").select(
        next(o for o in at.selectbox(key="pareto_measure").options if "test-bench" in o)
    ).run()
    at.selectbox(key="pareto_x").select("sqa.accuracy").run()
    at.selectbox(key="pareto_y").select("pope_balanced_accuracy").run()
    assert "4 points, 4 non-dominated" in caption_with(at, " points, ")
    at.slider(key="pareto_band").set_range(0.0, 0.3).run()  # the sparsity band keeps the two sparsest plans
    assert "2 points" in caption_with(at, " points, ")
    at.slider(key="pareto_band").set_range(0.0, 1.0).run()
    at.multiselect(key="pareto_pick").select(ids[0]).select(ids[3]).run()
    assert not at.exception
    compared = at.dataframe[-1].value
    assert list(compared["id"]) == [ids[0], ids[3]], "one row per selected plan"
    assert compared.loc[0, "ScienceQA"] == 0.9 and compared.loc[1, "POPE mean"] == pytest.approx(0.8)
    allocation = json.loads(chart_specs(at)[-1])
    parts = {(trace["yaxis"], trace["showlegend"]) for trace in allocation["data"]}
    assert parts == {("y", True), ("y2", False)}, "attention on top, MLP below, one legend entry per plan"
    assert len(allocation["data"]) == 4
    assert at.query_params["plans"] == f"{ids[0]},{ids[3]}"
    assert at.query_params["x"] == "sqa.accuracy"


def test_pareto_link_restores_axes_measurement_and_selected_plans(trained):
    ids = evaluated_plans(trained)
    at = AppTest.from_file(str(ROOT / "pages" / "pareto.py"), default_timeout=TIMEOUT)
    at.session_state["model_spec"] = trained
    measure = next(m for m in _measurements(trained) if "test-bench" in m)
    at.query_params.update({"m": measure, "x": "sqa.accuracy", "y": "yes_ratio", "plans": f"{ids[1]},nothex!"})
    at.run()
    assert not at.exception and not at.error
    assert at.selectbox(key="pareto_measure").value == measure
    assert (at.selectbox(key="pareto_x").value, at.selectbox(key="pareto_y").value) == ("sqa.accuracy", "yes_ratio")
    assert at.multiselect(key="pareto_pick").value == [ids[1]]
    assert list(at.dataframe[-1].value["id"]) == [ids[1]]
    cloud = json.loads(chart_specs(at)[0])
    assert cloud["layout"]["xaxis"]["range"] == [-0.02, 1.02], "bounded objectives on fixed axes"
    hover = next(t for t in cloud["data"] if t.get("hovertext"))["hovertext"][0]
    assert "ScienceQA" in hover and "POPE mean" in hover and "sparsity" in hover
    table = at.dataframe[0].value  # the table of all plans
    assert {"plan", "POPE mean", "ScienceQA", "yes-ratio", "non-dominated"} <= set(table.columns)
    assert any(b.label.startswith("Download these") for b in at.get("download_button"))


def _measurements(spec: str) -> list[str]:
    from hipp_core import api

    return list(api.cloud_frame(PlanStore().list_evaluations(check_model(spec).model_id))["measurement"].unique())


# -- Jobs -----------------------------------------------------------------------------------------------------------
def test_jobs_page_shows_progress_error_and_cancels():
    store = PlanStore()
    running = store.create_job("evaluate", {"spec": "embedded", "split": "dev"})
    store.start_job(running, os.getpid())
    store.update_job(running, 0.4, "pope: 40/100", "pope: started")
    failed = store.create_job("calibrate", {"spec": "/nowhere"})
    store.start_job(failed, os.getpid())
    store.finish_job(failed, "failed", "model directory /nowhere does not exist")
    at = page("jobs")
    assert not at.exception
    assert [bar.proto.value for bar in at.get("progress")] == [40]
    assert "model directory /nowhere does not exist" in at.dataframe[0].value["result"].tolist()
    at.button(key=f"cancel-{running}").click().run()
    assert store.get_job(running).cancel_requested
    store.finish_job(running, "cancelled")
    store.finish_job(store.create_job("evaluate", {}), "done")


def test_jobs_page_shows_overall_progress_and_a_failed_jobs_traceback():
    store = PlanStore()
    running = store.create_job("recover", {"spec": "embedded"})
    store.start_job(running, os.getpid())
    store.update_job(running, 0.5, "after recovery · POPE popular: 10/100")
    failed = store.create_job("evaluate", {"spec": "/models/broken"})
    store.start_job(failed, os.getpid())
    log = jobs.log_path(store, failed)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(
        "12:00:00 failed with a traceback:\nTraceback (most recent call last):\nSafetensorError: bad header\n"
    )
    store.finish_job(failed, "failed", "SafetensorError: bad header")
    at = page("jobs")
    assert not at.exception
    bar = next(b for b in at.get("progress") if "after recovery" in b.proto.text)
    assert bar.proto.text.startswith("50% · after recovery · POPE popular: 10/100")
    at.selectbox(key="job_log").select(failed).run()
    assert "SafetensorError: bad header" in at.code[-1].value and "Traceback" in at.code[-1].value
    assert at.query_params["job"] == failed
    store.finish_job(running, "cancelled")


# -- Export ---------------------------------------------------------------------------------------------------------
def _export_dir(at):
    return next(t for t in at.text_input if t.label == "Directory to create")


def test_export_validates_the_path_then_exports_and_offers_the_card(trained, tmp_path, no_spawn):
    plan_id = evaluated_plans(trained, 1)[0]
    at = page("export", trained)
    assert not at.exception and not at.error
    at.selectbox[0].select(plan_id).run()
    _export_dir(at).input("relative/dir").run()
    at.button[-1].click().run()
    assert "relative path" in at.error[0].value
    taken = tmp_path / "taken"
    taken.mkdir()
    _export_dir(at).input(str(taken)).run()
    at.button[-1].click().run()
    assert "already exists" in at.error[0].value

    target = tmp_path / "export"
    _export_dir(at).input(str(target)).run()
    at.radio(key="export_format").set_value("stock").run()
    at.button[-1].click().run()
    assert not at.error and "Started the export" in at.success[0].value
    job = jobs.find_jobs(PlanStore(), "export", active_only=False, plan_id=plan_id)[0]
    assert no_spawn == [job.job_id] and job.params["export_format"] == "stock"
    # The worker's body, run here: detached workers are tested in test_jobs.py.
    assert job_runner.run_job(job.job_id, PlanStore()) == "done", PlanStore().get_job(job.job_id).error
    assert "(stock)" in PlanStore().get_job(job.job_id).message
    config = json.loads((target / "config.json").read_text())
    assert "auto_map" not in config, "a stock export names no remote code"
    at.run()
    assert any(b.label == "Download model card" for b in at.get("download_button"))
    assert plan_id in "".join(m.value for m in at.markdown)


RECOVER_ON = {  # the pages that start a recovery: their instruction field and recover button
    "export": ("recover_instructions", "Recover this plan"),
    "pareto": ("pareto_recover_instructions", "Recover with LoRA"),
}


@pytest.mark.parametrize("name", list(RECOVER_ON))
def test_recovery_trains_on_the_instruction_file_it_names(name, trained, tmp_path, no_spawn):
    field, label = RECOVER_ON[name]
    plan_id = evaluated_plans(trained, 1)[0]
    at = page(name, trained)
    if name == "export":
        at.selectbox[0].select(plan_id).run()
    else:
        at.multiselect(key="pareto_pick").select(plan_id).run()
    at.text_input(key=field).input(str(tmp_path / "missing.json")).run()
    next(b for b in at.button if b.label == label).click().run()
    assert (
        at.error[0].value
        == f"instruction file {tmp_path / 'missing.json'} does not exist; pass a LLaVA-format JSON file"
    )
    assert no_spawn == [], "nothing started"

    turns = [
        {"id": "t1", "image": None, "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "A"}]}
    ]
    (tmp_path / "turns.json").write_text(json.dumps(turns))
    at.text_input(key=field).input(f" {tmp_path / 'turns.json'} ").run()
    next(b for b in at.button if b.label == label).click().run()
    assert not at.error
    (job,) = jobs.find_jobs(PlanStore(), "recover", active_only=False, plan_id=plan_id)
    assert no_spawn == [job.job_id] and job.params["instructions"] == str(tmp_path / "turns.json")


def test_export_link_keeps_the_chosen_plan_across_reloads(trained):
    older, newer = evaluated_plans(trained, 2)
    at = AppTest.from_file(str(ROOT / "pages" / "export.py"), default_timeout=TIMEOUT)
    at.session_state["model_spec"] = trained
    at.query_params["plan"] = older
    at.run()
    assert not at.exception and at.selectbox(key="export_plan").value == older
    label = at.selectbox(key="export_plan").format_func(older)
    assert label.endswith(f"% · {older[:6]}") and label.split(" · ")[0] in ("baseline/wanda", "policy"), label
    at.selectbox(key="export_plan").select(newer).run()
    assert at.query_params["plan"] == newer


def test_pareto_starts_the_dense_reference_when_a_job_can_measure_it(trained, no_spawn):
    from hipp_core import api

    store, model_id = PlanStore(), check_model(trained).model_id
    bp = api.plan_baseline(trained, "magnitude", 0.4, store=store)
    plan = store.put_plan(api.plan_draft(bp))
    bench = api.bench_key("all", False, "shapesworld-test")
    metrics = {"sqa.accuracy": 0.5, "pope_balanced_accuracy": 0.6}
    store.put_evaluation(EvalKey(model_id, plan.plan_id, bench, "dev", "masked", "logits", 7), metrics, 7, 1)
    at = page("pareto", trained)
    at.selectbox(key="pareto_measure").select(
        next(o for o in at.selectbox(key="pareto_measure").options if "first 7" in o)
    ).run()
    assert not at.exception
    job = PlanStore().get_job(no_spawn[-1])
    assert (job.kind, job.params["plan_id"], job.params["split"], job.params["limit"]) == ("evaluate", None, "dev", 7)
    assert any("dense model as reference" in b.proto.text for b in at.get("progress"))
    PlanStore().finish_job(job.job_id, "cancelled")
