"""Where benchmark scripts keep their measured results: one JSON file each in benchmarks/results/, written atomically
(a killed run leaves the previous file), read back by `readme.py` to regenerate the README's results section."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def emit(name: str, report: dict, save: bool) -> None:
    """Print the report as JSON; with `save`, also write it to results/<name>.json."""
    text = json.dumps(report, indent=2)
    print(text)
    if save:
        write(f"{name}.json", text + "\n")


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
