"""`hipp data pope-build`: a POPE-format dev set from COCO-style instance annotations, on images outside the test set.

The recipe is POPE's own (Li et al., EMNLP 2023, as its public builder does it), written here from its description:
- an image is eligible when its annotations name at least `objects_per_image` distinct objects (3); `images_count`
  eligible images (500) are drawn at random;
- for each image the first `objects_per_image` objects, in the order its annotations list them, become "yes"
  questions; each is followed by one "no" question about an object absent from the image and not yet asked about it;
- the absent object comes from one of three strategies, one output file each:
  `random`: uniformly among the objects seen in the drawn images;
  `popular`: the most frequent object of the drawn images (counted once per image);
  `adversarial`: the object that co-occurs most often with that "yes" object in the drawn images;
  popular and adversarial fall back to a random object when their ranking runs out;
- the question reads "Is there a {object} in the image?" ("an" before a vowel, as POPE's released files read);
- questions alternate yes / no, so every file, and every prefix of it that ends on an image boundary, is balanced.

The only departures: images named by the excluded test files are never eligible, ties in a ranking are broken by
object name, and every random choice comes from a seeded generator of its own, so the same inputs give the same
files byte for byte.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hipp_core.data.overlap import image_name, pope_references
from hipp_core.data.records import POPE_CATEGORIES
from hipp_core.errors import HippError

TEMPLATE = "Is there {article} {object} in the image?"


@dataclass(frozen=True)
class PopeBuildConfig:
    images_count: int = 500  # POPE's size: 500 images x 6 questions = 3000 questions per strategy
    objects_per_image: int = 3  # "yes" (and as many "no") questions per image, POPE's default
    seed: int = 0
    prefix: str = "dev"  # files are <prefix>_pope_<strategy>.json

    def __post_init__(self) -> None:
        if self.images_count < 1:
            raise HippError(f"--images-count must be at least 1, got {self.images_count}")
        if self.objects_per_image < 1:
            raise HippError(f"--objects-per-image must be at least 1, got {self.objects_per_image}")
        if not self.prefix or any(c in self.prefix for c in "/\\") or self.prefix.startswith("."):
            raise HippError(f"--prefix must be a plain file-name prefix such as 'dev', got {self.prefix!r}")


@dataclass(frozen=True)
class AnnotatedImage:
    file_name: str
    objects: tuple[str, ...]  # distinct object names, in the order the annotations first list them


@dataclass
class PopeBuildResult:
    files: dict[str, Path]  # strategy -> written question file
    images: list[str]  # the drawn images, in question order
    eligible: int  # images with enough objects outside the excluded test files
    excluded: int  # annotated images skipped because a test file names them
    config: PopeBuildConfig
    frequency: dict[str, int] = field(default_factory=dict)  # object -> drawn images holding it


def read_instances(path: Path) -> list[AnnotatedImage]:
    """The images of a COCO `instances_*.json` file with the objects their annotations name, in file order."""
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise HippError(f"instances file {path} not found; pass COCO's annotations/instances_<split>.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise HippError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg}); re-download the annotations") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise HippError(
                f"{path}: no {key!r} list; pass a COCO-style instances file (images, annotations, categories)"
            )
    names = {}
    for cat in data["categories"]:
        if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str):
            raise HippError(f"{path}: a category lacks 'id' or a string 'name': {cat!r}")
        names[cat["id"]] = cat["name"]
    objects: dict[object, dict[str, None]] = {}  # image id -> ordered set of object names
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or "image_id" not in ann or "category_id" not in ann:
            raise HippError(f"{path}: an annotation lacks 'image_id' or 'category_id': {str(ann)[:120]}")
        if ann["category_id"] not in names:
            raise HippError(f"{path}: annotation {ann.get('id')!r} names category {ann['category_id']!r}, not listed")
        objects.setdefault(ann["image_id"], {})[names[ann["category_id"]]] = None
    images = []
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise HippError(f"{path}: an image lacks 'id' or a string 'file_name': {str(img)[:120]}")
        images.append(AnnotatedImage(img["file_name"], tuple(objects.get(img["id"], {}))))
    return images


def build_pope(
    instances: Path,
    out_dir: Path,
    config: PopeBuildConfig = PopeBuildConfig(),
    exclude: Sequence[Path] = (),
    images_dir: Path | None = None,
) -> PopeBuildResult:
    """Write `<prefix>_pope_{random,popular,adversarial}.json` (POPE jsonl) into `out_dir`, plus
    `<prefix>_manifest.json` saying how they were made. Images named by the `exclude` files are never used."""
    excluded_names = {ref.image for ref in pope_references(exclude)}
    annotated = read_instances(instances)
    allowed = [img for img in annotated if image_name(img.file_name) not in excluded_names]
    eligible = [img for img in allowed if len(img.objects) >= config.objects_per_image]
    if len(eligible) < config.images_count:
        raise HippError(
            f"only {len(eligible)} images outside the excluded test files have at least {config.objects_per_image} "
            f"objects, fewer than --images-count {config.images_count}; ask for fewer images"
        )
    drawn = random.Random(config.seed).sample(eligible, config.images_count)
    if images_dir is not None:
        _check_images(Path(images_dir).expanduser().absolute(), drawn)
    frequency = Counter(obj for img in drawn for obj in img.objects)
    co_occur = _co_occurrence(drawn)
    out_dir = Path(out_dir).expanduser().absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for index, strategy in enumerate(POPE_CATEGORIES):
        rng = random.Random(config.seed * 1_000_003 + index + 1)  # fallbacks and random negatives, per strategy
        questions = _questions(drawn, strategy, config.objects_per_image, frequency, co_occur, rng)
        files[strategy] = out_dir / f"{config.prefix}_pope_{strategy}.json"
        _write_atomically(files[strategy], "".join(json.dumps(q) + "\n" for q in questions))
    result = PopeBuildResult(
        files,
        [img.file_name for img in drawn],
        len(eligible),
        len(annotated) - len(allowed),
        config,
        dict(sorted(frequency.items(), key=lambda kv: (-kv[1], kv[0]))),
    )
    manifest = {
        "recipe": "POPE (Li et al. 2023): 3 strategies of negative sampling over COCO-style instance annotations",
        "instances": str(Path(instances).expanduser().absolute()),
        "excluded_files": [str(Path(p).expanduser().absolute()) for p in exclude],
        "excluded_images": result.excluded,
        "eligible_images": result.eligible,
        "config": asdict(config),
        "images": result.images,
        "object_frequency": result.frequency,
    }
    _write_atomically(out_dir / f"{config.prefix}_manifest.json", json.dumps(manifest, indent=1) + "\n")
    return result


def question(question_id: int, image: str, obj: str, label: str) -> dict:
    article = "an" if obj[:1].lower() in ("a", "e", "i", "o", "u") else "a"
    return {
        "question_id": question_id,
        "image": image,
        "text": TEMPLATE.format(article=article, object=obj),
        "label": label,
    }


def _co_occurrence(images: Sequence[AnnotatedImage]) -> dict[str, Counter]:
    counts: dict[str, Counter] = {}
    for img in images:
        for obj in img.objects:
            counts.setdefault(obj, Counter()).update(o for o in img.objects if o != obj)
    return counts


def _ranked(counts: Counter) -> list[str]:
    return [name for name, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _questions(
    images: Sequence[AnnotatedImage],
    strategy: str,
    per_image: int,
    frequency: Counter,
    co_occur: dict[str, Counter],
    rng: random.Random,
) -> list[dict]:
    vocabulary = sorted(frequency)
    popular = _ranked(frequency)
    questions: list[dict] = []
    for img in images:
        asked: set[str] = set(img.objects)  # present objects are never negatives, asked ones never twice
        for positive in img.objects[:per_image]:
            questions.append(question(len(questions) + 1, img.file_name, positive, "yes"))
            ranking = {"random": [], "popular": popular, "adversarial": _ranked(co_occur.get(positive, Counter()))}
            negative = next((o for o in ranking[strategy] if o not in asked), None)
            if negative is None:
                choices = [o for o in vocabulary if o not in asked]
                if not choices:
                    raise HippError(
                        f"the drawn images name only {len(vocabulary)} distinct objects, too few to find an absent "
                        f"one for {img.file_name}; use annotations with more categories or more images"
                    )
                negative = rng.choice(choices)
            asked.add(negative)
            questions.append(question(len(questions) + 1, img.file_name, negative, "no"))
    return questions


def _check_images(images_dir: Path, drawn: Sequence[AnnotatedImage]) -> None:
    if not images_dir.is_dir():
        raise HippError(f"image folder {images_dir} not found; pass the folder holding the annotated images")
    missing = [img.file_name for img in drawn if not (images_dir / img.file_name).is_file()]
    if missing:
        raise HippError(
            f"{len(missing)} of the {len(drawn)} drawn images are missing from {images_dir}, e.g. {missing[0]}; "
            "pass the folder holding the images of the instances file"
        )


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
