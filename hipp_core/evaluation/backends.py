"""Evaluator backends: who scores a batch of plans. GRPO, search baselines and dashboard jobs only see this interface.

A backend scores blueprints on one model and one question set (split + limit per set) and returns `EvalResult`s in
order. Every result goes through the plan store, so a plan already scored is read back, never recomputed, whichever
backend asked first. The in-process backend is the default; others (e.g. Ray, `make_evaluator(backend="ray")`) fan
the same calls out to workers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Protocol

from hipp_core import validation
from hipp_core.blueprint import Blueprint
from hipp_core.data.source import DataSource, data_key
from hipp_core.errors import HippError
from hipp_core.evaluation.engine import EvalResult, Progress
from hipp_core.evaluation.stored import (
    bench_key,
    check_plan,
    eval_key,
    load_benchmark,
    plan_draft,
    score_plan,
    stored_score,
)
from hipp_core.models.loading import load_model
from plan_store import DENSE_PLAN_ID, PlanStore

BACKENDS: dict[str, Callable[..., Evaluator]] = {}


class Evaluator(Protocol):
    spec: str
    split: str
    limit: int | None
    data: DataSource | None  # the user's files, or None / ShapesWorld

    def evaluate(self, blueprints: Sequence[Blueprint | None], progress: Progress | None = None) -> list[EvalResult]:
        """Results in the order of `blueprints`; `None` stands for the dense model."""
        ...

    def close(self) -> None: ...


class InProcessEvaluator:
    """Scores plans one after another in this process with the masked view of the dense model; the model and the
    questions are loaded once, each plan costs its forward passes and one store transaction or two."""

    def __init__(
        self,
        spec: str,
        split: str = "dev",
        limit: int | None = 100,
        store: PlanStore | None = None,
        *,
        data: DataSource | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 32,
    ) -> None:
        validation.count(batch_size, "--batch-size")
        self.spec, self.split, self.limit, self.data, self.batch_size = spec, split, limit, data, batch_size
        self.store = store or PlanStore()
        self.loaded = load_model(spec, device, dtype)
        self.tasks = load_benchmark("all", split, limit, data)
        self.shapes = self.loaded.adapter.layer_shapes()
        self.bench = bench_key("all", False, data_key(data, self.tasks), self.loaded.placement.key_suffix)
        self.store.put_model(self.loaded.model_id, spec, self.loaded.family, self.loaded.model.config.to_dict())

    def evaluate(self, blueprints: Sequence[Blueprint | None], progress: Progress | None = None) -> list[EvalResult]:
        model_id = self.loaded.model_id
        results = []
        for i, blueprint in enumerate(blueprints):
            plan_id = DENSE_PLAN_ID
            if blueprint is not None:
                check_plan(blueprint, model_id, self.shapes, self.spec)
                plan_id = self.store.put_plan(plan_draft(blueprint)).plan_id
            key = eval_key(model_id, plan_id, self.bench, self.split, self.limit, "logits", "masked")
            score = lambda bp=blueprint: score_plan(
                self.loaded, self.tasks, self.split, bp, image_free=False, batch_size=self.batch_size
            )
            results.append(stored_score(self.store, key, score))
            if progress:
                progress("plans", i + 1, len(blueprints))
        return results

    def close(self) -> None:
        pass


BACKENDS["local"] = InProcessEvaluator


def _ray_evaluator(
    spec: str,
    split: str = "dev",
    limit: int | None = 100,
    store: PlanStore | None = None,
    address: str = "local",
    num_workers: int | None = None,
    *,
    data: DataSource | None = None,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 32,
) -> Evaluator:
    """Imported on first use: ray is an optional extra, and importing it costs seconds."""
    try:
        from hipp_core.evaluation.ray_backend import RayEvaluator
    except ModuleNotFoundError as exc:
        if exc.name != "ray":
            raise
        raise HippError("the ray backend needs `pip install .[distributed]`") from None
    return RayEvaluator(
        spec, split, limit, store, address, num_workers, data=data, device=device, dtype=dtype, batch_size=batch_size
    )


BACKENDS["ray"] = _ray_evaluator


def make_evaluator(
    spec: str,
    split: str = "dev",
    limit: int | None = 100,
    store: PlanStore | None = None,
    backend: str = "local",
    data: DataSource | None = None,
    **options,
) -> Evaluator:
    """The evaluator for `backend` (`local` = in this process, `ray` = on Ray workers), on ShapesWorld `split` or
    the user's files `data` names. Both take `device`, `dtype` (`auto` resolves where the model runs: on Ray, on
    each worker) and `batch_size` (questions per forward pass).

    Options left at None are dropped, so a command line can pass `address=None, num_workers=None` whatever the
    backend; an option the backend does not take is refused with the ones it does.
    """
    try:
        factory = BACKENDS[backend]
    except KeyError:
        raise HippError(f"unknown evaluator backend {backend!r}; available: {', '.join(sorted(BACKENDS))}") from None
    options = {name: value for name, value in options.items() if value is not None}
    accepted = [p for p in list(inspect.signature(factory).parameters)[4:] if p != "data"]  # after spec .. store
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = f"takes {', '.join(accepted)}" if accepted else "takes no options"
        raise HippError(f"the {backend} evaluator backend does not take {', '.join(unknown)}; it {takes}")
    return factory(spec, split, limit, store, **options, data=data)
