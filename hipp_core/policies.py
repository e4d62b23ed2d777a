"""Trained policies on disk and in the store: where checkpoints live, and which policy a model's blueprints use."""

from __future__ import annotations

import json
from pathlib import Path

from hipp_core.config import home_dir
from hipp_core.grpo import GRPOConfig, load_policy, policy_id_for
from hipp_core.models.loading import inspect_checkpoint
from plan_store import PlanStore
from plan_store.records import PolicyRecord

BUNDLED_POLICY = "hipp_policy.pt"  # a policy shipped inside a checkpoint directory, as the embedded models have


def policy_record(model_id: str, path: Path, store: PlanStore) -> PolicyRecord | None:
    """The policy blueprints of this model come from: the most recently trained one in the store, else a policy
    shipped inside the checkpoint directory (`hipp_policy.pt`, as the embedded models have) that was trained for
    exactly these weights, registered in the store on first use. No model is loaded."""
    record = store.latest_policy(model_id)
    bundled = Path(path) / BUNDLED_POLICY
    if record is not None or not bundled.exists():
        return record
    _, ckpt = load_policy(bundled)
    if ckpt.get("model_id") != model_id:
        return None
    if store.get_model(model_id) is None:  # the store may not have met this model yet
        config = json.loads((Path(path) / "config.json").read_text())
        store.put_model(model_id, str(path), inspect_checkpoint(Path(path)), config)
    config = json.loads(ckpt["config"])
    curve = json.loads(ckpt["state"])["curve"]
    return store.put_policy(policy_id_for(model_id, GRPOConfig.from_json(config)), model_id, config, bundled, curve)


def policy_checkpoint_path(policy_id: str) -> Path:
    """Trained policies are user state (they cost evaluations), so they live beside the store, not in the cache."""
    return home_dir() / "policies" / f"{policy_id}.pt"
