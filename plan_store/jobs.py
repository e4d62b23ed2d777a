"""Pure helpers behind the job lifecycle: the bounded log tail and the liveness test used to reap crashed workers."""

from __future__ import annotations

import os
from pathlib import Path

# Enough context for the dashboard to show why a job is slow or failed, small enough to rewrite on every update.
LOG_TAIL_LINES = 50


def append_log(tail: str, text: str, keep: int = LOG_TAIL_LINES) -> str:
    """`tail` with the lines of `text` appended, cut to the last `keep` lines."""
    return "\n".join((tail.splitlines() + text.splitlines())[-keep:])


def process_alive(pid: int) -> bool:
    """Whether `pid` is a running process on this machine.

    A killed worker whose parent has not waited for it lingers as a zombie that signal 0 still reaches; on Linux its
    /proc state says so. A recycled pid reads as alive, leaving the job 'running' until that unrelated process exits.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc/self").is_dir():
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may itself contain spaces or parentheses.
    return stat[stat.rindex(")") + 2 :][:1] != "Z"
