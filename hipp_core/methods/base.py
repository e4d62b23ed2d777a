"""What every planning method shares: its config base, the model context it plans in, and the registry.

A planning method turns (model context, config, sparsity) into a Blueprint. Each lives in its own module of
`hipp_core.methods` with a config dataclass (one help string per field) and one registered function; the registry
is what the CLI, the dashboard, jobs and benchmarks list, so a new method is one module and one import line.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np

from hipp_core import importance
from hipp_core.blueprint import Blueprint, LayerShape, make_blueprint
from hipp_core.calibrate import CalibrationFeatures
from hipp_core.data.source import DataSource
from hipp_core.errors import HippError
from hipp_core.evaluation.engine import Progress
from hipp_core.models.loading import LoadedModel, load_model
from plan_store import PlanStore

KINDS = ("heuristic", "search", "peer", "policy")  # what a method is, for lists that want only some of them


def option(default: Any, help: str) -> Any:
    """A config field with the help string the CLI and the dashboard show for it."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method's settings: validated when built, so a bad value never reaches the method."""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise a one-line HippError for a value out of range; subclasses add their own checks."""


EQUAL_COUNTS_HELP = (
    "keep the same numbers of query heads per KV group, KV groups and MLP channels in every layer, so a stock export "
    "needs no padding; gives up the per-layer allocation for that"
)


@dataclass(frozen=True)
class CriterionConfig(MethodConfig):
    """Settings of a method that ranks units by a registered importance criterion."""

    criterion: str = option(
        importance.DEFAULT, f"unit criterion that picks the kept heads and channels: {', '.join(importance.names())}"
    )
    equal_counts: bool = option(False, EQUAL_COUNTS_HELP)

    def check(self) -> None:
        importance.get(self.criterion)
        if not isinstance(self.equal_counts, bool):
            raise HippError(f"equal_counts must be true or false, got {self.equal_counts!r}")


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    help: str


def channel_multiple(intermediate: int) -> int:
    """MLP widths are kept in multiples of 64 at real scale (matmul-friendly), of 8 for the embedded models."""
    return 64 if intermediate >= 4096 else 8


@dataclass
class ModelContext:
    """What a method may read about the model it plans for. The model and its calibration are fetched on first
    use, so a method that needs neither (the Torch-Pruning peer needs no calibration) does not pay for them.
    `calibration` is how this caller gets the stored calibration (the API passes its cached one); `selection` gives
    the data and split a method that evaluates candidates chooses on (ShapesWorld dev, or the user's own tuning data,
    checked apart from the test files). The model runs on `device` in `dtype` (`auto`: see `models.device`), and a
    method that scores plans asks for at most `batch_size` questions per forward pass."""

    spec: str
    store: PlanStore
    calibration: Callable[[], CalibrationFeatures]
    selection: Callable[[int | None], tuple[DataSource, str]]  # questions per set -> (data, split) to choose plans on
    progress: Progress | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 32

    @cached_property
    def loaded(self) -> LoadedModel:
        return load_model(self.spec, self.device, self.dtype)

    @cached_property
    def shapes(self) -> list[LayerShape]:
        return self.loaded.adapter.layer_shapes()

    @cached_property
    def m(self) -> int:
        return channel_multiple(max(s.intermediate for s in self.shapes))

    @cached_property
    def features(self) -> CalibrationFeatures:
        return self.calibration()

    @cached_property
    def stock_heads(self) -> tuple[int, ...]:
        """Query-head counts the family's stock config accepts (what equal-count plans keep)."""
        return self.loaded.adapter.stock_head_counts()


PlanFn = Callable[[ModelContext, Any, float], Blueprint]


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # one of KINDS
    config: type[MethodConfig]
    run: PlanFn  # (context, config, sparsity) -> Blueprint
    help: str

    def options(self) -> list[Option]:
        """The settings this method takes, with defaults and help, in declaration order."""
        return [
            Option(f.name, f.default_factory() if f.default is MISSING else f.default, f.metadata.get("help", ""))
            for f in fields(self.config)
        ]

    def configure(self, options: Mapping[str, Any] | None = None) -> MethodConfig:
        """This method's config from `options` (defaults for the rest). A setting it does not take is refused with
        the ones it does; text values (from a command line) are read as the field's type."""
        options = dict(options or {})
        accepted = [o.name for o in self.options()]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            takes = f"takes {', '.join(accepted)}" if accepted else "takes no settings"
            raise HippError(f"method {self.name} does not take {', '.join(unknown)}; it {takes}")
        hints = typing.get_type_hints(self.config)
        values = {k: _from_text(self.name, k, hints[k], v) if isinstance(v, str) else v for k, v in options.items()}
        return self.config(**values)

    def plan(self, context: ModelContext, sparsity: float, config: MethodConfig | None = None) -> Blueprint:
        config = self.configure() if config is None else config
        if not isinstance(config, self.config):
            raise HippError(f"method {self.name} needs a {self.config.__name__}, got {type(config).__name__}")
        return self.run(context, config, sparsity)


_REGISTRY: dict[str, Method] = {}


def register(name: str, kind: str, config: type[MethodConfig], help: str) -> Callable[[PlanFn], PlanFn]:
    """Decorator: make a planning function available under `name`."""
    if kind not in KINDS:
        raise ValueError(f"method kind must be one of {KINDS}, got {kind!r}")

    def wrap(fn: PlanFn) -> PlanFn:
        _REGISTRY[name] = Method(name, kind, config, fn, help)
        return fn

    return wrap


def get(name: str) -> Method:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise HippError(f"unknown planning method {name!r}; available: {', '.join(names())}") from None


def names(kind: str | None = None) -> list[str]:
    """Registered methods by name, optionally only those of one kind."""
    return sorted(name for name, method in _REGISTRY.items() if kind is None or method.kind == kind)


def allocation_blueprint(
    context: ModelContext, sparsity: float, alpha: np.ndarray, config: CriterionConfig
) -> Blueprint:
    """A baseline blueprint from a per-layer allocation α (any positive weights, water-filled to the budget) with
    units chosen by the config's criterion; with its `equal_counts`, α is set aside for one layer shape."""
    loaded = context.loaded
    scores = importance.unit_scores(context.features, config.criterion)
    return make_blueprint(
        loaded.model_id,
        loaded.family,
        context.shapes,
        sparsity,
        alpha,
        scores,
        context.m,
        source="baseline",
        criterion=config.criterion,
        equal_counts=config.equal_counts,
        stock_heads=context.stock_heads,
    )


def _from_text(method: str, name: str, hint: Any, text: str) -> Any:
    """A command-line value read as the config field's type (str, int, float, bool, optional, tuple, dict)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if text.strip().lower() in ("none", "null", ""):
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if hint is str:
            return text
        if hint is bool:
            return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}[text.strip().lower()]
        if hint in (int, float):
            return hint(text)
        if typing.get_origin(hint) is tuple:
            return tuple(float(x) for x in text.split(","))
        if typing.get_origin(hint) is dict or hint is dict:
            return json.loads(text)
    except (KeyError, ValueError):
        pass
    else:
        return text
    what = getattr(hint, "__name__", str(hint))
    raise HippError(f"setting {name} of method {method} must be {what}, got {text!r}")
