"""ShapesWorld: a seeded world of coloured shapes in a 4x4 grid, with scene types that make objects co-occur.

Why it looks like this: a 64x64 image split into 16-pixel cells lines up with one vision token per cell for
both embedded families (CLIP patch 16; Qwen2.5-VL patch 8 merged 2x2), so grounding is learnable on a CPU.
Scene types draw most objects from a small typical set, so an object's presence is predictable from the
others: a model that leans on that prior hallucinates on POPE's `adversarial` negatives.

Splits are disjoint by construction: a scene's content signature hashes into a split bucket, and a split
only keeps scenes that hash into its own bucket.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "green": (34, 160, 60),
    "blue": (40, 80, 225),
    "yellow": (235, 200, 20),
    "purple": (140, 55, 185),
    "orange": (250, 130, 15),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "ring")
OBJECTS: tuple[str, ...] = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)

GRID = 4
CELL = 16
IMAGE_SIZE = GRID * CELL
MAX_OBJECTS = 4
N_SCENE_TYPES = 8
TYPICAL_PER_TYPE = 5
P_TYPICAL = 0.85  # share of objects drawn from the scene type's typical set: the co-occurrence prior
WORLD_SEED = 20261123  # fixes the world itself (scene types); split seeds only pick scenes within it
BACKGROUND = (236, 234, 228)

SPLITS = ("train", "calib", "dev", "test")
# Hash buckets out of 100 per split: disjoint scenes across splits by construction.
_SPLIT_BUCKETS = {"train": range(70), "calib": range(70, 77), "dev": range(77, 87), "test": range(87, 100)}
SPLIT_SEEDS = {"train": 101, "calib": 202, "dev": 303, "test": 404}

QUADRANTS = ("top left", "top right", "bottom left", "bottom right")


@dataclass(frozen=True)
class Placed:
    cell: int  # row-major index in the 4x4 grid
    colour: str
    shape: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def quadrant(self) -> str:
        row, col = divmod(self.cell, GRID)
        return QUADRANTS[(row >= GRID // 2) * 2 + (col >= GRID // 2)]


@dataclass(frozen=True)
class Scene:
    scene_type: int
    objects: tuple[Placed, ...]  # sorted by cell
    style_seed: int  # jitter of size and position; not part of the content signature

    @property
    def present(self) -> frozenset[str]:
        return frozenset(o.name for o in self.objects)

    def signature(self) -> str:
        return ";".join(f"{o.cell}:{o.name}" for o in self.objects)

    def caption(self) -> str:
        """Objects in reading order: the dense target that makes the decoder look at every cell."""
        return " , ".join(o.name for o in self.objects)

    def with_objects(self, objects: list[Placed]) -> Scene:
        return Scene(self.scene_type, tuple(sorted(objects, key=lambda o: o.cell)), self.style_seed)


def split_of(scene: Scene) -> str:
    bucket = int(hashlib.sha1(scene.signature().encode()).hexdigest(), 16) % 100
    return next(s for s, r in _SPLIT_BUCKETS.items() if bucket in r)


@lru_cache(maxsize=1)
def scene_types() -> tuple[tuple[str, ...], ...]:
    """Each scene type's typical objects (fixed by WORLD_SEED; overlapping so co-occurrence is graded)."""
    rng = random.Random(WORLD_SEED)
    return tuple(tuple(rng.sample(OBJECTS, TYPICAL_PER_TYPE)) for _ in range(N_SCENE_TYPES))


def sample_scene(rng: random.Random) -> Scene:
    scene_type = rng.randrange(N_SCENE_TYPES)
    typical = list(scene_types()[scene_type])
    n = rng.randint(1, MAX_OBJECTS)
    names: list[str] = []
    while len(names) < n:
        pool = typical if rng.random() < P_TYPICAL else OBJECTS
        name = rng.choice(pool)
        if name not in names:
            names.append(name)
    cells = rng.sample(range(GRID * GRID), n)
    objects = [Placed(cell, *name.split(" ")) for cell, name in zip(cells, names)]
    return Scene(scene_type, tuple(sorted(objects, key=lambda o: o.cell)), rng.randrange(2**31))


def scenes_for_split(split: str, seed: int | None = None):
    """Endless stream of scenes that belong to `split` (deterministic for a given seed)."""
    if split not in _SPLIT_BUCKETS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    rng = random.Random(SPLIT_SEEDS[split] if seed is None else seed)
    while True:
        scene = sample_scene(rng)
        if split_of(scene) == split:
            yield scene


@lru_cache(maxsize=1)
def object_statistics() -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """Object frequency and pairwise co-occurrence over a fixed sample of training scenes (as POPE does on COCO)."""
    freq: Counter[str] = Counter()
    cooc: Counter[tuple[str, str]] = Counter()
    stream = scenes_for_split("train", seed=7)
    for _ in range(20000):
        names = sorted(next(stream).present)
        freq.update(names)
        for a, b in combinations(names, 2):
            cooc[(a, b)] += 1
            cooc[(b, a)] += 1
    return dict(freq), dict(cooc)


def pope_negatives(scene: Scene, k: int, strategy: str, rng: random.Random) -> list[str]:
    """Absent objects to ask about, chosen the way POPE chooses them."""
    absent = [o for o in OBJECTS if o not in scene.present]
    if strategy == "random":
        return rng.sample(absent, k)
    freq, cooc = object_statistics()
    if strategy == "popular":
        key = {o: freq.get(o, 0) for o in absent}
    elif strategy == "adversarial":
        key = {o: sum(cooc.get((p, o), 0) for p in scene.present) for o in absent}
    else:
        raise ValueError(f"unknown POPE strategy {strategy!r}; expected random, popular or adversarial")
    # Ties broken at random so equal-ranked objects share the load.
    ranked = sorted(absent, key=lambda o: (-key[o], rng.random()))
    return ranked[:k]


def render(scene: Scene) -> Image.Image:
    rng = np.random.default_rng(scene.style_seed)
    noise = rng.integers(-6, 7, size=(IMAGE_SIZE, IMAGE_SIZE, 1))
    base = np.clip(np.array(BACKGROUND, dtype=np.int64)[None, None, :] + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        row, col = divmod(obj.cell, GRID)
        size = int(rng.integers(10, 14))
        x0 = col * CELL + (CELL - size) // 2 + int(rng.integers(-1, 2))
        y0 = row * CELL + (CELL - size) // 2 + int(rng.integers(-1, 2))
        _draw_shape(draw, obj.shape, x0, y0, size, COLOURS[obj.colour])
    return image


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: int, y: int, s: int, rgb: tuple[int, int, int]) -> None:
    x1, y1, cx, cy = x + s - 1, y + s - 1, x + s / 2, y + s / 2
    if shape == "circle":
        draw.ellipse([x, y, x1, y1], fill=rgb)
    elif shape == "ring":
        draw.ellipse([x, y, x1, y1], outline=rgb, width=3)
    elif shape == "square":
        draw.rectangle([x + 1, y + 1, x1 - 1, y1 - 1], fill=rgb)
    elif shape == "triangle":
        draw.polygon([(cx, y), (x, y1), (x1, y1)], fill=rgb)
    elif shape == "diamond":
        draw.polygon([(cx, y), (x1, cy), (cx, y1), (x, cy)], fill=rgb)
    elif shape == "cross":
        t = max(2, s // 4)
        draw.rectangle([cx - t / 2, y, cx + t / 2, y1], fill=rgb)
        draw.rectangle([x, cy - t / 2, x1, cy + t / 2], fill=rgb)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def blank_image() -> Image.Image:
    """The image-free baseline: same size and background, no objects."""
    return Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUND)
