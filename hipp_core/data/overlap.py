"""Keep tuning data apart from test data: what the test files reference, and the refusal when tuning data touches it.

Calibration and policy rewards choose things (which units to prune, which plans win). If they saw a test image or
a test question, the reported test scores would no longer measure anything held out. POPE items are compared by
the image file name as the question files reference it (COCO names its images by id, so the name is the image), which
also covers "same image + same question"; ScienceQA problems by problem id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hipp_core.data.records import PopeItem, SQAItem
from hipp_core.errors import HippError


@dataclass(frozen=True)
class PopeReference:
    image: str  # the image's file name, as the question file names it, without folders
    text: str  # the question, without any answer instruction after it
    file: Path  # where it was read, for messages


def image_name(reference: str | Path) -> str:
    """The file name an image is known by, whatever folder a file or a user put in front of it."""
    return PurePosixPath(str(reference).replace("\\", "/")).name


def pope_question_files(path: Path) -> list[Path]:
    """`path` itself, or every POPE question file in the folder `path` (names containing `pope`, .json or .jsonl)."""
    path = Path(path).expanduser().absolute()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise HippError(f"POPE test file or folder {path} not found; pass the POPE files you evaluate on")
    files = sorted(f for f in path.iterdir() if f.suffix in (".json", ".jsonl") and "pope" in f.name and f.is_file())
    if not files:
        raise HippError(f"{path} holds no POPE question file (*pope*.json or *pope*.jsonl); pass the test files")
    return files


def pope_references(paths: Iterable[Path]) -> list[PopeReference]:
    """The (image, question) of every line of the POPE question files in `paths` (files or folders). Only the fields
    `image` and `text` are read, so official files, LLaVA's unlabelled question file and sets built by
    `hipp data pope-build` all work, and the images need not be on this machine."""
    refs = []
    for file in (f for p in paths for f in pope_question_files(p)):
        with file.open(encoding="utf-8") as lines:
            for n, raw in enumerate(lines, start=1):
                if raw.strip():
                    refs.append(_reference(file, n, raw))
    return refs


def _reference(file: Path, n: int, raw: str) -> PopeReference:
    try:
        rec = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise HippError(f"{file} line {n}: not valid JSON ({exc.msg}); POPE files hold one object per line") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("image"), str):
        raise HippError(f"{file} line {n}: no string field 'image'; is this a POPE question file?")
    return PopeReference(image_name(rec["image"]), question_text(str(rec.get("text", ""))), file)


def question_text(text: str) -> str:
    """The question itself: LLaVA's question file appends the answer instruction on a new line."""
    return text.split("\n", 1)[0].strip()


def check_apart(
    what: str,
    pope: Iterable[PopeItem],
    sqa: Sequence[SQAItem],
    test_pope: Sequence[PopeReference],
    test_sqa: Sequence[SQAItem],
) -> None:
    """Refuse `what` (e.g. "the calibration questions") when it shares an image with the test POPE files or a
    problem with the test ScienceQA split: one line with how many and one example."""
    test_images: dict[str, PopeReference] = {}
    for ref in test_pope:
        test_images.setdefault(ref.image, ref)
    shared = sorted({image_name(item.image) for item in pope} & test_images.keys())
    if shared:
        example = test_images[shared[0]]
        raise HippError(
            f"{what} share {len(shared)} image(s) with the test files, e.g. {shared[0]} "
            f"({example.text!r} in {example.file}); use a dev set built on other images, e.g. "
            "`hipp data pope-build --exclude <test files>`"
        )
    test_pids = {item.pid for item in test_sqa}
    shared_pids = sorted({item.pid for item in sqa} & test_pids)
    if shared_pids:
        split = test_sqa[0].split
        raise HippError(
            f"{what} share {len(shared_pids)} ScienceQA problem(s) with the test split {split!r}, "
            f"e.g. problem {shared_pids[0]}; pick a split apart from it with --split (val or minival)"
        )
