"""`hipp data build`: write ShapesPOPE and ShapesSQA to disk in the real POPE and ScienceQA formats.

Layout under the dataset root (default `$HIPP_CACHE/data/shapesworld-v<version>`):

    pope/<split>/shapes_pope_{random,popular,adversarial}.json   POPE jsonl, one question per line
    pope/<split>/images/shapes_<split>_000001.png
    pope/<split>/scenes.jsonl                                      ground truth per image
    sqa/problems.json, sqa/pid_splits.json                         ScienceQA format
    sqa/images/<split>/<pid>/image.png
    manifest.json                                                  sizes, seeds, version

Writing goes to a temporary sibling directory renamed into place at the end, so a killed build leaves no
half-written dataset; an existing complete build with the same manifest is reused. Builders of one root take a lock,
so two processes started together (`make app` beside `make test`) build it once and the second reuses it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from filelock import FileLock

from hipp_core.config import cache_dir
from hipp_core.data.questions import IMAGE_KINDS, TEXT_KINDS, multiple_choice, presence_question
from hipp_core.data.records import POPE_CATEGORIES
from hipp_core.data.world import SPLIT_SEEDS, SPLITS, pope_negatives, render, scenes_for_split

VERSION = 2
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BuildConfig:
    # Questions per POPE category: test matches POPE's scale per split (900 ≈ 3000 on COCO, scaled down);
    # dev stays small because the policy trainer scores hundreds of plans on it.
    pope: dict[str, int] = field(default_factory=lambda: {"train": 1200, "calib": 300, "dev": 300, "test": 900})
    sqa: dict[str, int] = field(default_factory=lambda: {"train": 2000, "calib": 300, "dev": 400, "test": 1000})
    max_positives_per_image: int = 3  # POPE asks 3 present + 3 absent objects per image


def default_root() -> Path:
    return cache_dir() / "data" / f"shapesworld-v{VERSION}"


def _manifest(cfg: BuildConfig) -> dict:
    return {"version": VERSION, "split_seeds": SPLIT_SEEDS, "config": asdict(cfg)}


def is_built(root: Path, cfg: BuildConfig = BuildConfig()) -> bool:
    path = root / "manifest.json"
    if not path.exists():
        return False
    manifest = json.loads(path.read_text())
    return {k: manifest.get(k) for k in ("version", "split_seeds", "config")} == json.loads(json.dumps(_manifest(cfg)))


def build(root: Path | None = None, cfg: BuildConfig = BuildConfig(), force: bool = False, progress=None) -> Path:
    root = Path(root) if root else default_root()
    if is_built(root, cfg) and not force:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(root.parent / f".{root.name}.lock"):
        if is_built(root, cfg) and not force:  # built by another process while this one waited
            return root
        return _build_locked(root, cfg, progress)


def _build_locked(root: Path, cfg: BuildConfig, progress: Progress | None) -> Path:
    tmp = root.parent / f".{root.name}.building"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    stats: dict[str, dict] = {}
    for split in SPLITS:
        stats[f"pope/{split}"] = _write_pope(tmp / "pope" / split, split, cfg.pope[split], cfg, progress)
    stats["sqa"] = _write_sqa(tmp / "sqa", cfg, progress)
    (tmp / "manifest.json").write_text(json.dumps({**_manifest(cfg), "stats": stats}, indent=2))
    if root.exists():
        shutil.rmtree(root)
    os.replace(tmp, root)
    return root


def _write_pope(out: Path, split: str, per_category: int, cfg: BuildConfig, progress: Progress | None) -> dict:
    (out / "images").mkdir(parents=True)
    rng = random.Random(SPLIT_SEEDS[split] * 7 + 1)
    stream = scenes_for_split(split)
    lines: dict[str, list[dict]] = {c: [] for c in POPE_CATEGORIES}
    scenes = []
    while len(lines["random"]) < per_category:
        scene = next(stream)
        k = min(cfg.max_positives_per_image, len(scene.objects), (per_category - len(lines["random"])) // 2)
        if k == 0:  # an odd remainder cannot stay balanced
            break
        name = f"shapes_{split}_{len(scenes) + 1:06d}.png"
        render(scene).save(out / "images" / name)
        scenes.append({"image": name, "scene_type": scene.scene_type, "objects": [o.__dict__ for o in scene.objects]})
        positives = rng.sample(sorted(scene.present), k)
        for category in POPE_CATEGORIES:
            negatives = pope_negatives(scene, k, category, rng)
            for pos, neg in zip(positives, negatives):
                for obj, label in ((pos, "yes"), (neg, "no")):
                    qid = len(lines[category]) + 1
                    lines[category].append(
                        {"question_id": qid, "image": name, "text": presence_question(obj), "label": label}
                    )
        if progress:
            progress(f"pope {split}", len(lines["random"]), per_category)
    for category, rows in lines.items():
        (out / f"shapes_pope_{category}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "scenes.jsonl").write_text("".join(json.dumps(s) + "\n" for s in scenes))
    return {"images": len(scenes), "questions_per_category": len(lines["random"])}


def _write_sqa(out: Path, cfg: BuildConfig, progress: Progress | None) -> dict:
    problems: dict[str, dict] = {}
    pid_splits: dict[str, list[str]] = {}
    for split in SPLITS:
        rng = random.Random(SPLIT_SEEDS[split] * 7 + 2)
        stream = scenes_for_split(split, seed=SPLIT_SEEDS[split] + 1)
        pid_splits[split] = []
        while len(pid_splits[split]) < cfg.sqa[split]:
            scene = next(stream)
            kinds = IMAGE_KINDS if len(pid_splits[split]) % 2 == 0 else TEXT_KINDS
            q = multiple_choice(scene, rng.choice(kinds), rng)
            if q is None:
                continue
            pid = str(len(problems) + 1)
            if q.needs_image:
                image_dir = out / "images" / split / pid
                image_dir.mkdir(parents=True)
                render(scene).save(image_dir / "image.png")
            problems[pid] = {
                "question": q.question,
                "choices": list(q.choices),
                "answer": q.answer,
                "hint": q.hint,
                "image": "image.png" if q.needs_image else None,
                "task": "closed choice",
                "grade": "grade1",
                "subject": "shapes world",
                "topic": q.kind,
                "category": q.kind,
                "skill": q.kind,
                "lecture": "",
                "solution": f"The answer is {q.choices[q.answer]}.",
                "split": split,
            }
            pid_splits[split].append(pid)
            if progress:
                progress(f"sqa {split}", len(pid_splits[split]), cfg.sqa[split])
    out.mkdir(parents=True, exist_ok=True)
    (out / "problems.json").write_text(json.dumps(problems, indent=1))
    (out / "pid_splits.json").write_text(json.dumps(pid_splits))
    with_image = sum(p["image"] is not None for p in problems.values())
    return {"problems": len(problems), "with_image": with_image}
