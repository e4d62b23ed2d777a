"""What a dashboard page keeps in its URL, read and written as text.

A reload or a shared link starts a new Streamlit session, so a page's state (model, preference, sparsity lock,
selected plans, Pareto axes and measurement, the plan to export) lives in query parameters too. Values come from
whoever typed the link: each parser returns None (or drops an entry) for anything malformed, and the page falls back
to its default instead of failing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

PLAN_ID = re.compile(r"[0-9a-f]{6,64}")  # plan ids are hex digests; `dense` is the dense model's
MAX_PLANS = 50  # a link is for reading, not a bulk export


def parse_preference(text: str | None, n: int = 3) -> tuple[float, ...] | None:
    """`0.5,0.3,0.2` -> the weights on the simplex; None unless `n` finite non-negative numbers with a positive sum."""
    try:
        values = [float(x) for x in (text or "").split(",")]
    except ValueError:
        return None
    if len(values) != n or not all(math.isfinite(v) and v >= 0 for v in values) or sum(values) <= 0:
        return None
    return tuple(v / sum(values) for v in values)


def format_preference(weights: Sequence[float]) -> str:
    return ",".join(f"{w:.2f}" for w in weights)


def parse_fraction(text: str | None, low: float = 0.0, high: float = 1.0) -> float | None:
    """A number in [low, high], else None."""
    try:
        value = float(text or "")
    except ValueError:
        return None
    return value if math.isfinite(value) and low <= value <= high else None


def format_fraction(value: float) -> str:
    return f"{value:.4g}"


def parse_plan_ids(text: str | None) -> list[str]:
    """`a1b2c3,d4e5f6` -> the well-formed plan ids, in order, each once, at most `MAX_PLANS`."""
    ids = [part.strip().lower() for part in (text or "").split(",")]
    return list(dict.fromkeys(i for i in ids if PLAN_ID.fullmatch(i)))[:MAX_PLANS]


def format_plan_ids(ids: Iterable[str]) -> str:
    return ",".join(ids)


def parse_choice(text: str | None, options: Sequence[str]) -> str | None:
    """`text` if it is one of `options`, else None."""
    return text if text in options else None
