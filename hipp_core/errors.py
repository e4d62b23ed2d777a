"""User-facing errors.

Every failure a user can fix (bad path, malformed file, value out of range) is raised as `HippError` with a message
that names what was wrong and what to do; the plan store raises its own `StoreError` the same way. The CLI prints
either as one line and exits 2; the dashboard shows it with `st.error`. Anything else is a bug and keeps its traceback.
"""

from plan_store.errors import StoreError


class HippError(Exception):
    """An error whose message is meant for the user, not a stack trace."""


USER_ERRORS: tuple[type[Exception], ...] = (HippError, StoreError)  # what a boundary shows as one line
