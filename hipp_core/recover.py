"""LoRA recovery of a physically pruned model: train low-rank adapters on the language decoder, merge them, ship it.

Pruning removes units the remaining ones were trained to work with; a short LoRA fine-tune on the pruned decoder
lets them compensate. Only the language decoder's seven projections get adapters (vision tower, projector,
embeddings and lm_head stay frozen; docs/design.md, Prunable units); after training the adapters are merged into the weights, so the
recovered model has exactly the pruned model's shapes and parameter count and is written like any export.

Data: ShapesWorld `train` drawn with the embedded models' own recipe (`models/train.py`), or a user's LLaVA-format
instruction file (`data.instructions`). Every batch is a pure function of (seed, step), and the adapters, optimizer
and schedule are checkpointed every `checkpoint_every` steps (written to a temporary file, then renamed), so a
killed run, rerun, continues from its last checkpoint to the same weights as an unbroken one.

Memory at 7B scale: the adapters are kept in the model's dtype (bfloat16 on a GPU), a step's batch can be split into
`grad_accum` micro-batches (the same samples, gradients summed before the update), and `grad_checkpointing`
recomputes each decoder layer's activations in the backward pass instead of keeping them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from hipp_core.blueprint import Blueprint
from hipp_core.config import home_dir
from hipp_core.data import build as data_build
from hipp_core.data.instructions import Instruction, load_instructions
from hipp_core.data.source import DataSource
from hipp_core.data.world import scenes_for_split
from hipp_core.errors import HippError, collecting_notices, notice
from hipp_core.evaluation.engine import EvalResult, open_image
from hipp_core.evaluation.stored import evaluate_model, evaluate_recovered, evaluation_options
from hipp_core.export import export_pruned, load_pruned
from hipp_core.models.adapters import ModelAdapter
from hipp_core.models.device import AUTO
from hipp_core.models.loading import EMBEDDED_ALIASES, load_model
from hipp_core.models.train import TrainConfig, answer_loss, draw_batch, lr_factor, samples_loss
from hipp_core.prune import materialize
from plan_store import PlanStore

Progress = Callable[..., None]  # (stage, done, total, metrics=None), as the CLI's progress bar takes it
RECIPE_VERSION = 1  # bump when a change below makes the same settings train a different model
MAX_RANK = 256
RECOVERY_FILE = "recovery.json"
CHECKPOINT_FILE = "checkpoint.pt"
_PROJECTIONS = r"(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


@dataclass(frozen=True)
class RecoveryConfig:
    steps: int = 300
    rank: int = 8
    lr: float = 2e-3  # LoRA tolerates ~10x full fine-tuning's rate; 300 steps leave no time to crawl
    seed: int = 0
    batch_size: int = 16  # 300 steps of the embedded LLaVA took 43-104 s on one busy core (budget: 5 minutes)
    grad_accum: int = 1  # micro-batches of `batch_size` per update: the update sees batch_size * grad_accum samples
    grad_checkpointing: bool = False  # recompute activations in the backward pass: less memory, same result
    alpha_per_rank: float = 2.0  # lora_alpha = 2·rank, so the update's scale does not change with the rank
    warmup: int = 20
    checkpoint_every: int = 50
    caption_weight: float = 0.5  # as in the embedded recipe: captions keep the decoder looking at the image

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise HippError(f"--steps must be a whole number of at least 1, got {self.steps!r}")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or not 1 <= self.rank <= MAX_RANK:
            raise HippError(f"--rank must be a whole number between 1 and {MAX_RANK}, got {self.rank!r}")
        if isinstance(self.lr, bool) or not (isinstance(self.lr, float | int) and 0 < self.lr < float("inf")):
            raise HippError(f"--lr must be a positive finite number (e.g. 2e-3), got {self.lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise HippError(f"--seed must be a non-negative whole number, got {self.seed!r}")
        for name in ("batch_size", "grad_accum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
                raise HippError(f"--{name.replace('_', '-')} must be a whole number from 1 to 4096, got {value!r}")

    @property
    def samples_per_step(self) -> int:
        return self.batch_size * self.grad_accum

    def identity(self) -> dict:
        """The settings that change the recovered weights. Checkpointing recomputes the same activations, so it is
        left out; `grad_accum` only when it is not 1, so the keys of recoveries stored before it existed still
        match."""
        settings = asdict(self)
        settings.pop("grad_checkpointing")
        if self.grad_accum == 1:
            settings.pop("grad_accum")
        return settings

    def shapes_world(self) -> TrainConfig:
        """The embedded recipe's sampling mix, with same-colour / same-shape lures from the first step: the base
        model finished its training on them."""
        return replace(TrainConfig(), seed=self.seed, batch_size=self.samples_per_step, lure_start=0.0)

    def schedule(self) -> TrainConfig:
        return replace(TrainConfig(), letter_steps=0, steps=self.steps, warmup=min(self.warmup, self.steps))


@dataclass
class RecoveryResult:
    artifact_dir: Path
    before: EvalResult  # the pruned model, physically materialized, on the test split
    after: EvalResult  # the recovered model, reloaded from `artifact_dir`, on the same questions
    seconds: float  # training wall time, summed over resumed runs
    steps: int
    cached: bool = False  # True when a stored artifact was returned without training
    notices: list[str] = field(default_factory=list)  # what the user should know about the settings (HippNotice)


# -- data ---------------------------------------------------------------------------------------------------------
def data_key(data: Path | None) -> str:
    """What the recovery trained on: ShapesWorld by version, or an instruction file by content."""
    if data is None:
        return f"shapesworld-v{data_build.VERSION}"
    path = Path(data).expanduser()
    if not path.is_file():
        raise HippError(f"instruction file {path} does not exist; pass a LLaVA-format JSON file")
    return "file-" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def instruction_advice(option: str) -> str:
    return f"pass {option} FILE, a LLaVA-format instruction file"


def check_recovery_data(spec: str, data: Path | None, own_test_data: bool, advice: str | None = None) -> None:
    """ShapesWorld is the embedded models' training data; a real checkpoint tuned on it would learn toy shapes. A model
    scored on the user's own test files must name its instruction file (the error's `advice` says where; default:
    `--data`); any other local checkpoint recovers on ShapesWorld with a notice (tiny test checkpoints and speed runs
    do so on purpose)."""
    if data is not None or spec in EMBEDDED_ALIASES:
        return
    if own_test_data:
        raise HippError(
            f"{spec} is a local checkpoint tuned on your own data, so its LoRA recovery must not train on ShapesWorld: "
            + (advice or instruction_advice("--data"))
        )
    notice(
        f"{spec} is recovered on ShapesWorld train, the embedded testbed's toy data; for a real model, train on its "
        "own LLaVA-format instructions (hipp recover --data, hipp pipeline --recover-data, the Instruction file of "
        "Export or Pareto)"
    )


# loss_at(adapter, step, micro): the (total, answer, caption) losses of micro-batch `micro` of step `step`.
Batch = Callable[[ModelAdapter, int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _micro(samples: list, cfg: RecoveryConfig, micro: int) -> list:
    """Micro-batch `micro` of a step's samples: with accumulation a step trains on the same samples as one batch of
    `samples_per_step` would."""
    return samples[micro * cfg.batch_size : (micro + 1) * cfg.batch_size]


def shapes_world_batches(cfg: RecoveryConfig) -> Batch:
    """ShapesWorld `train` batches; step t's batch comes from its own seeded stream, so a resumed run draws it
    again exactly."""
    sampling = cfg.shapes_world()

    @lru_cache(maxsize=1)
    def samples_at(step: int) -> list:
        seed = cfg.seed * 1_000_003 + step
        return draw_batch(scenes_for_split("train", seed=seed), random.Random(seed), sampling, step)

    def loss_at(adapter: ModelAdapter, step: int, micro: int = 0):
        return samples_loss(adapter, _micro(samples_at(step), cfg, micro), cfg.caption_weight)

    return loss_at


def instruction_batches(items: list[Instruction], cfg: RecoveryConfig) -> Batch:
    """Epochs over the file's turns, each in its own seeded order; step t takes the t-th slice of that stream."""

    @lru_cache(maxsize=2)
    def order(epoch: int) -> list[int]:
        indices = list(range(len(items)))
        random.Random(f"{cfg.seed}:{epoch}").shuffle(indices)
        return indices

    def loss_at(adapter: ModelAdapter, step: int, micro: int = 0):
        positions = range(step * cfg.samples_per_step, (step + 1) * cfg.samples_per_step)
        batch = _micro([items[order(p // len(items))[p % len(items)]] for p in positions], cfg, micro)
        images = [open_image(it.image, blank=False) if it.image is not None else None for it in batch]
        texts, answers = [it.prompt for it in batch], [it.answer for it in batch]
        return answer_loss(adapter, texts, images, answers, [False] * len(batch), cfg.caption_weight)

    return loss_at


# -- LoRA ---------------------------------------------------------------------------------------------------------
def lora_targets(adapter: ModelAdapter) -> tuple[str, list[str]]:
    """A regex matching the seven projections of the language decoder's layers, and only those (the vision towers
    of both families also have q/k/v and MLP projections), plus the matched modules pruned to zero width, which
    an adapter cannot help."""
    prefix = next(name for name, module in adapter.model.named_modules() if module is adapter.decoder_layers)
    pattern = rf"{re.escape(prefix)}\.\d+\.{_PROJECTIONS}"
    empty = [
        name
        for name, module in adapter.model.named_modules()
        if re.fullmatch(pattern, name) and isinstance(module, nn.Linear) and 0 in module.weight.shape
    ]
    return pattern, empty


def add_lora(adapter: ModelAdapter, cfg: RecoveryConfig) -> nn.Module:
    """Wrap the model with LoRA adapters in place (seeded initialisation); returns the peft model."""
    pattern, empty = lora_targets(adapter)
    config = LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha_per_rank * cfg.rank,
        lora_dropout=0.0,  # no randomness during training: a resumed run must replay the same updates
        target_modules=pattern,
        exclude_modules=empty or None,
    )
    torch.manual_seed(cfg.seed)
    # The adapters in the model's own dtype (peft would make them float32): bfloat16 weights on a GPU train bfloat16
    # adapters, which the merge then adds without a cast.
    return get_peft_model(adapter.model, config, autocast_adapter_dtype=False)


def _lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def train_lora(
    adapter: ModelAdapter, cfg: RecoveryConfig, batches: Batch, checkpoint: Path, progress: Progress | None = None
) -> float:
    """Train LoRA adapters on `adapter`'s (pruned) decoder, resuming from `checkpoint` if it exists, and merge them
    into the weights. Returns the training seconds, summed over resumed runs."""
    peft_model = add_lora(adapter, cfg)
    if cfg.grad_checkpointing:
        adapter.model.activation_checkpointing_enable()  # non-reentrant: frozen inputs need no requires_grad
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    schedule = cfg.schedule()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, schedule))
    start, seconds = 0, 0.0
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True, map_location=params[0].device)
        named = dict(peft_model.named_parameters())
        with torch.no_grad():
            for name, value in state["lora"].items():
                named[name].copy_(value)
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start, seconds = state["step"], state["seconds"]
    peft_model.train()
    t0 = time.perf_counter()
    for step in range(start, cfg.steps):
        opt.zero_grad()
        qa_loss = cap_loss = 0.0
        for micro in range(cfg.grad_accum):
            loss, qa, cap = batches(adapter, step, micro)
            (loss / cfg.grad_accum).backward()  # exact for 1: a step without accumulation is unchanged
            qa_loss, cap_loss = qa_loss + qa.item() / cfg.grad_accum, cap_loss + cap.item() / cfg.grad_accum
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        done = step + 1
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            elapsed = seconds + time.perf_counter() - t0
            state = {"lora": _lora_state(peft_model), "opt": opt.state_dict(), "sched": sched.state_dict()}
            _save_atomic({**state, "step": done, "seconds": elapsed}, checkpoint)
        if progress:
            progress("recover", done, cfg.steps, {"loss": qa_loss, "caption_loss": cap_loss})
    seconds += time.perf_counter() - t0
    if cfg.grad_checkpointing:
        adapter.model.activation_checkpointing_disable()
    adapter.model = peft_model.merge_and_unload()
    adapter.model.eval()
    return round(seconds, 3)


def _save_atomic(state: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


# -- the whole job ------------------------------------------------------------------------------------------------
def recovery_key(model_id: str, plan_id: str, cfg: RecoveryConfig, data: str, placement: str = "") -> str:
    """Everything that makes two recoveries the same model. `placement` is the `Placement.key_suffix` of the device
    and dtype it trained in: empty for float32 on the CPU, and then left out, as before devices were options."""
    settings = {"v": RECIPE_VERSION, "model": model_id, "plan": plan_id, "data": data, **cfg.identity()}
    if placement:
        settings["placement"] = placement
    return hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:16]


def recovery_dir(plan_id: str, key: str) -> Path:
    """Where a recovery's artifact goes: user state beside the plan store, since it costs minutes to remake."""
    return home_dir() / "recovered" / f"{plan_id[:12]}-{key}"


def work_dir(artifact_dir: Path) -> Path:
    """A recovery's checkpoints, beside its artifact (hidden, and never mistaken for it)."""
    return artifact_dir.with_name(f".{artifact_dir.name}.work")


def read_recovery(artifact_dir: Path) -> dict | None:
    """The settings and training time recorded in a finished recovery artifact, or None if it is incomplete."""
    try:
        return json.loads((artifact_dir / RECOVERY_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def run_recovery(
    dense: ModelAdapter,
    blueprint: Blueprint,
    spec: str,
    cfg: RecoveryConfig,
    batches: Batch,
    data: str,
    artifact_dir: Path,
    progress: Progress | None = None,
) -> float:
    """Materialize, train LoRA on `batches`, merge, and publish the recovered model at `artifact_dir` as an export
    (reload checked against the merged model's logits); `data` names the training data in the records. Returns the
    training seconds. The work folder beside the artifact holds the checkpoint, so a rerun after a kill resumes; the
    caller removes it once the artifact is registered. The artifact is written in the dense checkpoint's dtype."""
    work = work_dir(artifact_dir)
    work.mkdir(parents=True, exist_ok=True)
    pruned = materialize(dense, blueprint)
    seconds = train_lora(pruned, cfg, batches, work / CHECKPOINT_FILE, progress)
    recipe = {"spec": spec, "plan_id": blueprint.plan_id, "data": data, **asdict(cfg)}
    recipe |= {"train_seconds": seconds, "recipe_version": RECIPE_VERSION}
    card = {"recovery_" + k: v for k, v in recipe.items() if k in ("steps", "rank", "lr", "seed", "data")}
    export_pruned(dense, blueprint, artifact_dir, spec=spec, metrics=card, overwrite=True, pruned=pruned)
    tmp = artifact_dir / (RECOVERY_FILE + ".tmp")
    tmp.write_text(json.dumps(recipe, indent=2) + "\n")
    os.replace(tmp, artifact_dir / RECOVERY_FILE)
    return seconds


def recover_plan(
    spec: str,
    blueprint: Blueprint,
    cfg: RecoveryConfig,
    data: Path | None = None,
    store: PlanStore | None = None,
    progress: Progress | None = None,
    limit: int | None = None,
    device: str = AUTO,
    dtype: str = AUTO,
    eval_batch_size: int = 32,
    eval_data: DataSource | None = None,
) -> RecoveryResult:
    """Evaluate the pruned model, recover it (or find the stored recovery with the same settings), evaluate the
    recovered one; both evaluations on the test data `eval_data` names (a `DataSource.report_source`; None:
    ShapesWorld `test`) through the plan store. Registered as a `recovered` artifact of the plan only once complete,
    so a stored artifact is always a finished, reload-checked model. Training and both evaluations run on `device`
    in `dtype`; the artifact keeps the base checkpoint's dtype. `eval_batch_size` is the evaluations' questions per
    forward pass (training's is `cfg.batch_size`)."""
    data_id = data_key(data)  # a missing or malformed instruction file fails here, before minutes of evaluation
    with collecting_notices() as notices:
        check_recovery_data(spec, data, eval_data is not None)
    batches = shapes_world_batches(cfg) if data is None else instruction_batches(load_instructions(data), cfg)
    store = store or PlanStore()
    settings = {"device": device, "dtype": dtype}
    options = evaluation_options(eval_data)
    before = evaluate_model(
        spec,
        "all",
        limit=limit,
        batch_size=eval_batch_size,
        store=store,
        blueprint=blueprint,
        mode="physical",
        progress=progress,
        **options,
        **settings,
    )  # also checks the plan against the model and stores both
    loaded = load_model(spec, **settings)
    key = recovery_key(loaded.model_id, blueprint.plan_id, cfg, data_id, loaded.placement.key_suffix)
    artifact_dir = recovery_dir(blueprint.plan_id, key)
    stored = {Path(a.path) for a in store.list_artifacts(blueprint.plan_id) if a.kind == "recovered"}
    info = read_recovery(artifact_dir) if artifact_dir in stored else None
    if info is None:
        label = f"{Path(data).expanduser().absolute()} ({data_id})" if data else data_id
        seconds = run_recovery(loaded.adapter, blueprint, spec, cfg, batches, label, artifact_dir, progress)
        store.put_artifact(blueprint.plan_id, "recovered", artifact_dir)
        shutil.rmtree(work_dir(artifact_dir), ignore_errors=True)
    else:
        seconds = info["train_seconds"]
    recovered = load_pruned(artifact_dir, loaded.placement.device, loaded.placement.dtype)
    after = evaluate_recovered(
        spec,
        blueprint,
        recovered,
        "all",
        options["split"],
        limit,
        batch_size=eval_batch_size,
        store=store,
        progress=progress,
        data=eval_data,
    )
    return RecoveryResult(artifact_dir, before, after, seconds, cfg.steps, info is not None, notices)
