"""A trained model with everything needed to use it: id maps and data settings.

Models see internal indices only; the bundle carries the append-only id maps
that translate them, the interaction settings the model was trained with, and
a small JSON of metadata. It is the unit that training logs to MLflow and that
publishing loads back.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from recsys.idmap import IdMap
from recsys.interactions import InteractionConfig
from recsys.models.base import Recommender

MODEL_FILE = "model.npz"
USERS_FILE = "user_map.parquet"
ITEMS_FILE = "item_map.parquet"
META_FILE = "bundle.json"


@dataclass
class ModelBundle:
    """A fitted ``Recommender`` with its user and item id maps."""

    model: Recommender
    user_map: IdMap
    item_map: IdMap
    interactions: InteractionConfig
    meta: dict = field(default_factory=dict)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the bundle into ``folder`` (created); returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder / MODEL_FILE)
        self.user_map.save(folder / USERS_FILE)
        self.item_map.save(folder / ITEMS_FILE)
        body = {
            "model": self.model.name,
            "params": self.model.get_params(),
            "interactions": self.interactions.as_dict(),
            "meta": self.meta,
        }
        (folder / META_FILE).write_text(json.dumps(body, indent=1, default=str))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> ModelBundle:
        """Read a bundle written by ``save``."""
        folder = Path(folder)
        body = json.loads((folder / META_FILE).read_text())
        return cls(
            model=Recommender.load(folder / MODEL_FILE),
            user_map=IdMap.load(folder / USERS_FILE),
            item_map=IdMap.load(folder / ITEMS_FILE),
            interactions=InteractionConfig(**body["interactions"]),
            meta=body.get("meta", {}),
        )
