"""Where each objective lives: plans at one budget whose removals fall more or less on attention, on ShapesWorld `dev`.

For each model, plans at a fixed sparsity (`--sparsity`, default 0.3) send a share `a` of the removed parameters to
attention heads and the rest to MLP channels (spread evenly over layers, units ranked by Wanda within each layer),
for each `a` of `--shares`; each plan is scored masked on dev (POPE balanced accuracy per category, ScienceQA
accuracy, image and text questions apart) next to the dense model. When POPE falls as attention is cut while
ScienceQA falls as MLPs are cut, the objectives need different units and a preference has something to choose
(the testbed issue's probe). `--per-layer` adds the finer map: half of one layer's attention (half the query heads
of every KV group) or half of its MLP channels removed, one layer at a time, each plan's change from dense.
Nothing here reads `test`.

    python benchmarks/split_sweep.py [--models embedded embedded:qwen2_5_vl] [--sparsity 0.3] [--limit 300]
        [--per-layer] [--save]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from results_io import emit

from hipp_core.api import DataSource, evaluate_model, planner
from hipp_core.blueprint import LayerPlan, blueprint_from_layers, select_units
from hipp_core.config import quiet_libraries, set_threads
from hipp_core.data.records import POPE_CATEGORIES
from hipp_core.policy import PlanSample


def scores(result) -> dict:
    sqa = result.sqa
    return {
        **{f"pope_{c}": round(result.pope[c].balanced_accuracy, 4) for c in POPE_CATEGORIES},
        "sqa": round(sqa.accuracy, 4),
        "sqa_image": round(sqa.accuracy_image, 4),
        "sqa_text": round(sqa.accuracy_text, 4),
    }


def per_layer(spec: str, plans, dense: dict, limit: int | None, from_store: list[bool]) -> list[dict]:
    """Each layer's attention, then its MLP, cut by half alone (top units by the planner's scores kept)."""
    rows = []
    for i, shape in enumerate(plans.shapes):
        for kind in ("attention", "mlp"):
            layers = [LayerPlan.dense(s) for s in plans.shapes]
            per_group = shape.group_size // 2 if kind == "attention" else shape.group_size
            channels = shape.intermediate // 2 if kind == "mlp" else shape.intermediate
            layers[i] = select_units(shape, shape.n_kv_heads, per_group, channels, plans.scores[i])
            blueprint = blueprint_from_layers(
                plans.model_id, plans.family, plans.shapes, 0.01, layers, plans.m, 0.9, "manual", None, "wanda"
            )
            evaluated = evaluate_model(spec, "all", "dev", limit, image_free=False, blueprint=blueprint)
            from_store.append(evaluated.cached)
            result = scores(evaluated)
            change = {key: round(value - dense[key], 4) for key, value in result.items()}
            rows.append({"layer": i, "kind": kind, "achieved": round(blueprint.achieved, 4), **change})
    return rows


def sweep(spec: str, sparsity: float, shares: list[float], limit: int | None, layers: bool = False) -> dict:
    t0 = time.perf_counter()
    embedded = spec.startswith("embedded")
    data = None if embedded else DataSource(shapesworld=True)  # a local copy of an embedded model
    dense = evaluate_model(spec, "all", "dev", limit, image_free=False)
    from_store = [dense.cached]  # per evaluation: read back from the plan store (costs a read, not a forward pass)
    plans = planner(spec, data=data, with_policy=False)
    n_layers = len(plans.shapes)
    rows = []
    for share in shares:
        # A weight of exactly 0 would exempt a kind altogether; the floor keeps "all on MLP" a plan like the others.
        alpha = np.array([share / n_layers] * n_layers + [(1 - share) / n_layers] * n_layers) + 1e-6
        blueprint = plans.make(PlanSample(sparsity, alpha / alpha.sum(), True), None, "manual")
        heads = sum(len(layer.heads) for layer in blueprint.layers)
        channels = sum(len(layer.mlp) for layer in blueprint.layers)
        result = evaluate_model(spec, "all", "dev", limit, image_free=False, blueprint=blueprint)
        from_store.append(result.cached)
        rows.append(
            {
                "attention_share": share,
                "plan_id": blueprint.plan_id,
                "achieved": round(blueprint.achieved, 4),
                "heads_kept": round(heads / sum(s.n_heads for s in plans.shapes), 4),
                "mlp_kept": round(channels / sum(s.intermediate for s in plans.shapes), 4),
                **scores(result),
            }
        )
    pope = [r["pope_adversarial"] for r in rows]
    sqa = [r["sqa"] for r in rows]
    best_pope, best_sqa = rows[int(np.argmax(pope))], rows[int(np.argmax(sqa))]
    return {
        "model": spec,
        "split": "dev",
        "sparsity": sparsity,
        "limit": limit,
        "dense": scores(dense),
        "plans": rows,
        # The probe's question: two of these plans, each better than the other on one objective, by how much.
        "trade": {
            "pope_plan": best_pope["attention_share"],
            "sqa_plan": best_sqa["attention_share"],
            "pope_gap": round(best_pope["pope_adversarial"] - best_sqa["pope_adversarial"], 4),
            "sqa_gap": round(best_sqa["sqa"] - best_pope["sqa"], 4),
        },
        **({"per_layer": per_layer(spec, plans, scores(dense), limit, from_store)} if layers else {}),
        "seconds": round(time.perf_counter() - t0, 1),
        "evaluations": {"computed": from_store.count(False), "from_store": from_store.count(True)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["embedded", "embedded:qwen2_5_vl"])
    parser.add_argument("--sparsity", type=float, default=0.3)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.15, 0.3, 0.45, 0.6])
    parser.add_argument("--limit", type=int, default=300, help="dev questions per POPE category and of ScienceQA")
    parser.add_argument("--per-layer", action="store_true", help="also cut half of one layer's units at a time")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args()
    quiet_libraries()
    threads = set_threads(args.threads)
    report = {
        "models": [sweep(m, args.sparsity, args.shares, args.limit, args.per_layer) for m in args.models],
        "load": {"threads": threads, "loadavg_1min_at_end": round(os.getloadavg()[0], 2)},
    }
    emit("split_sweep", report, args.save)


if __name__ == "__main__":
    main()
