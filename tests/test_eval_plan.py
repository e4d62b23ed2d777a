"""`hipp eval MODEL --plan PLAN.json [--physical]`: a saved blueprint scored from the command line, in-process."""

import json

import numpy as np
import pytest

from hipp_core.blueprint import make_blueprint
from hipp_core.models.loading import load_model
from tests.conftest import invoke

LIMIT = ["--split", "dev", "--limit", "12"]


@pytest.fixture
def plan_file(tmp_path):
    """A 30% plan for the embedded LLaVA, saved the way `hipp plan` writes it; an empty plan store per test."""
    loaded = load_model("embedded")
    shapes = loaded.adapter.layer_shapes()
    blueprint = make_blueprint(loaded.model_id, "llava", shapes, 0.3, np.ones(len(shapes)), None, m=8)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(blueprint.to_json()))
    return path, blueprint


def eval_json(*args: str) -> dict:
    result = invoke("eval", "embedded", *LIMIT, "--json", *args)
    assert result.returncode == 0, result.output
    return json.loads(result.stdout)


def test_eval_plan_masked_and_physical_agree_and_say_what_they_scored(plan_file):
    path, blueprint = plan_file
    dense = eval_json()
    masked = eval_json("--plan", str(path))
    physical = eval_json("--plan", str(path), "--physical")
    assert "plan" not in dense
    assert masked["plan"] == {"plan_id": blueprint.plan_id, "file": str(path), "mode": "masked"}
    assert physical["plan"]["mode"] == "physical" and not physical["cached"]  # a different store key from masked
    for part in ("pope", "pope_image_free"):
        for cat, m in masked[part].items():
            for name, value in m.items():
                assert physical[part][cat][name] == pytest.approx(value, abs=1 / 12), (part, cat, name)
    assert physical["sqa"]["accuracy"] == pytest.approx(masked["sqa"]["accuracy"], abs=1 / 12)
    # 30% of the decoder removed changes the answers: the plan was applied, not silently ignored.
    assert masked["pope"] != dense["pope"] or masked["sqa"] != dense["sqa"]


def test_eval_plan_prints_plan_and_mode(plan_file):
    path, blueprint = plan_file
    result = invoke("eval", "embedded", *LIMIT, "--bench", "pope", "--plan", str(path))
    assert result.returncode == 0, result.output
    assert f"evaluated under plan {blueprint.plan_id} from {path}" in result.stdout
    assert result.stdout.rstrip().endswith("masked")


def test_eval_plan_for_another_model_is_refused_in_one_line(plan_file, tmp_path):
    _, blueprint = plan_file
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**blueprint.to_json(), "model_id": "0" * 16}))
    result = invoke("eval", "embedded", *LIMIT, "--plan", str(other))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "was made for model 0000000000000000" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [(["--physical"], "--physical needs --plan"), (["--plan", "missing.json"], "does not exist")],
)
def test_eval_plan_bad_options_are_one_line_exit_2(plan_file, args, message):
    result = invoke("eval", "embedded", *LIMIT, *args)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1
