"""Plan-level GRPO for the pruning policy, with the SynFlow stability gate (our design; docs/design.md, Reward, gate, GRPO).

Each iteration draws B preferences (a simplex corner, in turn, plus Dirichlet(1,1,1) draws) and, for each, G plans
from the policy. Part of the groups run with the budget overridden to a shared random ρ: their plans differ only in
allocation, which is what trains "best allocation at matched sparsity". Rewards come from the dev split relative to
the dense model; advantages are normalized within each group; the update is the clipped-ratio objective with a KL
penalty (k3 estimator) to the initial policy, a few Adam epochs per iteration.

Self-imitation: every evaluated plan is kept in an archive (its budget, allocation and objectives), and each update
also raises the log-probability, under each group's preference, of the archive's best plan for that preference (for
a fixed-budget group, the best within `imitation_window` of its budget). GRPO's clipped steps alone left the
deterministic plans next to the uniform start after 16 iterations although the groups had sampled far better plans
(benchmarks/steering.py; docs/design.md, Reward, gate, GRPO); imitating the best plan seen per preference carries
what the evaluations found into the means, and different preferences pick different elites. With
`imitation_replay` > 0, each update also imitates the archive's best plan for that many random (preference, budget)
pairs: an iteration's few groups teach the split and allocation heads little about how a plan should change with the
preference, and the archive already holds the answer for preferences no group drew (docs/design.md, Reward, gate,
GRPO).

The stability gate, when on (τ > 0; off by default, docs/design.md says why), scores plans that would collapse a
layer (a layer keeping less than τ of its SynFlow saliency) as a collapsed model would score (chance on both
benchmarks, at the plan's real compression) instead of evaluating them. A random share of gated plans is evaluated
anyway (audits) to measure how often the gate is wrong: a false gate is an audited plan whose real reward would have
been above its group's median.

Every evaluation goes through the evaluator and hence the plan store: a killed run, rerun, resumes from its last
checkpoint (policy, reference policy, optimizer, curve), redraws the same plans (seeded per iteration) and finds
their evaluations in the store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from hipp_core.blueprint import Blueprint
from hipp_core.calibrate import CalibrationFeatures
from hipp_core.errors import HippError
from hipp_core.evaluation.backends import Evaluator
from hipp_core.evaluation.engine import EvalResult
from hipp_core.evaluation.stored import load_benchmark
from hipp_core.objectives import NAMES
from hipp_core.objectives import values as objective_values
from hipp_core.policy import STATE_FEATURES, Planner, PlanSample, PolicyConfig, PrunePolicy
from plan_store import PlanStore
from plan_store.identity import canonical_json, digest
from plan_store.pareto import non_dominated

CORNERS = tuple(tuple(float(i == j) for j in range(len(NAMES))) for i in range(len(NAMES)))
REWARDS = ("linear", "tchebycheff")
TCHEBYCHEFF_RHO = 0.05  # weight of the linear term that makes augmented Tchebycheff strictly Pareto-monotone


@dataclass(frozen=True)
class GRPOConfig:
    iters: int = 16
    prefs_per_iter: int = 4  # B
    group_size: int = 8  # G
    fixed_budget_groups: int = 2  # of the B groups, how many run with an overridden (shared, random) budget
    fixed_budget_range: tuple[float, float] = (0.15, 0.6)
    epochs: int = 4
    lr: float = 3e-3
    clip: float = 0.2
    kl_coef: float = 0.02
    # Weight of the self-imitation term; 0 = plain GRPO (what checkpoints from before the archive were trained with).
    imitation_coef: float = 0.5
    imitation_window: float = 0.03  # a fixed-budget group imitates archive plans within this distance of its budget
    # Random (preference, fixed budget) pairs per update whose best archive plan is imitated too; 0 = only the
    # iteration's own groups (what the shipped policies were trained with).
    imitation_replay: int = 0
    reward: str = "linear"
    # A plan is gated when some layer keeps less than this share of its SynFlow saliency; 0 = no gate (the default:
    # no threshold was right often enough, benchmarks/gate_audit.py; docs/design.md, Reward, gate, GRPO).
    gate_tau: float = 0.0
    audit_rate: float = 0.25
    split: str = "dev"
    limit: int | None = 100
    seed: int = 0
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    # What the run learnt from, by content (hipp_core.data.source): the reward questions' data key and the stored
    # calibration behind the policy's state. Empty for ShapesWorld, so runs from before these fields keep their ids.
    data: str = ""
    calibration: str = ""

    def __post_init__(self) -> None:
        checks = [
            (self.iters >= 1, f"--iters must be at least 1, got {self.iters}"),
            (
                self.group_size >= 2,
                f"--group-size must be at least 2 (advantages compare plans), got {self.group_size}",
            ),
            (self.prefs_per_iter >= 1, f"preferences per iteration must be at least 1, got {self.prefs_per_iter}"),
            (
                0 <= self.fixed_budget_groups <= self.prefs_per_iter,
                f"fixed-budget groups must be between 0 and {self.prefs_per_iter}, got {self.fixed_budget_groups}",
            ),
            (self.reward in REWARDS, f"unknown reward {self.reward!r}; use one of {', '.join(REWARDS)}"),
            (0 <= self.gate_tau < 1, f"gate threshold must be in [0, 1), got {self.gate_tau}"),
            (0 <= self.audit_rate <= 1, f"audit rate must be in [0, 1], got {self.audit_rate}"),
            (self.imitation_coef >= 0, f"--imitation must be at least 0 (0 = plain GRPO), got {self.imitation_coef}"),
            (self.imitation_window > 0, f"imitation window must be above 0, got {self.imitation_window}"),
            (self.imitation_replay >= 0, f"--replay must be at least 0 (0 = no replay), got {self.imitation_replay}"),
        ]
        for ok, message in checks:
            if not ok:
                raise HippError(message)

    def to_json(self) -> dict:
        data = asdict(self)
        data["fixed_budget_range"] = list(self.fixed_budget_range)
        return data

    @classmethod
    def from_json(cls, data: dict) -> GRPOConfig:
        data = dict(data)
        # Checkpoints written before the compression prior or the archive existed were trained without them.
        data["policy"] = PolicyConfig(**{"compression_prior": False, **data["policy"]})
        data = {"imitation_coef": 0.0, **data}
        data["fixed_budget_range"] = tuple(data["fixed_budget_range"])
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def identity(self) -> dict:
        """What makes two runs the same run (iters is not: a longer run continues a shorter one)."""
        data = self.to_json()
        data.pop("iters")
        for name in ("data", "calibration"):
            if not data[name]:
                data.pop(name)
        if not data["imitation_replay"]:  # runs without replay keep the ids they had before it existed
            data.pop("imitation_replay")
        if not data["imitation_coef"]:  # plain GRPO keeps the ids it had before self-imitation existed
            data.pop("imitation_coef")
            data.pop("imitation_window")
            data.pop("imitation_replay", None)
        return data


# -- reward and gate ----------------------------------------------------------------------------------------------
def objectives(result: EvalResult, dense: EvalResult, achieved: float) -> np.ndarray:
    """The objectives' values (in `objectives.NAMES` order) relative to the dense model on the same questions."""
    return objective_values(result.to_metrics(), dense.to_metrics(), achieved)


def collapsed_objectives(dense: EvalResult, chance_sqa: float, achieved: float) -> np.ndarray:
    """What a collapsed model scores: chance on ScienceQA, 0.5 POPE balanced accuracy, at its real compression."""
    chance = {"sqa.accuracy": chance_sqa, "pope_balanced_accuracy": 0.5}
    return objective_values(chance, dense.to_metrics(), achieved)


def reward(obj: np.ndarray, w: Sequence[float], kind: str = "linear") -> float:
    w = np.asarray(w, dtype=float)
    if kind == "linear":
        return float(w @ obj)
    # Augmented Tchebycheff around the utopia (dense quality at full compression).
    return float(-np.max(w * (1.0 - obj)) + TCHEBYCHEFF_RHO * (w @ obj))


def stability(blueprint: Blueprint, features: CalibrationFeatures) -> float:
    """Minimum over layers of the share of the layer's SynFlow saliency its kept units retain (1 = dense)."""
    shares = []
    for plan, heads, mlp in zip(blueprint.layers, features.head_synflow, features.mlp_synflow):
        heads, mlp = np.asarray(heads), np.asarray(mlp)
        total = heads.sum() + mlp.sum()
        kept = heads[list(plan.heads)].sum() + mlp[list(plan.mlp)].sum()
        shares.append(kept / total if total > 0 else 1.0)
    return float(min(shares))


# -- trainer state ------------------------------------------------------------------------------------------------
@dataclass
class TrainState:
    iteration: int = 0
    curve: list[dict] = field(default_factory=list)
    history: list[list[float]] = field(default_factory=list)  # objectives of every evaluated plan (front size)
    scored: list[str] = field(default_factory=list)  # distinct plan ids evaluated for training: the cost unit
    archive: list[dict] = field(default_factory=list)  # every evaluated decision: budget, alpha, objectives
    gated: int = 0
    audited: int = 0
    false_gates: int = 0
    # Evaluations the plan store answered (scored earlier, e.g. by a killed run or another job): wall time in `curve`
    # counts them at the cost of a read, so a reader needs this count to judge a run's seconds.
    from_store: int = 0


def policy_id_for(model_id: str, config: GRPOConfig) -> str:
    return digest(model_id, canonical_json(config.identity()))


def save_checkpoint(
    path: Path, model_id: str, policy: PrunePolicy, ref: PrunePolicy, opt, state: TrainState, config
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "policy": policy.state_dict(),
            "reference": ref.state_dict(),
            "optimizer": opt.state_dict(),
            "n_features": len(STATE_FEATURES),
            "model_id": model_id,
            "config": json.dumps(config.to_json()),
            "state": json.dumps(asdict(state)),
        },
        tmp,
    )
    tmp.replace(path)


def load_policy(path: Path) -> tuple[PrunePolicy, dict]:
    """The trained policy from a checkpoint (weights only: no code is unpickled) and its raw checkpoint."""
    try:
        ckpt = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise HippError(f"policy checkpoint {path} is missing; retrain with `hipp train-policy`") from None
    try:
        config = GRPOConfig.from_json(json.loads(ckpt["config"]))
        policy = PrunePolicy(ckpt["n_features"], config.policy)
        policy.load_state_dict(ckpt["policy"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise HippError(
            f"policy checkpoint {path} does not fit this version's policy network ({type(exc).__name__}); "
            "retrain with `hipp train-policy MODEL --no-resume`"
        ) from None
    return policy.eval(), ckpt


# -- the loop -----------------------------------------------------------------------------------------------------
Progress = Callable[..., None]


@dataclass
class GRPOTrainer:
    planner: Planner
    evaluator: Evaluator
    store: PlanStore
    config: GRPOConfig
    checkpoint: Path
    progress: Progress | None = None

    def __post_init__(self) -> None:
        torch.manual_seed(self.config.seed)
        self.policy = PrunePolicy(len(STATE_FEATURES), self.config.policy)
        self.ref = PrunePolicy(len(STATE_FEATURES), self.config.policy)
        self.ref.load_state_dict(self.policy.state_dict())
        self.opt = torch.optim.Adam(self.policy.parameters(), lr=self.config.lr)
        self.state = TrainState()
        self.policy_id = policy_id_for(self.planner.model_id, self.config)
        self.planner.policy, self.planner.policy_id = self.policy, self.policy_id

    def resume(self) -> bool:
        if not self.checkpoint.exists():
            return False
        policy, ckpt = load_policy(self.checkpoint)
        self.policy.load_state_dict(policy.state_dict())
        self.ref.load_state_dict(ckpt["reference"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.state = TrainState(**json.loads(ckpt["state"]))
        return True

    def run(self) -> TrainState:
        cfg = self.config
        dense = self.evaluator.evaluate([None])[0]
        chance = _chance_sqa(self.evaluator)
        state_t = self.planner.state()
        while self.state.iteration < cfg.iters:
            t0 = time.perf_counter()
            it = self.state.iteration
            w, budgets = self._preferences(it)
            samples = self.policy.act(state_t, w, budgets, seed=cfg.seed * 1_000_003 + it)
            prefs = [tuple(float(x) for x in row) for row in w]
            blueprints = [self.planner.make(s, p, "policy") for s, p in zip(samples, prefs)]
            objs, audits = self._score(blueprints, samples, dense, chance, it)
            rewards = np.array([reward(o, p, cfg.reward) for o, p in zip(objs, prefs)])
            advantages = _group_advantages(rewards, cfg.group_size)
            self._audit_outcomes(audits, rewards, prefs)
            elites = [(prefs[first], plan) for first, plan in self._elites(prefs, samples)]
            kl = self._update(state_t, w, samples, advantages, elites, self._replay(it))
            front = non_dominated(np.array(self.state.history), (True, True, True)).sum() if self.state.history else 0
            self.state.iteration += 1
            self.state.curve.append(
                {
                    "iter": it + 1,
                    "reward_mean": float(rewards.mean()),
                    "reward_max": float(rewards.max()),
                    "front_size": int(front),
                    "evaluations": len(self.state.scored),
                    "gated": self.state.gated,
                    "audited": self.state.audited,
                    "false_gates": self.state.false_gates,
                    "from_store": self.state.from_store,
                    "budget_mean": float(np.mean([s.budget for s in samples])),
                    "kl": kl,
                    "seconds": time.perf_counter() - t0,
                }
            )
            self._save()
            if self.progress:
                self.progress("GRPO", it + 1, cfg.iters, {"reward": float(rewards.mean()), "front": float(front)})
        return self.state

    def _preferences(self, it: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, it])
        prefs = [CORNERS[it % len(CORNERS)], *rng.dirichlet(np.ones(len(NAMES)), size=cfg.prefs_per_iter - 1)]
        w = torch.tensor(np.repeat(np.array(prefs), cfg.group_size, axis=0), dtype=torch.float32)
        if cfg.fixed_budget_groups == 0:
            return w, None
        # Free-budget groups keep NaN here; the policy draws their budget. Overridden groups share one random ρ.
        lo, hi = cfg.fixed_budget_range
        per_group = [float("nan")] * (cfg.prefs_per_iter - cfg.fixed_budget_groups)
        per_group += list(rng.uniform(lo, hi, size=cfg.fixed_budget_groups))
        return w, torch.tensor(np.repeat(per_group, cfg.group_size), dtype=torch.float32)

    def _score(self, blueprints: list[Blueprint], samples: list[PlanSample], dense: EvalResult, chance: float, it: int):
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, it, 1])
        stable = [stability(bp, self.planner.features) >= cfg.gate_tau for bp in blueprints]
        audit = [not ok and rng.random() < cfg.audit_rate for ok in stable]
        todo = [bp for bp, ok, a in zip(blueprints, stable, audit) if ok or a]
        fresh = self.evaluator.evaluate(todo, self.progress)
        self.state.from_store += sum(r.cached for r in fresh)
        results = iter(fresh)
        objs, audits = [], []
        for i, (bp, ok, a) in enumerate(zip(blueprints, stable, audit)):
            real = objectives(next(results), dense, bp.achieved) if ok or a else None
            if ok:
                objs.append(real)
                self.state.history.append(real.tolist())
                if bp.plan_id not in self.state.scored:
                    self.state.scored.append(bp.plan_id)
                    sample = samples[i]
                    self.state.archive.append(
                        {"budget": sample.budget, "alpha": sample.alpha.tolist(), "objectives": real.tolist()}
                    )
                continue
            self.state.gated += 1
            objs.append(collapsed_objectives(dense, chance, bp.achieved))
            if a:
                audits.append((i, real))
        return objs, audits

    def _audit_outcomes(self, audits, rewards: np.ndarray, prefs_of: list[tuple[float, ...]]) -> None:
        g = self.config.group_size
        for i, real in audits:
            group = rewards[(i // g) * g : (i // g + 1) * g]
            self.state.audited += 1
            self.state.false_gates += int(reward(real, prefs_of[i], self.config.reward) > np.median(group))

    def _archive_best(self, pref: Sequence[float], budget: float | None) -> PlanSample | None:
        """The archive's best decision for `pref`: at a fixed `budget`, the best allocation within `imitation_window`
        of it, ranked with every plan's compression set to that budget (no credit for a larger plan) and imitated at
        the plan's own budget without the budget term; with `budget` None, the best decision at any budget. None when
        nothing is in reach."""
        budgets = np.array([e["budget"] for e in self.state.archive])
        ranked = np.array([e["objectives"] for e in self.state.archive])
        reach = np.full(len(budgets), True)
        if budget is not None:
            reach = np.abs(budgets - budget) <= self.config.imitation_window
            ranked[:, NAMES.index("compression")] = budget
        if not reach.any():
            return None
        rewards = np.array([reward(o, pref, self.config.reward) for o in ranked])
        entry = self.state.archive[int(np.flatnonzero(reach)[np.argmax(rewards[reach])])]
        return PlanSample(entry["budget"], np.asarray(entry["alpha"]), budget is not None)

    def _elites(self, prefs: list[tuple[float, ...]], samples: list[PlanSample]) -> list[tuple[int, PlanSample]]:
        """Per group, (its first row, the archive's best decision for the group's preference, at the group's budget
        when it is fixed). Groups with no archive plan in reach get none."""
        if not self.config.imitation_coef or not self.state.archive:
            return []
        elites = []
        for first in range(0, len(samples), self.config.group_size):
            sample = samples[first]
            best = self._archive_best(np.asarray(prefs[first]), sample.budget if sample.overridden else None)
            if best is not None:
                elites.append((first, best))
        return elites

    def _replay(self, it: int) -> list[tuple[tuple[float, ...], PlanSample]]:
        """`imitation_replay` (preference, elite) pairs for iteration `it`: Dirichlet preferences at budgets drawn
        like the fixed-budget groups', seeded per iteration apart from the groups' draws (a resumed run repeats them)."""
        cfg = self.config
        if not cfg.imitation_coef or not cfg.imitation_replay or not self.state.archive:
            return []
        rng = np.random.default_rng([cfg.seed, it, 2])  # the audit draws take [seed, it, 1]
        pairs = []
        for _ in range(cfg.imitation_replay):
            pref = tuple(float(x) for x in rng.dirichlet(np.ones(len(NAMES))))
            best = self._archive_best(np.asarray(pref), float(rng.uniform(*cfg.fixed_budget_range)))
            if best is not None:
                pairs.append((pref, best))
        return pairs

    def _update(
        self,
        state_t: torch.Tensor,
        w: torch.Tensor,
        samples: list[PlanSample],
        adv: np.ndarray,
        elites: list[tuple[tuple[float, ...], PlanSample]],
        replay: list[tuple[tuple[float, ...], PlanSample]] = (),
    ) -> float:
        """Clipped-ratio steps on the groups' advantages, each also raising the mean log-probability of the groups'
        elites and, as a term of its own, of the replayed ones (each under the preference it is best for)."""
        cfg = self.config
        plans = _plan_tensors(samples)
        adv_t = torch.tensor(adv, dtype=torch.float32)
        with torch.no_grad():
            old = self.policy.log_prob(state_t, w, *plans)
            ref = self.ref.log_prob(state_t, w, *plans)
        imitated = [
            (torch.tensor([pref for pref, _ in rows], dtype=torch.float32), *_plan_tensors([p for _, p in rows]))
            for rows in (elites, replay)
            if rows
        ]
        kl_value = 0.0
        for _ in range(cfg.epochs):
            new = self.policy.log_prob(state_t, w, *plans)
            ratio = torch.exp((new - old).clamp(-20, 20))
            surrogate = torch.minimum(ratio * adv_t, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv_t)
            log_r = (ref - new).clamp(-20, 20)
            kl = torch.exp(log_r) - log_r - 1
            loss = -(surrogate - cfg.kl_coef * kl).mean()
            for rows in imitated:
                loss = loss - cfg.imitation_coef * self.policy.log_prob(state_t, *rows).mean()
            self.opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), 1.0)
            self.opt.step()
            kl_value = kl.mean().item()
        return kl_value

    def _save(self) -> None:
        save_checkpoint(
            self.checkpoint, self.planner.model_id, self.policy, self.ref, self.opt, self.state, self.config
        )
        self.store.put_policy(
            self.policy_id, self.planner.model_id, self.config.to_json(), self.checkpoint, self.state.curve
        )


def _plan_tensors(plans: list[PlanSample]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Budgets, allocations and budget-overridden flags of decisions, as `PrunePolicy.log_prob` reads them."""
    return (
        torch.tensor([p.budget for p in plans], dtype=torch.float32),
        torch.tensor(np.stack([p.alpha for p in plans]), dtype=torch.float32),
        torch.tensor([p.overridden for p in plans]),
    )


def _group_advantages(rewards: np.ndarray, g: int) -> np.ndarray:
    groups = rewards.reshape(-1, g)
    return ((groups - groups.mean(1, keepdims=True)) / (groups.std(1, keepdims=True) + 1e-3)).reshape(-1)


def _chance_sqa(evaluator: Evaluator) -> float:
    """Expected accuracy of uniform guessing on the evaluator's ScienceQA questions."""
    sqa = load_benchmark("sqa", evaluator.split, evaluator.limit, evaluator.data)["sqa"]
    sqa = [item for items in sqa.values() for item in items]
    return float(np.mean([1.0 / len(item.choices) for item in sqa])) if sqa else 0.0
