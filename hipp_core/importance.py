"""Within-layer unit importance: which query heads and MLP channels a layer keeps once its counts are fixed.

Each criterion is a small class under one abstract base, registered by name; the name is what blueprints record in
`criterion` and what `--criterion` options accept. A criterion reads the calibration record (`CalibrationFeatures`,
the stored format, computed once per model and calibration set by `hipp_core.calibrate`) and returns one
`UnitScores` per decoder layer, higher meaning more worth keeping. Adding one is a subclass with a `name`, a `help`
and `layer_scores`, decorated with `register`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from hipp_core.blueprint import UnitScores
from hipp_core.calibrate import CalibrationFeatures
from hipp_core.errors import HippError

DEFAULT = "wanda"  # the criterion every method uses unless told otherwise


class Importance(ABC):
    """A unit criterion: per-layer scores of query heads and MLP channels from a model's calibration."""

    name: ClassVar[str]
    help: ClassVar[str]

    @abstractmethod
    def layer_scores(self, features: CalibrationFeatures, layer: int) -> UnitScores:
        """Scores of one decoder layer's query heads and MLP channels."""

    def scores(self, features: CalibrationFeatures) -> list[UnitScores]:
        return [self.layer_scores(features, i) for i in range(features.n_layers)]


_REGISTRY: dict[str, type[Importance]] = {}


def register(cls: type[Importance]) -> type[Importance]:
    """Class decorator: make a criterion available under its `name`."""
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> Importance:
    try:
        return _REGISTRY[name]()
    except (KeyError, TypeError):  # TypeError: an unhashable value, e.g. a list from a JSON job parameter
        raise HippError(f"unknown unit criterion {name!r}; available: {', '.join(names())}") from None


def names() -> list[str]:
    return sorted(_REGISTRY)


def unit_scores(features: CalibrationFeatures, criterion: str) -> list[UnitScores]:
    """Per-layer unit scores of `features` under the criterion named `criterion`."""
    return get(criterion).scores(features)


def _scores(head: list[float], mlp: list[float]) -> UnitScores:
    return UnitScores(head=np.asarray(head), mlp=np.asarray(mlp))


@register
class WandaSP(Importance):
    name = "wanda"
    help = "Wanda-sp: |W| times the calibration norm of the input each weight reads, summed over a unit's weights"

    def layer_scores(self, features: CalibrationFeatures, layer: int) -> UnitScores:
        return _scores(features.head_wanda[layer], features.mlp_wanda[layer])


@register
class Magnitude(Importance):
    name = "magnitude"
    help = "weight magnitude alone: |W| summed over a unit's weights, no activations"

    def layer_scores(self, features: CalibrationFeatures, layer: int) -> UnitScores:
        return _scores(features.head_magnitude[layer], features.mlp_magnitude[layer])


@register
class SynFlow(Importance):
    name = "synflow"
    help = "SynFlow saliency |θ·∂R/∂θ| (data-free, all-ones input, layer by layer) summed over a unit's weights"

    def layer_scores(self, features: CalibrationFeatures, layer: int) -> UnitScores:
        return _scores(features.head_synflow[layer], features.mlp_synflow[layer])
