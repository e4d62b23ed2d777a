"""The hierarchical preference-conditioned pruning policy (our design; docs/design.md, The policy).

One call maps a preference w = (utility, robustness, compression) on the simplex to a whole plan:
- budget head: ρ = ρ_min + (ρ_max − ρ_min)·x, x ~ Beta(a(w), b(w));
- split head, conditioned on w and ρ: the attention share β ~ Beta(c(w, ρ), d(w, ρ)) of the allocation, the rest
  going to MLP blocks;
- allocation head, conditioned on w and ρ: per kind, a distribution over the L layers, a ~ Dirichlet(κ·L·softmax(
  z_attn(w, ρ))) and m ~ Dirichlet(κ·L·softmax(z_mlp(w, ρ))); α = (β·a, (1 − β)·m) weighs the 2L blocks, which
  `blueprint.allocate_split` water-fills into per-block sparsities (s_b ∝ α_b).
Blocks rather than layers because where to prune includes which kind of unit: on the embedded models, removing MLP
channels costs far less than removing heads at the same parameter count (benchmarks/matched_sparsity.py). The split
is its own Beta because one Dirichlet over the 2L blocks makes the attention share Beta(κL, κL) in disguise: its
spread was ±0.04 at κ = 12, so GRPO never sampled a plan that spared attention, the plans that win on these models.
log π(plan | w) = log p(ρ | w) + log p(β | w, ρ) + log p(a | w, ρ) + log p(m | w, ρ). With the budget overridden
(matched sparsity) the budget term drops out. Deterministic mode, which is what `hipp blueprint` and the dashboard
show, takes the budget Beta's mode and the other heads' means. The mode because a Beta skewed against an end of the
budget range keeps its mean well inside it, so the preferences that want the most compression never showed the range's
end although their samples reached it (docs/design.md, The policy).

The state of layer l is its calibration features normalized across layers (visual sensitivity v_attn / v_flow,
activation norm, Wanda importance, OWL outlier ratio, SynFlow share, parameter share) plus depth l/(L−1).
A shared per-layer encoder sees [state_l, w, ρ]; a mean-pooled summary of all layers gives every layer (and the
budget head) the context of the whole network. The network is a few thousand parameters, so a call is well under a
millisecond; the blueprint rounding around it dominates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.distributions import Beta, Dirichlet

from hipp_core import validation
from hipp_core.blueprint import Blueprint, LayerShape, UnitScores, count_params, make_blueprint
from hipp_core.calibrate import CalibrationFeatures
from hipp_core.errors import HippError
from hipp_core.objectives import NAMES

_BUDGET_SPREAD = 6.0  # a + b − 2 of the initial budget Beta
_BUDGET_INIT_LOGIT = math.log(math.expm1(_BUDGET_SPREAD / 2))  # softplus⁻¹(3): Beta(4, 4) before any prior
STATE_FEATURES = ("v_attn", "v_flow", "act_norm", "wanda", "outliers", "synflow_share", "param_share", "depth")


@dataclass(frozen=True)
class PolicyConfig:
    hidden: int = 32
    budget_min: float = 0.05  # ρ range the budget head can propose
    budget_max: float = 0.7
    concentration: float = 12.0  # initial κ: each kind's Dirichlet total = κ·L; higher = less exploration
    split_spread: float = 4.0  # a + b of the attention share's initial Beta(a, b), a = b: lower = more exploration
    s_max: float = 0.9  # no layer loses more than this share of its parameters
    # The budget head starts with its mode rising linearly with the compression weight (ρ ≈ 0.08 at w_c = 0 to 0.67
    # at w_c = 1) instead of one mid budget for every w: from a w-blind start the head barely moved with the preference
    # in training, which left the policy's front a narrow band of sparsities (docs/design.md, The policy).
    compression_prior: bool = True

    def __post_init__(self) -> None:
        if not self.split_spread > 2:
            raise HippError(f"split_spread must be above 2 (Beta parameters of at least 1), got {self.split_spread}")

    def to_json(self) -> dict:
        return asdict(self)


def layer_state(features: CalibrationFeatures, shapes: Sequence[LayerShape]) -> np.ndarray:
    """[L, len(STATE_FEATURES)]: each feature z-scored across layers (a feature constant across layers becomes 0),
    depth kept in [0, 1]. Normalizing makes the same network meaningful for an 8-layer toy and a 32-layer 7B."""
    L = features.n_layers
    wanda = [float(np.mean(h)) + float(np.mean(m)) for h, m in zip(features.head_wanda, features.mlp_wanda)]
    params = [s.dense_params for s in shapes]
    columns = [
        features.v_attn,
        features.v_flow,
        features.act_norm,
        wanda,
        features.outlier_ratio,
        features.synflow_share(),
        [p / sum(params) for p in params],
    ]
    state = np.zeros((L, len(STATE_FEATURES)), dtype=np.float32)
    for j, col in enumerate(columns):
        x = np.asarray(col, dtype=np.float64)
        std = x.std()
        state[:, j] = (x - x.mean()) / std if std > 1e-12 else 0.0
    state[:, -1] = np.arange(L) / max(L - 1, 1)
    return state


def beta_mode(dist: Beta) -> torch.Tensor:
    """The most likely value of each Beta, (a − 1)/(a + b − 2); the policy's Betas have a, b > 1 (softplus + 1), and
    the uniform Beta(1, 1), reachable only when both softplus outputs underflow, gets its mean ½."""
    a, b = dist.concentration1, dist.concentration0
    spread = a + b - 2
    return torch.where(spread > 1e-6, (a - 1) / spread.clamp_min(1e-6), torch.full_like(a, 0.5))


@dataclass
class PlanSample:
    """One sampled (or deterministic) decision: the budget in [budget_min, budget_max] and the allocation α."""

    budget: float
    alpha: np.ndarray
    overridden: bool


class PrunePolicy(nn.Module):
    def __init__(self, n_features: int, config: PolicyConfig = PolicyConfig()) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.encode = nn.Sequential(nn.Linear(n_features + len(NAMES) + 1, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh())
        self.allocation = nn.Sequential(nn.Linear(2 * h, h), nn.Tanh(), nn.Linear(h, 2))  # attention, MLP
        self.budget = nn.Sequential(nn.Linear(n_features + len(NAMES), h), nn.Tanh(), nn.Linear(h, 2))
        self.split = nn.Sequential(nn.Linear(n_features + len(NAMES) + 1, h), nn.Tanh(), nn.Linear(h, 2))
        self.log_kappa = nn.Parameter(torch.tensor(math.log(config.concentration)))
        # Start from the uniform allocation (an even split, uniform over layers) and a Beta(4, 4) budget (moved
        # along the compression weight by `budget_prior`), so the first plans are the uniform baseline's neighbours
        # and learning moves away from it only where rewards say so.
        heads = (
            (self.allocation[-1], 0.0),
            (self.budget[-1], _BUDGET_INIT_LOGIT),
            (self.split[-1], math.log(math.expm1(config.split_spread / 2 - 1))),
        )
        for head, bias in heads:
            nn.init.zeros_(head.weight)
            nn.init.constant_(head.bias, bias)

    # -- distributions --------------------------------------------------------------------------------------------
    def budget_dist(self, state: torch.Tensor, w: torch.Tensor) -> Beta:
        """state [L, F], w [B, objectives] → Beta over x ∈ (0, 1) per row of w."""
        pooled = state.mean(0, keepdim=True).expand(w.shape[0], -1)
        logits = self.budget(torch.cat([pooled, w], dim=1)) + self.budget_prior(w)
        ab = nn.functional.softplus(logits) + 1.0  # ≥ 1: unimodal
        return Beta(ab[:, 0], ab[:, 1])

    def budget_prior(self, w: torch.Tensor) -> torch.Tensor:
        """Fixed offsets to the budget logits [B, 2]: with the head at its initial output they make the Beta
        Beta(1 + 6m, 1 + 6(1 − m)), m = 0.05 + 0.9·w_c, whose mode is m (Beta(4, 4) at m = ½, the w-blind start);
        zeros without the prior."""
        if not self.config.compression_prior:
            return torch.zeros(w.shape[0], 2)
        m = 0.05 + 0.9 * w[:, NAMES.index("compression")]
        target = torch.stack([_BUDGET_SPREAD * m, _BUDGET_SPREAD * (1 - m)], dim=1)
        return torch.log(torch.expm1(target)) - _BUDGET_INIT_LOGIT

    def split_dist(self, state: torch.Tensor, w: torch.Tensor, budget: torch.Tensor) -> Beta:
        """The share of the allocation that goes to attention blocks, per (w, ρ) row."""
        pooled = state.mean(0, keepdim=True).expand(w.shape[0], -1)
        ab = nn.functional.softplus(self.split(torch.cat([pooled, w, budget[:, None]], dim=1))) + 1.0
        return Beta(ab[:, 0], ab[:, 1])

    def allocation_dists(self, state: torch.Tensor, w: torch.Tensor, budget: torch.Tensor) -> list[Dirichlet]:
        """Per kind (attention, then MLP), a Dirichlet over the L layers per (w, ρ) row; means softmax(z_kind)."""
        B, (L, _) = w.shape[0], state.shape
        cond = torch.cat([w, budget[:, None]], dim=1)  # [B, 4]
        x = torch.cat([state[None].expand(B, -1, -1), cond[:, None, :].expand(-1, L, -1)], dim=2)
        hidden = self.encode(x)  # [B, L, h]
        context = hidden.mean(1, keepdim=True).expand(-1, L, -1)
        logits = self.allocation(torch.cat([hidden, context], dim=2))  # [B, L, 2]
        concentration = self.log_kappa.exp() * L * torch.softmax(logits, dim=1)
        return [Dirichlet(concentration[..., k].clamp_min(1e-3)) for k in range(2)]

    def to_unit(self, budget: torch.Tensor) -> torch.Tensor:
        c = self.config
        return ((budget - c.budget_min) / (c.budget_max - c.budget_min)).clamp(1e-4, 1 - 1e-4)

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        return c.budget_min + (c.budget_max - c.budget_min) * x

    # -- acting ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(
        self,
        state: torch.Tensor,
        w: torch.Tensor,
        budget: torch.Tensor | None = None,
        deterministic: bool = False,
        seed: int | None = None,
    ) -> list[PlanSample]:
        """One plan per row of w. `budget` (per row; NaN = free) overrides the budget head (matched sparsity). Sampling with a
        `seed` is reproducible without touching the caller's random state (resumed training redraws the same plans)."""
        with torch.random.fork_rng():
            if seed is not None:
                torch.manual_seed(seed)
            dist = self.budget_dist(state, w)
            x = beta_mode(dist) if deterministic else dist.sample().clamp(1e-4, 1 - 1e-4)
            rho = self.from_unit(x)
            overridden = torch.zeros(w.shape[0], dtype=torch.bool)
            if budget is not None:  # NaN rows keep the policy's own budget
                overridden = ~torch.isnan(budget)
                rho = torch.where(overridden, budget.to(rho.dtype), rho)
            split = self.split_dist(state, w, rho)
            beta = split.mean if deterministic else split.sample().clamp(1e-4, 1 - 1e-4)
            attn, mlp = (
                d.mean if deterministic else d.sample().clamp_min(1e-12) for d in self.allocation_dists(state, w, rho)
            )
            alpha = torch.cat([beta[:, None] * attn, (1 - beta)[:, None] * mlp], dim=1)
        return [PlanSample(float(r), a.numpy().astype(np.float64), bool(o)) for r, a, o in zip(rho, alpha, overridden)]

    def log_prob(
        self, state: torch.Tensor, w: torch.Tensor, budget: torch.Tensor, alpha: torch.Tensor, overridden: torch.Tensor
    ) -> torch.Tensor:
        """log π of given plans [B]; the budget term only where the budget was the policy's own choice. α is read back
        as its split (the attention blocks' share) and each kind's distribution over layers."""
        L = state.shape[0]
        alpha = alpha.clamp_min(1e-12)
        kinds = (alpha[:, :L], alpha[:, L:])
        beta = (kinds[0].sum(1) / alpha.sum(1)).clamp(1e-4, 1 - 1e-4)
        lp_alpha = self.split_dist(state, w, budget).log_prob(beta)
        for dist, part in zip(self.allocation_dists(state, w, budget), kinds):
            lp_alpha = lp_alpha + dist.log_prob(part / part.sum(1, keepdim=True))
        lp_budget = self.budget_dist(state, w).log_prob(self.to_unit(budget))
        return lp_alpha + torch.where(overridden, torch.zeros_like(lp_budget), lp_budget)


@dataclass
class Planner:
    """Everything a blueprint needs for one model, loaded once: shapes, calibration features, unit scores and the
    trained policy (when there is one). The dashboard caches it; each `blueprint` call takes milliseconds."""

    spec: str
    model_id: str
    family: str
    shapes: list[LayerShape]
    features: CalibrationFeatures
    scores: list[UnitScores]
    m: int
    policy: PrunePolicy | None = None
    policy_id: str | None = None
    stock_heads: tuple[int, ...] | None = None  # query-head counts this family's stock config accepts (None: any)

    @property
    def trained(self) -> bool:
        return self.policy is not None

    def state(self) -> torch.Tensor:
        return torch.from_numpy(layer_state(self.features, self.shapes))

    def blueprint(
        self, preference: Sequence[float], sparsity: float | None = None, equal_counts: bool = False
    ) -> Blueprint:
        """The policy's deterministic plan for `preference`; `sparsity` fixes the budget (matched comparisons);
        `equal_counts` keeps the same unit counts in every layer (stock engines load it unpadded; no allocation)."""
        w = validation.preference(preference)
        if sparsity is not None:
            validation.sparsity(sparsity, self.policy.config.s_max if self.policy else 0.9)
        if self.policy is None:
            raise HippError(f"no trained policy for {self.spec}; run `hipp train-policy {self.spec}` first")
        with torch.no_grad():
            budget = None if sparsity is None else torch.tensor([float(sparsity)])
            plan = self.policy.act(self.state(), torch.tensor([w], dtype=torch.float32), budget, deterministic=True)[0]
        return self.make(plan, w, source="policy", equal_counts=equal_counts)

    def make(self, plan: PlanSample, w: Sequence[float] | None, source: str, equal_counts: bool = False) -> Blueprint:
        """The blueprint of a policy decision: α's first L entries weigh attention blocks, the last L MLP blocks."""
        s_max = self.policy.config.s_max if self.policy else 0.9
        L = len(self.shapes)
        return make_blueprint(
            self.model_id,
            self.family,
            self.shapes,
            plan.budget,
            plan.alpha[L:],
            self.scores,
            self.m,
            s_max,
            source,
            w,
            alpha_attention=plan.alpha[:L],
            equal_counts=equal_counts,
            stock_heads=self.stock_heads,
        )

    def dense_params(self) -> int:
        return count_params(self.shapes)
