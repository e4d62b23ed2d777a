"""One check per kind of user input (preference, sparsity, counts), shared by the API, the CLI, jobs and the UI.

Each raises `HippError` with the allowed range in its message, so the same bad value gets the same one-line answer
wherever it was typed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from hipp_core.errors import HippError
from hipp_core.objectives import NAMES

S_MAX = 0.9  # no plan may remove this share of the decoder or more: a layer budget must leave something to keep


def preference(values: Sequence[float]) -> tuple[float, ...]:
    """One weight per objective, in `objectives.NAMES` order (U,R,C: utility, robustness, compression), validated and
    normalised onto the simplex."""
    n, names = len(NAMES), ", ".join(NAMES)
    try:
        weights = tuple(float(x) for x in values)
    except (TypeError, ValueError):
        raise HippError(f"preference must be {n} numbers ({names}), e.g. 0.2,0.7,0.1, got {values!r}") from None
    if len(weights) != n:
        raise HippError(f"preference needs exactly {n} weights ({names}), got {len(weights)}")
    if not all(math.isfinite(x) for x in weights):
        raise HippError(f"preference weights must be finite numbers, got {weights}")
    if any(x < 0 for x in weights):
        raise HippError(f"preference weights must be ≥ 0, got {weights}")
    if sum(weights) <= 0:
        raise HippError("preference weights are all zero; give at least one a positive weight, e.g. 0.2,0.7,0.1")
    total = sum(weights)
    return tuple(x / total for x in weights)


def sparsity(value: float, s_max: float = S_MAX, name: str = "sparsity") -> float:
    """A share of decoder parameters to remove, strictly between 0 and `s_max`."""
    if isinstance(value, bool) or not (isinstance(value, int | float) and math.isfinite(value) and 0 < value < s_max):
        raise HippError(f"{name} must be between 0 and {s_max} (exclusive), got {value}")
    return float(value)


def count(value: int, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """A whole number of things (steps, questions, samples, ranks) within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum and value > maximum):
        allowed = f"between {minimum} and {maximum}" if maximum else f"at least {minimum}"
        raise HippError(f"{name} must be a whole number {allowed}, got {value!r}")
    return value


def optional_count(value: int | None, name: str, minimum: int = 1, maximum: int | None = None) -> int | None:
    """`count`, where None means "no limit"."""
    return None if value is None else count(value, name, minimum, maximum)
