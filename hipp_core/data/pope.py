"""Load the real POPE benchmark files as `PopeItem`s, exactly as released, with one-line errors for bad input.

Two formats exist: the official POPE question files (a `label` per question; JSON Lines named like
`coco_pope_random.json`, or one JSON array for GQA and A-OKVQA, named like `gqa_pope_seem_random.json`) and
LLaVA's `llava_pope_test.jsonl`, which has no labels; LLaVA's own evaluator pairs its questions with the official
files by order within each category, and so do we.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from hipp_core.data.json_records import Record, read_records
from hipp_core.data.prompts import POPE_SUFFIX
from hipp_core.data.records import POPE_CATEGORIES, PopeItem
from hipp_core.errors import HippError

_UNLABELLED = "; for LLaVA's llava_pope_test.jsonl pass --pope-labels <folder of coco_pope_<category>.json>"
_FOLDER_HINT = "pass --pope-labels the folder of coco_pope_<category>.json files"
# POPE's repository regenerated coco_pope_random.json and fixed typos ("imange") after LLaVA took its copies
_LLAVA_COPIES = "LLaVA's llava_pope_test.jsonl goes with the coco_pope_*.json files of LLaVA's eval.zip"
_Line = Record  # 1-based line number, parsed object


def load_pope(
    path: Path, image_dir: Path | None, category: str | None = None, label_file: Path | None = None
) -> list[PopeItem]:
    """Items of one POPE question file; with `label_file`, `path` is LLaVA's unlabelled question file.

    `category` names the items of an official file (default: from the file name, else "pope"); for LLaVA's
    file it keeps only that category. `label_file` is a `coco_pope_<category>.json` file or a folder of them.
    `image_dir` None: the images are not needed (scoring answers made elsewhere), so they are not looked up and
    each item keeps the file name as the question gives it.
    """
    path, image_dir = _absolute(path), _absolute(image_dir) if image_dir is not None else None
    if label_file is None:
        return _load_official(path, image_dir, category or _category_from_name(path) or "pope")
    return _load_llava(path, image_dir, category, _absolute(label_file))


def load_pope_dir(pope_dir: Path, image_dir: Path | None = None) -> dict[str, list[PopeItem]]:
    """Every `*_pope_<category>.json(l)` or `*_pope_seem_<category>.json` file in `pope_dir`, keyed random,
    popular, adversarial (those present)."""
    pope_dir = _absolute(pope_dir)
    image_dir = _absolute(image_dir) if image_dir is not None else pope_dir / "images"
    if not pope_dir.is_dir():
        raise HippError(
            f"POPE folder {pope_dir} not found; pass the folder holding the *_pope_<category>.json files with --pope-dir"
        )
    found = {cat: _category_file(pope_dir, cat) for cat in POPE_CATEGORIES}
    found = {cat: file for cat, file in found.items() if file is not None}
    if not found:
        raise HippError(
            f"{pope_dir} holds no *_pope_<category>.json file (category one of {', '.join(POPE_CATEGORIES)}); "
            "put the official POPE question files there"
        )
    return {cat: _load_official(file, image_dir, cat) for cat, file in found.items()}


def _absolute(path: Path) -> Path:
    return Path(path).expanduser().absolute()


def _category_from_name(path: Path) -> str | None:
    last = path.stem.rsplit("_", 1)[-1]
    return last if last in POPE_CATEGORIES else None


def _category_file(pope_dir: Path, category: str) -> Path | None:
    patterns = [f"*_pope_{seem}{category}.{ext}" for seem in ("", "seem_") for ext in ("json", "jsonl")]
    files = sorted({f for pattern in patterns for f in pope_dir.glob(pattern)})
    if len(files) > 1:
        names = ", ".join(f.name for f in files)
        raise HippError(f"{pope_dir} holds several files for POPE category {category!r} ({names}); keep one")
    return files[0] if files else None


def _load_official(path: Path, image_dir: Path | None, category: str) -> list[PopeItem]:
    items = []
    seen: dict[int | str, int] = {}
    for n, rec in _read_questions(path):
        label = _label(path, n, rec, hint=_UNLABELLED)
        qid = _question_id(path, n, rec, seen)
        items.append(_item(path, n, rec, qid, image_dir, label, category))
    return items


def _load_llava(path: Path, image_dir: Path | None, category: str | None, label_file: Path) -> list[PopeItem]:
    single = not label_file.is_dir()
    category = category or (_category_from_name(label_file) if single else None)
    lines = [
        (n, rec) for n, rec in _read_questions(path) if category is None or _field(path, n, rec, "category") == category
    ]
    by_category: dict[str, list[_Line]] = {}
    for n, rec in lines:
        by_category.setdefault(_field(path, n, rec, "category"), []).append((n, rec))
    if not by_category:
        raise HippError(f"{path} has no question of category {category!r}; check the category name")
    if single and len(by_category) > 1:
        raise HippError(
            f"{path} mixes categories {', '.join(by_category)} but one label file {label_file} was given; "
            f"{_FOLDER_HINT}"
        )
    labels: dict[int, str] = {}  # line number in the question file -> label
    for cat, questions in by_category.items():
        labels.update(_match_labels(path, questions, _label_path(path, label_file, cat, questions[0][0])))
    items = []
    seen: dict[tuple[str, int | str], int] = {}
    for n, rec in lines:
        qid = _question_id(path, n, rec, seen, scope=rec["category"])
        items.append(_item(path, n, rec, qid, image_dir, labels[n], rec["category"]))
    return items


def _label_path(path: Path, label_file: Path, category: str, first_line: int) -> Path:
    """The annotation file for `category`: `label_file` itself, or `coco_pope_<category>.json` inside it."""
    if not label_file.is_dir():
        named = _category_from_name(label_file)
        if named is not None and named != category:
            raise HippError(
                f"{path} line {first_line}: field 'category' is {category!r} but label file {label_file} is for "
                f"{named!r}; {_FOLDER_HINT}"
            )
        return label_file
    label_path = label_file / f"coco_pope_{category}.json"
    if not label_path.is_file():
        raise HippError(
            f"{path} line {first_line}: field 'category' is {category!r} but {label_path} does not exist; "
            f"put POPE's coco_pope_{category}.json in {label_file}"
        )
    return label_path


def _match_labels(path: Path, questions: list[_Line], label_path: Path) -> Iterator[tuple[int, str]]:
    """Pair the k-th question of a category with the k-th annotation line, as LLaVA's eval_pope.py does."""
    annotations = _read_questions(label_path)
    if len(annotations) != len(questions):
        raise HippError(
            f"{path} has {len(questions)} questions of category {questions[0][1]['category']!r} but {label_path} "
            f"has {len(annotations)} labelled lines; labels are matched by order, so use the matching POPE file "
            f"({_LLAVA_COPIES})"
        )
    for (qn, question), (an, annotation) in zip(questions, annotations):
        _check_agrees(path, qn, question, label_path, an, annotation)
        yield qn, _label(label_path, an, annotation)


def _check_agrees(path: Path, qn: int, question: dict, label_path: Path, an: int, annotation: dict) -> None:
    for name in ("image", "text"):
        if name not in annotation:
            continue
        mine, theirs = _field(path, qn, question, name), annotation[name]
        if (_question_text(mine) if name == "text" else mine) != theirs:
            raise HippError(
                f"{path} line {qn}: field {name!r} is {mine!r} but line {an} of {label_path}, whose label it gets "
                f"by order, has {theirs!r}; the question and label files do not match ({_LLAVA_COPIES})"
            )


def _read_questions(path: Path) -> list[_Line]:
    """The records of a POPE file; a file without any is an error, never a score over nothing."""
    lines = read_records(path, "POPE file")
    if not lines:
        raise HippError(f"POPE file {path} holds no questions; use a complete POPE file")
    return lines


def _field(path: Path, n: int, rec: dict, name: str) -> str:
    if name not in rec:
        raise HippError(f"{path} line {n}: field {name!r} is missing; add it")
    if not isinstance(rec[name], str):
        raise HippError(f"{path} line {n}: field {name!r} must be a string, got {rec[name]!r}")
    return rec[name]


def _question_id(path: Path, n: int, rec: dict, seen: dict, scope: str | None = None) -> int | str:
    """The line's question id; `seen` maps (scope-qualified) ids to their first line, to catch duplicates."""
    if "question_id" not in rec:
        raise HippError(f"{path} line {n}: field 'question_id' is missing; add it")
    qid = rec["question_id"]
    if isinstance(qid, bool) or not isinstance(qid, int | str):
        raise HippError(f"{path} line {n}: field 'question_id' must be an integer or string, got {qid!r}")
    key = qid if scope is None else (scope, qid)
    if key in seen:
        raise HippError(
            f"{path} line {n}: field 'question_id' {qid!r} repeats line {seen[key]} in the same category; "
            "question ids must be unique"
        )
    seen[key] = n
    return qid


def _label(path: Path, n: int, rec: dict, hint: str = "; add it") -> str:
    if "label" not in rec:
        raise HippError(f"{path} line {n}: field 'label' is missing{hint}")
    label = rec["label"]
    if not isinstance(label, str) or label.lower() not in ("yes", "no"):
        raise HippError(f"{path} line {n}: field 'label' is {label!r}; POPE labels must be 'yes' or 'no'")
    return label.lower()


def _question_text(text: str) -> str:
    """The bare question: LLaVA's file appends the answer instruction that `pope_prompt` adds again."""
    return text.removesuffix(f"\n{POPE_SUFFIX}")


def _item(path: Path, n: int, rec: dict, qid: int | str, image_dir: Path | None, label: str, category: str) -> PopeItem:
    name = _field(path, n, rec, "image")
    image = image_dir / name if image_dir is not None else Path(name)
    if image_dir is not None and not image.is_file():
        raise HippError(
            f"{path} line {n}: question {qid!r}: field 'image' names {image}, which does not exist; "
            "pass the folder holding the images (COCO val2014 for the COCO files) with --pope-images"
        )
    return PopeItem(qid, image, _question_text(_field(path, n, rec, "text")), label, category)
