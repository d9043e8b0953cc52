"""Read the current snapshot: candidates per customer, similar items, popular lists."""

from __future__ import annotations

import numpy as np
import redis

from recsys.snapshots.codec import as_str, unpack
from recsys.snapshots.keys import Keys


class SnapshotReader:
    """Reads through ``current``; item-id tables are cached per version."""

    def __init__(self, client: redis.Redis, keys: Keys):
        self.client = client
        self.keys = keys
        self._items: dict[str, np.ndarray] = {}
        self._item_index: dict[str, dict[str, int]] = {}
        self._categories: dict[str, list[str]] = {}

    def current_version(self) -> str | None:
        """The version readers use now, or None before the first publish."""
        return as_str(self.client.get(self.keys.current))

    def meta(self, version: str | None = None) -> dict[str, str]:
        """The meta record of ``version`` (default: current)."""
        version = version or self._require_current()
        raw = self.client.hgetall(self.keys.meta(version))
        return {as_str(k): as_str(v) for k, v in raw.items()}

    def item_ids(self, version: str) -> np.ndarray:
        """Item id per internal index of ``version``."""
        if version not in self._items:
            blob = as_str(self.client.get(self.keys.item_ids(version))) or ""
            self._items[version] = np.array(blob.split("\n") if blob else [], dtype=object)
        return self._items[version]

    def item_index(self, version: str, item_id: str) -> int | None:
        """Internal index of an item id in ``version``, or None."""
        if version not in self._item_index:
            ids = self.item_ids(version)
            self._item_index[version] = {item: i for i, item in enumerate(ids)}
        return self._item_index[version].get(item_id)

    def categories(self, version: str) -> list[str]:
        """Category path per category index of ``version``."""
        if version not in self._categories:
            blob = as_str(self.client.get(self.keys.categories(version))) or ""
            self._categories[version] = blob.split("\n") if blob else []
        return self._categories[version]

    def decode(self, version: str, blob: bytes | None) -> list[tuple[str, float]]:
        """A packed list as ``[(item_id, score), ...]`` in rank order."""
        ids, scores = unpack(blob)
        names = self.item_ids(version)
        return list(zip(names[ids].tolist(), scores.tolist(), strict=True))

    def user(self, user_id: str, version: str | None = None) -> list[tuple[str, float]]:
        """The customer's candidates (empty if unknown)."""
        version = version or self._require_current()
        return self.decode(version, self.client.get(self.keys.user(version, user_id)))

    def similar(self, item_id: str, version: str | None = None) -> list[tuple[str, float]]:
        """Items similar to ``item_id`` (empty if unknown)."""
        version = version or self._require_current()
        index = self.item_index(version, item_id)
        if index is None:
            return []
        return self.decode(version, self.client.get(self.keys.similar(version, index)))

    def popular(
        self, country: str | None = None, category: str | None = None, version: str | None = None
    ) -> list[tuple[str, float]]:
        """Popular items overall, in a market, in a category, or both."""
        version = version or self._require_current()
        cat = None
        if category is not None:
            names = self.categories(version)
            if category not in names:
                return []
            cat = names.index(category)
        return self.decode(version, self.client.get(self.keys.popular(version, country, cat)))

    def _require_current(self) -> str:
        version = self.current_version()
        if version is None:
            raise LookupError("no snapshot published yet: run `recsys publish`")
        return version
