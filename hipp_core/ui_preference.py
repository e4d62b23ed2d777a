"""What a preference changes: the blueprint on show against the blueprints the same planner gives at neighbouring
preferences on the simplex (each weight moved by ±step the way the Explore sliders move it, the other two sharing the
rest), at the same locked sparsity and equal-counts setting. Per neighbour: the units removed per layer and kind
(query heads, KV groups, MLP channels), the fraction of each kind's parameters removed, and the change in achieved
sparsity and in the attention share of what is removed. Plain data in and out, no Streamlit, so the Explore page
only draws it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from hipp_core import objectives, validation
from hipp_core.blueprint import Blueprint, LayerShape
from hipp_core.errors import HippError
from hipp_core.ui_state import rebalance

STEP = 0.1  # one tenth of the simplex: a move a user makes with a slider, small enough to stay local
KINDS = ("attention", "MLP")


class Plans(Protocol):
    """What gives blueprints: the policy's `Planner`, or a stand-in with the same two members."""

    shapes: list[LayerShape]

    def blueprint(
        self, preference: Sequence[float], sparsity: float | None = None, equal_counts: bool = False
    ) -> Blueprint: ...


@dataclass(frozen=True)
class Removed:
    """What one blueprint removes, per layer (arrays of length L) and in total."""

    heads: np.ndarray  # query heads removed
    kv_groups: np.ndarray  # whole KV groups removed
    mlp: np.ndarray  # MLP channels removed
    attention_fraction: np.ndarray  # fraction of the layer's attention parameters removed
    mlp_fraction: np.ndarray  # fraction of the layer's MLP parameters removed
    attention_share: float  # attention parameters among all removed parameters (0 when nothing is removed)

    @classmethod
    def of(cls, blueprint: Blueprint, shapes: Sequence[LayerShape]) -> Removed:
        heads, groups, mlp, attn_frac, mlp_frac = (np.zeros(len(shapes)) for _ in range(5))
        attn_params = mlp_params = 0
        for i, (shape, plan) in enumerate(zip(shapes, blueprint.layers, strict=True)):
            heads[i], groups[i] = shape.n_heads - plan.n_q, shape.n_kv_heads - plan.n_kv
            mlp[i] = shape.intermediate - plan.n_mlp
            dense_attn = shape.attention_params(shape.n_kv_heads, shape.n_heads)
            cut_attn = dense_attn - shape.attention_params(plan.n_kv, plan.n_q)
            cut_mlp = shape.mlp_params(shape.intermediate) - shape.mlp_params(plan.n_mlp)
            attn_frac[i] = cut_attn / dense_attn
            mlp_frac[i] = cut_mlp / shape.mlp_params(shape.intermediate) if shape.intermediate else 0.0
            attn_params, mlp_params = attn_params + cut_attn, mlp_params + cut_mlp
        share = attn_params / (attn_params + mlp_params) if attn_params + mlp_params else 0.0
        return cls(heads.astype(int), groups.astype(int), mlp.astype(int), attn_frac, mlp_frac, float(share))


@dataclass(frozen=True)
class NeighbourChange:
    """One neighbouring preference's plan minus the plan on show: positive = the neighbour removes more."""

    label: str  # e.g. "robustness +0.1"
    objective: str
    step: float  # signed
    preference: tuple[float, ...]
    plan_id: str
    heads: tuple[int, ...]  # per layer, query heads removed: neighbour minus shown
    kv_groups: tuple[int, ...]
    mlp: tuple[int, ...]  # per layer, MLP channels removed: neighbour minus shown
    attention_fraction: tuple[float, ...]  # per layer, change in the fraction of attention parameters removed
    mlp_fraction: tuple[float, ...]
    attention_share: float  # change in the attention share of removed parameters
    achieved: float  # change in achieved sparsity

    @property
    def counts_changed(self) -> bool:
        return any(self.heads) or any(self.mlp) or any(self.kv_groups)

    def describe(self) -> str:
        """One line in words, e.g. "robustness +0.1: 2 more query heads removed in layers 3–4, 96 fewer MLP channels
        removed in layer 6; sparsity +1.2 points, attention share of removals +4.0 points" (a share that does not
        move is left out)."""
        if not self.counts_changed:
            return f"{self.label}: the same unit counts in every layer, other units chosen"
        parts = [
            _units(self.heads, "query head", "query heads"),
            _units(self.kv_groups, "KV group", "KV groups"),
            _units(self.mlp, "MLP channel", "MLP channels"),
        ]
        totals = [f"sparsity {_points(self.achieved)}"]
        if round(100 * self.attention_share, 1):
            totals.append(f"attention share of removals {_points(self.attention_share)}")
        return f"{self.label}: {'; '.join(p for p in parts if p)}; {', '.join(totals)}"


@dataclass(frozen=True)
class PreferenceNeighbours:
    """The plan on show and what each neighbouring preference changes in it."""

    preference: tuple[float, ...]
    plan_id: str
    step: float
    sparsity: float | None  # the locked sparsity, when the neighbours share it
    equal_counts: bool
    changes: list[NeighbourChange]
    skipped: list[str]  # labels of neighbours off the simplex (a weight would leave [0, 1])

    @property
    def changed(self) -> list[NeighbourChange]:
        return [c for c in self.changes if c.plan_id != self.plan_id]

    def summary(self) -> str:
        """One line: how many neighbours change the plan, or that none does."""
        where = f" at sparsity {self.sparsity:.0%}" if self.sparsity is not None else ""
        if not self.changes:
            return "No neighbouring preference lies on the simplex."
        if not self.changed:
            return (
                f"No change: this policy gives the same plan{where} for every neighbouring preference "
                f"(each weight ±{self.step:g})."
            )
        n = f"{len(self.changed)} of {len(self.changes)}"
        return f"{n} neighbouring preferences (each weight ±{self.step:g}) change the plan{where}."

    def lines(self) -> list[str]:
        """One line in words per neighbour that changes the plan."""
        return [c.describe() for c in self.changed]

    def frame(self, values: str = "fraction") -> pd.DataFrame:
        """One row per neighbour and kind ("utility +0.1 · attention", "utility +0.1 · MLP"), one column per layer:
        the change in the fraction of that kind's parameters removed (`values="fraction"`, what the page colours), or
        in units removed (`values="units"`: query heads, MLP channels; what its hover text says)."""
        if values not in ("fraction", "units"):
            raise HippError(f"values must be 'fraction' or 'units', got {values!r}")
        rows, labels = [], []
        for c in self.changes:
            pairs = (c.attention_fraction, c.mlp_fraction) if values == "fraction" else (c.heads, c.mlp)
            for kind, row in zip(KINDS, pairs, strict=True):
                rows.append(row)
                labels.append(f"{c.label} · {kind}")
        frame = pd.DataFrame(rows, index=pd.Index(labels, name="neighbour"))
        frame.columns.name = "layer"
        return frame

    def hover_text(self) -> list[list[str]]:
        """What each cell of `frame()` means in words and units, e.g. "utility +0.1 · MLP, layer 6: +27.9% of its
        parameters removed (+96 MLP channels)"."""
        change, units = self.frame("fraction"), self.frame("units")
        return [
            [
                f"{row}, layer {layer}: {c:+.1%} of its parameters removed "
                f"({n:+d} {'query heads' if row.endswith('attention') else 'MLP channels'})"
                for layer, c, n in zip(change.columns, fractions, counts, strict=True)
            ]
            for row, fractions, counts in zip(change.index, change.to_numpy(), units.to_numpy(), strict=True)
        ]


def neighbour_preferences(preference: Sequence[float], step: float = STEP) -> tuple[list, list[str]]:
    """[(label, objective, signed step, preference)] for each weight moved by +step and −step as its slider moves it
    (the other two share the rest in their proportion), and the labels of those that would leave the simplex."""
    if not 0 < step <= 0.5:
        raise HippError(f"the neighbour step {step} must lie in (0, 0.5]")
    w = validation.preference(preference)
    inside, skipped = [], []
    for i, name in enumerate(objectives.NAMES):
        for signed in (step, -step):
            label = f"{name} {'+' if signed > 0 else '−'}{step:g}"
            value = w[i] + signed
            if value < -1e-9 or value > 1 + 1e-9:
                skipped.append(label)
                continue
            inside.append((label, name, signed, rebalance(w, i, value)))
    return inside, skipped


def preference_neighbours(
    plans: Plans,
    preference: Sequence[float],
    sparsity: float | None = None,
    equal_counts: bool = False,
    step: float = STEP,
    shown: Blueprint | None = None,
) -> PreferenceNeighbours:
    """Compare the plan at `preference` (`shown` when the caller already has it) with the plans `plans` gives at each
    neighbouring preference, at the same `sparsity` (None: the policy's own budget) and `equal_counts`. One
    blueprint call per neighbour (at most six)."""
    neighbours, skipped = neighbour_preferences(preference, step)
    base_bp = shown if shown is not None else plans.blueprint(preference, sparsity, equal_counts=equal_counts)
    base = Removed.of(base_bp, plans.shapes)
    changes = []
    for label, name, signed, w in neighbours:
        bp = plans.blueprint(w, sparsity, equal_counts=equal_counts)
        other = Removed.of(bp, plans.shapes)
        changes.append(
            NeighbourChange(
                label=label,
                objective=name,
                step=signed,
                preference=tuple(w),
                plan_id=bp.plan_id,
                heads=tuple(int(x) for x in other.heads - base.heads),
                kv_groups=tuple(int(x) for x in other.kv_groups - base.kv_groups),
                mlp=tuple(int(x) for x in other.mlp - base.mlp),
                attention_fraction=tuple(float(x) for x in other.attention_fraction - base.attention_fraction),
                mlp_fraction=tuple(float(x) for x in other.mlp_fraction - base.mlp_fraction),
                attention_share=other.attention_share - base.attention_share,
                achieved=bp.achieved - base_bp.achieved,
            )
        )
    return PreferenceNeighbours(
        validation.preference(preference), base_bp.plan_id, step, sparsity, equal_counts, changes, skipped
    )


# -- words -----------------------------------------------------------------------------------------------------------
def _units(delta: Sequence[int], one: str, many: str) -> str:
    """Per-layer differences in words, e.g. "2 more query heads removed in layers 3–4, 1 fewer query head removed in
    layer 6" (counts summed over the layers named)."""
    parts = []
    for sign, word in ((1, "more"), (-1, "fewer")):
        layers = [i for i, d in enumerate(delta) if d * sign > 0]
        if layers:
            n = sum(abs(delta[i]) for i in layers)
            noun = one if n == 1 else many
            where = "every layer" if len(layers) == len(delta) else _layers(layers)
            parts.append(f"{n} {word} {noun} removed in {where}")
    return ", ".join(parts)


def _layers(layers: Sequence[int]) -> str:
    """Layer numbers with consecutive ones as ranges: "layer 6", "layers 3–4, 6"."""
    runs: list[list[int]] = []
    for i in layers:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    text = ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs)
    return f"layer {text}" if len(layers) == 1 else f"layers {text}"


def _points(fraction: float) -> str:
    """A change of a fraction in percentage points, signed: "+1.2 points", "−0.4 points", "±0 points"."""
    value = round(100 * fraction, 1)
    if value == 0:
        return "±0 points"
    return f"{'+' if value > 0 else '−'}{abs(value):.1f} points"
