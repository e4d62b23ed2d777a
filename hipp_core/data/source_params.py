"""A `DataSource` as plain JSON: what a background job records as its `data` parameter and what the dashboard keeps
as the session's tuning data, chosen once on Home.

Job parameters live in the plan store as JSON and are checked again by the worker, so the conversion goes both ways
and the way in checks as much as the CLI's options do: the combination (`DataSource.__post_init__`, one line) and,
beyond the CLI, that every path named exists, so a typo is refused when the job is submitted rather than minutes later
in the worker. Paths are kept absolute: the worker may not share the dashboard's working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hipp_core.data.source import REAL_SQA_SPLIT, DataSource
from hipp_core.errors import HippError

# Path fields and the option that names each in messages (the same words as the CLI's errors).
PATHS = {
    "pope": "--pope-dir",
    "pope_images": "--pope-images",
    "pope_labels": "--pope-labels",
    "sqa": "--sqa-dir",
    "sqa_images": "--sqa-images",
    "test_pope_images": "--test-pope-images",
}
SPLITS = ("split", "test_split")
FIELDS = (*PATHS, *SPLITS, "test_pope", "shapesworld")


def to_params(source: DataSource) -> dict[str, Any]:
    """The fields of `source` that are set, as JSON values (paths as absolute strings, `test_pope` as a list); every
    path must exist. The empty dict is the default: ShapesWorld for an embedded model, a refusal for a local one."""
    if source.folders:
        raise HippError("other benchmarks' folders (--data NAME=DIR) are not job data; evaluate them with `hipp eval`")
    check_paths(source)
    params: dict[str, Any] = {name: str(_absolute(getattr(source, name))) for name in PATHS if getattr(source, name)}
    params |= {name: getattr(source, name) for name in SPLITS if getattr(source, name) is not None}
    if source.test_pope:
        params["test_pope"] = [str(_absolute(p)) for p in source.test_pope]
    if source.shapesworld:
        params["shapesworld"] = True
    return params


def from_params(params: object) -> DataSource:
    """The `DataSource` a `data` parameter names, refused in one line when it is malformed, inconsistent or names a
    path that does not exist."""
    if not isinstance(params, dict):
        raise HippError(f"data must be a mapping of data options (pope, sqa, split, ...), got {params!r}")
    unknown = sorted(set(params) - set(FIELDS))
    if unknown:
        raise HippError(f"unknown data options {', '.join(unknown)}; the known ones are {', '.join(FIELDS)}")
    values: dict[str, Any] = {}
    for name in (*PATHS, *SPLITS):
        value = params.get(name)
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise HippError(f"data option {name} must be a non-empty text, got {value!r}")
        if value is not None:
            values[name] = _absolute(Path(value.strip())) if name in PATHS else value.strip()
    test_pope = params.get("test_pope") or []
    if not isinstance(test_pope, list) or not all(isinstance(p, str) and p.strip() for p in test_pope):
        raise HippError(f"data option test_pope must be a list of paths, got {test_pope!r}")
    shapesworld = params.get("shapesworld", False)
    if not isinstance(shapesworld, bool):
        raise HippError(f"data option shapesworld must be true or false, got {shapesworld!r}")
    test = tuple(_absolute(Path(p.strip())) for p in test_pope)
    source = DataSource(**values, test_pope=test, shapesworld=shapesworld)
    check_paths(source)
    return source


def check_paths(source: DataSource) -> None:
    """Every path `source` names exists (folder or file); the first missing one is refused in one line."""
    named = [(PATHS[name], getattr(source, name)) for name in PATHS] + [("--test-pope", p) for p in source.test_pope]
    for option, path in named:
        if path is not None and not Path(path).expanduser().exists():
            raise HippError(f"{option} {path} does not exist; check the path")


def describe(params: dict[str, Any] | None, embedded: bool) -> str:
    """The tuning data in a few words, for the caption under each page's model."""
    if not params:
        return "ShapesWorld (default)" if embedded else "no tuning data chosen"
    if params.get("shapesworld"):
        return "ShapesWorld"
    parts = []
    if "pope" in params:
        parts.append(f"POPE {Path(params['pope']).name}")
    if "sqa" in params:
        parts.append(f"ScienceQA {params.get('split', REAL_SQA_SPLIT)}")
    if params.get("test_pope"):
        parts.append(f"apart from {len(params['test_pope'])} POPE test path(s)")
    return "your data: " + ", ".join(parts)


def _absolute(path: Path) -> Path:
    return Path(path).expanduser().absolute()
