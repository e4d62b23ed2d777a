"""ShapesWorld: determinism, disjoint splits, POPE negative sampling, balanced training questions."""

import random
from collections import Counter

from hipp_core.data.prompts import sqa_prompt
from hipp_core.data.questions import (
    FACT_KINDS,
    FACT_QUESTIONS,
    FACT_VALUES,
    IMAGE_KINDS,
    TEXT_KINDS,
    balanced_presence,
    fact_recall,
    facts,
    multiple_choice,
)
from hipp_core.data.world import (
    IMAGE_SIZE,
    OBJECTS,
    SPLITS,
    object_statistics,
    pope_negatives,
    render,
    scenes_for_split,
    split_of,
)


def take(split, n, seed=None):
    stream = scenes_for_split(split, seed)
    return [next(stream) for _ in range(n)]


def test_scene_stream_is_deterministic_and_renders_64px():
    a, b = take("dev", 20), take("dev", 20)
    assert a == b
    image = render(a[0])
    assert image.size == (IMAGE_SIZE, IMAGE_SIZE)
    assert list(render(a[0]).getdata()) == list(image.getdata())


def test_splits_are_disjoint_by_scene_content():
    signatures = {s: {sc.signature() for sc in take(s, 300)} for s in SPLITS}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            assert not signatures[a] & signatures[b], (a, b)
    assert all(split_of(sc) == "calib" for sc in take("calib", 50))


def test_pope_negatives_are_absent_and_adversarial_follow_cooccurrence():
    _, cooc = object_statistics()
    rng = random.Random(0)
    adv_score, rnd_score = 0, 0
    for scene in take("test", 200):
        for strategy in ("random", "popular", "adversarial"):
            negs = pope_negatives(scene, 2, strategy, rng)
            assert len(negs) == 2 and not set(negs) & scene.present
        adv_score += sum(
            cooc.get((p, o), 0) for o in pope_negatives(scene, 2, "adversarial", rng) for p in scene.present
        )
        rnd_score += sum(cooc.get((p, o), 0) for o in pope_negatives(scene, 2, "random", rng) for p in scene.present)
    assert adv_score > 3 * rnd_score


def test_scene_types_create_cooccurrence():
    freq, cooc = object_statistics()
    counts = sorted(cooc.values(), reverse=True)
    # The most frequent pairs co-occur far more often than pairs drawn independently would.
    total = sum(freq.values())
    assert counts[0] > 10 * max(freq.values()) ** 2 / total / len(OBJECTS)


def test_balanced_presence_has_no_object_prior_and_agrees_with_the_scene():
    rng = random.Random(1)
    stream = scenes_for_split("train", 5)
    yes, asked = Counter(), Counter()
    for _ in range(20000):
        scene, question, answer = balanced_presence(next(stream), rng)
        obj = question.removeprefix("Is there a ").removesuffix(" in the image?")
        assert (obj in scene.present) == (answer == "yes")
        assert 1 <= len(scene.objects) <= 5 and len({o.cell for o in scene.objects}) == len(scene.objects)
        asked[obj] += 1
        yes[obj] += answer == "yes"
    ratios = [yes[o] / asked[o] for o in OBJECTS]
    assert min(ratios) > 0.4 and max(ratios) < 0.6


def test_multiple_choice_answers_are_true_of_the_scene():
    rng = random.Random(2)
    seen = Counter()
    for scene in take("train", 300, seed=9):
        for kind in IMAGE_KINDS + TEXT_KINDS:
            q = multiple_choice(scene, kind, rng)
            if q is None:
                continue
            seen[kind] += 1
            assert 2 <= len(q.choices) <= 5 and len(set(q.choices)) == len(q.choices)
            correct = q.choices[q.answer]
            if kind == "count":
                assert correct == str(len(scene.objects))
            elif kind == "which_present":
                assert correct in scene.present and sum(c in scene.present for c in q.choices) == 1
            elif kind == "position":
                obj = q.question.removeprefix("Where is the ").removesuffix("?")
                assert next(o for o in scene.objects if o.name == obj).quadrant == correct
            elif kind in FACT_KINDS:
                before, after = FACT_QUESTIONS[kind].split("{}")
                obj = q.question.removeprefix(before).removesuffix(after)
                assert facts()[kind][obj] == correct and not q.needs_image
    assert set(seen) == set(IMAGE_KINDS + TEXT_KINDS)


def test_fact_table_is_balanced_so_no_colour_or_shape_predicts_a_fact():
    for kind in FACT_KINDS:
        table = facts()[kind]
        assert set(table) == set(OBJECTS)
        assert Counter(table.values()) == {v: len(OBJECTS) // len(FACT_VALUES[kind]) for v in FACT_VALUES[kind]}
        for part in (0, 1):  # neither the colour nor the shape alone gives the value away
            by = Counter((name.split(" ")[part], value) for name, value in table.items())
            assert max(by.values()) < len(OBJECTS) // len(FACT_VALUES[kind])


def test_fact_recall_answers_from_the_table_and_covers_it():
    rng = random.Random(0)
    asked = set()
    for _ in range(2000):
        question, answer = fact_recall(rng)
        kind = next(k for k in FACT_KINDS if question.startswith(FACT_QUESTIONS[k].split("{}")[0]))
        before, after = FACT_QUESTIONS[kind].split("{}")
        obj = question.removeprefix(before).removesuffix(after)
        assert facts()[kind][obj] == answer
        asked.add((kind, obj))
    assert len(asked) == len(FACT_KINDS) * len(OBJECTS)


def test_sqa_prompt_puts_the_context_first_as_llava_evaluates():
    text = sqa_prompt("Which is more?", ["a", "b"], "The bag holds 2 a.")
    assert text.splitlines() == [
        "Context: The bag holds 2 a.",
        "Which is more?",
        "A. a",
        "B. b",
        "Answer with the option's letter from the given choices directly.",
    ]
    assert sqa_prompt("Q?", ["a", "b"]).splitlines()[0] == "Q?"
