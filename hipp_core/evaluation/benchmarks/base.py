"""What a benchmark is to the evaluation engine: one protocol, one module per benchmark, one registry.

A benchmark loads its items (grouped, e.g. POPE by negative-sampling category), says how each item is asked (prompt
text, image, the answers logit scoring chooses among), reads a generated answer back into one of those answers, and
turns the picks into metrics (a dataclass of numbers). The engine does the forward passes; the image-free baseline
is a wrapper (`ImageFree`) around any benchmark. Adding a benchmark is one module and one `register` line.

Stored metrics are flat: `<name>.<group>.<field>` for grouped benchmarks, `<name>.<field>` otherwise, `<name>_free`
for the image-free baseline, plus a benchmark's summary numbers (e.g. `pope_balanced_accuracy`, the mean over
POPE's categories, which the robustness objective reads).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from hipp_core.data.source import DataSource
from hipp_core.errors import HippError

WHOLE = ""  # the one group of a benchmark that has no groups


@dataclass(frozen=True)
class Question:
    """One item as the model is asked it."""

    text: str  # the benchmark's prompt, before the model's chat template
    image: Path | None
    answers: tuple[str, ...]  # what logit scoring chooses among; generation is read back into one of them
    any_case: bool = False  # "Yes" and "yes" are the same answer (not so for option letters)
    blank: bool = False  # shown over a blank image of the same size (the image-free baseline)


class Benchmark(ABC):
    name: ClassVar[str]
    grouped: ClassVar[bool]  # metrics per group (and a summary over them), or one set
    metrics_type: ClassVar[type]  # the dataclass `metrics` returns
    embedded: ClassVar[bool] = False  # ShapesWorld has this benchmark's files built in
    label: ClassVar[str] = ""  # how people write its name ("ScienceQA"), in progress lines and tables
    help: ClassVar[str] = ""

    @abstractmethod
    def load(self, split: str, data: DataSource, embedded_root: Path | None) -> dict[str, list]:
        """Items per group (`WHOLE` for an ungrouped benchmark); `embedded_root` is the built ShapesWorld folder
        when this benchmark reads its embedded files. Raises HippError for missing or malformed files."""

    @abstractmethod
    def question(self, item: Any) -> Question: ...

    @abstractmethod
    def parse(self, text: str, item: Any, parser: str) -> int:
        """The index (into the question's answers) a generated `text` reads as, or -1 when it reads as none."""

    @abstractmethod
    def metrics(self, items: Sequence[Any], picks: Sequence[int]) -> Any:
        """`metrics_type` of the picks (answer indexes, -1 for none) on `items`."""

    def summary(self, groups: Mapping[str, Any]) -> dict[str, float]:
        """Numbers over all groups stored beside them (e.g. a mean over categories); none by default."""
        return {}

    def reads_embedded(self, data: DataSource) -> bool:
        """Whether `load` reads ShapesWorld's files (no real files of this benchmark were given)."""
        return False

    def group_rank(self, group: str) -> tuple:
        """Where a group sorts when results are read back from the store (by name unless a benchmark says)."""
        return (0, group)


class ImageFree(Benchmark):
    """The same questions over a blank image: how much of a score comes from looking, not from language priors."""

    grouped = False  # replaced per instance
    metrics_type = object

    def __init__(self, inner: Benchmark) -> None:
        self.inner = inner
        self.name = f"{inner.name}_free"
        self.grouped = inner.grouped
        self.metrics_type = inner.metrics_type

    def load(self, split: str, data: DataSource, embedded_root: Path | None) -> dict[str, list]:
        return self.inner.load(split, data, embedded_root)

    def group_rank(self, group: str) -> tuple:
        return self.inner.group_rank(group)

    def question(self, item: Any) -> Question:
        asked = self.inner.question(item)
        return Question(asked.text, asked.image, asked.answers, asked.any_case, blank=asked.image is not None)

    def parse(self, text: str, item: Any, parser: str) -> int:
        return self.inner.parse(text, item, parser)

    def metrics(self, items: Sequence[Any], picks: Sequence[int]) -> Any:
        return self.inner.metrics(items, picks)


_REGISTRY: dict[str, Benchmark] = {}


def register(cls: type[Benchmark]) -> type[Benchmark]:
    """Class decorator: make a benchmark available by its `name`."""
    _REGISTRY[cls.name] = cls()
    return cls


def get(name: str) -> Benchmark:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise HippError(f"unknown benchmark {name!r}; available: {', '.join(names())}") from None


def names() -> list[str]:
    return list(_REGISTRY)


def embedded_names() -> list[str]:
    """The benchmarks ShapesWorld has files for: what `all` means."""
    return [name for name, bench in _REGISTRY.items() if bench.embedded]


def select(bench: str) -> list[Benchmark]:
    """`all` (every benchmark with embedded files), one name, or several joined by commas."""
    wanted = embedded_names() if bench == "all" else [b.strip() for b in bench.split(",") if b.strip()]
    if not wanted:
        raise HippError(f"no benchmark named in {bench!r}; use all or some of {', '.join(names())}")
    return [get(name) for name in dict.fromkeys(wanted)]


def flatten(bench: Benchmark, groups: Mapping[str, Any]) -> dict[str, float]:
    """A benchmark's metrics per group as flat stored numbers (see the module docstring)."""
    flat: dict[str, float] = {}
    for group, metrics in groups.items():
        prefix = f"{bench.name}.{group}." if bench.grouped else f"{bench.name}."
        flat.update({prefix + f.name: getattr(metrics, f.name) for f in fields(metrics)})
    return flat


def unflatten(bench: Benchmark, flat: Mapping[str, float]) -> dict[str, Any]:
    """The inverse of `flatten` for one benchmark (summary numbers are recomputed, not read)."""
    per_group: dict[str, dict[str, float]] = {}
    prefix = f"{bench.name}."
    for key, value in flat.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        group, _, name = rest.rpartition(".") if bench.grouped else (WHOLE, "", rest)
        if bench.grouped and not group:
            continue
        per_group.setdefault(group, {})[name] = value
    types: dict[str, Callable] = {
        f.name: (int if f.type in ("int", int) else float) for f in fields(bench.metrics_type)
    }
    return {
        group: bench.metrics_type(**{k: types[k](v) for k, v in per_group[group].items() if k in types})
        for group in sorted(per_group, key=bench.group_rank)
        if set(types) <= set(per_group[group])
    }
