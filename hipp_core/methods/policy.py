"""The trained preference-conditioned policy as a planning method: its allocation for a preference, at the asked
sparsity (its budget head overridden), so it is compared with the baselines at matched sparsity.

`planner` gathers what the policy's blueprints need for one model (shapes, calibration, unit scores, the model's
most recent policy); the API's `planner` and the dashboard use it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hipp_core import importance, validation
from hipp_core.blueprint import Blueprint
from hipp_core.errors import HippError
from hipp_core.grpo import load_policy
from hipp_core.methods.base import EQUAL_COUNTS_HELP, MethodConfig, ModelContext, option, register
from hipp_core.policies import policy_record
from hipp_core.policy import Planner


@dataclass(frozen=True)
class PolicyPlanConfig(MethodConfig):
    preference: tuple[float, float, float] = option(
        (1 / 3, 1 / 3, 1 / 3), "weights U,R,C (utility, robustness, compression) the policy is conditioned on"
    )
    equal_counts: bool = option(False, EQUAL_COUNTS_HELP)

    def check(self) -> None:
        validation.preference(self.preference)
        if not isinstance(self.equal_counts, bool):
            raise HippError(f"equal_counts must be true or false, got {self.equal_counts!r}")


def planner(context: ModelContext, with_policy: bool = True) -> Planner:
    """What blueprints of the model need, loaded once: shapes, calibration, Wanda-sp unit scores, and the model's
    most recently trained policy if there is one (`planner.trained`). Training a policy asks for none: it brings its
    own, and a stored one that an older version wrote must not stop it."""
    features = context.features
    loaded = context.loaded
    result = Planner(
        spec=context.spec,
        model_id=loaded.model_id,
        family=loaded.family,
        shapes=context.shapes,
        features=features,
        scores=importance.unit_scores(features, importance.DEFAULT),
        m=context.m,
        stock_heads=context.stock_heads,
    )
    record = policy_record(loaded.model_id, loaded.path, context.store) if with_policy else None
    if record is not None and record.checkpoint_path:
        result.policy, _ = load_policy(Path(record.checkpoint_path))
        result.policy_id = record.policy_id
    return result


@register("policy", "policy", PolicyPlanConfig, "the trained preference-conditioned policy at this sparsity")
def plan(context: ModelContext, config: PolicyPlanConfig, sparsity: float) -> Blueprint:
    return planner(context).blueprint(config.preference, sparsity, config.equal_counts)
