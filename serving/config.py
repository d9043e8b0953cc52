"""The serving settings: one dataclass, filled from arguments and the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from recsys.data import markets

API_KEY_ENV = "RECSYS_API_KEY"
RULES_FILE_ENV = "RECSYS_RULES_FILE"


@dataclass(frozen=True)
class ServingConfig:
    """Everything the API needs; ``from_env`` fills the unset parts."""

    #: Data directory (its embedded Redis is used when ``redis_url`` is unset).
    data_dir: Path | None = None
    #: ``redis://host:port/db`` or ``unix:///path.sock``; default ``$REDIS_URL``.
    redis_url: str | None = None
    #: Key prefix; default ``$RECSYS_REDIS_PREFIX`` or ``recsys``.
    key_prefix: str | None = None
    #: Key of the write and admin endpoints (header ``X-API-Key``); None: writes refused.
    api_key: str | None = None
    #: JSON file of pinned / boosted items per market (see ``serving.rules``).
    rules_file: Path | None = None
    #: Market of requests without ``country`` (None: no market filter, no prices).
    default_country: str | None = None
    default_n: int = 10
    max_n: int = 100
    #: At most this many items of one category per list (0: no limit).
    max_per_category: int = 3
    #: Recent views used as seeds of session recommendations.
    session_seeds: int = 5
    #: Recent views kept per customer / session.
    views_kept: int = 20
    views_ttl_s: int = 7 * 86_400
    bought_ttl_s: int = 30 * 86_400
    #: Largest request body (bytes) and events per request.
    max_body_bytes: int = 256 * 1024
    max_events: int = 500
    #: Largest number of ids in ``exclude`` / ``session_items``.
    max_ids: int = 100
    #: Approximate cap of the event stream (a safety valve when nobody drains it).
    stream_maxlen: int = 5_000_000
    #: Redis socket timeouts (seconds), and how long to skip Redis after a failure.
    redis_timeout_s: float = 0.25
    redis_retry_after_s: float = 1.0
    #: After ``current`` named a version that could not be loaded, how long to keep
    #: answering from the held snapshot before trying that version again.
    snapshot_retry_s: float = 5.0
    #: Similar-item lists are cached in-process for catalogs up to this size.
    cache_similar_max_items: int = 500_000

    @classmethod
    def from_env(cls, data_dir: str | os.PathLike | None = None, **overrides) -> ServingConfig:
        """Settings from ``overrides``, then ``$REDIS_URL``, ``$RECSYS_API_KEY``,
        ``$RECSYS_RULES_FILE``, ``$RECSYS_REDIS_PREFIX``."""
        from recsys.snapshots.connection import REDIS_URL_ENV
        from recsys.snapshots.keys import PREFIX_ENV

        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown serving setting(s): {', '.join(sorted(unknown))}")
        values = {k: v for k, v in overrides.items() if v is not None}
        env = {
            "redis_url": os.environ.get(REDIS_URL_ENV) or None,
            "api_key": os.environ.get(API_KEY_ENV) or None,
            "rules_file": os.environ.get(RULES_FILE_ENV) or None,
            "key_prefix": os.environ.get(PREFIX_ENV) or None,
        }
        for name, value in env.items():
            values.setdefault(name, value)
        if data_dir is not None:
            values["data_dir"] = data_dir
        config = cls(**values)
        return config.checked()

    def checked(self) -> ServingConfig:
        """Normalised paths and codes; raises ``ValueError`` on impossible settings."""
        if not 1 <= self.default_n <= self.max_n:
            raise ValueError("need 1 <= default_n <= max_n")
        for name in ("max_per_category", "session_seeds", "views_kept", "max_ids"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.max_body_bytes < 1024 or self.max_events < 1:
            raise ValueError("max_body_bytes must be >= 1024 and max_events >= 1")
        if self.redis_url is None and self.data_dir is None:
            raise ValueError("set a data directory or a Redis URL")
        key = self.api_key
        if key and not (key.isascii() and key.isprintable() and key == key.strip()):
            # an HTTP header carries it: UTF-8 arrives as other characters, and servers
            # strip the spaces around a value, so such a key would never match
            raise ValueError(
                f"the API key (${API_KEY_ENV}) must be printable ASCII without spaces around it"
            )
        country = self.default_country.upper() if self.default_country else None
        if country is not None and not markets.is_country(country):
            raise ValueError(f"default_country must be an ISO 3166-1 alpha-2 code, not {country!r}")
        return replace(
            self,
            data_dir=Path(self.data_dir) if self.data_dir is not None else None,
            rules_file=Path(self.rules_file) if self.rules_file else None,
            default_country=country,
        )
