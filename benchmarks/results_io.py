"""Where benchmark scripts keep their measured results: one JSON file each in benchmarks/results/, written atomically
(a killed run leaves the previous file), read back by `readme.py` to regenerate the README's results section."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def emit(name: str, report: dict, save: bool, merge: bool = True) -> None:
    """Print the report as JSON; with `save`, also write it to results/<name>.json, merged (`merged`) into what
    is saved there unless `merge` is off."""
    print(json.dumps(report, indent=2))
    if save:
        write(f"{name}.json", json.dumps(merged(load(name), report) if merge else report, indent=2) + "\n")


def merged(saved: dict | None, report: dict) -> dict:
    """Models run separately land in one file: a model run again replaces its own entry, the others stay.
    `models` is a dict keyed by model or a list of entries that name their `model`; a report without it is new."""
    if not saved or "models" not in report or "models" not in saved:
        return report
    old, new = saved["models"], report["models"]
    if isinstance(new, dict):
        return {**report, "models": {**{k: v for k, v in old.items() if k not in new}, **new}}
    ran = {m["model"] for m in new}
    return {**report, "models": [m for m in old if m["model"] not in ran] + new}


def write(filename: str, text: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / filename
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    return out


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None
