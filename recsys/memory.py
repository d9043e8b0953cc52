"""The process's peak memory, measured so that a child does not inherit its parent's.

``getrusage().ru_maxrss`` survives ``fork`` + ``exec`` on Linux: a job started
by a 1 GB parent reports at least 1 GB whatever it does itself. The peak of
the current address space (``VmHWM`` in ``/proc/self/status``) starts afresh
at ``exec``; it is used where it exists.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import psutil

_STATUS = Path("/proc/self/status")


def peak_rss_mb() -> float:
    """Peak resident set size of this process's own address space, in MiB."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    # no /proc: the high-water mark of getrusage (bytes on macOS, kB elsewhere)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024


def rss_mb() -> float:
    """Resident set size of this process now, in MiB."""
    return psutil.Process().memory_info().rss / 2**20
