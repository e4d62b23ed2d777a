"""The project's recipe for training the embedded VLMs on ShapesWorld `train`, deterministically on one device.

Two stages, after what we measured (docs/design.md, The embedded testbed):
1. The vision encoder alone learns, through a linear probe, which object (or nothing) sits in each cell. We
   predict the joint colour-and-shape class rather than colour and shape apart, so each image token carries
   its object's identity linearly and the decoder never has to bind colour to shape itself.
2. The encoder is frozen; the decoder first drills option letters on text alone ("Which option is the red
   circle?", `letter_steps`), then (`text_steps`, optional) learns ScienceQA's text kinds and the fact table, asked
   open and as multiple choice, still without images; then projector (3x learning rate) and decoder learn from
   balanced yes/no questions (P(yes | object) = 0.5, half the negatives with a same-colour or same-shape lure),
   multiple choice (with some letter drill kept in), and dense captions, with separate loss terms for answers and
   captions, plus next-token loss on the prompt text.

The drill and the prompt loss are what multiple choice needs. Answering with a letter needs each option's text to
know its letter (attention back to "B."), and an answer-only loss gives that circuit no gradient until the rest of
it exists: on the letter drill alone the decoder stayed at chance for 1,000 steps (lr 1.5e-3 and 5e-3). Predicting
the prompt's own next token ("B" after option A's text) trains that look-back: the same drill then reached 0.76 in
1,500 steps. Mixed into the full task mix instead (30% of samples, 1,000 steps on a trained model), it stayed at chance.
The text phase is what the fact questions need: among images they are too rare to be learnt (docs/design.md).

Training checkpoints every `checkpoint_every` steps (weights, optimizer, data-stream state); rerunning with
the same output resumes where the last checkpoint left off.
"""

from __future__ import annotations

import math
import os
import queue
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from hipp_core.data.prompts import CAPTION_PROMPT, LETTERS, pope_prompt, sqa_prompt
from hipp_core.data.questions import (
    DRILL_KINDS,
    IMAGE_KINDS,
    TEXT_KINDS,
    balanced_presence,
    fact_recall,
    multiple_choice,
)
from hipp_core.data.world import GRID, OBJECTS, QUADRANTS, Placed, Scene, render, scenes_for_split
from hipp_core.models.adapters import Encoded, ModelAdapter
from hipp_core.models.device import to_model

Progress = Callable[[str, int, int, dict], None]


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    batch_size: int = 64
    probe_steps: int = 800  # with the quadrant head, LLaVA's tower needs ~800 steps to read every cell (400: 0.93)
    probe_lr: float = 3e-3
    letter_steps: int = 1500  # stage 2 opens with the text-only letter drill
    text_steps: int = 0  # then ScienceQA's text kinds and open fact recall, still without images
    share_text_recall: float = 0.3  # of the text phase's samples; the rest are multiple choice (with the drill kept)
    steps: int = 3600  # stage 2 after the text phases
    lr: float = 1.5e-3
    projector_lr_mult: float = 3.0  # the bridge starts from nothing and must move fastest
    warmup: int = 100
    weight_decay: float = 0.01
    share_caption: float = 0.2
    share_choice: float = 0.44  # of the non-caption samples; the rest are yes/no presence questions
    share_drill: float = 0.15  # of the multiple-choice samples: keeps the letter circuit while the rest is learnt
    share_fact: float = 0.15  # of the other samples: one-word recall of the fact table, the rest yes/no presence
    # Same-colour / same-shape lures only after the first 30%: partial matching on colour or shape is the
    # stepping stone to grounding, and lures from the start took that gradient away (yes/no stayed at chance).
    lure_start: float = 0.3
    lure_prob: float = 0.5
    caption_weight: float = 0.5
    prompt_weight: float = 1.0  # next-token loss on the prompt text (see the module docstring)
    checkpoint_every: int = 200

    @property
    def text_only_steps(self) -> int:
        return self.letter_steps + self.text_steps

    @property
    def total_steps(self) -> int:
        return self.text_only_steps + self.steps

    def lures_at(self, step: int) -> float:
        """`step` counts from the end of the text-only phases."""
        return self.lure_prob if step >= self.lure_start * self.steps else 0.0


@dataclass
class Sample:
    text: str
    image_scene: Scene | None
    answer: str
    is_caption: bool = False

    def image(self) -> Image.Image | None:
        return render(self.image_scene) if self.image_scene is not None else None


def draw_sample(stream, rng: random.Random, cfg: TrainConfig, step: int = 0) -> Sample:
    scene = next(stream)
    if rng.random() < cfg.share_caption:
        return Sample(CAPTION_PROMPT, scene, scene.caption(), is_caption=True)
    if rng.random() < cfg.share_choice:
        return choice_sample(scene, rng, cfg.share_drill)
    if rng.random() < cfg.share_fact:
        question, answer = fact_recall(rng)
        return Sample(pope_prompt(question), None, answer)
    scene, question, answer = balanced_presence(scene, rng, cfg.lures_at(step))
    return Sample(pope_prompt(question), scene, answer)


def choice_sample(scene: Scene | None, rng: random.Random, share_drill: float, with_image: bool = True) -> Sample:
    """A multiple-choice sample; drill questions (text only) with probability `share_drill`. Without `with_image`,
    only the text kinds."""
    if rng.random() < share_drill:
        kinds = DRILL_KINDS
    else:
        kinds = IMAGE_KINDS if with_image and rng.random() < 0.5 else TEXT_KINDS
    while True:
        q = multiple_choice(scene, rng.choice(kinds), rng)
        if q is not None:
            break
    return Sample(sqa_prompt(q.question, q.choices, q.hint), scene if q.needs_image else None, LETTERS[q.answer])


def draw_batch(stream, rng: random.Random, cfg: TrainConfig, step: int = 0) -> list[Sample]:
    """Stage-2 samples at `step` counted from the end of the text-only phases."""
    return [draw_sample(stream, rng, cfg, step) for _ in range(cfg.batch_size)]


def drill_batch(rng: random.Random, cfg: TrainConfig) -> list[Sample]:
    return [choice_sample(None, rng, share_drill=1.0) for _ in range(cfg.batch_size)]


def text_sample(rng: random.Random, cfg: TrainConfig) -> Sample:
    if rng.random() < cfg.share_text_recall:
        question, answer = fact_recall(rng)
        return Sample(pope_prompt(question), None, answer)
    return choice_sample(None, rng, cfg.share_drill, with_image=False)


def text_batch(rng: random.Random, cfg: TrainConfig) -> list[Sample]:
    """The text phase: the fact table asked both ways, open and as multiple choice, before images compete for the
    decoder (docs/design.md, The embedded testbed)."""
    return [text_sample(rng, cfg) for _ in range(cfg.batch_size)]


def answer_loss(
    adapter: ModelAdapter,
    texts: list[str],
    images: list[Image.Image | None],
    answers: list[str],
    is_caption: list[bool],
    caption_weight: float,
    prompt_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, answer, caption) next-token losses. Answers and captions are separate terms: captions are long,
    and pooled with the one-word answers they would drown the answer loss. With `prompt_weight`, the total also
    holds the mean next-token loss on the prompt's text tokens (image placeholders and padding excluded)."""
    enc = adapter.encode(texts, images, answers)  # on the model's device
    return encoded_loss(adapter.model, enc, is_caption, caption_weight, prompt_weight)


def encoded_loss(
    model: nn.Module, enc: Encoded, is_caption: list[bool], caption_weight: float, prompt_weight: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`answer_loss` of a batch already encoded (and on the model's device)."""
    # No KV cache (nothing reads it); the loss in float32 whatever the model's dtype.
    logits = model(**enc.inputs, use_cache=False).logits[:, :-1].float()
    tokens = enc.inputs["input_ids"][:, 1:]  # equal to the labels wherever they are set
    token_loss = F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="none").view_as(tokens)
    mask = enc.labels[:, 1:] != -100
    is_cap = torch.tensor(is_caption, device=mask.device)[:, None] & mask
    is_qa = mask & ~is_cap
    zero = torch.zeros((), device=mask.device)
    qa_loss = token_loss[is_qa].mean() if is_qa.any() else zero
    cap_loss = token_loss[is_cap].mean() if is_cap.any() else zero
    total = qa_loss + caption_weight * cap_loss
    if prompt_weight:
        is_prompt = (enc.inputs["attention_mask"][:, 1:] == 1) & ~mask & (tokens != model.config.image_token_id)
        total = total + prompt_weight * token_loss[is_prompt].mean()
    return total, qa_loss, cap_loss


def encode_samples(adapter: ModelAdapter, samples: list[Sample]) -> Encoded:
    """Prompts, images and answers of `samples` as one training batch (on the model's device, or on the CPU for a
    tokenizer-only adapter)."""
    return adapter.encode([s.text for s in samples], [s.image() for s in samples], [s.answer for s in samples])


def samples_loss(
    adapter: ModelAdapter, samples: list[Sample], caption_weight: float, prompt_weight: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    enc = encode_samples(adapter, samples)
    return encoded_loss(adapter.model, enc, [s.is_caption for s in samples], caption_weight, prompt_weight)


def cell_labels(scene: Scene) -> list[int]:
    labels = [0] * (GRID * GRID)
    for obj in scene.objects:
        labels[obj.cell] = 1 + OBJECTS.index(obj.name)
    return labels


def _save_atomic(state: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def cell_quadrants() -> list[int]:
    return [QUADRANTS.index(Placed(cell, "", "").quadrant) for cell in range(GRID * GRID)]


def train_probe(adapter: ModelAdapter, cfg: TrainConfig, progress: Progress | None = None) -> float:
    """Stage 1: returns the final per-cell accuracy on the last batch. A second linear head reads each cell's
    quadrant, so where a token sits is as plain in it as what it shows ("Where is the red circle?" needs both)."""
    encoder = adapter.vision_encoder()
    dim = adapter.image_token_states(adapter.encode(["x"], [render(next(scenes_for_split("train")))]).inputs).shape[-1]
    weight = next(encoder.parameters())
    head = nn.Linear(dim, 1 + len(OBJECTS), device=weight.device, dtype=weight.dtype)
    where = nn.Linear(dim, len(QUADRANTS), device=weight.device, dtype=weight.dtype)
    params = list(encoder.parameters()) + list(head.parameters()) + list(where.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.probe_lr)
    stream = scenes_for_split("train", seed=cfg.seed + 11)
    quadrants = torch.tensor(cell_quadrants(), device=weight.device).repeat(cfg.batch_size)
    acc = 0.0
    for step in range(cfg.probe_steps):
        scenes = [next(stream) for _ in range(cfg.batch_size)]
        enc = adapter.encode(["x"] * len(scenes), [render(s) for s in scenes])
        states = adapter.image_token_states(enc.inputs)
        target = torch.tensor([cell_labels(s) for s in scenes], device=states.device)
        logits = head(states)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten())
        loss = loss + F.cross_entropy(where(states).flatten(0, 1).float(), quadrants)
        opt.zero_grad()
        loss.backward()
        opt.step()
        acc = (logits.argmax(-1) == target).float().mean().item()
        if progress:
            progress("probe", step + 1, cfg.probe_steps, {"loss": loss.item(), "cell_acc": acc})
    return acc


@dataclass(frozen=True)
class TrainTime:
    """Seconds of training behind a checkpoint, over every run that resumed it, and the thread counts those runs
    used: what a retrain costs, reported even when it was killed and resumed. Work lost after the last checkpoint
    of a killed run is not counted (the next run redoes it)."""

    earlier: float = 0.0  # runs before this one, up to the checkpoint this run resumed
    now: float = 0.0  # this run
    threads: tuple[int, ...] = ()  # earlier runs' thread counts

    @classmethod
    def resumed(cls, saved: dict | None, this_run: TrainTime) -> TrainTime:
        if saved is None:  # a checkpoint from before times were kept
            return this_run
        return cls(saved["seconds"], this_run.now, tuple(saved["threads"]))

    def plus(self, seconds: float) -> TrainTime:
        return replace(self, now=self.now + seconds)

    def to_json(self) -> dict:
        """As a checkpoint keeps it: the total so far, and every run's thread count (this one's included)."""
        return {"seconds": self.earlier + self.now, "threads": [*self.threads, torch.get_num_threads()]}


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over `cfg.warmup` steps, then cosine decay to 10% of the peak at `cfg.total_steps`."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.total_steps - cfg.warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))


@dataclass
class StepBatch:
    """One stage-2 step's samples, encoded on the CPU, with the random state right after they were drawn: what a
    checkpoint taken after this step records, so that a resumed run draws what an unbroken one would have."""

    step: int
    stage: str
    enc: Encoded
    is_caption: list[bool]
    rng_state: tuple


def stage_at(step: int, cfg: TrainConfig) -> str:
    return "letters" if step < cfg.letter_steps else "text" if step < cfg.text_only_steps else "decoder"


def step_batches(
    encoder: ModelAdapter, cfg: TrainConfig, rng_state: tuple, start: int, worker: int = 0, workers: int = 1
) -> Iterator[StepBatch]:
    """Every stage-2 step from `start` on, drawn as an unbroken run draws them: the scene stream restarts at each
    checkpoint boundary, so a run resumed there sees the same scenes. `encoder` is a tokenizer-only adapter (its
    batches stay on the CPU). Worker `worker` of `workers` renders and encodes only the steps with
    step % workers == worker, but draws every step's samples: drawing is cheap, rendering and encoding are about
    half of a step on a GPU, and the random state is one sequence."""
    rng = random.Random()
    rng.setstate(rng_state)
    stream_seed = cfg.seed + 33
    stream = scenes_for_split("train", seed=stream_seed + start)
    for step in range(start, cfg.total_steps):
        stage = stage_at(step, cfg)
        if stage == "letters":
            batch = drill_batch(rng, cfg)
        elif stage == "text":
            batch = text_batch(rng, cfg)
        else:
            batch = draw_batch(stream, rng, cfg, step - cfg.text_only_steps)
        if (step + 1) % cfg.checkpoint_every == 0:
            stream = scenes_for_split("train", seed=stream_seed + step + 1)
        if step % workers == worker:
            yield StepBatch(step, stage, encode_samples(encoder, batch), [b.is_caption for b in batch], rng.getstate())


def _encode_worker(adapter_cls, processor, cfg: TrainConfig, rng_state, start: int, worker: int, workers: int, out):
    torch.set_num_threads(1)
    for batch in step_batches(adapter_cls(None, processor), cfg, rng_state, start, worker, workers):
        # As numpy arrays, which pickle by value: torch would pass shared-memory handles that die with this process.
        inputs = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in batch.enc.inputs.items()}
        out.put(replace(batch, enc=Encoded(inputs, batch.enc.labels.numpy())))


def ordered_batches(
    adapter: ModelAdapter, cfg: TrainConfig, rng_state: tuple, start: int, workers: int = 0
) -> Iterator[StepBatch]:
    """`step_batches` in step order, drawn in this process (`workers=0`) or ahead of the training step by
    `workers` processes, each a few steps ahead: on a GPU the step waits for the CPU's rendering and encoding
    otherwise (docs/design.md §2, On a GPU). The batches are the same either way."""
    encoder = type(adapter)(None, adapter.processor)
    if workers == 0:
        yield from step_batches(encoder, cfg, rng_state, start)
        return
    ctx = torch.multiprocessing.get_context("spawn")  # a fork would copy the parent's CUDA state
    queues = [ctx.Queue(maxsize=2) for _ in range(workers)]
    procs = [
        ctx.Process(
            target=_encode_worker,
            args=(type(adapter), adapter.processor, cfg, rng_state, start, k, workers, q),
            daemon=True,
        )
        for k, q in enumerate(queues)
    ]
    for proc in procs:
        proc.start()
    try:
        for step in range(start, cfg.total_steps):
            k = step % workers
            while True:
                try:
                    batch = queues[k].get(timeout=5)
                    break
                except queue.Empty:
                    if not procs[k].is_alive():
                        raise RuntimeError(f"batch worker {k} stopped (exit code {procs[k].exitcode})") from None
            inputs = {n: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for n, v in batch.enc.inputs.items()}
            yield replace(batch, enc=Encoded(inputs, torch.from_numpy(batch.enc.labels)))
    finally:
        for proc in procs:
            proc.kill()


def train_decoder(
    adapter: ModelAdapter,
    cfg: TrainConfig,
    checkpoint: Path,
    progress: Progress | None = None,
    spent: TrainTime | None = None,
    workers: int = 0,
) -> TrainTime:
    """Stage 2 (letter drill, then the task mix), resumable from `checkpoint`. `spent` is the time the probe took
    in this run; the returned `TrainTime` adds every earlier run's share, as the checkpoint kept it. `workers`
    processes draw and encode the batches ahead of the step (`ordered_batches`); the weights are the same."""
    model = adapter.model
    for p in adapter.vision_encoder().parameters():
        p.requires_grad_(False)
        p.grad = None  # stale probe gradients would otherwise count in the clipping norm
    projector = list(adapter.projector().parameters())
    for p in projector:
        p.requires_grad_(True)
    ids = {id(p) for p in projector}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    trainable = projector + rest
    opt = torch.optim.AdamW(
        [
            {"params": projector, "lr": cfg.lr * cfg.projector_lr_mult},
            {"params": rest, "lr": cfg.lr},
        ],
        weight_decay=cfg.weight_decay,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    device = next(model.parameters()).device
    rng_state = random.Random(cfg.seed + 22).getstate()
    start = 0
    spent = spent or TrainTime()
    if checkpoint.exists():
        # Our own file, written below; perhaps on another device (a GPU run resumed on a CPU, say).
        state = torch.load(checkpoint, weights_only=False, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        rng_state = state["rng"]
        start = state["step"]
        spent = TrainTime.resumed(state.get("time"), spent)
    t0 = time.perf_counter()
    model.train()
    for batch in ordered_batches(adapter, cfg, rng_state, start, workers):
        enc = Encoded(to_model(batch.enc.inputs, model), batch.enc.labels.to(device))
        loss, qa_loss, cap_loss = encoded_loss(model, enc, batch.is_caption, cfg.caption_weight, cfg.prompt_weight)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        sched.step()
        if progress:
            losses = {"loss": loss.item(), "qa_loss": qa_loss.item(), "caption_loss": cap_loss.item()}
            progress(batch.stage, batch.step + 1, cfg.total_steps, losses)
        done = batch.step + 1
        if done % cfg.checkpoint_every == 0 and done < cfg.total_steps:
            _save_atomic(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "rng": batch.rng_state,
                    "step": done,
                    "config": asdict(cfg),
                    "time": spent.plus(time.perf_counter() - t0).to_json(),
                },
                checkpoint,
            )
    model.eval()
    return spent.plus(time.perf_counter() - t0)
