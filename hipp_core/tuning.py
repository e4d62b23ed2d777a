"""What calibration and policy rewards read, and the stored calibration of a model.

An embedded model tunes on ShapesWorld; a local checkpoint on the user's own data (`DataSource`), kept apart from
the test files it will be reported on, or is refused. Calibrations are computed once per (model, data, placement)
and read back from the store; a trained policy remembers the calibration it was trained on, so its blueprints use
that one. The API and the planning methods (through `methods.ModelContext`) call these.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from hipp_core import validation
from hipp_core.calibrate import CalibrationFeatures, calibrate
from hipp_core.config import cache_dir
from hipp_core.data.records import PopeItem
from hipp_core.data.source import SHAPESWORLD_KEY, DataSource, data_key, for_model
from hipp_core.errors import HippError
from hipp_core.evaluation.engine import Progress
from hipp_core.evaluation.stored import load_tuning
from hipp_core.models.device import AUTO, resolve
from hipp_core.models.loading import EMBEDDED_ALIASES, load_model, resolve_spec
from hipp_core.policies import policy_record
from plan_store import PlanStore
from plan_store.records import PolicyRecord

CALIBRATION_BATCH = 16  # calibration keeps every layer's attention maps: the default batch is half scoring's


def calibrate_model(
    spec: str,
    samples: int = 128,
    batch_size: int = CALIBRATION_BATCH,
    progress: Progress | None = None,
    store: PlanStore | None = None,
    data: DataSource | None = None,
    device: str = AUTO,
    dtype: str = AUTO,
) -> tuple[CalibrationFeatures, bool]:
    """Per-layer features of a model, computed once and then read back (second value True).

    They come from ShapesWorld `calib` for an embedded model, else from the POPE questions `data` names (refused
    when it shares an image with `data.test_pope`); a local checkpoint given no data is refused. Samples cycle
    through the POPE categories, so absent-object questions (where hallucination happens) are as common as present
    ones. Stored under the data's `data_key` and the placement's key suffix. The model is the one every other
    command of this process uses (`load_model(spec, device, dtype)`), switched to eager attention while calibrating.
    """
    validation.count(samples, "--samples", maximum=100_000)
    validation.count(batch_size, "--batch-size")
    key, ordered = calibration_questions(spec, samples, data, resolve(device, dtype).key_suffix)
    loaded = load_model(spec, device, dtype)
    store = store or PlanStore()
    store.put_model(loaded.model_id, spec, loaded.family, loaded.model.config.to_dict())
    record = store.get_calibration(loaded.model_id, key)
    if record is not None and record.payload_path and Path(record.payload_path).exists():
        return CalibrationFeatures.from_json(json.loads(Path(record.payload_path).read_text())), True
    features = calibrate(loaded.adapter, loaded.model_id, ordered, batch_size, progress)
    path = cache_dir() / "calibration" / f"{loaded.model_id}-{key.replace(':', '-')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    features.save(path)
    store.put_calibration(loaded.model_id, key, payload_path=path)
    return features, False


def calibration_questions(
    spec: str, samples: int, data: DataSource | None, placement: str = ""
) -> tuple[str, list[PopeItem]]:
    """The store key of `spec`'s calibration on `data` and the questions it reads; no model is loaded. `placement`
    is the `Placement.key_suffix` of where it runs: empty for float32 on the CPU, whose keys stay as before."""
    resolve_spec(spec)  # a bad spec fails as such before any question about its data
    source = for_model(data, spec in EMBEDDED_ALIASES, spec, "calibration", ("pope",))
    pope = load_tuning(source, "pope", "calib", None, "the calibration questions")["pope"]
    ordered = [item for group in zip(*pope.values()) for item in group][:samples]
    return f"pope-calib:{data_key(source, {'pope': {'calib': ordered}})}:n{samples}{placement}", ordered


def model_features(
    spec: str,
    store: PlanStore,
    samples: int = 128,
    data: DataSource | None = None,
    progress: Progress | None = None,
    batch_size: int = CALIBRATION_BATCH,
    device: str = AUTO,
    dtype: str = AUTO,
) -> CalibrationFeatures:
    """The calibration blueprints of `spec` build on: on `data` when given, ShapesWorld for an embedded model, and
    for a local checkpoint given no data the one its trained policy was trained on (refused when it has none).
    Computed, when it must be, on `device` in `dtype`."""
    settings = {"device": device, "dtype": dtype}
    if spec not in EMBEDDED_ALIASES and not (data and (data.real or data.shapesworld)):
        loaded = load_model(spec, **settings)
        record = policy_record(loaded.model_id, loaded.path, store)
        if record is not None:
            return policy_calibration(spec, record, store, **settings)
    return calibrate_model(spec, samples, batch_size, progress=progress, store=store, data=data, **settings)[0]


def policy_calibration(
    spec: str, record: PolicyRecord, store: PlanStore, device: str = AUTO, dtype: str = AUTO
) -> CalibrationFeatures:
    """The calibration a policy was trained on (its config names it, placement included; none named: ShapesWorld,
    asked for by name, computed on `device` in `dtype`)."""
    key = record.config.get("calibration", "")
    if not key:
        return calibrate_model(spec, store=store, data=DataSource(shapesworld=True), device=device, dtype=dtype)[0]
    stored = store.get_calibration(record.model_id, key)
    if stored is None or not stored.payload_path or not Path(stored.payload_path).exists():
        raise HippError(
            f"the calibration policy {record.policy_id} was trained on ({key}) is no longer stored; pass the data "
            "options it was trained with (--pope-dir ...) to calibrate again"
        )
    return CalibrationFeatures.from_json(json.loads(Path(stored.payload_path).read_text()))


def reward_data(
    spec: str, data: DataSource | None, limit: int | None, what: str, split: str = "dev"
) -> tuple[DataSource, str, str]:
    """The data plans of `spec` are rewarded on, the split read (the user's ScienceQA split, else ShapesWorld's
    `split`) and its `data_key`, checked apart from the test files before any model is loaded."""
    resolve_spec(spec)
    source = for_model(data, spec in EMBEDDED_ALIASES, spec, "rewards", ("pope", "sqa"))
    if not source.real:
        return source, split, SHAPESWORLD_KEY
    split = source.tuning_split
    return source, split, data_key(source, load_tuning(source, "all", split, limit, what))


def evaluation_data(spec: str, data: DataSource | None, split: str, limit: int | None) -> tuple[DataSource | None, str]:
    """The questions an evaluation of `spec` at `split` reads, as (data, split read): ShapesWorld's `split` when `data`
    names none of the user's files. With them, the tuning questions for `dev` (read and checked apart from the test
    files as rewards read them, so a dashboard evaluation lands on the same stored key as the policy's rewards) and the
    files results are reported on for `test` (`DataSource.report_source`); see `own_split`."""
    if data is None or not data.real:
        return None, split
    for_model(data, spec in EMBEDDED_ALIASES, spec, "evaluation", ("pope", "sqa"))
    if own_split(data, split) == "test":
        test = data.report_source()
        return test, test.split or "test"
    source, read, _ = reward_data(spec, data, limit, "the dev evaluation questions")
    return replace(source, split=read), read


def own_split(data: DataSource, split: object) -> str:
    """`dev` or `test`: what `split` names in the user's own data, which has a dev set (the tuning files, also called
    by their ScienceQA split, e.g. val) and a test set (the `--test-pope` files, or ScienceQA's report split)."""
    if split in ("dev", data.tuning_split):
        return "dev"
    if split in ("test", data.report_split):
        return "test"
    raise HippError(
        f"your own data has a dev set (the tuning files, ScienceQA {data.tuning_split}) and a test set (the "
        f"--test-pope files, ScienceQA {data.report_split}); evaluate on dev or test, not {split!r}"
    )


def calibration_batch(batch_size: int) -> int:
    """Calibration's batch inside a command whose `--batch-size` bounds every forward pass: the calibration default,
    or less when the user asked for less (a smaller GPU)."""
    return min(CALIBRATION_BATCH, batch_size)
