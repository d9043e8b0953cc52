"""Every Redis key name the engine uses, and nothing else builds one.

All keys start with a configurable prefix (``RECSYS_REDIS_PREFIX``, default
``recsys``) so several shops can share one Redis. A snapshot lives under
``<prefix>:v:<version>:...``; ``<prefix>:current`` names the version readers
use and ``<prefix>:previous`` the one ``rollback`` returns to. Ids embedded
in key names are validated ids (``recsys.data.schema.ID_PATTERN``: no ``:``,
no spaces), and categories / countries are addressed by code or index, so no
input can address another key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from recsys.data.schema import ID_PATTERN

PREFIX_ENV = "RECSYS_REDIS_PREFIX"
DEFAULT_PREFIX = "recsys"
VERSION_PATTERN = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{6}\Z")
_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,40}\Z")
_COUNTRY_PATTERN = re.compile(r"^[A-Z]{2}\Z")
#: Kinds of the recent-views keys (``<prefix>:live:<kind>:<id>``). They were lists
#: ordered by arrival under ``views`` / ``session-views``; they are sorted sets
#: ordered by the views' own times since ``-v2``. The new names keep a list left
#: by earlier code from meeting a sorted-set command (WRONGTYPE): such lists are
#: ignored and expire by their TTL (``views_ttl_s``).
_VIEWS = "views-v2"
_SESSION_VIEWS = "session-views-v2"


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX_PATTERN.match(self.prefix):
            raise ValueError(f"bad Redis key prefix {self.prefix!r}: use 1-40 of A-Z a-z 0-9 _ . -")

    @classmethod
    def from_env(cls) -> Keys:
        """Keys under ``$RECSYS_REDIS_PREFIX`` (default ``recsys``)."""
        return cls(os.environ.get(PREFIX_ENV, DEFAULT_PREFIX))

    # -- pointers and bookkeeping ------------------------------------------------
    @property
    def current(self) -> str:
        return f"{self.prefix}:current"

    @property
    def previous(self) -> str:
        return f"{self.prefix}:previous"

    @property
    def versions(self) -> str:
        """Sorted set of every version written and not yet deleted (score: start time)."""
        return f"{self.prefix}:versions"

    @property
    def publish_lock(self) -> str:
        return f"{self.prefix}:publish-lock"

    # -- one snapshot ------------------------------------------------------------
    def version_pattern(self, version: str) -> str:
        """SCAN pattern of every key of one version."""
        return f"{self._v(version)}:*"

    def meta(self, version: str) -> str:
        """Hash: model, model version, run id, created time, counts, codec."""
        return f"{self._v(version)}:meta"

    def meta_parts(self) -> tuple[str, str]:
        """``meta(version) == head + version + tail``, for server-side scripts."""
        return f"{self.prefix}:v:", ":meta"

    def item_ids(self, version: str) -> str:
        """String: the version's item ids, newline-separated, in index order."""
        return f"{self._v(version)}:items"

    def categories(self, version: str) -> str:
        """String: the version's category paths, newline-separated, in index order."""
        return f"{self._v(version)}:categories"

    def user(self, version: str, user_id: str) -> str:
        """Packed candidates of one customer."""
        return self._users(version) + _checked_id(user_id)

    def users(self, version: str, user_ids) -> list[str]:
        """Keys of many customers (ids checked at once)."""
        base = self._users(version)
        return [base + _checked_id(u) for u in user_ids]

    def similar(self, version: str, item_index: int) -> str:
        """Packed similar items of one item (by internal index)."""
        return f"{self._v(version)}:s:{int(item_index)}"

    def popular(self, version: str, country: str | None = None, category: int | None = None) -> str:
        """Packed popular items: overall, per market, per category, or both."""
        market = _checked_country(country) if country else "_"
        cat = f"c{int(category)}" if category is not None else "_"
        return f"{self._v(version)}:pop:{market}:{cat}"

    def trending(self, version: str, country: str | None = None) -> str:
        """Packed recently rising items, overall or per market."""
        market = _checked_country(country) if country else "_"
        return f"{self._v(version)}:trend:{market}"

    def market(self, version: str, country: str) -> str:
        """Packed offers of one market: item indices sold and in stock, with their prices."""
        return f"{self._v(version)}:market:{_checked_country(country)}"

    def item_categories(self, version: str) -> str:
        """Packed int32 per item index: the index of its category path (-1: none)."""
        return f"{self._v(version)}:item-categories"

    # -- live state (not versioned: it outlives snapshots) -------------------------
    def recent_views(self, visitor: str) -> str:
        """Sorted set of the item ids a customer viewed last (score: time of the
        newest view, epoch seconds). See ``_VIEWS`` for its name."""
        return self._live(_VIEWS, _checked_id(visitor))

    def bought(self, user_id: str) -> str:
        """Set of the item ids a customer bought since the snapshot."""
        return self._live("bought", _checked_id(user_id))

    def customer(self, version: str, user_id: str) -> tuple[str, str, str]:
        """What a recommendation reads for one customer: ``user`` (candidates),
        ``recent_views`` and ``bought``, the id checked once."""
        uid = _checked_id(user_id)
        return self._users(version) + uid, self._live(_VIEWS, uid), self._live("bought", uid)

    def session(self, session_id: str) -> tuple[str, str]:
        """What a recommendation reads for one session: ``session_views`` and
        ``session_bought``, the id checked once."""
        sid = _checked_id(session_id)
        return self._live(_SESSION_VIEWS, sid), self._live("session-bought", sid)

    def session_views(self, session_id: str) -> str:
        """Sorted set of the item ids an (anonymous) session viewed last, scored as
        ``recent_views``."""
        return self._live(_SESSION_VIEWS, _checked_id(session_id))

    def session_bought(self, session_id: str) -> str:
        """Set of the item ids a session bought (guest checkout)."""
        return self._live("session-bought", _checked_id(session_id))

    @property
    def event_stream(self) -> str:
        """Stream of incoming events, drained into the data directory for training."""
        return f"{self.prefix}:events"

    def rules(self, country: str | None = None) -> str:
        """Hash of pinned / boosted items of a market (``_`` for every market)."""
        market = _checked_country(country) if country else "_"
        return f"{self.prefix}:rules:{market}"

    @property
    def rules_generation(self) -> str:
        """Counter bumped on every change of the rules: readers reload when it moves."""
        return f"{self.prefix}:rules-generation"

    def _users(self, version: str) -> str:
        """The start of a customer's candidates key (the id follows)."""
        return f"{self._v(version)}:u:"

    def _live(self, kind: str, checked_id: str) -> str:
        """A live-state key of an already checked id."""
        return f"{self.prefix}:live:{kind}:{checked_id}"

    def _v(self, version: str) -> str:
        if not VERSION_PATTERN.match(version):
            raise ValueError(f"bad snapshot version {version!r}")
        return f"{self.prefix}:v:{version}"


def _checked_id(value: str) -> str:
    if not ID_PATTERN.match(value):
        raise ValueError(f"bad id {value!r}")
    return value


def _checked_country(value: str) -> str:
    if not _COUNTRY_PATTERN.match(value):
        raise ValueError(f"bad country code {value!r}")
    return value
