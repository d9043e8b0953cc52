"""Generated shops for tests that train: a data directory with its own MLflow store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from recsys.data.store import DataStore
from recsys.data.synthetic import generate_shop


@contextmanager
def generated_shop(root: Path, registered_model: str | None = None, **sizes: int) -> Iterator[Path]:
    """A synthetic shop (``users``, ``items``, ``days``, ``seed``) in ``root``, tracked in
    the embedded MLflow store under it (``MLFLOW_TRACKING_URI`` unset meanwhile) and
    registered as ``registered_model`` when given."""
    patch = pytest.MonkeyPatch()
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    if registered_model:
        patch.setenv("RECSYS_REGISTERED_MODEL", registered_model)
    try:
        generate_shop(DataStore(root), progress=False, **sizes)
        yield root
    finally:
        patch.undo()
