"""Where things live on disk, how many CPU threads torch may use, and other settings of a `hipp` process."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from plan_store.store import home_dir  # noqa: F401  (one definition of $HIPP_HOME, re-exported)

PACKAGE_DIR = Path(__file__).resolve().parent
# Trained embedded checkpoints ship inside the package so a fresh clone needs no training.
SHIPPED_ZOO_DIR = PACKAGE_DIR / "models" / "embedded"


def cache_dir() -> Path:
    """Derived, re-creatable files (datasets, retrained models); `$HIPP_CACHE`, default ~/.cache/hipp."""
    return Path(os.environ.get("HIPP_CACHE", Path.home() / ".cache" / "hipp")).expanduser()


def default_threads() -> int:
    # One core is left free: more torch threads than free cores runs many times slower beside other work
    # (docs/design.md, The embedded testbed). `$HIPP_THREADS` overrides.
    env = os.environ.get("HIPP_THREADS")
    if env:
        return max(1, int(env))
    return max(1, (os.cpu_count() or 2) - 1)


def set_threads(n: int | None = None) -> int:
    n = n or default_threads()
    torch.set_num_threads(n)
    return n


def report_peak_memory_if_asked() -> bool:
    """With `$HIPP_REPORT_PEAK_MEMORY=1`, write this process's peak memory to stderr at exit (`peak_memory.py`):
    how benchmarks that run `hipp` commands as subprocesses read each command's own GPU peak."""
    from hipp_core.peak_memory import report_at_exit_if_asked

    return report_at_exit_if_asked()


def quiet_libraries() -> None:
    """Keep the terminal for our own output: transformers' load reports and bars would bury a one-line error,
    and with no hub reachable every lookup must stay offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
