"""MME (Fu et al. 2023) in its release layout: one folder per subtask, each image asked two yes/no questions.

`MME_Benchmark_release_version/<subtask>/` holds either the images and a `<image stem>.txt` beside each, or
`images/` and `questions_answers_YN/<image stem>.txt`. Each text file has one `question<TAB>answer` line per
question (answers `Yes` / `No`), two per image in the release.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hipp_core.errors import HippError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class MMEItem:
    subtask: str
    image: Path
    question: str
    label: str  # "yes" or "no"


def load_mme(root: Path) -> dict[str, list[MMEItem]]:
    """Items per subtask, subtasks in name order, questions in file order (MME's acc+ pairs them per image)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise HippError(
            f"MME folder {root} does not exist; pass the MME_Benchmark_release_version folder (--data mme=DIR)"
        )
    subtasks: dict[str, list[MMEItem]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        items = _subtask(folder)
        if items:
            subtasks[folder.name] = items
    if not subtasks:
        raise HippError(
            f"{root} holds no MME subtask: expected folders such as existence/ with images and question files "
            "(<image>.txt with question<TAB>Yes|No lines)"
        )
    return subtasks


def _subtask(folder: Path) -> list[MMEItem]:
    questions_dir = folder / "questions_answers_YN"
    images_dir = folder / "images" if questions_dir.is_dir() else folder
    texts = sorted((questions_dir if questions_dir.is_dir() else folder).glob("*.txt"))
    items = []
    for text in texts:
        image = next(
            (images_dir / f"{text.stem}{s}" for s in IMAGE_SUFFIXES if (images_dir / f"{text.stem}{s}").exists()), None
        )
        if image is None:
            raise HippError(f"{text} has no image beside it ({text.stem}.jpg or .png in {images_dir})")
        for n, line in enumerate(text.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            question, tab, answer = line.rpartition("\t")
            if not tab or answer.strip().lower() not in ("yes", "no"):
                raise HippError(f"{text} line {n} is not 'question<TAB>Yes|No': {line[:80]!r}")
            items.append(MMEItem(folder.name, image.resolve(), question.strip(), answer.strip().lower()))
    return items
