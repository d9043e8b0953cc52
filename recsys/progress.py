"""A progress line for steps that cannot count their work (a model's fit)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def elapsed(desc: str, enabled: bool = True, interval_s: float = 1.0) -> Iterator[None]:
    """Show on stderr how long the step under ``with`` has been running, refreshed
    every ``interval_s`` by a thread of its own (the step does not report), so a
    fit of minutes does not look like a hung job."""
    if not enabled:
        yield
        return
    bar = tqdm(desc=desc, bar_format="{desc}: {elapsed} elapsed", file=sys.stderr)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(interval_s):
            bar.refresh()

    ticker = threading.Thread(target=tick, name="progress-elapsed", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
        bar.close()
