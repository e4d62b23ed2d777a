"""Planning methods: one registry behind the API, the CLI, jobs and benchmarks; configs refuse bad settings in one
line; the heuristics give the same plans as before they were registered; each follows its own rule."""

import re

import numpy as np
import pytest

from hipp_core import api, jobs, methods
from hipp_core.blueprint import allocate
from hipp_core.data.source import DataSource
from hipp_core.errors import HippError
from hipp_core.methods import owl, visual
from hipp_core.methods.base import MethodConfig
from hipp_core.models.loading import load_model
from plan_store import PlanStore
from tests.conftest import invoke

# Plan ids at sparsity 0.3 (calibration on 6 samples; random: 2 candidates on 4 dev questions per set). On testbed v1
# the registered methods reproduced the ids of the code before the registry (commit 9d872aa); these are their ids on
# testbed v2 (8-head tiny decoders, ShapesWorld v2), so any change to what a method keeps shows here. A plan id hashes
# the model and every kept unit, so an equal id means the same heads and channels in every layer.
RECORDED = {
    "tiny_llava": {
        "uniform": "d47e05bfa1a9d4ae",
        "owl": "0867e0e826818079",
        "visual": "d47e05bfa1a9d4ae",
        "magnitude": "62f3399c5a201406",
        "random": "65a3d32bdb4a7ba9",
        "torch-pruning": "ca5a0e81622045e9",
    },
    "tiny_qwen": {
        "uniform": "6d67164d695ef68c",
        "owl": "ce5a34b64f6dcbfb",
        "visual": "6d67164d695ef68c",
        "magnitude": "306cbdf38364df70",
        "random": "6d67164d695ef68c",
        "torch-pruning": "b9074ca542692b24",
    },
}
SEARCH = {"n_random": 2, "limit": 4}

SW = DataSource(shapesworld=True)  # the tiny checkpoints are local ones: they tune on ShapesWorld by name


def _cli(*args: str):
    return invoke(*args, env={"COLUMNS": "200"})


def _one_line_error(result, fragment: str) -> None:
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output and result.stderr.strip().count("\n") == 0, result.stderr
    assert fragment in result.stderr, result.stderr


# -- the registry ---------------------------------------------------------------------------------------------------
def test_every_method_registers_a_config_with_help_for_each_setting():
    assert api.method_names() == ["magnitude", "owl", "policy", "random", "torch-pruning", "uniform", "visual"]
    for name in api.method_names():
        method = methods.get(name)
        assert method.kind in methods.KINDS and method.help
        assert issubclass(method.config, MethodConfig)
        assert all(o.help for o in method.options()), name
        assert isinstance(method.configure(), method.config)  # the defaults are valid
    assert api.baseline_names() == [n for n in api.method_names() if n != "policy"]


def test_unknown_method_lists_the_available_ones():
    with pytest.raises(HippError, match=r"^unknown planning method 'lottery'; available: magnitude, owl, policy, "):
        api.plan_baseline("embedded", "lottery", 0.3)


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("random", {"n_random": 0}, "n_random must be a whole number at least 1, got 0"),
        ("random", {"n_random": "x"}, "setting n_random of method random must be int, got 'x'"),
        ("random", {"limit": 0}, "limit must be a whole number at least 1"),
        ("random", {"seed": -1}, "seed must be a whole number at least 0"),
        ("random", {"backend": "spark"}, "unknown evaluator backend 'spark'; available: local, ray"),
        ("owl", {"lam": 1.5}, r"lam must be a number in \[0, 1\)"),
        ("visual", {"epsilon": 0}, "epsilon must be a positive number"),
        ("torch-pruning", {"timeout_s": 0}, "timeout_s must be a positive number of seconds"),
        ("torch-pruning", {"heads": "maybe"}, "setting heads of method torch-pruning must be bool"),
        ("policy", {"preference": (1, -1, 0)}, "preference weights must be ≥ 0"),
        ("uniform", {"criterion": "snip"}, "unknown unit criterion 'snip'; available: magnitude, synflow, wanda"),
        ("uniform", {"n_random": 4}, "method uniform does not take n_random; it takes criterion"),
    ],
)
def test_method_configs_refuse_bad_settings_in_one_line(method, options, message):
    with pytest.raises(HippError, match=message) as err:
        methods.get(method).configure(options)
    assert "\n" not in str(err.value)


def test_text_settings_are_read_as_the_field_types():
    assert methods.get("random").configure({"n_random": "16", "backend_options": '{"address": "auto"}'}) == (
        methods.get("random").config(n_random=16, backend_options={"address": "auto"})
    )
    assert methods.get("torch-pruning").configure({"heads": "none", "timeout_s": "5"}).heads is None
    assert methods.get("policy").configure({"preference": "0.2,0.7,0.1"}).preference == (0.2, 0.7, 0.1)


# -- the same plans as before ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["tiny_llava", "tiny_qwen"])
@pytest.mark.parametrize("method", ["uniform", "owl", "visual", "magnitude", "random"])
def test_registered_methods_give_the_plans_recorded_before_the_registry(method, model, request):
    spec = str(request.getfixturevalue(model))
    bp = api.plan_baseline(spec, method, 0.3, samples=6, **(SEARCH if method == "random" else {}), data=SW)
    assert bp.plan_id == RECORDED[model][method]
    assert bp.source == "baseline" and bp.criterion == methods.get(method).configure().criterion
    assert abs(bp.achieved - 0.3) < 0.06  # two tiny layers: one MLP block is several points
    assert bp.model_id == load_model(spec).model_id


def test_torch_pruning_peer_gives_the_plan_recorded_before_the_registry(tiny_llava):
    pytest.importorskip("torch_pruning")
    bp = api.plan_baseline(str(tiny_llava), "torch-pruning", 0.3, data=SW)
    assert bp.plan_id == RECORDED["tiny_llava"]["torch-pruning"] and bp.criterion == "torch-pruning-magnitude"


def test_policy_method_is_the_policy_blueprint_at_matched_sparsity():
    preference = (0.15, 0.75, 0.1)  # the embedded models ship a trained policy
    bp = api.plan_baseline("embedded", "policy", 0.3, samples=6, options={"preference": preference})
    assert bp.to_json() == api.planner("embedded", samples=6).blueprint(preference, 0.3).to_json()
    assert bp.source == "policy" and abs(bp.achieved - 0.3) < 0.005


# -- each method's rule ---------------------------------------------------------------------------------------------
def test_visual_allocation_spares_the_layers_that_read_the_image(tiny_llava):
    features, _ = api.calibrate_model(str(tiny_llava), samples=6, data=SW)
    shapes = load_model(str(tiny_llava)).adapter.layer_shapes()
    s = allocate(shapes, 0.3, visual.allocate(features, 0.3))
    v = np.asarray(features.v_attn) + np.clip(features.v_flow, 0, None)
    assert (s[0] - s[1]) * (v[0] - v[1]) <= 0  # more visual → less pruned


def test_owl_stays_within_its_band_before_rescaling():
    from types import SimpleNamespace

    f = SimpleNamespace(outlier_ratio=[0.01, 0.02, 0.05, 0.03], n_layers=4)
    for lam in (owl.OwlConfig.lam, 0.2):
        alpha = owl.allocate(f, 0.4, lam)
        assert np.all(alpha <= 0.4 + lam + 1e-9) and np.all(alpha >= 0.4 - lam - 1e-9)
        assert np.argmin(alpha) == 2 and np.argmax(alpha) == 0  # most outliers → least pruned, fewest → most


def test_method_settings_change_the_plan(tiny_llava):
    spec = str(tiny_llava)
    wide = api.plan_baseline(spec, "owl", 0.3, samples=6, options={"lam": 0.3}, data=SW)
    assert wide.plan_id != RECORDED["tiny_llava"]["owl"]  # λ is the method's own number, and it is used
    synflow = api.plan_baseline(spec, "uniform", 0.3, samples=6, criterion="synflow", data=SW)
    assert (
        synflow.criterion == "synflow"
        and synflow.sparsities == api.plan_baseline(spec, "uniform", 0.3, samples=6, data=SW).sparsities
    )


def test_random_best_of_n_is_seeded_and_its_evaluations_are_cached(tiny_llava):
    a = api.plan_baseline(str(tiny_llava), "random", 0.3, samples=6, **SEARCH, data=SW)
    b = api.plan_baseline(str(tiny_llava), "random", 0.3, samples=6, options={"n_random": 2, "limit": 4}, data=SW)
    assert a.plan_id == b.plan_id
    again = api.evaluate_model(str(tiny_llava), "all", "dev", 4, image_free=False, blueprint=a)
    assert again.cached  # scored while searching, read back now
    physical = api.evaluate_model(str(tiny_llava), "all", "dev", 4, image_free=False, blueprint=a, mode="physical")
    assert not physical.cached
    assert physical.pope_balanced_accuracy == pytest.approx(again.pope_balanced_accuracy, abs=1e-9)


def test_out_of_range_sparsity_is_refused(tiny_llava):
    with pytest.raises(HippError, match="between 0 and 0.9"):
        api.plan_baseline(str(tiny_llava), "uniform", 0.95, data=SW)


# -- what the CLI and jobs offer ------------------------------------------------------------------------------------
def test_cli_help_lists_every_registered_method_and_criterion():
    result = _cli("plan", "baseline", "--help")
    assert result.returncode == 0, result.output
    text = re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", result.output))  # the text without its boxes and wrapping
    for name in api.method_names():
        assert f"{name} ({api.planning_method(name).help})" in text
    for name in api.criteria():
        assert f"{name} (" in text
    listing = _cli("plan", "methods")
    assert listing.returncode == 0 and all(name in listing.output for name in api.method_names())


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--method", "lottery"], "unknown planning method 'lottery'; available: magnitude, owl, policy, random"),
        (["--method", "uniform", "--criterion", "snip"], "unknown unit criterion 'snip'; available: magnitude,"),
        (["--method", "random", "--set", "n_random=0"], "n_random must be a whole number at least 1, got 0"),
        (["--method", "uniform", "--n-random", "4"], "method uniform does not take n_random; it takes criterion"),
        (["--method", "owl", "--set", "lam"], "--set takes NAME=VALUE"),
    ],
)
def test_cli_refuses_bad_methods_and_settings_in_one_line(args, fragment, tiny_llava, tmp_path):
    out = tmp_path / "plan.json"
    result = _cli("plan", "baseline", str(tiny_llava), "--sparsity", "0.3", "-o", str(out), "--shapesworld", *args)
    _one_line_error(result, fragment)
    assert not out.exists()


def test_cli_writes_the_plan_of_a_method_with_its_settings(tiny_llava, tmp_path):
    out = tmp_path / "plan.json"
    result = _cli(
        "plan", "baseline", str(tiny_llava), "--method", "owl", "--sparsity", "0.3", "-o", str(out), "--shapesworld"
    )
    assert result.returncode == 0, result.output
    expected = api.plan_baseline(str(tiny_llava), "owl", 0.3, data=SW)
    assert api.read_plan(out).plan_id == expected.plan_id and expected.plan_id in result.output
    result = _cli(
        "plan",
        "baseline",
        str(tiny_llava),
        "--method",
        "owl",
        "--sparsity",
        "0.3",
        "-o",
        str(out),
        "--set",
        "lam=0.3",
        "--shapesworld",
    )
    assert result.returncode == 0, result.output
    assert (
        api.read_plan(out).plan_id
        == api.plan_baseline(str(tiny_llava), "owl", 0.3, options={"lam": 0.3}, data=SW).plan_id
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"method": "lottery", "sparsity": 0.3}, "unknown planning method 'lottery'; available: magnitude"),
        ({"method": "random", "sparsity": 0.3, "options": {"n_random": 0}}, "n_random must be a whole number"),
        ({"method": "uniform", "sparsity": 1.2}, "sparsity must be between 0 and 0.9"),
        ({"method": "uniform", "sparsity": 0.3, "options": [1]}, "options must be a mapping"),
    ],
)
def test_plan_job_takes_methods_and_settings_from_the_registry(params, message):
    store = PlanStore()
    with pytest.raises(HippError, match=message):
        jobs.submit("plan", {"spec": "embedded", **params}, store)


def test_plan_job_runs_and_keeps_the_plan(tiny_llava):
    from hipp_core import job_runner

    store = PlanStore()
    params = {"spec": str(tiny_llava), "method": "magnitude", "sparsity": 0.3, "data": {"shapesworld": True}}
    params = jobs.kind("plan").check(params, store)
    job_id = store.create_job("plan", params)
    assert job_runner.run_job(job_id, store) == "done", store.get_job(job_id).error
    plan_id = api.plan_baseline(str(tiny_llava), "magnitude", 0.3, data=SW).plan_id
    assert store.get_plan(plan_id) is not None and plan_id in store.get_job(job_id).message
