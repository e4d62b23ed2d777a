"""The `hipp` command end to end: JSON output, cached re-runs, store export / import, one-line errors.

Commands run in this process (`invoke`); one test starts a real `hipp` process, for what only a process shows."""

import json

from tests.conftest import invoke, run_cli


def test_eval_json_then_cached(tiny_qwen):
    args = ["eval", str(tiny_qwen), "--split", "dev", "--limit", "6", "--json"]
    first = invoke(*args)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)  # stdout is JSON only
    assert set(data["pope"]) == {"random", "popular", "adversarial"} and data["sqa"]["n"] == 6
    assert data["cached"] is False and set(data["pope_image_free"]) == set(data["pope"])
    second = json.loads(invoke(*args).stdout)
    assert second["cached"] is True and second["pope"] == data["pope"]
    table = invoke("eval", str(tiny_qwen), "--split", "dev", "--limit", "6")
    assert "from the plan store cache" in table.stdout and "adversarial" in table.stdout


def test_store_export_import_round_trip(tmp_path, tiny_llava):
    assert invoke("eval", str(tiny_llava), "--split", "dev", "--limit", "4", "--bench", "pope").returncode == 0
    export = tmp_path / "export"
    result = invoke("store", "export", str(export))
    assert result.returncode == 0 and (export / "evaluations.parquet").exists()
    other = {"HIPP_HOME": str(tmp_path / "other")}
    imported = invoke("store", "import", str(export), env=other)
    assert "added 1 models, 0 plans, 1 evaluations" in imported.stdout
    again = invoke("store", "import", str(export), env=other)
    assert "added 0 models, 0 plans, 0 evaluations" in again.stdout
    cached = invoke("eval", str(tiny_llava), "--split", "dev", "--limit", "4", "--bench", "pope", "--json", env=other)
    assert json.loads(cached.stdout)["cached"] is True
    refused = invoke("store", "export", str(export))
    assert refused.returncode == 2 and "not empty" in refused.stderr


def test_bad_inputs_are_one_line_exit_2(tmp_path, tiny_llava):
    cases = [
        (["eval", str(tiny_llava), "--bench", "mmlu"], "unknown benchmark"),
        (["eval", str(tiny_llava), "--split", "val"], "no split 'val'"),
        (["eval", str(tiny_llava), "--limit", "0"], "at least 1"),
        (["eval", str(tiny_llava), "--sqa-dir", str(tmp_path), "--bench", "sqa"], "problems.json"),
        (["zoo", "build", "--arch", "gpt"], "unknown --arch"),
        (["zoo", "build", "--retrain", "--device", "tpu"], "unknown device 'tpu'"),
    ]
    for args, fragment in cases:
        result = invoke(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr
        assert fragment in result.stderr, (fragment, result.stderr)


def test_calibrate_computes_once_then_reads_back(tiny_llava):
    first = invoke("calibrate", str(tiny_llava), "--samples", "6", "--json", "--shapesworld")
    assert first.returncode == 0, first.stderr
    features = json.loads(first.stdout)
    assert len(features["v_attn"]) == 2 and features["samples"] == 6
    second = invoke("calibrate", str(tiny_llava), "--samples", "6", "--shapesworld")
    assert "read from the plan store cache" in second.stdout and "v_flow" in second.stdout
    bad = invoke("calibrate", str(tiny_llava), "--samples", "0")
    assert bad.returncode == 2 and "between 1 and 100000" in bad.stderr


def test_export_command_writes_a_loadable_export(tmp_path, tiny_llava):
    import numpy as np

    from hipp_core.blueprint import make_blueprint
    from hipp_core.models.loading import load_model

    loaded = load_model(str(tiny_llava))
    shapes = loaded.adapter.layer_shapes()
    blueprint = make_blueprint(loaded.model_id, "llava", shapes, 0.3, np.ones(len(shapes)), None, m=8)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(blueprint.to_json()))
    result = invoke("export", str(tiny_llava), "--plan", str(plan), "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert blueprint.plan_id in result.stdout and (tmp_path / "out" / "pruned_modeling.py").exists()
    evaluated = invoke("eval", str(tmp_path / "out"), "--split", "dev", "--limit", "4", "--bench", "pope", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["model_id"] != loaded.model_id
    again = invoke("export", str(tiny_llava), "--plan", str(plan), "-o", str(tmp_path / "out"))
    assert again.returncode == 2 and "exists" in again.stderr
    other = tmp_path / "other_plan.json"
    other.write_text(json.dumps({**blueprint.to_json(), "model_id": "0" * 16}))
    wrong = invoke("export", str(tiny_llava), "--plan", str(other), "-o", str(tmp_path / "out2"))
    assert wrong.returncode == 2 and "was made for model" in wrong.stderr


def test_pipeline_runs_end_to_end_then_reuses_everything(tmp_path, tiny_llava):
    from hipp_core.models.loading import prune_plan

    args = ["pipeline", str(tiny_llava), "--pref", "0.2,0.7,0.1", "--sparsity", "0.3", "--iters", "1"]
    args += ["--steps", "4", "--limit", "4", "--shapesworld"]  # a local checkpoint: ShapesWorld by name
    first = invoke(*args, "-o", str(tmp_path / "out1"))
    assert first.returncode == 0, first.stderr
    assert "recovered" in first.stdout and prune_plan(tmp_path / "out1") is not None
    second = invoke(*args, "-o", str(tmp_path / "out2"))
    assert second.returncode == 0, second.stderr
    for stage in ("calibrate", "train policy", "evaluate dense", "recover"):
        line = next(x for x in second.stdout.splitlines() if stage in x)
        assert "reused" in line, second.stdout
    again = invoke(*args, "-o", str(tmp_path / "out2"))
    assert again.returncode == 2 and "already exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def _real_benchmarks(tmp_path):
    """A GQA-style POPE folder (SEEM JSON arrays) and a ScienceQA folder without pid_splits.json, images elsewhere."""
    from PIL import Image

    pope, sqa, images = tmp_path / "gqa", tmp_path / "scienceqa", tmp_path / "sqa_images"
    pope.mkdir()
    Image.new("RGB", (8, 8), "red").save(tmp_path / "2405722.jpg")
    rows = [{"question_id": 1, "image": "2405722.jpg", "text": "Is there a bird in the image?", "label": "yes"}]
    for category in ("random", "popular"):
        (pope / f"gqa_pope_seem_{category}.json").write_text(json.dumps(rows, indent=4))
    sqa.mkdir()
    problem = {"question": "Which color?", "choices": ["red", "blue"], "answer": 0, "hint": "", "split": "test"}
    problems = {"7": {**problem, "image": "image.png"}, "8": {**problem, "image": None}}
    (sqa / "problems.json").write_text(json.dumps(problems))
    (images / "test" / "7").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(images / "test" / "7" / "image.png")
    return pope, sqa, images


def test_eval_reads_seem_pope_and_scienceqa_images_flag_with_a_notice(tmp_path, tiny_llava):
    pope, sqa, images = _real_benchmarks(tmp_path)
    args = ["eval", str(tiny_llava), "--pope-dir", str(pope), "--pope-images", str(tmp_path), "--sqa-dir", str(sqa)]
    args += ["--sqa-images", str(images), "--generate", "--no-image-free"]

    result = invoke(*args)

    assert result.returncode == 0, result.stderr
    assert "notice:" in result.stderr and "pid_splits.json not found" in result.stderr
    assert "POPE (test, generate, official parser)" in result.stdout and "popular" in result.stdout
    assert "ScienceQA (test, generate, official parser)" in result.stdout


def test_eval_refuses_an_empty_pope_file_and_stores_nothing(tmp_path, tiny_llava):
    from plan_store import DENSE_PLAN_ID, PlanStore

    pope, _, _ = _real_benchmarks(tmp_path)
    (pope / "gqa_pope_seem_adversarial.json").write_text("[]")
    no_images = ["eval", str(tiny_llava), "--bench", "pope", "--pope-dir", str(pope)]

    for args, fragment in [
        ([*no_images, "--pope-images", str(tmp_path)], "gqa_pope_seem_adversarial.json holds no questions"),
        (no_images, "--pope-images"),
    ]:
        result = invoke(*args)
        assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
        assert fragment in result.stderr, result.stderr
    assert PlanStore().plan_evaluations(DENSE_PLAN_ID) == []


def test_plan_baseline_equal_counts_keeps_one_layer_shape(tmp_path, tiny_llava):
    out = tmp_path / "plan.json"
    args = ["plan", "baseline", str(tiny_llava), "--method", "owl", "--sparsity", "0.4", "-o", str(out)]
    result = invoke(*args, "--shapesworld", "--equal-counts")
    assert result.returncode == 0, result.output
    layers = json.loads(out.read_text())["layers"]
    assert len({(len(x["kv_groups"]), len(x["heads"]), len(x["mlp"])) for x in layers}) == 1
    refused = invoke(*args, "--shapesworld", "--equal-counts", "--method", "random")
    assert refused.returncode == 2 and "nothing to decide" in refused.output
    peer = invoke(*args, "--equal-counts", "--method", "torch-pruning")
    assert peer.returncode == 2 and "does not take equal_counts" in peer.output
    assert "--equal-counts" in invoke("blueprint", "--help").output


def test_a_real_hipp_process_writes_only_json_to_stdout(tiny_qwen):
    """The entry point as a user runs it: `main()` sets up the process, and whatever the libraries print while a model
    loads stays off stdout, so `--json` output parses as it is."""
    result = run_cli("eval", str(tiny_qwen), "--split", "dev", "--limit", "2", "--bench", "pope", "--json")
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)["pope"]) == {"random", "popular", "adversarial"}
