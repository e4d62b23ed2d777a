"""The store's own error: raised for anything a caller can fix (a bad value, a locked or foreign file).

`plan_store` stands alone, so it does not share `hipp_core.errors.HippError`; the CLI and the dashboard catch both
(`hipp_core.errors.USER_ERRORS`) and show either as one line.
"""


class StoreError(Exception):
    """An error whose message is meant for the user, not a stack trace."""
