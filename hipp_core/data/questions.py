"""Questions about ShapesWorld scenes: POPE-style presence, ScienceQA-style multiple choice, training targets.

Multiple-choice kinds come in two families of equal weight: `IMAGE_KINDS` can only be answered by looking;
`TEXT_KINDS` are answered from world knowledge or the hint, like ScienceQA's text-only questions. Most of that
knowledge is a fact table (`FACTS`: where each of the 36 objects lives and what it is made of) fixed by the world
seed: recalling 72 arbitrary facts is what a decoder stores in its MLPs, while object presence is read from the image
through attention, so the two benchmarks lean on different units (docs/design.md, The embedded testbed).
`DRILL_KINDS` are for training only: "Which option is the red circle?" asks for nothing but the option letter
that names an object, the step every multiple-choice answer ends with, and the one a small decoder is slowest
to learn inside real questions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from hipp_core.data.world import COLOURS, OBJECTS, QUADRANTS, SHAPES, WORLD_SEED, Placed, Scene

CORNERS = {"circle": 0, "ring": 0, "triangle": 3, "square": 4, "diamond": 4, "cross": 12}
MIXES = {("red", "yellow"): "orange", ("blue", "yellow"): "green", ("red", "blue"): "purple"}
BAG_NAMES = ("bag", "box", "jar")

IMAGE_KINDS = ("count", "colour_of_shape", "shape_of_colour", "position", "which_present")
TEXT_KINDS = ("corners", "mix", "more", "home", "material")
DRILL_KINDS = ("pointer",)
# Each fact kind's values; every value is held by the same number of objects.
FACT_VALUES = {
    "home": ("forest", "desert", "river", "mountain", "city", "island"),
    "material": ("wood", "glass", "metal", "stone", "paper", "clay"),
}
FACT_KINDS = tuple(FACT_VALUES)
# The question each fact kind asks about an object, and its values.
FACT_QUESTIONS = {"home": "Where does the {} live?", "material": "What is the {} made of?"}


@lru_cache(maxsize=1)
def facts() -> dict[str, dict[str, str]]:
    """Each object's home and material: every value held by exactly 6 objects, assigned by the world seed, so
    no colour or shape predicts a fact and each must be remembered."""
    rng = random.Random(WORLD_SEED + 1)
    table = {}
    for kind, values in FACT_VALUES.items():
        pool = [v for v in values for _ in range(len(OBJECTS) // len(values))]
        rng.shuffle(pool)
        table[kind] = dict(zip(OBJECTS, pool))
    return table


def presence_question(obj: str) -> str:
    return f"Is there a {obj} in the image?"


@dataclass(frozen=True)
class MultipleChoice:
    question: str
    choices: tuple[str, ...]
    answer: int
    hint: str
    kind: str

    @property
    def needs_image(self) -> bool:
        return self.kind in IMAGE_KINDS


def _choices(correct: str, pool: list[str], rng: random.Random) -> tuple[tuple[str, ...], int]:
    n = rng.randint(2, min(5, len(pool)))
    options = [correct] + rng.sample([p for p in pool if p != correct], n - 1)
    rng.shuffle(options)
    return tuple(options), options.index(correct)


def multiple_choice(scene: Scene | None, kind: str, rng: random.Random) -> MultipleChoice | None:
    """One question of `kind` about `scene`, or None when the scene does not support that kind."""
    hint = ""
    if kind == "count":
        question, correct, pool = (
            "How many objects are in the image?",
            str(len(scene.objects)),
            ["1", "2", "3", "4", "5"],
        )
    elif kind == "colour_of_shape":
        unique = _unique(scene.objects, key=lambda o: o.shape)
        if not unique:
            return None
        obj = rng.choice(unique)
        question, correct, pool = f"What colour is the {obj.shape}?", obj.colour, list(COLOURS)
    elif kind == "shape_of_colour":
        unique = _unique(scene.objects, key=lambda o: o.colour)
        if not unique:
            return None
        obj = rng.choice(unique)
        question, correct, pool = f"What shape is the {obj.colour} object?", obj.shape, list(SHAPES)
    elif kind == "position":
        obj = rng.choice(scene.objects)
        question, correct, pool = f"Where is the {obj.name}?", obj.quadrant, list(QUADRANTS)
    elif kind == "which_present":
        obj = rng.choice(scene.objects)
        absent = [o for o in OBJECTS if o not in scene.present]
        question, correct, pool = "Which object is in the image?", obj.name, [obj.name, *absent]
    elif kind == "pointer":
        obj = rng.choice(OBJECTS)
        question, correct, pool = f"Which option is the {obj}?", obj, list(OBJECTS)
    elif kind == "corners":
        shape = rng.choice(SHAPES)
        question, correct, pool = f"How many corners does a {shape} have?", str(CORNERS[shape]), ["0", "3", "4", "12"]
    elif kind == "mix":
        (a, b), made = rng.choice(list(MIXES.items()))
        if rng.random() < 0.5:
            a, b = b, a
        question, correct, pool = f"Which colour do you get by mixing {a} and {b}?", made, list(COLOURS)
    elif kind in FACT_KINDS:
        obj = rng.choice(OBJECTS)
        question = FACT_QUESTIONS[kind].format(obj)
        correct, pool = facts()[kind][obj], list(FACT_VALUES[kind])
    elif kind == "more":
        first, second = rng.sample(OBJECTS, 2)
        n1, n2 = rng.sample(range(1, 10), 2)
        place = rng.choice(BAG_NAMES)
        hint = f"The {place} holds {n1} of the {first} and {n2} of the {second}."
        question = f"Which object is more common in the {place}?"
        correct = first if n1 > n2 else second
        choices = (first, second) if rng.random() < 0.5 else (second, first)
        return MultipleChoice(question, choices, choices.index(correct), hint, kind)
    else:
        raise ValueError(f"unknown question kind {kind!r}")
    choices, answer = _choices(correct, pool, rng)
    return MultipleChoice(question, choices, answer, hint, kind)


def fact_recall(rng: random.Random) -> tuple[str, str]:
    """A training-only open question on the fact table, answered with one word ("Where does the red circle
    live?" → "forest"): direct supervision of the facts the multiple-choice kinds then point at."""
    kind = rng.choice(FACT_KINDS)
    obj = rng.choice(OBJECTS)
    return FACT_QUESTIONS[kind].format(obj), facts()[kind][obj]


def _unique(objects: tuple[Placed, ...], key) -> list[Placed]:
    values = [key(o) for o in objects]
    return [o for o in objects if values.count(key(o)) == 1]


def balanced_presence(scene: Scene, rng: random.Random, lure_prob: float = 0.5) -> tuple[Scene, str, str]:
    """A training yes/no question with P(yes | object) = 0.5 for every object (docs/design.md, The embedded testbed).

    The object and the answer are drawn first and the scene is edited to agree, so the object named in the
    question never predicts the answer. With probability `lure_prob` a negative keeps an object of the same colour
    or shape in the scene, which teaches colour-shape binding instead of matching on colour alone. A "yes" edit of a full
    scene may add a fifth object: training scenes hold 1 to 5 objects, evaluation scenes 1 to 4.
    """
    obj = rng.choice(OBJECTS)
    colour, shape = obj.split(" ")
    yes = rng.random() < 0.5
    objects = [o for o in scene.objects if o.name != obj]
    free = [c for c in range(16) if c not in {o.cell for o in objects}]
    if yes:
        if len(objects) == len(scene.objects) and len(objects) > 1 and rng.random() < 0.5:
            objects.pop(rng.randrange(len(objects)))
            free = [c for c in range(16) if c not in {o.cell for o in objects}]
        objects.append(Placed(rng.choice(free), colour, shape))
    elif rng.random() < lure_prob:
        present = {o.name for o in objects}
        lures = [
            o
            for o in OBJECTS
            if o != obj and o not in present and (o.startswith(colour + " ") or o.endswith(" " + shape))
        ]
        lure = rng.choice(lures).split(" ")
        if len(objects) >= 4 or (objects and rng.random() < 0.5):
            objects.pop(rng.randrange(len(objects)))
            free = [c for c in range(16) if c not in {o.cell for o in objects}]
        objects.append(Placed(rng.choice(free), *lure))
    if not objects:
        other = rng.choice([o for o in OBJECTS if o != obj]).split(" ")
        objects.append(Placed(rng.choice(free), *other))
    return scene.with_objects(objects), presence_question(obj), "yes" if yes else "no"
