"""A process's peak memory, written to stderr at exit when `$HIPP_REPORT_PEAK_MEMORY` is 1.

Only the process that ran the model can ask torch for its GPU peak, so a benchmark that runs `hipp` commands as
subprocesses (benchmarks/gpu_pipeline.py) sets the variable and reads one line back from each command's stderr:
`hipp-peak-memory: {"cuda_allocated_bytes": ..., "cuda_reserved_bytes": ..., "rss_bytes": ...}`. The CUDA figures
are torch's allocator peaks summed over the GPUs this process used (null when it used none); `rss_bytes` is the
peak resident memory of the process on the host.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import sys

ENV = "HIPP_REPORT_PEAK_MEMORY"
PREFIX = "hipp-peak-memory: "


def peak_memory() -> dict[str, int | None]:
    """This process's peaks so far. torch is only asked when this process has already started CUDA: importing or
    initialising it here would itself take memory and time."""
    cuda_allocated = cuda_reserved = None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        devices = range(torch.cuda.device_count())
        cuda_allocated = sum(torch.cuda.max_memory_allocated(d) for d in devices)
        cuda_reserved = sum(torch.cuda.max_memory_reserved(d) for d in devices)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"cuda_allocated_bytes": cuda_allocated, "cuda_reserved_bytes": cuda_reserved, "rss_bytes": rss}


def _report() -> None:
    sys.stderr.write(PREFIX + json.dumps(peak_memory()) + "\n")
    sys.stderr.flush()


def report_at_exit_if_asked() -> bool:
    """Register the exit report when `$HIPP_REPORT_PEAK_MEMORY` is 1; it runs however the process ends normally
    (a finished command, a user error's exit 2, an uncaught exception)."""
    if os.environ.get(ENV) != "1":
        return False
    atexit.register(_report)
    return True


def parse_report(stderr: str) -> dict[str, int | None] | None:
    """The last report line in a process's stderr, or None when it wrote none."""
    for line in reversed(stderr.splitlines()):
        if line.startswith(PREFIX):
            return json.loads(line[len(PREFIX) :])
    return None
