"""Where the engine keeps its data, from the command line or the environment."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "RECSYS_DATA_DIR"
DEFAULT_DATA_DIR = "data"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: ``explicit``, else ``$RECSYS_DATA_DIR``, else ``./data``."""
    return Path(explicit or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


SHARED_DATA_ENV = "RECSYS_SHARED_DATA"


def shared_data_dir() -> Path:
    """The public datasets: ``$RECSYS_SHARED_DATA``, else ``../shared/data`` beside the checkout."""
    explicit = os.environ.get(SHARED_DATA_ENV)
    if explicit:
        return Path(explicit)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"
