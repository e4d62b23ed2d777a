"""The Ray evaluator backend: plans fanned out to one worker per GPU (or CPU slot), each holding the dense model once.

The driver owns the plan store: it registers the model and the plans, answers cached plans from the store and sends
only the others to the workers (as blueprint JSON), then writes each result itself as it arrives, under the key
`hipp_core.api.evaluate_model` would use, with the numbers `hipp_core.api.score_plan` computes in this process. So
workers never open the DuckDB file (one read-write connection locks it for every other process), and a plan
scored on Ray is indistinguishable in the store from one scored in process.

A worker that dies mid-plan loses nothing: Ray restarts a crashed actor and retries its task (`max_restarts`,
`max_task_retries`); when it gives up, or the actor was killed outright, the driver replaces the actor and sends the
plan again, up to `MAX_ATTEMPTS` times per plan, so one plan that kills every worker it touches cannot loop forever.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from hipp_core import validation
from hipp_core.blueprint import Blueprint, LayerShape
from hipp_core.config import quiet_libraries
from hipp_core.data.source import DataSource, data_key
from hipp_core.errors import USER_ERRORS, HippError
from hipp_core.evaluation.engine import EvalResult, Progress
from hipp_core.evaluation.stored import bench_key, check_plan, eval_key, load_benchmark, plan_draft, score_plan
from hipp_core.models.device import AUTO, dtype_name
from hipp_core.models.loading import load_model
from plan_store import DENSE_PLAN_ID, EvalKey, PlanStore

STARTUP_TIMEOUT_S = 600  # a 7B float32 load (28 GB) from a slow disk takes minutes; a busy cluster takes forever
MAX_ATTEMPTS = 3  # per plan: a worker death is retried on a fresh worker, a plan that kills three is reported
_BENCH, _SCORING, _IMAGE_FREE, _MODE = "all", "logits", False, "masked"  # what InProcessEvaluator scores
_QUIET = {"logging_level": "error", "log_to_driver": False}  # worker failures come back as exceptions, not log lines


class PlanWorker:
    """One Ray actor: the dense model and the question set, loaded once; scores the plans it is sent."""

    def __init__(
        self,
        spec: str,
        split: str,
        limit: int | None,
        threads: int,
        data: DataSource | None,
        device: str,
        dtype: str,
        batch_size: int,
    ) -> None:
        quiet_libraries()
        import torch

        torch.set_num_threads(threads)  # the CPUs Ray reserved for this actor, no more: workers share the machine
        if device == AUTO:  # the GPU Ray gave this actor (it sees it as cuda:0), else its CPUs
            device = "cuda" if ray.get_gpu_ids() else "cpu"
        self.split, self.batch_size = split, batch_size
        self.loaded = load_model(spec, device, dtype)  # a dtype this machine cannot compute in fails here
        self.tasks = load_benchmark(_BENCH, split, limit, data)
        self.data_key = data_key(data, self.tasks)

    def describe(self) -> dict:
        """What the driver needs to key, validate and register plans without loading the model itself."""
        loaded = self.loaded
        return {
            "model_id": loaded.model_id,
            "family": loaded.family,
            "config": loaded.model.config.to_dict(),
            "shapes": [shape.to_json() for shape in loaded.adapter.layer_shapes()],
            "data_key": self.data_key,  # the questions as the workers read them, by content
            "placement": loaded.placement.key_suffix,  # the device type and dtype the workers resolved
        }

    def score(self, blueprint: dict | None) -> tuple[dict[str, float], int, float]:
        """(metrics, questions, seconds) of one plan; `None` is the dense model."""
        plan = None if blueprint is None else Blueprint.from_json(blueprint)
        started = time.perf_counter()
        result = score_plan(
            self.loaded, self.tasks, self.split, plan, _SCORING, _IMAGE_FREE, self.batch_size, mode=_MODE
        )
        return result.to_metrics(), result.questions, time.perf_counter() - started


_RemoteWorker = ray.remote(PlanWorker)


class RayEvaluator:
    """`make_evaluator(..., backend="ray", address=..., num_workers=...)`.

    `address`: `local` starts a cluster on this machine (or reuses the one this process already joined), `auto`
    joins a running cluster, `ray://host:port` a remote one. `num_workers` defaults to the cluster's GPUs, or its
    CPUs when it has none. `close` ends the workers and the connection this evaluator opened (a cluster it
    started stops with it); a Ray session the caller opened is left running.

    `device`: `auto` puts one worker on each GPU when the cluster has GPUs (each in `dtype`, `auto` = bfloat16 there)
    and on CPU slots otherwise; `cpu` keeps the workers off the GPUs; `cuda` requires GPUs. Each worker resolves and
    checks the settings on its own machine; the results are stored under the settings the workers report.
    """

    def __init__(
        self,
        spec: str,
        split: str = "dev",
        limit: int | None = 100,
        store: PlanStore | None = None,
        address: str = "local",
        num_workers: int | None = None,
        *,
        data: DataSource | None = None,
        device: str = AUTO,
        dtype: str = AUTO,
        batch_size: int = 32,
    ) -> None:
        validation.optional_count(num_workers, "--num-workers")
        validation.count(batch_size, "--batch-size")
        device = str(device).strip().lower()
        if device not in (AUTO, "cpu") and not device.startswith("cuda"):
            raise HippError(f"unknown device {device!r} for ray workers; use auto, cpu or cuda")
        # Each worker owns one GPU, which it sees as cuda:0: `cuda:N` means nothing there.
        self.device = "cuda" if device.startswith("cuda") else device
        self.dtype = dtype if dtype == AUTO else dtype_name(dtype)
        self.batch_size = batch_size
        self.spec, self.split, self.limit, self.data = spec, split, limit, data
        self.store = store or PlanStore()
        self.sent = 0  # plans sent to workers (cached ones never are): what the tests and benchmarks count
        self.replaced = 0  # workers replaced after dying
        self._started_cluster = _connect(address, num_workers)
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        if self.device == "cpu":
            gpus = 0  # CPU workers, even on a cluster with GPUs
        elif self.device == "cuda" and not gpus:
            self.close()
            raise HippError("--device cuda was asked for but the ray cluster has no GPUs; use --device cpu or auto")
        self.num_workers = num_workers or gpus or cpus
        if self.num_workers > (gpus or cpus):  # the extra workers would wait for a free slot forever
            self.close()
            unit = "GPUs" if gpus else "CPUs"
            raise HippError(
                f"--num-workers {self.num_workers} exceeds the cluster's {gpus or cpus} {unit}; ask for fewer"
            )
        # One actor per GPU; on CPU the cluster's cores are split evenly so workers do not fight over threads.
        self._per_worker = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": max(1, cpus // self.num_workers)}
        self.actors = [self._spawn() for _ in range(self.num_workers)]
        info = self._first_description()
        self.model_id: str = info["model_id"]
        self.shapes = [LayerShape.from_json(s) for s in info["shapes"]]
        self.store.put_model(self.model_id, spec, info["family"], info["config"])
        self._bench = bench_key(_BENCH, _IMAGE_FREE, info["data_key"], info["placement"])

    def _spawn(self):
        threads = int(self._per_worker["num_cpus"])
        actor = _RemoteWorker.options(**self._per_worker, max_restarts=1, max_task_retries=1)
        return actor.remote(
            self.spec, self.split, self.limit, threads, self.data, self.device, self.dtype, self.batch_size
        )

    def _first_description(self) -> dict:
        """Wait for every worker to load the model, so a bad spec fails here, once, with the loader's message."""
        try:
            infos = ray.get([actor.describe.remote() for actor in self.actors], timeout=STARTUP_TIMEOUT_S)
        except (RayActorError, RayTaskError) as exc:
            self.close()
            raise HippError(f"ray workers could not load {self.spec}: {_reason(exc)}") from None
        except GetTimeoutError:
            self.close()
            raise HippError(
                f"{self.num_workers} ray workers did not start within {STARTUP_TIMEOUT_S} s; "
                "is the cluster busy with other work (`ray status`)?"
            ) from None
        placements = sorted({info["placement"] for info in infos})
        if len(placements) > 1:  # e.g. bfloat16 on one GPU model, float16 on an older one: two sets of numbers
            self.close()
            shown = ", ".join(p.lstrip(":") or "cpu-float32" for p in placements)
            raise HippError(f"ray workers resolved different settings ({shown}); pass --device and --dtype explicitly")
        return infos[0]

    def _key(self, blueprint: Blueprint | None) -> EvalKey:
        plan_id = DENSE_PLAN_ID if blueprint is None else blueprint.plan_id
        return eval_key(self.model_id, plan_id, self._bench, self.split, self.limit, _SCORING, _MODE)

    def evaluate(self, blueprints: Sequence[Blueprint | None], progress: Progress | None = None) -> list[EvalResult]:
        """Results in the order of `blueprints`; `None` stands for the dense model. Duplicates are scored once."""
        plans = [b for b in blueprints if b is not None]
        for blueprint in plans:
            check_plan(blueprint, self.model_id, self.shapes, self.spec)
        if plans:
            self.store.put_plans([plan_draft(b) for b in plans])
        keys = [self._key(b) for b in blueprints]
        done: dict[EvalKey, EvalResult] = {}
        todo: dict[EvalKey, Blueprint | None] = {}
        for key, blueprint in zip(keys, blueprints, strict=True):
            if key in done or key in todo:
                continue
            record = self.store.get_evaluation(key)
            if record is None:
                todo[key] = blueprint
            else:
                done[key] = self._result(record.metrics, record.seconds, cached=True)
        total = len(done) + len(todo)
        if progress:
            progress("plans", len(done), total)
        for key, metrics, questions, seconds in self._scatter(todo):
            record = self.store.put_evaluation(key, metrics, questions, seconds)  # first write wins, as in process
            done[key] = self._result(record.metrics, record.seconds, cached=False)
            if progress:
                progress("plans", len(done), total)
        return [done[key] for key in keys]

    def _result(self, metrics: dict[str, float], seconds: float, cached: bool) -> EvalResult:
        return EvalResult.from_metrics(self.model_id, self.split, _SCORING, metrics, seconds, cached)

    def _scatter(self, todo: dict[EvalKey, Blueprint | None]):
        """Yield (key, metrics, questions, seconds) as workers finish; one plan in flight per worker, so a fast
        worker takes more plans and a lost worker costs at most one plan's time."""
        queue = [(key, None if b is None else b.to_json()) for key, b in todo.items()]
        attempts = dict.fromkeys(todo, 0)
        idle = list(range(len(self.actors)))
        flight: dict = {}  # ObjectRef -> (actor index, key, blueprint JSON)
        while queue or flight:
            while queue and idle:
                slot, (key, payload) = idle.pop(), queue.pop()
                attempts[key] += 1
                self.sent += 1
                flight[self.actors[slot].score.remote(payload)] = (slot, key, payload)
            (ref,), _ = ray.wait(list(flight), num_returns=1)
            slot, key, payload = flight.pop(ref)
            try:
                metrics, questions, seconds = ray.get(ref)
            except RayActorError as exc:
                if attempts[key] >= MAX_ATTEMPTS:
                    raise HippError(
                        f"plan {key.plan_id} was lost with {MAX_ATTEMPTS} workers ({_reason(exc)}); "
                        "check the workers' memory and logs (`ray logs`)"
                    ) from None
                self._replace(slot)
                queue.append((key, payload))
            except RayTaskError as exc:
                raise HippError(f"a ray worker failed on plan {key.plan_id}: {_reason(exc)}") from None
            else:
                yield key, metrics, questions, seconds
            idle.append(slot)

    def _replace(self, slot: int) -> None:
        ray.kill(self.actors[slot], no_restart=True)  # it may be hung rather than dead; make sure it is gone
        self.actors[slot] = self._spawn()
        self.replaced += 1

    def close(self) -> None:
        for actor in getattr(self, "actors", []):  # absent when the constructor stopped before spawning
            ray.kill(actor, no_restart=True)
        self.actors = []
        if self._started_cluster:
            ray.shutdown()
            self._started_cluster = False


def _connect(address: str, num_workers: int | None) -> bool:
    """Join or start the cluster; True when this call started it (and so `close` must stop it)."""
    if address not in ("local", "auto") and not address.startswith("ray://"):
        raise HippError(f"--address must be local, auto or ray://host:port, got {address!r}")
    if ray.is_initialized():
        return False
    if address == "local":
        ray.init(num_cpus=num_workers or os.cpu_count(), include_dashboard=False, **_QUIET)
        return True
    try:
        ray.init(address=address, **_QUIET)
    except (ConnectionError, RuntimeError) as exc:
        raise HippError(f"could not join the ray cluster at {address}: {_reason(exc)}") from None
    return True


def _reason(exc: BaseException) -> str:
    """The last meaningful line of a Ray error (its messages carry whole remote tracebacks)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, USER_ERRORS):
        return str(cause)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
