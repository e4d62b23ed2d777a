"""Load the released ScienceQA folder (problems.json, pid_splits.json, images/) as `SQAItem`s, unchanged.

Every problem is checked when loaded so a broken download fails at once with a one-line message, not
halfway through an evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path

from hipp_core.data.prompts import LETTERS
from hipp_core.data.records import SQAItem
from hipp_core.errors import HippError, json_problem, notice


def load_sqa(
    root: Path, split: str = "test", image_root: Path | None = None, need_images: bool = True
) -> list[SQAItem]:
    """The problems of `split`, in pid_splits.json order when that file exists, else by pid.

    Membership comes from `root/pid_splits.json`; without it, from each problem's `split` field, with a
    `HippNotice` saying so (the official splits are pid_splits.json's).
    Images are looked up at `image_root/<split>/<pid>/<image>` (image_root defaults to `root/images`),
    then `image_root/<pid>/<image>`. `need_images=False` (scoring answers made elsewhere) skips the look-up unless
    `image_root` is given: an image problem then gets the first of those paths, unchecked.
    """
    root = Path(root).expanduser().absolute()
    check_images = need_images or image_root is not None
    image_root = Path(image_root).expanduser().absolute() if image_root is not None else root / "images"
    problems_path = root / "problems.json"
    problems = _read_json(problems_path)
    if not isinstance(problems, dict):
        raise HippError(f"{problems_path}: expected a JSON object mapping pid to problem; re-download ScienceQA")
    pids = _split_pids(root / "pid_splits.json", problems_path, problems, split)
    return [_item(problems_path, pid, problems[pid], split, image_root, check_images) for pid in pids]


def _read_json(path: Path) -> object:
    if not path.is_file():
        raise HippError(
            f"ScienceQA file {path} not found; pass the folder holding ScienceQA's problems.json with --sqa-dir"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise HippError(f"{path}: not valid JSON ({json_problem(e)}); re-download the file") from None


def _split_pids(splits_path: Path, problems_path: Path, problems: dict, split: str) -> list[str]:
    if not splits_path.exists():
        notice(
            f"{splits_path} not found: the problems of split {split!r} were taken from each problem's own 'split' "
            "field; put ScienceQA's pid_splits.json beside problems.json to use the official splits and their order"
        )
        return _pids_by_field(problems_path, problems, split)
    splits = _read_json(splits_path)
    if not isinstance(splits, dict):
        raise HippError(f"{splits_path}: expected a JSON object mapping split name to pids; re-download it")
    if split not in splits:
        raise HippError(f"{splits_path} has no split {split!r}; available: {', '.join(map(str, splits))}")
    if not isinstance(splits[split], list):
        raise HippError(f"{splits_path}: split {split!r} must be a list of pids, got {type(splits[split]).__name__}")
    pids = [str(pid) for pid in splits[split]]
    if not pids:
        raise HippError(f"{splits_path}: split {split!r} lists no problems; choose another split or re-download it")
    for pid in pids:
        if pid not in problems:
            raise HippError(
                f"{splits_path}: split {split!r} lists pid {pid!r}, which {problems_path} lacks; "
                "use the pid_splits.json released with this problems.json"
            )
    return pids


def _pids_by_field(problems_path: Path, problems: dict, split: str) -> list[str]:
    """Without pid_splits.json, each problem's own `split` field decides; order by pid (numerically if it can)."""
    split_of = {pid: p.get("split") if isinstance(p, dict) else None for pid, p in problems.items()}
    pids = [pid for pid, s in split_of.items() if s == split]
    if not pids:
        available = sorted({s for s in split_of.values() if isinstance(s, str)})
        raise HippError(f"{problems_path} has no problem with split {split!r}; available: {', '.join(available)}")
    return sorted(pids, key=lambda pid: (0, int(pid), "") if pid.isdigit() else (1, 0, pid))


def _item(path: Path, pid: str, problem: object, split: str, image_root: Path, check_images: bool) -> SQAItem:
    if not isinstance(problem, dict):
        raise HippError(f"{path} problem {pid}: expected a JSON object, got {type(problem).__name__}")
    choices = _choices(path, pid, problem)
    return SQAItem(
        pid=pid,
        question=_text(path, pid, problem, "question"),
        choices=choices,
        answer=_answer(path, pid, problem, len(choices)),
        hint=_text(path, pid, problem, "hint", default=""),
        image=_image(path, pid, problem, split, image_root, check_images),
        split=split,
    )


def _text(path: Path, pid: str, problem: dict, name: str, default: str | None = None) -> str:
    value = problem.get(name)
    if value is None and default is not None:
        return default
    if value is None:
        raise HippError(f"{path} problem {pid}: field {name!r} is missing; add it or drop the problem")
    if not isinstance(value, str):
        raise HippError(f"{path} problem {pid}: field {name!r} must be a string, got {value!r}")
    return value


def _choices(path: Path, pid: str, problem: dict) -> tuple[str, ...]:
    choices = problem.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise HippError(f"{path} problem {pid}: field 'choices' must be a list of strings, got {choices!r}")
    if len(choices) > len(LETTERS):
        raise HippError(
            f"{path} problem {pid}: field 'choices' has {len(choices)} options; at most {len(LETTERS)} choices are "
            f"supported by the letter prompt ({LETTERS[0]}-{LETTERS[-1]}); drop the problem"
        )
    if len(choices) < 2:
        raise HippError(f"{path} problem {pid}: field 'choices' has {len(choices)} options; at least 2 are needed")
    return tuple(choices)


def _answer(path: Path, pid: str, problem: dict, n_choices: int) -> int:
    answer = problem.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < n_choices:
        raise HippError(
            f"{path} problem {pid}: field 'answer' must be an integer index 0..{n_choices - 1} into 'choices', "
            f"got {answer!r}"
        )
    return answer


def _image(path: Path, pid: str, problem: dict, split: str, image_root: Path, check: bool) -> Path | None:
    """The problem's image file; the problem's own split folder is tried first, so e.g. 'trainval' finds it."""
    name = problem.get("image")
    if name is None:
        return None
    if not isinstance(name, str):
        raise HippError(f"{path} problem {pid}: field 'image' must be a file name or null, got {name!r}")
    folders = [s for s in dict.fromkeys((problem.get("split"), split)) if isinstance(s, str)]
    candidates = [image_root / s / pid / name for s in folders] + [image_root / pid / name]
    if not check:
        return candidates[0]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise HippError(
            f"{path} problem {pid}: field 'image' names {name!r} but {candidates[0]} does not exist; "
            f"unzip ScienceQA's images under {image_root} or pass their folder with --sqa-images"
        )
    return found
