"""Which questions a command reads: the embedded ShapesWorld, or the user's own POPE / ScienceQA files, and the test
files those must stay apart from.

An embedded model calibrates on ShapesWorld `calib` and is rewarded on ShapesWorld `dev` unless told otherwise. A
local checkpoint never silently gets ShapesWorld: its calibration and rewards come from the user's data (a POPE-format
dev set, e.g. from `hipp data pope-build`, and a ScienceQA split such as `val` or `minival`), or from ShapesWorld
asked for by name (`shapesworld=True`, for copies and exports of the embedded models). Whatever is read is identified
by `content_key`, a hash of the questions and the images they use, never by where the files lie or when they were
written, so moving a dataset keeps its stored results and editing one does not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from hipp_core.data import build as data_build
from hipp_core.errors import HippError

SHAPESWORLD_KEY = f"shapesworld-v{data_build.VERSION}"  # the embedded benchmark is identified by its version
REAL_SQA_SPLIT = "val"  # ScienceQA's own dev split, the default for rewards on the user's ScienceQA


@dataclass(frozen=True)
class DataSource:
    """The data options every model command shares (`--pope-dir`, `--pope-images`, `--pope-labels`, `--sqa-dir`,
    `--split`, `--test-pope`, `--test-pope-images`, `--test-split`, `--shapesworld`). Nothing given means ShapesWorld for an embedded
    model and a refusal for a local checkpoint."""

    pope: Path | None = None  # POPE questions: a folder of *_pope_<category>.json files, or one question file
    pope_images: Path | None = None  # images of `pope` (default: images/ beside the questions)
    pope_labels: Path | None = None  # folder of official files labelling LLaVA's llava_pope_test.jsonl
    sqa: Path | None = None  # ScienceQA root: problems.json, pid_splits.json, images/
    sqa_images: Path | None = None  # images of `sqa` (default: its images/ folder)
    folders: Mapping[str, Path] = field(default_factory=dict)  # other benchmarks' folders by name (`--data mme=DIR`)
    split: str | None = None  # ScienceQA split to read; None: the command's own (val for tuning, test for eval)
    test_pope: tuple[Path, ...] = ()  # the POPE files results are reported on: tuning data must not touch them
    test_split: str | None = None  # the ScienceQA split results are reported on (in `sqa`); None: test
    shapesworld: bool = False  # ShapesWorld asked for by name, e.g. for a local copy of an embedded model
    test_pope_images: Path | None = None  # images of `test_pope` (default: images/ beside the test questions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "test_pope", tuple(Path(p) for p in self.test_pope))
        if self.shapesworld and self.real:
            raise HippError("--shapesworld and --pope-dir / --sqa-dir exclude each other; choose one source")
        if self.split is not None and self.sqa is None:
            raise HippError(f"--split {self.split} picks a ScienceQA split; pass --sqa-dir with it")
        if (self.test_pope or self.test_split) and not self.real:
            raise HippError("--test-pope / --test-split name what your own data must stay apart from; pass --pope-dir")
        if self.test_split is not None and self.sqa is None:
            raise HippError(f"--test-split {self.test_split} is a ScienceQA split; pass --sqa-dir with it")
        if self.test_pope_images is not None and not self.test_pope:
            raise HippError("--test-pope-images is the image folder of the --test-pope files; pass --test-pope too")

    @property
    def real(self) -> bool:
        """The user's own files, rather than ShapesWorld, for at least one benchmark."""
        return self.pope is not None or self.sqa is not None or bool(self.folders)

    @property
    def tuning_split(self) -> str:
        """The split calibration and rewards read: ScienceQA `val` by default, ShapesWorld `dev`."""
        return self.split or (REAL_SQA_SPLIT if self.sqa is not None else "dev")

    @property
    def report_split(self) -> str:
        """The ScienceQA split results are reported on, which tuning must stay apart from."""
        return self.test_split or "test"

    def report_source(self) -> DataSource | None:
        """The data results are reported on (a command's test evaluations): None for ShapesWorld, whose `test` split
        it is; for the user's own data, the one POPE test file or folder `test_pope` names, read with its images and
        `pope_labels`, and ScienceQA's `report_split` in `sqa`. Refused when own POPE data comes without its test
        file, or with several (an evaluation reads one folder)."""
        if not self.real:
            return None
        if self.pope is not None and not self.test_pope:
            raise HippError(
                "your own POPE data needs the POPE test files results are reported on: pass --test-pope FILE_OR_DIR "
                "(and --test-pope-images DIR when the images are not in images/ beside it)"
            )
        if len(self.test_pope) > 1:
            raise HippError(
                f"results are reported on one POPE test file or folder, got {len(self.test_pope)} --test-pope "
                "entries; put the test files in one folder and pass that"
            )
        return DataSource(
            pope=self.test_pope[0] if self.test_pope else None,
            pope_images=self.test_pope_images,
            pope_labels=self.pope_labels,
            sqa=self.sqa,
            sqa_images=self.sqa_images,
            folders=self.folders,
            split=self.report_split if self.sqa is not None else None,
        )


def for_model(data: DataSource | None, embedded: bool, spec: str, uses: str, needs: tuple[str, ...]) -> DataSource:
    """The data a model's `uses` ("calibration", "rewards") come from, `needs` naming the benchmarks they read.

    Refuses a local checkpoint that was given no data (never silently ShapesWorld), and own data that lacks a
    benchmark `uses` reads (never half real, half ShapesWorld)."""
    data = data or DataSource()
    flags = {"pope": "--pope-dir", "sqa": "--sqa-dir"}
    if not data.real and not data.shapesworld and not embedded:
        wanted = " and ".join(f"{flags[b]} DIR" + (" with --split val" if b == "sqa" else "") for b in needs)
        raise HippError(
            f"{spec} is a local checkpoint, so its {uses} must come from your own data, not the embedded ShapesWorld: "
            f"pass {wanted} (a POPE-format dev set can be made with `hipp data pope-build`) and --test-pope with the "
            "POPE files you report on; or --shapesworld for a model trained on ShapesWorld"
        )
    missing = [flags[b] for b in needs if data.real and getattr(data, b) is None]
    if missing:
        names = " and ".join({"pope": "POPE", "sqa": "ScienceQA"}[b] for b in needs)
        raise HippError(
            f"{names} questions of your own are needed for the {uses} of {spec} (never half ShapesWorld): "
            f"pass {' and '.join(missing)} too"
        )
    return data


def data_key(data: DataSource | None, tasks: Mapping[str, Mapping[str, Sequence]]) -> str:
    """How stored results name the questions they were computed on: `shapesworld-v<version>` for the embedded
    benchmark, else `content_key`."""
    return content_key(tasks) if data is not None and data.real else SHAPESWORLD_KEY


def content_key(tasks: Mapping[str, Mapping[str, Sequence]]) -> str:
    """A hash of the questions as loaded (every field of every item: ids, text, labels, choices, answers) and of the
    images they use (each image's file name and size in bytes): the same data at another path or with another
    modification time gets the same key, a changed question, label or image file another one."""
    h = hashlib.sha256()
    sizes: dict[Path, int] = {}

    def value(v):
        if isinstance(v, Path):
            if v not in sizes:
                sizes[v] = v.stat().st_size if v.is_file() else -1
            return [v.name, sizes[v]]
        return list(v) if isinstance(v, tuple) else v

    for bench in sorted(tasks):
        for group in sorted(tasks[bench]):
            for item in tasks[bench][group]:
                row = [bench, group, *(value(getattr(item, f.name)) for f in fields(item))]
                h.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    return "content-" + h.hexdigest()[:16]
