"""User-facing errors.

Every failure a user can fix (bad path, malformed file, value out of range) is raised as `HippError`
with a message that names what was wrong and what to do. The CLI prints it as one line and exits 2;
the dashboard shows it with `st.error`. Anything else is a bug and keeps its traceback.
"""


class HippError(Exception):
    """An error whose message is meant for the user, not a stack trace."""
