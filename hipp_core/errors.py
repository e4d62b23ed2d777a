"""User-facing errors and notices.

Every failure a user can fix (bad path, malformed file, value out of range) is raised as `HippError` with a message
that names what was wrong and what to do; the plan store raises its own `StoreError` the same way. The CLI prints
either as one line and exits 2; the dashboard shows it with `st.error`. Anything else is a bug and keeps its traceback.

Something the user should know that does not stop the work (a fallback was taken, some answers were ignored)
is a `HippNotice` warning: library callers see an ordinary Python warning, and the API collects them into the
result it returns (`collecting_notices`) so the CLI can print them on stderr.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from plan_store.errors import StoreError


class HippError(Exception):
    """An error whose message is meant for the user, not a stack trace."""


USER_ERRORS: tuple[type[Exception], ...] = (HippError, StoreError)  # what a boundary shows as one line


class HippNotice(UserWarning):
    """A warning whose message is meant for the user: the work went on, but not quite as asked."""


def notice(message: str) -> None:
    warnings.warn(HippNotice(message), stacklevel=2)


@contextmanager
def collecting_notices() -> Iterator[list[str]]:
    """The messages of every `HippNotice` raised inside the block, in order, each once; other warnings pass."""
    collected: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HippNotice)
        try:
            yield collected
        finally:
            others = [w for w in caught if not issubclass(w.category, HippNotice)]
            collected.extend(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, HippNotice)))
    for w in others:  # re-raised outside the recording block, so they reach the usual filters
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def json_problem(exc: json.JSONDecodeError) -> str:
    """What is wrong with a JSON text and where, as a whole phrase ("Unterminated string starting at line 3
    column 5"): `exc.msg` alone can end mid-phrase ("... starting at") with the position cut off."""
    return f"{exc.msg.removesuffix(' at')} at line {exc.lineno} column {exc.colno}"
