"""Shared fixtures: tiny random checkpoints in real Hugging Face layouts, built once per session."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hipp_core.models.zoo import DecoderSize, build_model, build_processor

TINY = DecoderSize(hidden=32, layers=2, heads=4, kv_heads=2, intermediate=48)
# Enough heads per KV group (4) and layers (3) that random plans drop whole groups and keep uneven head counts.
GQA = DecoderSize(hidden=64, layers=3, heads=8, kv_heads=2, intermediate=96)


def tiny_adapter(arch: str, size: DecoderSize = GQA, seed: int = 1):
    """An in-memory random model of `arch` behind its family adapter."""
    from hipp_core.models.adapters import adapter_class

    processor = build_processor(arch)
    return adapter_class(arch)(build_model(arch, processor, seed=seed, size=size).eval(), processor)


def random_blueprint(adapter, rng, budget: float | None = None):
    """A valid plan with random unit scores and allocation (budget drawn in [0.1, 0.6] unless given)."""
    import numpy as np

    from hipp_core.blueprint import UnitScores, make_blueprint

    shapes = adapter.layer_shapes()
    scores = [UnitScores(head=rng.random(s.n_heads), mlp=rng.random(s.intermediate)) for s in shapes]
    alpha = rng.dirichlet(np.ones(len(shapes)))
    budget = float(rng.uniform(0.1, 0.6)) if budget is None else budget
    return make_blueprint("tiny", adapter.model_type, shapes, budget, alpha, scores, m=8)


def uneven_blueprint(adapter):
    """A plan for a `GQA`-sized model whose layers keep different numbers of KV groups (2, 1, 2), of query heads per
    group (2, 3, 1) and of MLP channels (64, 8, 0): a stock export pads heads inside kept groups, whole KV groups and
    MLP channels, and a static cache must hold 2, 1 and 2 KV heads."""
    import numpy as np

    from hipp_core.blueprint import LayerPlan, blueprint_from_layers

    rng = np.random.default_rng(0)
    channels = [tuple(sorted(rng.choice(GQA.intermediate, n, replace=False).tolist())) for n in (64, 8, 0)]
    layers = [
        LayerPlan((0, 1), (1, 2, 4, 7), channels[0]),
        LayerPlan((1,), (5, 6, 7), channels[1]),
        LayerPlan((0, 1), (0, 4), channels[2]),
    ]
    shapes = adapter.layer_shapes()
    return blueprint_from_layers("tiny", adapter.model_type, shapes, 0.5, layers, 8, 0.9, "manual", None, "wanda")


def save_tiny(arch: str, path: Path, legacy_processor: bool = False, dtype=None) -> Path:
    """A random model of `arch` saved the way hub checkpoints are laid out (sharded safetensors), in `dtype` (a torch
    dtype; default float32)."""
    processor = build_processor(arch)
    model = build_model(arch, processor, seed=3, size=TINY)
    if dtype is not None:
        model.to(dtype)
    model.save_pretrained(path, max_shard_size="100KB")
    if legacy_processor:  # llava-hf layout: preprocessor_config.json + tokenizer files + a thin processor_config
        processor.tokenizer.save_pretrained(path)
        processor.image_processor.save_pretrained(path)
        (path / "processor_config.json").write_text(
            json.dumps(
                {
                    "processor_class": "LlavaProcessor",
                    "patch_size": 16,
                    "num_additional_image_tokens": 1,
                    "vision_feature_select_strategy": "default",
                }
            )
        )
        (path / "chat_template.jinja").write_text(processor.chat_template)
    else:
        processor.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory) -> Path:
    return save_tiny("llava", tmp_path_factory.mktemp("ckpt") / "llava-tiny-hf", legacy_processor=True)


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> Path:
    return save_tiny("qwen2_5_vl", tmp_path_factory.mktemp("ckpt") / "qwen2.5-vl-tiny")


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hipp_core.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.fixture(autouse=True, scope="session")
def isolated_store(tmp_path_factory):
    """Every test writes to its own plan store, never to the user's ~/.hipp."""
    import os

    os.environ["HIPP_HOME"] = str(tmp_path_factory.mktemp("hipp_home"))
    yield


def steered_policy(spec: str) -> str:
    """Train a one-iteration policy for `spec` (seconds), then set its budget head to follow the compression weight:
    one iteration barely moves it from its preference-blind start, and pages need blueprints that react to the
    preference. Quality is irrelevant to the dashboard tests that use it."""
    import torch

    from hipp_core import api
    from hipp_core.data.source import DataSource
    from hipp_core.grpo import GRPOConfig
    from hipp_core.policy import STATE_FEATURES

    config = GRPOConfig(iters=1, group_size=2, prefs_per_iter=2, fixed_budget_groups=1, limit=4)
    record = api.train_policy(spec, config=config, data=DataSource(shapesworld=True))  # a local checkpoint too
    checkpoint = torch.load(record.checkpoint_path, weights_only=True)
    head = checkpoint["policy"]  # budget head: Linear([pooled layer state, w] → h), tanh, Linear(h → Beta's a, b)
    first, second = torch.zeros_like(head["budget.0.weight"]), torch.zeros_like(head["budget.2.weight"])
    first[0, len(STATE_FEATURES) + 2] = 1.0  # hidden unit 0 = tanh(w_compression)
    second[0, 0], second[1, 0] = 6.0, -6.0  # more compression: larger a, smaller b, a larger mean budget
    head["budget.0.weight"], head["budget.2.weight"] = first, second
    head["budget.0.bias"] = torch.zeros_like(head["budget.0.bias"])
    torch.save(checkpoint, record.checkpoint_path)
    return spec


_PLAIN_LOAD = """
import sys
import torch
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

torch.set_num_threads(1)
path, remote, tolerance = sys.argv[1], sys.argv[2] == "remote", float(sys.argv[3])
ref = torch.load("reference.pt", weights_only=True)
# An export's auto_map serves both Auto classes; a stock VLM config is registered with the image-text one only.
for auto in (AutoModelForImageTextToText, AutoModelForCausalLM) if remote else (AutoModelForImageTextToText,):
    model = auto.from_pretrained(path, trust_remote_code=remote).eval()
    assert type(model).__name__.startswith("HippPruned") == remote, type(model)
    assert remote or type(model).__module__.startswith("transformers.models."), type(model)
    if "lm_head" in ref:
        assert torch.equal(model.lm_head.weight, ref["lm_head"]), "lm_head was re-initialised"
    with torch.no_grad():
        logits = model(**ref["inputs"]).logits
    diff = (logits - ref["logits"]).abs().max().item()
    assert diff <= tolerance, f"{auto.__name__}: max logit diff {diff}"
assert "hipp_core" not in sys.modules
print("ok")
"""


def assert_plain_transformers_loads(
    path: Path, tmp_path: Path, reference: dict, trust_remote_code: bool = True, tolerance: float = 1e-5
) -> None:
    """In a fresh process without hipp_core importable, plain transformers loads the export in `path` and reproduces
    `reference["logits"]` from `reference["inputs"]` within `tolerance`. With `trust_remote_code` (exact exports) the
    model must be the export's pruned class, through both Auto classes; without (stock exports) a class of
    transformers itself, through AutoModelForImageTextToText."""
    import os

    import torch

    torch.save(reference, tmp_path / "reference.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "hf_modules"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    remote = "remote" if trust_remote_code else "stock"
    child = subprocess.run(
        [sys.executable, "-c", _PLAIN_LOAD, str(path), remote, str(tolerance)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0 and child.stdout.strip().endswith("ok"), child.stderr[-3000:]
