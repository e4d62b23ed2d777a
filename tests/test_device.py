"""Device and dtype settings: resolution and one-line refusals, store keys that keep finding the float32-CPU results
stored before the settings existed, and bfloat16 models through the same calibrate / eval / export paths with every
input reaching the model on its device and in its dtype."""

import dataclasses
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hipp_core import api
from hipp_core.blueprint import make_blueprint
from hipp_core.cli import app
from hipp_core.data import build as data_build
from hipp_core.errors import HippError
from hipp_core.export import load_pruned
from hipp_core.models import device as devices
from hipp_core.models.device import Placement, attention_implementation, resolve, to_model
from hipp_core.models.loading import checkpoint_dtype, load_model, safetensors_header
from hipp_core.prune import materialize
from plan_store import DENSE_PLAN_ID, EvalKey, PlanStore
from tests.conftest import save_tiny, tiny_adapter

BF16 = devices.dtype_runs("cpu", "bfloat16")
needs_bf16 = pytest.mark.skipif(not BF16, reason="this CPU cannot compute in bfloat16")
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks what happens without a GPU")


@pytest.fixture(scope="module")
def tiny_llava_bf16(tmp_path_factory) -> Path:
    return save_tiny("llava", tmp_path_factory.mktemp("ckpt") / "llava-bf16", dtype=torch.bfloat16)


@no_gpu
def test_auto_is_cpu_float32_without_a_gpu_and_keys_stay_as_before():
    assert resolve() == resolve("auto", "auto") == Placement("cpu", "float32")
    assert resolve().key_suffix == ""  # results stored before the settings existed were all cpu / float32
    assert resolve("cpu", "bf16") == Placement("cpu", "bfloat16")
    assert resolve("CPU", torch.float16) == Placement("cpu", "float16")
    assert Placement("cpu", "bfloat16").key_suffix == ":cpu-bfloat16"
    assert Placement("cuda:1", "bfloat16").key_suffix == ":cuda-bfloat16"  # the device type, not which GPU


@pytest.mark.parametrize(
    ("device", "dtype", "message"),
    [
        ("gpu", "auto", "unknown device 'gpu'; use auto (cuda when available, else cpu), cpu, cuda or cuda:N"),
        ("cpu", "int8", "unknown dtype 'int8'; use auto (bfloat16 on cuda, float32 on cpu), float32, bfloat16"),
        pytest.param("cuda", "auto", "device 'cuda' was asked for but", marks=no_gpu),
    ],
)
def test_bad_settings_are_refused_with_what_to_use(device, dtype, message):
    with pytest.raises(HippError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve(device, dtype)


def test_a_dtype_the_cpu_cannot_compute_in_is_refused(monkeypatch):
    monkeypatch.setattr(devices, "dtype_runs", lambda device, dtype: False)
    with pytest.raises(HippError, match="this CPU cannot compute in bfloat16 .*; use --dtype float32"):
        resolve("cpu", "bfloat16")
    assert resolve("cpu", "float32").dtype == "float32"  # float32 is never probed


def test_the_probe_runs_a_real_matmul():
    assert devices.dtype_runs("cpu", "float32")
    devices.dtype_runs.cache_clear()
    with _failing_matmul():
        assert not devices.dtype_runs("cpu", "float16")
    devices.dtype_runs.cache_clear()


@contextmanager
def _failing_matmul():
    """torch.Tensor.__matmul__ raising like a CPU without half-precision kernels does."""
    original = torch.Tensor.__matmul__

    def refuse(self, other):
        raise RuntimeError("\"addmm_impl_cpu_\" not implemented for 'Half'")

    torch.Tensor.__matmul__ = refuse
    try:
        yield
    finally:
        torch.Tensor.__matmul__ = original


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "{spec}", "--limit", "2"],
        ["calibrate", "{spec}", "--samples", "2", "--shapesworld"],
        [
            "plan",
            "baseline",
            "{spec}",
            "--method",
            "uniform",
            "--sparsity",
            "0.3",
            "-o",
            "{tmp}/p.json",
            "--shapesworld",
        ],
        ["train-policy", "{spec}", "--iters", "1", "--shapesworld"],
        ["blueprint", "{spec}", "--pref", "0.3,0.3,0.4"],
        ["export", "{spec}", "--plan", "{tmp}/p.json", "-o", "{tmp}/out"],
        ["recover", "{spec}", "--plan", "{tmp}/p.json"],
        ["pipeline", "{spec}", "--pref", "0.3,0.3,0.4", "-o", "{tmp}/out", "--shapesworld"],
    ],
)
@pytest.mark.parametrize(("option", "fragment"), [("--device=gpu", "unknown device 'gpu'"), ("--dtype=int8", "int8")])
def test_every_model_command_refuses_bad_settings_in_one_line(command, option, fragment, tiny_llava, tmp_path):
    plan = tmp_path / "p.json"
    loaded = load_model(str(tiny_llava), "cpu", "float32")
    shapes = loaded.adapter.layer_shapes()
    plan.write_text(json.dumps(make_blueprint(loaded.model_id, "llava", shapes, 0.3, np.ones(2), None, 8).to_json()))
    args = [a.format(spec=tiny_llava, tmp=tmp_path) for a in command]
    result = CliRunner().invoke(app, [*args, option])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().count("\n") == 0 and fragment in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_attention_switch_is_undone_even_when_the_work_fails():
    adapter = tiny_adapter("qwen2_5_vl")
    with pytest.raises(RuntimeError), attention_implementation(adapter.model, "eager"):
        assert adapter.model.config.vision_config._attn_implementation == "eager"
        raise RuntimeError("calibration died")
    configs = (adapter.model.config, adapter.model.config.text_config, adapter.model.config.vision_config)
    assert [c._attn_implementation for c in configs] == ["sdpa"] * 3


def test_float32_cpu_evaluations_keep_their_old_keys_and_others_get_their_own(tiny_llava, tmp_path):
    spec, store = str(tiny_llava), PlanStore(tmp_path / "plans.duckdb")  # its own store: nothing scored before
    first = api.evaluate_model(spec, "pope", "dev", 4, image_free=False, store=store, device="cpu", dtype="float32")
    loaded = load_model(spec, "cpu", "float32")
    # The literal key format every evaluation stored before devices were options was written under.
    old = EvalKey(
        loaded.model_id,
        DENSE_PLAN_ID,
        f"pope:shapesworld-v{data_build.VERSION}:no-image-free",
        "dev",
        "dense",
        "logits",
        4,
    )
    assert store.get_evaluation(old) is not None and not first.cached
    if BF16:
        other = api.evaluate_model(
            spec, "pope", "dev", 4, image_free=False, store=store, device="cpu", dtype="bfloat16"
        )
        assert not other.cached  # a bfloat16 score is its own measurement, not the float32 one read back
        assert store.get_evaluation(dataclasses.replace(old, bench=old.bench + ":cpu-bfloat16")) is not None


def _check_inputs_hook(model: torch.nn.Module, seen: list[str]):
    """A forward pre-hook on the whole model that fails on any input tensor off the model's device, or floating and
    not in the model's dtype (pixel values come out of the processor as float32)."""
    param = next(model.parameters())

    def check(module, args, kwargs):
        for name, value in [*enumerate(args), *kwargs.items()]:
            if isinstance(value, torch.Tensor):
                assert value.device == param.device, f"{name} on {value.device}, model on {param.device}"
                if value.is_floating_point():
                    assert value.dtype == param.dtype, f"{name} is {value.dtype}, model is {param.dtype}"
                seen.append(str(name))

    return model.register_forward_pre_hook(check, with_kwargs=True)


@needs_bf16
@pytest.mark.parametrize("family", ["tiny_llava", "tiny_qwen"])
def test_bfloat16_model_calibrates_and_scores_with_inputs_in_its_dtype(family, request, tmp_path):
    spec, store = str(request.getfixturevalue(family)), PlanStore(tmp_path / "plans.duckdb")  # nothing cached
    loaded = load_model(spec, "cpu", "bfloat16")
    assert loaded.placement == Placement("cpu", "bfloat16") and loaded.model.dtype == torch.bfloat16
    seen: list[str] = []
    handle = _check_inputs_hook(loaded.model, seen)
    try:
        shapes_world = api.DataSource(shapesworld=True)  # a local checkpoint tunes on ShapesWorld only when asked
        features, _ = api.calibrate_model(spec, 4, 2, store=store, data=shapes_world, device="cpu", dtype="bfloat16")
        result = api.evaluate_model(spec, "all", "dev", 4, store=store, device="cpu", dtype="bfloat16")
        generated = api.evaluate_model(
            spec, "pope", "dev", 2, "generate", False, store=store, device="cpu", dtype="bfloat16"
        )
    finally:
        handle.remove()
    assert "pixel_values" in seen and "input_ids" in seen  # the checks ran on image batches
    assert all(np.isfinite(v) for row in (features.v_attn, features.v_flow, features.act_norm) for v in row)
    assert all(np.isfinite(v) and v >= 0 for layer in features.mlp_synflow for v in layer)
    assert result.questions == 3 * 4 + 4 and 0.0 <= result.pope_balanced_accuracy <= 1.0
    assert generated.pope["random"].n == 2
    assert loaded.model.config._attn_implementation == "sdpa"  # calibration switched the one copy back
    key, _ = api.calibration_questions(spec, 4, shapes_world)
    assert key.startswith("pope-calib:shapesworld-v") and store.get_calibration(loaded.model_id, key) is None
    assert store.get_calibration(loaded.model_id, key + ":cpu-bfloat16") is not None  # float32-CPU keys unchanged


@needs_bf16
def test_inputs_are_moved_and_cast_for_the_model():
    model = torch.nn.Linear(2, 2).to(torch.bfloat16)
    batch = {"input_ids": torch.ones(1, 3, dtype=torch.long), "pixel_values": torch.rand(1, 3), "note": "x"}
    moved = to_model(batch, model)
    assert moved["pixel_values"].dtype == torch.bfloat16 and moved["input_ids"].dtype == torch.long
    assert moved["note"] == "x"


@needs_bf16
def test_export_of_a_bfloat16_checkpoint_is_bfloat16_on_disk_and_reloads_exactly(tiny_llava_bf16, tmp_path):
    spec = str(tiny_llava_bf16)
    assert checkpoint_dtype(tiny_llava_bf16) == torch.bfloat16
    loaded = load_model(spec, "cpu", "bfloat16")
    shapes = loaded.adapter.layer_shapes()
    blueprint = make_blueprint(loaded.model_id, "llava", shapes, 0.4, np.ones(len(shapes)), None, m=8)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(blueprint.to_json()))
    out = tmp_path / "export"
    result = CliRunner().invoke(app, ["export", spec, "--plan", str(plan), "-o", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    printed = " ".join(result.stdout.split())  # rich wraps long lines
    assert f"({api.disk_size(out) / 2**20:,.1f} MiB on disk, bfloat16)" in printed
    dtypes = {
        entry["dtype"]
        for shard in out.glob("*.safetensors")
        for name, entry in safetensors_header(shard).items()
        if name != "__metadata__"
    }
    assert dtypes == {"BF16"}
    reloaded = load_pruned(out, "cpu", "bfloat16")
    pruned = materialize(loaded.adapter, blueprint)
    inputs = pruned.encode(["Is there a red circle?", "Name a shape."], [None, None]).inputs
    with torch.no_grad():
        expected, got = pruned.model(**inputs).logits, reloaded.model(**inputs).logits
    assert got.dtype == torch.bfloat16 and torch.equal(got, expected)


def test_export_keeps_a_float32_checkpoint_float32(tiny_llava, tmp_path):
    loaded = load_model(str(tiny_llava), "cpu", "float32")
    shapes = loaded.adapter.layer_shapes()
    blueprint = make_blueprint(loaded.model_id, "llava", shapes, 0.3, np.ones(len(shapes)), None, m=8)
    assert api.export_load_dtype(str(tiny_llava), "cpu", "auto") == "float32"
    out = api.export_plan(str(tiny_llava), blueprint, tmp_path / "export", store=PlanStore(), device="cpu")
    assert checkpoint_dtype(out) == torch.float32


@needs_bf16
def test_bfloat16_recovery_trains_bfloat16_adapters_and_ships_the_checkpoints_dtype(tiny_llava_bf16):
    from hipp_core.recover import RecoveryConfig, add_lora

    spec, store = str(tiny_llava_bf16), PlanStore()
    loaded = load_model(spec, "cpu", "bfloat16")
    shapes = loaded.adapter.layer_shapes()
    blueprint = make_blueprint(loaded.model_id, "llava", shapes, 0.4, np.ones(len(shapes)), None, m=8)
    peft_model = add_lora(materialize(loaded.adapter, blueprint), RecoveryConfig(rank=2))
    assert {p.dtype for p in peft_model.parameters() if p.requires_grad} == {torch.bfloat16}
    result = api.recover(spec, blueprint, steps=2, rank=2, batch_size=2, limit=2, store=store, device="cpu")
    assert checkpoint_dtype(result.artifact_dir) == torch.bfloat16
    assert result.after.pope and not result.cached
