"""The Python API: what the CLI and the dashboard call. Each function validates its inputs at the boundary."""

from __future__ import annotations

from pathlib import Path

from hipp_core.data import build as data_build
from hipp_core.data.pope import load_pope_dir
from hipp_core.data.records import PopeItem, SQAItem
from hipp_core.data.sqa import load_sqa
from hipp_core.data.world import SPLITS
from hipp_core.errors import HippError
from hipp_core.evaluate import BENCHES, EvalResult, Progress, evaluate
from hipp_core.models.loading import load_model


def ensure_data(progress: Progress | None = None) -> Path:
    """The embedded ShapesWorld benchmark, built on first use (seconds) and cached under `$HIPP_CACHE`."""
    return data_build.build(progress=progress)


def load_benchmark(
    bench: str = "all",
    split: str = "test",
    limit: int | None = None,
    pope_dir: Path | None = None,
    sqa_dir: Path | None = None,
) -> tuple[dict[str, list[PopeItem]], list[SQAItem]]:
    """POPE questions per category and ScienceQA problems; ShapesWorld unless a real directory is given.

    `limit` keeps the first N questions per POPE category and the first N problems: POPE files interleave
    yes and no per image, so a prefix stays balanced.
    """
    if bench not in BENCHES:
        raise HippError(f"unknown benchmark {bench!r}; use one of {', '.join(BENCHES)}")
    if limit is not None and limit < 1:
        raise HippError(f"--limit must be a positive number of questions, got {limit}")
    need_pope, need_sqa = bench in ("pope", "all"), bench in ("sqa", "all")
    embedded = (need_pope and pope_dir is None) or (need_sqa and sqa_dir is None)
    if embedded and split not in SPLITS:
        raise HippError(f"ShapesWorld has no split {split!r}; use one of {', '.join(SPLITS)}")
    root = ensure_data() if embedded else Path()
    pope: dict[str, list[PopeItem]] = {}
    sqa: list[SQAItem] = []
    if need_pope:
        pope = load_pope_dir(Path(pope_dir) if pope_dir else root / "pope" / split)
        pope = {c: items[:limit] for c, items in pope.items()}
    if need_sqa:
        sqa = load_sqa(Path(sqa_dir) if sqa_dir else root / "sqa", split)[:limit]
    return pope, sqa


def evaluate_model(
    spec: str,
    bench: str = "all",
    split: str = "test",
    limit: int | None = None,
    scoring: str = "logits",
    image_free: bool = True,
    pope_dir: Path | None = None,
    sqa_dir: Path | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> EvalResult:
    """Evaluate a dense model spec (`embedded`, `embedded:qwen2_5_vl`, or a local checkpoint directory)."""
    loaded = load_model(spec)
    pope, sqa = load_benchmark(bench, split, limit, pope_dir, sqa_dir)
    return evaluate(loaded.adapter, loaded.model_id, pope, sqa, split, scoring, image_free, batch_size, progress)
