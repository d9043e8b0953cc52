"""Peak memory of a job: its own, not its parent's (ru_maxrss survives fork + exec)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from recsys.memory import peak_rss_mb

CHILD = (
    "import numpy as np, sys; from recsys.memory import peak_rss_mb; "
    "block = np.ones(int(sys.argv[1]) * 2**20 // 8); print(peak_rss_mb())"
)


def _child_peak(extra_mb: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(extra_mb)], check=True, capture_output=True, text=True
    )
    return float(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_child_reports_its_own_peak_not_its_parents():
    ballast = np.ones(600 * 2**20 // 8)  # the parent holds 600 MiB while it starts the child
    assert peak_rss_mb() > 600
    small, large = _child_peak(0), _child_peak(300)
    del ballast
    assert small < 300, small  # python + numpy alone, not the parent's 600 MiB
    assert large > small + 250, (small, large)  # its own 300 MiB block counts
