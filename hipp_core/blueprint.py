"""Blueprint: a global sparsity budget and a per-layer allocation, turned into exact kept units (ours; docs/design.md, Blueprints).

The pipeline is `allocate` (budget ρ + allocation α → per-layer target sparsity, by parameter-weighted
water-filling) → `realize` (targets → whole KV groups, query heads per group and MLP channels, rounded to units and
corrected globally so the achieved sparsity lands within ±0.5 pp of ρ) → `Blueprint`, a canonical-JSON record whose
`plan_id` hashes only the model and the kept units. Everything here is plain numpy on `LayerShape`s, so it runs in
milliseconds and needs no weights: the adapter reads the shapes from the modules (`ModelAdapter.layer_shapes`).

Sparsity is always the exact fraction of decoder-layer parameters removed; parameters no unit owns (the two RMSNorms,
o_proj's and down_proj's biases) count in the total and are never removed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from hipp_core import validation
from hipp_core.errors import HippError
from plan_store.identity import canonical_json, digest
from plan_store.records import PLAN_SOURCES

SPARSITY_TOLERANCE = (
    0.005  # ±0.5 percentage point: the promise docs/design.md (Blueprints) makes about achieved vs requested sparsity
)
_EXACT = 1e-9  # recorded sparsities are recomputed from the kept units; this only absorbs float round-off

Count = int | np.ndarray  # unit counts: one layer configuration, or a grid of them when enumerating options


@dataclass(frozen=True)
class LayerShape:
    """One decoder layer's prunable layout, read from its modules (not the config), so a pruned model reports its
    pruned shape and a model on the meta device reports its real one."""

    hidden: int
    head_dim: int  # never changes under pruning: heads are removed whole
    n_heads: int
    n_kv_heads: int
    intermediate: int
    qkv_bias: bool  # Qwen2-style decoders: a removed head takes its q/k/v bias slice with it
    o_bias: bool  # o_proj's bias has `hidden` entries, so no head owns it: never removed
    mlp_bias: bool  # gate/up bias entries go with their channel; down_proj's bias (`hidden` entries) stays
    fixed_params: int  # parameters no unit owns (the two RMSNorms): counted in the total, never removed

    def __post_init__(self) -> None:
        if (
            min(self.hidden, self.head_dim, self.n_heads, self.n_kv_heads) < 1
            or min(self.intermediate, self.fixed_params) < 0
        ):
            raise HippError(f"layer shape {self} has a non-positive size; is this a decoder layer?")
        if self.n_heads % self.n_kv_heads:
            raise HippError(f"{self.n_heads} query heads do not split evenly over {self.n_kv_heads} KV heads")

    @property
    def group_size(self) -> int:
        """Query heads per KV head in the dense layout: group g owns heads g·r .. g·r + r − 1."""
        return self.n_heads // self.n_kv_heads

    def attention_params(self, n_kv: Count, n_q: Count) -> Count:
        """q/k/v/o parameters with `n_kv` KV heads and `n_q` query heads kept (ints or numpy arrays)."""
        per_head = self.head_dim * (self.hidden + self.qkv_bias)
        return n_q * per_head + 2 * n_kv * per_head + n_q * self.head_dim * self.hidden + self.o_bias * self.hidden

    def mlp_params(self, n_mlp: Count) -> Count:
        """gate/up/down parameters with `n_mlp` channels kept (ints or numpy arrays)."""
        return n_mlp * (3 * self.hidden + 2 * self.mlp_bias) + self.mlp_bias * self.hidden

    def params(self, n_kv: Count, n_q: Count, n_mlp: Count) -> Count:
        """All parameters of the layer with these unit counts kept, norms and unowned biases included."""
        return self.attention_params(n_kv, n_q) + self.mlp_params(n_mlp) + self.fixed_params

    @property
    def dense_params(self) -> int:
        return int(self.params(self.n_kv_heads, self.n_heads, self.intermediate))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> LayerShape:
        _require_keys(data, tuple(cls.__dataclass_fields__), "layer shape")
        flags = ("qkv_bias", "o_bias", "mlp_bias")
        if any(type(data[k]) is not bool for k in flags):
            raise HippError(f"layer shape bias flags {[data[k] for k in flags]} must be true/false")
        return cls(**{k: data[k] if k in flags else _int(data[k], f"layer shape {k}") for k in data})


@dataclass(frozen=True)
class LayerPlan:
    """The units one layer keeps, as sorted original indices (what materialization slices and masks read)."""

    kv_groups: tuple[int, ...]
    heads: tuple[int, ...]  # absolute query-head indices; those of a kept group g lie in g·r .. g·r + r − 1
    mlp: tuple[int, ...]

    @property
    def n_kv(self) -> int:
        return len(self.kv_groups)

    @property
    def n_q(self) -> int:
        return len(self.heads)

    @property
    def n_mlp(self) -> int:
        return len(self.mlp)

    @classmethod
    def dense(cls, shape: LayerShape) -> LayerPlan:
        return cls(tuple(range(shape.n_kv_heads)), tuple(range(shape.n_heads)), tuple(range(shape.intermediate)))

    def to_json(self) -> dict:
        return {"kv_groups": list(self.kv_groups), "heads": list(self.heads), "mlp": list(self.mlp)}

    @classmethod
    def from_json(cls, data: dict) -> LayerPlan:
        _require_keys(data, ("kv_groups", "heads", "mlp"), "layer plan")
        return cls(*(_int_tuple(data[key], f"layer plan {key}") for key in ("kv_groups", "heads", "mlp")))


@dataclass(frozen=True)
class UnitScores:
    """Within-layer importance, higher = more worth keeping: one value per query head and per MLP channel."""

    head: np.ndarray
    mlp: np.ndarray


@dataclass(frozen=True)
class Blueprint:
    """One pruning plan: the requested budget, what each layer keeps, and where the plan came from."""

    model_id: str
    family: str
    budget: float  # ρ as requested
    sparsities: tuple[float, ...]  # per layer, achieved after rounding to units
    layers: tuple[LayerPlan, ...]
    achieved: float  # overall decoder sparsity of the kept units (within ±0.5 pp of ρ when reachable)
    source: str  # one of plan_store.records.PLAN_SOURCES
    criterion: str  # how the unit scores that chose the indices were computed
    m: int  # MLP channel multiple: 8 for the embedded models, 64 for real ones (matmul-friendly widths)
    s_max: float  # no layer loses more than this fraction of its parameters
    preference: tuple[float, float, float] | None = None  # (utility, robustness, compression) on the simplex

    @property
    def plan_id(self) -> str:
        """Same model and same kept units → same id, whatever budget, source or preference produced them."""
        return digest(self.model_id, canonical_json([layer.to_json() for layer in self.layers]))

    def to_json(self) -> dict:
        data = {f: getattr(self, f) for f in self.__dataclass_fields__}
        data.update(
            sparsities=list(self.sparsities),
            layers=[layer.to_json() for layer in self.layers],
            preference=None if self.preference is None else list(self.preference),
        )
        return data

    @classmethod
    def from_json(cls, data: dict) -> Blueprint:
        """Parse a stored or hand-written blueprint, rejecting missing keys, wrong types and non-finite numbers;
        `validate` then checks it against the model's shapes."""
        _require_keys(data, tuple(cls.__dataclass_fields__), "blueprint", optional=("preference",))
        for key in ("model_id", "family", "source", "criterion"):
            if not isinstance(data[key], str) or not data[key]:
                raise HippError(f"blueprint {key} must be a non-empty string, got {data[key]!r}")
        if not isinstance(data["layers"], list) or not all(isinstance(x, dict) for x in data["layers"]):
            raise HippError("blueprint layers must be a list of {kv_groups, heads, mlp} objects")
        preference = data.get("preference")
        return cls(
            model_id=data["model_id"],
            family=data["family"],
            budget=_finite(data["budget"], "blueprint budget"),
            sparsities=tuple(_finite(x, "blueprint sparsity") for x in _list(data["sparsities"], "sparsities")),
            layers=tuple(LayerPlan.from_json(x) for x in data["layers"]),
            achieved=_finite(data["achieved"], "blueprint achieved sparsity"),
            source=data["source"],
            criterion=data["criterion"],
            m=_int(data["m"], "blueprint m"),
            s_max=_finite(data["s_max"], "blueprint s_max"),
            preference=None
            if preference is None
            else tuple(_finite(x, "blueprint preference") for x in _list(preference, "preference")),
        )


# -- accounting ---------------------------------------------------------------------------------------------------
def count_params(shapes: Sequence[LayerShape], layers: Sequence[LayerPlan] | None = None) -> int:
    """Exact decoder-layer parameters kept by `layers` (the dense count when None)."""
    if layers is None:
        return sum(shape.dense_params for shape in shapes)
    return sum(int(shape.params(plan.n_kv, plan.n_q, plan.n_mlp)) for shape, plan in zip(shapes, layers, strict=True))


def layer_sparsities(shapes: Sequence[LayerShape], layers: Sequence[LayerPlan]) -> list[float]:
    """Per-layer fraction of parameters removed: what a Blueprint records as s_l after rounding."""
    return [1.0 - count_params([s], [p]) / s.dense_params for s, p in zip(shapes, layers, strict=True)]


def decoder_sparsity(shapes: Sequence[LayerShape], layers: Sequence[LayerPlan]) -> float:
    """Fraction of decoder-layer parameters removed: the sparsity every budget and report refers to."""
    return 1.0 - count_params(shapes, layers) / count_params(shapes)


def whole_model_params(shapes: Sequence[LayerShape], layers: Sequence[LayerPlan], dense_model_params: int) -> int:
    """Parameters of the whole pruned model (vision tower, projector, embeddings and lm_head are never pruned)."""
    return dense_model_params - (count_params(shapes) - count_params(shapes, layers))


def decoder_flops(shapes: Sequence[LayerShape], layers: Sequence[LayerPlan] | None, seq_len: int) -> int:
    """Forward FLOPs of the decoder layers for one sequence of `seq_len` tokens (dense when `layers` is None).

    Convention: 2 FLOPs per multiply-accumulate; each projection costs 2·seq·in·out; the attention products QKᵀ and
    AV cost 2·2·n_q·head_dim·seq² over the full square (causal masking is ignored). Norms, biases, softmax, RoPE and
    activations are left out. The same convention for dense and pruned models keeps their ratio meaningful.
    """
    layers = layers if layers is not None else [LayerPlan.dense(shape) for shape in shapes]
    total = 0
    for shape, plan in zip(shapes, layers, strict=True):
        q_width, kv_width = plan.n_q * shape.head_dim, plan.n_kv * shape.head_dim
        macs = shape.hidden * (2 * q_width + 2 * kv_width + 3 * plan.n_mlp)
        total += 2 * seq_len * macs + 4 * q_width * seq_len**2
    return total


# -- allocation: budget + α → per-layer target sparsity -------------------------------------------------------------
def allocate(shapes: Sequence[LayerShape], budget: float, alpha: Sequence[float], s_max: float = 0.9) -> list[float]:
    """Parameter-weighted water-filling: s_l = min(u_l, λ·α_l) with λ solved exactly so Σ params_l·s_l = ρ·Σ params_l.

    u_l = min(s_max, the most layer l can lose while keeping one attention head), so every target is realizable.
    Layers with α_l = 0 are not pruned. Raises when ρ exceeds what the caps allow, naming that maximum.
    """
    _check_budget(budget)
    _check_s_max(s_max)
    a = np.asarray(alpha, dtype=float)
    if a.shape != (len(shapes),) or not np.all(np.isfinite(a)) or np.any(a < 0) or a.sum() <= 0:
        raise HippError(
            f"allocation must be {len(shapes)} finite non-negative weights with a positive sum, got {alpha}"
        )
    dense = np.array([s.dense_params for s in shapes], dtype=float)
    floor = np.array([s.params(1, 1, 0) for s in shapes], dtype=float)
    upper = np.where(a > 0, np.minimum(s_max, 1.0 - floor / dense), 0.0)
    caps = f"layers capped at s_max {s_max:g} and one attention head"
    return _water_fill(dense, upper, a, budget, dense.sum(), caps).tolist()


def allocate_split(
    shapes: Sequence[LayerShape],
    budget: float,
    alpha_attention: Sequence[float],
    alpha_mlp: Sequence[float],
    s_max: float = 0.9,
) -> tuple[list[float], list[float]]:
    """Water-filling over 2L blocks (each layer's attention and its MLP), so an allocation can also say which kind
    of unit to spare. Returns per-layer target sparsities and the share of its attention each layer should keep.

    Each block is capped at s_max (attention also at one head kept), so no layer exceeds s_max either. With equal
    weights for a layer's two blocks this is the per-layer allocation with attention and MLP pruned alike.
    """
    _check_budget(budget)
    _check_s_max(s_max)
    a = np.concatenate([_weights(alpha_attention, len(shapes)), _weights(alpha_mlp, len(shapes))])
    if a.sum() <= 0:
        raise HippError("allocation weights are all zero; give at least one block a positive weight")
    attn = np.array([s.attention_params(s.n_kv_heads, s.n_heads) for s in shapes], dtype=float)
    mlp = np.array([s.mlp_params(s.intermediate) - s.mlp_params(0) for s in shapes], dtype=float)
    one_head = np.array([s.attention_params(1, 1) for s in shapes], dtype=float)
    fixed = np.array([s.dense_params for s in shapes], dtype=float) - attn - mlp
    dense = np.concatenate([attn, mlp])
    upper = np.concatenate([np.minimum(s_max, 1.0 - one_head / attn), np.full(len(shapes), s_max)])
    upper = np.where(a > 0, upper, 0.0)
    # The budget is a share of all decoder parameters, norms included, which no block can shed.
    caps = f"blocks capped at s_max {s_max:g} and one attention head"
    s = _water_fill(dense, upper, a, budget, dense.sum() + fixed.sum(), caps)
    s_attn, s_mlp = s[: len(shapes)], s[len(shapes) :]
    layer = (attn * s_attn + mlp * s_mlp) / (attn + mlp + fixed)
    return layer.tolist(), (1.0 - s_attn).tolist()


def _weights(alpha: Sequence[float], n: int) -> np.ndarray:
    a = np.asarray(alpha, dtype=float)
    if a.shape != (n,) or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise HippError(f"allocation must be {n} finite non-negative weights, got {alpha}")
    return a


def _water_fill(
    dense: np.ndarray, upper: np.ndarray, a: np.ndarray, budget: float, total: float, caps: str
) -> np.ndarray:
    """s_i = min(upper_i, λ·a_i) with λ solved exactly so Σ dense_i·s_i = budget·total (total ≥ Σ dense_i when some
    parameters belong to no block)."""
    reachable = float(dense @ upper / total)
    if budget > reachable + _EXACT:
        raise HippError(
            f"budget {budget:.4f} exceeds the largest sparsity this allocation can reach, {reachable:.4f} "
            f"({caps}); lower the budget or spread the allocation"
        )
    if budget == 0:
        return np.zeros_like(dense)
    target = min(budget, reachable) * total
    active = a > 0
    levels = np.unique(upper[active] / a[active])  # λ at which each block hits its cap, ascending
    filled = (dense * np.minimum(upper, levels[:, None] * a)).sum(axis=1)  # Σ dense·s at each of those λ
    j = min(int(np.searchsorted(filled, target)), len(levels) - 1)
    clipped = active & (upper / np.where(active, a, 1.0) < levels[j])
    free = active & ~clipped
    lam = (target - dense[clipped] @ upper[clipped]) / (dense[free] @ a[free])
    return np.minimum(upper, lam * a)


# -- realization: per-layer targets → exact kept units ---------------------------------------------------------------
@dataclass(frozen=True)
class _Options:
    """Every unit-count combination one layer may take: head configurations × allowed MLP widths."""

    groups: np.ndarray  # [configs] KV groups kept
    per_group: np.ndarray  # [configs] query heads kept per kept group
    channels: np.ndarray  # [steps] allowed MLP widths, ascending: multiples of m, plus the full width
    kept: np.ndarray  # [configs, steps] exact parameters kept
    feasible: np.ndarray  # [configs, steps] layer sparsity <= s_max
    attn_share: np.ndarray  # [configs] fraction of the attention parameters kept
    dense: int
    half_step: float  # parameters of half an MLP block of m channels


def _options(shape: LayerShape, m: int, s_max: float) -> _Options:
    groups, per_group = (
        x.ravel()
        for x in np.meshgrid(np.arange(1, shape.n_kv_heads + 1), np.arange(1, shape.group_size + 1), indexing="ij")
    )
    channels = np.union1d(np.arange(0, shape.intermediate + 1, m), [shape.intermediate])
    kept = shape.params(groups[:, None], (groups * per_group)[:, None], channels[None, :]).astype(np.int64)
    dense = shape.dense_params
    attn = shape.attention_params(groups, groups * per_group) / shape.attention_params(shape.n_kv_heads, shape.n_heads)
    return _Options(
        groups=groups,
        per_group=per_group,
        channels=channels,
        kept=kept,
        feasible=(dense - kept) / dense <= s_max + _EXACT,
        attn_share=attn,
        dense=dense,
        half_step=shape.mlp_params(m) / 2 - shape.mlp_params(0) / 2,
    )


def _closest(
    opt: _Options, target: float, attn_keep: float | None = None, slack: float | None = None
) -> tuple[int, int]:
    """The (head configuration, MLP width) whose kept parameters are closest to the layer target.

    Unless the MLP saturates, any head configuration can be filled with MLP channels to within half an m-block of the
    target, so all those are equally close; among them prefer the one whose attention keeps the share `attn_keep`
    (default: the same share as the whole layer, attention and MLP pruned alike), instead of whichever head count
    leaves the smallest residue. `slack` (parameters) replaces that half block when no later correction will follow.
    """
    goal = opt.dense * (1.0 - target)
    err = np.abs(opt.kept - goal)
    primary = np.where(opt.feasible, np.maximum(err, opt.half_step if slack is None else slack), np.inf)
    keep = 1.0 - target if attn_keep is None else attn_keep
    balance = np.broadcast_to(np.abs(opt.attn_share - keep)[:, None], err.shape)
    best = np.lexsort((err.ravel(), balance.ravel(), primary.ravel()))[0]
    return divmod(int(best), len(opt.channels))


def _correct(options: list[_Options], picks: list[tuple[int, int]], goals: np.ndarray, total_goal: float) -> None:
    """Greedily move MLP widths one step in the layers farthest from their own goal until no step brings the
    overall kept count closer to `total_goal` (in place). A layer whose goal is dense (α_l = 0) is never cut."""
    while True:
        kept = np.array([opt.kept[a, j] for opt, (a, j) in zip(options, picks)], dtype=float)
        excess = kept.sum() - total_goal
        step = -1 if excess > 0 else 1
        best, best_gap = None, -np.inf
        for layer, (opt, (a, j)) in enumerate(zip(options, picks)):
            nxt = j + step
            if not (0 <= nxt < len(opt.channels) and opt.feasible[a, nxt]) or (step < 0 and goals[layer] >= opt.dense):
                continue
            if abs(excess + opt.kept[a, nxt] - kept[layer]) >= abs(excess):
                continue
            gap = -step * (kept[layer] - goals[layer])  # how far this layer sits on the side we are correcting
            if gap > best_gap:
                best, best_gap = layer, gap
        if best is None:
            return
        a, j = picks[best]
        picks[best] = (a, j + step)


def _top(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest values, ties to the lower index, returned sorted."""
    return np.sort(np.argsort(-values, kind="stable")[:n])


def select_units(shape: LayerShape, n_kv: int, per_group: int, n_mlp: int, scores: UnitScores | None) -> LayerPlan:
    """Which units to keep: KV groups by the summed score of their heads, the top heads inside each kept group,
    the top MLP channels; with no scores, the lowest indices (deterministic)."""
    head = np.zeros(shape.n_heads) if scores is None else np.asarray(scores.head, dtype=float)
    mlp = np.zeros(shape.intermediate) if scores is None else np.asarray(scores.mlp, dtype=float)
    r = shape.group_size
    by_group = head.reshape(shape.n_kv_heads, r)
    groups = _top(by_group.sum(axis=1), n_kv)
    heads = np.concatenate([g * r + _top(by_group[g], per_group) for g in groups])
    return LayerPlan(tuple(groups.tolist()), tuple(heads.tolist()), tuple(_top(mlp, n_mlp).tolist()))


def realize(
    shapes: Sequence[LayerShape],
    target_sparsities: Sequence[float],
    scores: Sequence[UnitScores] | None,
    m: int,
    budget: float,
    s_max: float = 0.9,
    attn_keep: Sequence[float] | None = None,
    equal_counts: bool = False,
    stock_heads: Sequence[int] | None = None,
) -> list[LayerPlan]:
    """Turn per-layer target sparsities into exact kept units whose overall sparsity is as close to ρ as the units
    allow (within ±0.5 pp whenever MLP widths can absorb the rounding; otherwise the closest reachable).

    Each layer takes the unit counts closest to its own target (`_closest`); then MLP widths move one m-block at a
    time where the rounding error is largest until the overall count is as close to ρ as single blocks can bring it
    (`_correct`); finally `scores` decide which indices fill those counts (`select_units`).

    With `equal_counts` every layer takes the counts of the first layer's pick (the layers must share one shape and,
    for a meaningful plan, one target), so no per-layer correction can run: the overall sparsity is that layer's.
    `stock_heads` then also fixes the query heads kept (see `make_blueprint`).
    """
    _check_m(m)
    _check_budget(budget)
    _check_s_max(s_max)
    targets = np.asarray(target_sparsities, dtype=float)
    if targets.shape != (len(shapes),) or not np.all(np.isfinite(targets)):
        raise HippError(f"need {len(shapes)} finite per-layer target sparsities, got {list(target_sparsities)}")
    _check_scores(shapes, scores)
    options = [_options(shape, m, s_max) for shape in shapes]
    keeps = [None] * len(shapes) if attn_keep is None else [float(k) for k in attn_keep]
    if equal_counts:
        _check_one_shape(shapes)
        # No correction follows, so every error inside the tolerance counts as equally close (the attention share
        # decides), and none beyond it (a half block can exceed the tolerance on small layers).
        opt = _with_query_heads(options[0], stock_heads)
        slack = min(opt.half_step, 0.999 * SPARSITY_TOLERANCE * opt.dense)
        picks = [_closest(opt, float(targets[0]), keeps[0], slack)] * len(shapes)
    else:
        picks = [_closest(opt, float(t), k) for opt, t, k in zip(options, targets, keeps)]
        dense = np.array([opt.dense for opt in options], dtype=float)
        _correct(options, picks, dense * (1.0 - targets), (1.0 - budget) * dense.sum())
    return [
        select_units(shape, int(opt.groups[a]), int(opt.per_group[a]), int(opt.channels[j]), sc)
        for shape, opt, (a, j), sc in zip(shapes, options, picks, scores or [None] * len(shapes))
    ]


def make_blueprint(
    model_id: str,
    family: str,
    shapes: Sequence[LayerShape],
    budget: float,
    alpha: Sequence[float],
    scores: Sequence[UnitScores] | None,
    m: int,
    s_max: float = 0.9,
    source: str = "manual",
    preference: Sequence[float] | None = None,
    criterion: str = "wanda",
    alpha_attention: Sequence[float] | None = None,
    equal_counts: bool = False,
    stock_heads: Sequence[int] | None = None,
) -> Blueprint:
    """Budget + allocation → a validated Blueprint (allocate, realize, record what was achieved).

    With `alpha_attention`, `alpha` weighs each layer's MLP and `alpha_attention` its attention (`allocate_split`);
    without, `alpha` weighs whole layers and attention and MLP are pruned alike.

    `equal_counts` makes every layer keep the same numbers of KV groups, query heads per group and MLP channels (which
    units are kept still follows each layer's scores): the one shape a stock config can describe, so the model loads
    in stock engines with nothing padded. The allocation over layers is given up; of `alpha_attention` only the
    overall attention/MLP split survives, as one share for every layer. `stock_heads` lists the query-head counts the
    family's stock config accepts (`ModelAdapter.stock_head_counts`; None: any): equal-count plans then keep one of
    them, since a stock export would pad any other count up to one (Qwen2.5-VL accepts only its full count, so its
    attention stays whole and the budget comes from MLP channels alone)."""
    if equal_counts:
        targets, keeps = _equal_targets(shapes, budget, alpha, alpha_attention, s_max)
    elif alpha_attention is None:
        targets, keeps = allocate(shapes, budget, alpha, s_max), None
    else:
        targets, keeps = allocate_split(shapes, budget, alpha_attention, alpha, s_max)
    layers = realize(shapes, targets, scores, m, budget, s_max, keeps, equal_counts, stock_heads)
    return blueprint_from_layers(model_id, family, shapes, budget, layers, m, s_max, source, preference, criterion)


def _equal_targets(
    shapes: Sequence[LayerShape],
    budget: float,
    alpha: Sequence[float],
    alpha_attention: Sequence[float] | None,
    s_max: float,
) -> tuple[list[float], list[float] | None]:
    """One target for every layer (the budget) and, when the allocation splits attention from MLP, the share of its
    attention parameters the split keeps overall; the allocation over layers is not used."""
    if alpha_attention is None:
        return [float(budget)] * len(shapes), None
    _, keeps = allocate_split(shapes, budget, alpha_attention, alpha, s_max)
    attn = np.array([s.attention_params(s.n_kv_heads, s.n_heads) for s in shapes], dtype=float)
    share = float(attn @ np.asarray(keeps, dtype=float) / attn.sum())
    return [float(budget)] * len(shapes), [share] * len(shapes)


def _with_query_heads(opt: _Options, stock_heads: Sequence[int] | None) -> _Options:
    """`opt` restricted to head configurations that keep one of the `stock_heads` query-head counts (all: None)."""
    if stock_heads is None:
        return opt
    fits = np.isin(opt.groups * opt.per_group, list(stock_heads))
    if not fits.any():
        raise HippError("no head configuration of this layer keeps a query-head count a stock config accepts")
    return replace(opt, feasible=opt.feasible & fits[:, None])


def _check_one_shape(shapes: Sequence[LayerShape]) -> None:
    different = next((i for i, shape in enumerate(shapes) if shape != shapes[0]), None)
    if different is not None:
        raise HippError(
            f"equal counts need decoder layers of one shape, but layer {different} differs from layer 0; "
            "plan this model without equal counts"
        )


def blueprint_from_layers(
    model_id: str,
    family: str,
    shapes: Sequence[LayerShape],
    budget: float,
    layers: Sequence[LayerPlan],
    m: int,
    s_max: float,
    source: str,
    preference: Sequence[float] | None,
    criterion: str,
) -> Blueprint:
    """Record kept units, however they were chosen, as a validated Blueprint with what they achieve."""
    blueprint = Blueprint(
        model_id=model_id,
        family=family,
        budget=float(budget),
        sparsities=tuple(layer_sparsities(shapes, layers)),
        layers=tuple(layers),
        achieved=decoder_sparsity(shapes, layers),
        source=source,
        criterion=criterion,
        m=int(m),
        s_max=float(s_max),
        preference=None if preference is None else validation.preference(preference),
    )
    validate(blueprint, shapes, model_id)
    return blueprint


# -- validation -----------------------------------------------------------------------------------------------------
def validate(blueprint: Blueprint, shapes: Sequence[LayerShape], model_id: str | None = None) -> None:
    """Raise a one-line HippError for anything that would make the plan wrong for this model or impossible to
    materialize; recorded sparsities must match the kept units exactly."""
    bp = blueprint
    if model_id is not None and bp.model_id != model_id:
        raise HippError(f"blueprint is for model {bp.model_id!r}, not {model_id!r}; make a plan for this model")
    _check_budget(bp.budget)
    _check_s_max(bp.s_max)
    _check_m(bp.m)
    if bp.source not in PLAN_SOURCES:
        raise HippError(f"blueprint source {bp.source!r} is not one of {', '.join(PLAN_SOURCES)}")
    if bp.preference is not None:
        w = bp.preference
        if len(w) != 3 or not all(math.isfinite(x) and x >= 0 for x in w) or abs(sum(w) - 1) > 1e-6:
            raise HippError(f"blueprint preference {w} must be 3 non-negative weights summing to 1")
    if not len(bp.layers) == len(bp.sparsities) == len(shapes):
        raise HippError(
            f"blueprint has {len(bp.layers)} layer plans and {len(bp.sparsities)} sparsities but the model has "
            f"{len(shapes)} decoder layers; make a plan for this model"
        )
    for i, (plan, shape) in enumerate(zip(bp.layers, shapes)):
        _check_layer(i, plan, shape, bp.m)
    actual = layer_sparsities(shapes, bp.layers)
    for i, (recorded, real) in enumerate(zip(bp.sparsities, actual)):
        if not (math.isfinite(recorded) and -_EXACT <= recorded <= bp.s_max + _EXACT):
            raise HippError(f"layer {i}: sparsity {recorded} is outside [0, s_max={bp.s_max:g}]")
        if abs(recorded - real) > _EXACT:
            raise HippError(f"layer {i}: recorded sparsity {recorded:.6f} but its kept units give {real:.6f}")
    real = decoder_sparsity(shapes, bp.layers)
    if not (math.isfinite(bp.achieved) and abs(bp.achieved - real) <= _EXACT):
        raise HippError(f"blueprint records achieved sparsity {bp.achieved} but its kept units give {real:.6f}")


def _check_layer(i: int, plan: LayerPlan, shape: LayerShape, m: int) -> None:
    """GQA validity: ≥ 1 kept group, every kept group keeps the same number ≥ 1 of its own heads."""
    if not plan.kv_groups:
        raise HippError(f"layer {i}: keeps no KV group; attention must keep at least one head")
    _check_indices(i, plan.kv_groups, shape.n_kv_heads, "KV group")
    _check_indices(i, plan.heads, shape.n_heads, "query head")
    _check_indices(i, plan.mlp, shape.intermediate, "MLP channel")
    owner = np.asarray(plan.heads, dtype=int) // shape.group_size
    stray = sorted(set(owner.tolist()) - set(plan.kv_groups))
    if stray:
        raise HippError(f"layer {i}: keeps query heads of KV group {stray[0]}, which it drops")
    counts = np.bincount(owner, minlength=shape.n_kv_heads)[list(plan.kv_groups)]
    if counts.min() < 1 or counts.min() != counts.max():
        raise HippError(f"layer {i}: kept KV groups keep {counts.tolist()} query heads; each must keep the same k >= 1")
    if plan.n_mlp % m and plan.n_mlp != shape.intermediate:
        raise HippError(f"layer {i}: keeps {plan.n_mlp} MLP channels, not a multiple of m={m} (or all)")


def _check_indices(i: int, values: tuple[int, ...], size: int, what: str) -> None:
    idx = np.asarray(values, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= size):
        bad = int(idx[(idx < 0) | (idx >= size)][0])
        raise HippError(f"layer {i}: {what} index {bad} is out of range [0, {size})")
    if np.any(np.diff(idx) <= 0):
        raise HippError(f"layer {i}: {what} indices must be sorted and without duplicates")


def _check_scores(shapes: Sequence[LayerShape], scores: Sequence[UnitScores] | None) -> None:
    if scores is None:
        return
    if len(scores) != len(shapes):
        raise HippError(f"got unit scores for {len(scores)} layers, the model has {len(shapes)}")
    for i, (shape, sc) in enumerate(zip(shapes, scores)):
        head, mlp = np.asarray(sc.head), np.asarray(sc.mlp)
        if head.shape != (shape.n_heads,) or mlp.shape != (shape.intermediate,):
            raise HippError(
                f"layer {i}: unit scores have shapes {head.shape}/{mlp.shape}, "
                f"expected ({shape.n_heads},)/({shape.intermediate},); recompute them for this model"
            )
        if not (np.all(np.isfinite(head)) and np.all(np.isfinite(mlp))):
            raise HippError(f"layer {i}: unit scores contain NaN or infinity; recompute them")


def _check_budget(budget: float) -> None:
    if not (math.isfinite(budget) and 0.0 <= budget < 1.0):
        raise HippError(f"sparsity budget {budget} must be within [0, 1)")


def _check_s_max(s_max: float) -> None:
    if not (math.isfinite(s_max) and 0.0 < s_max < 1.0):
        raise HippError(f"s_max {s_max} must be within (0, 1)")


def _check_m(m: int) -> None:
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 1:
        raise HippError(f"channel multiple m={m!r} must be a positive integer (8 for embedded models, 64 for real)")


# -- JSON parsing helpers -------------------------------------------------------------------------------------------
def _require_keys(data: dict, keys: tuple[str, ...], what: str, optional: tuple[str, ...] = ()) -> None:
    if not isinstance(data, dict):
        raise HippError(f"{what} must be a JSON object, got {type(data).__name__}")
    missing = [k for k in keys if k not in data and k not in optional]
    unknown = sorted(set(data) - set(keys))
    if missing or unknown:
        raise HippError(f"{what} is malformed: missing keys {missing}, unknown keys {unknown}")


def _list(value, what: str) -> list:
    if not isinstance(value, list):
        raise HippError(f"blueprint {what} must be a list, got {type(value).__name__}")
    return value


def _finite(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise HippError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _int(value, what: str) -> int:
    if type(value) is not int:
        raise HippError(f"{what} must be an integer, got {value!r}")
    return value


def _int_tuple(values, what: str) -> tuple[int, ...]:
    if not isinstance(values, list) or not all(type(x) is int for x in values):
        raise HippError(f"{what} must be a list of integers")
    return tuple(values)
