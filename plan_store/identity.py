"""Content-derived identity, shared by the store and the library: one text per value, one hash per text.

Both sides must agree to the bit (a blueprint's id is computed in `hipp_core.blueprint` and again here when a plan
is stored), so the two helpers live in one module that depends on nothing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any, *, allow_nan: bool = False) -> str:
    """One text per value, so equal blueprints hash and compare equal whatever order their keys were built in."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan)


def digest(*parts: str) -> str:
    """Content-derived ids make re-inserting the same thing a no-op instead of a duplicate."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]
