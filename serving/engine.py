"""The recommendation service: one Redis round trip per request, rules in-process.

A request sends one pipeline: ``MGET current rules-generation`` plus the
visitor's keys in the cached snapshot version (candidates, recent views,
items bought). If ``current`` moved, the new version's static tables are
loaded (once per process) and the pipeline is sent again. Lists are then
built in-process from ranked sources in fallback order:

    pinned -> personalized -> session (similar to recent views)
           -> popular in the visitor's country -> popular overall -> catalog

When Redis does not answer, the same tables (the last loaded snapshot)
answer without the visitor's live state, marked ``"degraded": true``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from recsys.snapshots.codec import half_floats, unpack
from serving.config import ServingConfig
from serving.errors import ApiError
from serving.events import Event
from serving.gateway import (
    SLOT,
    Packed,
    RedisGateway,
    RedisUnavailable,
    pack_commands,
    resp_template,
)
from serving.metrics import Metrics
from serving.ranking import Eligibility, ListBuilder, session_ranking
from serving.render import ListAnswer
from serving.rules import MarketRules, all_markets, decode_rules, encode_rules, merged
from serving.snapshot import Market, Snapshot, SnapshotNotReady, load_snapshot

log = logging.getLogger(__name__)
_UNLOADED = object()


@dataclass
class Visitor:
    """Who asks, and what they already did."""

    user_id: str | None = None
    session_id: str | None = None
    session_items: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)


@dataclass
class Placement:
    """Where the list goes: market, category, length."""

    country: str | None
    n: int
    category: str | None = None


class Engine:
    """Answers list requests from the cached snapshot and one pipeline per request."""

    def __init__(
        self,
        config: ServingConfig,
        gateway: RedisGateway,
        metrics: Metrics,
        file_rules: dict[str, MarketRules] | None = None,
    ):
        self.config = config
        self.gateway = gateway
        self.keys = gateway.keys
        self.metrics = metrics
        self.snapshot: Snapshot | None = None
        self.file_rules = dict(file_rules or {})
        self.redis_rules: dict[str, MarketRules] = {}
        self._rules_generation = _UNLOADED
        self._resolved: dict[tuple, tuple[np.ndarray, dict[int, float]]] = {}
        self._load_lock = threading.Lock()
        #: (version, until, why): a version that failed to load, not tried again until then
        self._refused: tuple[str, float, str] | None = None
        #: every request's first command, packed once
        self._pointer = pack_commands([("MGET", self.keys.current, self.keys.rules_generation)])
        #: a recommendation's reads (``Keys.customer``, ``Keys.session``), packed by template
        last = max(config.session_seeds - 1, 0)
        newest = ("ZRANGE", SLOT, 0, last, "REV")  # recent views, newest first
        self._customer_reads = resp_template(("GET", SLOT), newest, ("SMEMBERS", SLOT))
        self._session_reads = resp_template(newest, ("SMEMBERS", SLOT))
        gateway.on_round_trip = metrics.round_trips.inc
        gateway.on_failure = metrics.redis_failures.inc
        half_floats()  # the score table, built before gunicorn forks: its pages are shared

    # -- snapshot and rules --------------------------------------------------------
    def warm_up(self) -> bool:
        """Load the current snapshot and rules now if Redis answers (False otherwise)."""
        try:
            self._fetch(None)
        except (ApiError, RedisUnavailable):
            return False
        return self.snapshot is not None

    def _fetch(self, commands=None) -> tuple[Snapshot, list, bool]:
        """One round trip: ``MGET current rules-generation`` plus ``commands(snapshot)``
        (a list of command tuples, or ``Packed``). Returns ``(snapshot, their
        replies, degraded)``."""
        snap = self.snapshot
        pointer = self._pointer
        current = out = None
        for _ in range(3):
            try:
                extra = commands(snap) if snap is not None and commands is not None else None
                if isinstance(extra, Packed):
                    out = self.gateway.fetch_packed(pointer + extra.data, 1 + extra.n_commands)
                elif extra:
                    out = self.gateway.fetch_packed(pointer + pack_commands(extra), 1 + len(extra))
                else:
                    out = self.gateway.fetch_packed(pointer, 1)
                current, generation = out[0]
                if generation != self._rules_generation:
                    self._reload_rules(generation)
                if current is None and self.snapshot is not None:
                    # the pointer vanished (a restarted or emptied Redis): keep serving
                    # the cached snapshot, degraded, rather than an error
                    return self._held(snap, out)
                if current is None:
                    raise ApiError(
                        503, "no_snapshot", "nothing published yet: run `recsys publish`"
                    )
                current = current.decode()
                if snap is not None and snap.version == current:
                    return snap, out[1:], False
                refused = self._refused
                if refused is not None and refused[0] == current and time.monotonic() < refused[1]:
                    # not a full load attempt per request
                    return self._unloadable(refused[2], snap, out)
                loaded = self._load(current, wait=snap is None)
                if loaded is None:  # another thread loads it: the held version's reads stand
                    return snap, out[1:], False
                snap = loaded
            except RedisUnavailable:
                return self._degraded()
            except (SnapshotNotReady, UnicodeDecodeError) as exc:  # the latter: not text
                log.error("cannot load snapshot: %s", exc)
                self.metrics.snapshot_load_failures.inc()
                if isinstance(current, str):
                    until = time.monotonic() + self.config.snapshot_retry_s
                    self._refused = (current, until, str(exc))
                return self._unloadable(str(exc), snap, out)
        return self._degraded()

    def _unloadable(self, why: str, snap, out) -> tuple[Snapshot, list, bool]:
        """``current`` cannot be loaded: the held snapshot, degraded, else a 503."""
        if self.snapshot is None:
            raise ApiError(503, "no_snapshot", why)
        return self._held(snap, out)

    def _held(self, snap: Snapshot | None, out: list | None) -> tuple[Snapshot, list, bool]:
        """The held snapshot, degraded, while Redis answers but ``current`` cannot be
        served; with the visitor's reads when they were made for it, so that live
        state (items bought, recent views) still applies."""
        if snap is not None and out:
            return snap, out[1:], True
        return self._degraded()

    def _degraded(self) -> tuple[Snapshot, list, bool]:
        if self.snapshot is None:
            raise ApiError(503, "unavailable", "Redis is unreachable and no snapshot is cached yet")
        return self.snapshot, [], True

    def _load(self, version: str, wait: bool = True) -> Snapshot | None:
        """Load ``version`` (once per process). Without ``wait``, None while another
        thread loads one: a caller holding a snapshot answers from it meanwhile (a
        publish keeps the version it replaced as ``previous``) instead of queueing
        behind a load that takes seconds for a large catalog."""
        if not self._load_lock.acquire(blocking=wait):
            return None
        try:
            if self.snapshot is not None and self.snapshot.version == version:
                return self.snapshot
            snap = load_snapshot(self.gateway, version, self.config.cache_similar_max_items)
            self.snapshot = snap
            self._resolved = {}
            self.metrics.snapshot_loads.inc()
            self.metrics.snapshot_loaded.set(snap.loaded_at)
            log.info("loaded snapshot %s (%d items)", version, snap.n_items)
            return snap
        finally:
            self._load_lock.release()

    def _reload_rules(self, generation) -> None:
        markets = all_markets()
        replies = self.gateway.run(
            lambda pipe: [pipe.hgetall(self.keys.rules(m if m != "_" else None)) for m in markets]
        )
        rules = {}
        for market, fields in zip(markets, replies, strict=True):
            try:
                parsed = decode_rules(fields)
            except ValueError as exc:
                log.error("ignoring bad rules of market %s in Redis: %s", market, exc)
                continue
            if parsed is not None:
                rules[market] = parsed
        self.redis_rules = rules
        self._rules_generation = generation
        # a new dict, not clear(): a request still resolving the old rules writes
        # into the old one, which nothing reads any more
        self._resolved = {}

    def rules(self) -> dict[str, MarketRules]:
        """Every market's rules in force: the file's, replaced per market by Redis'."""
        return {**self.file_rules, **self.redis_rules}

    def _market_rules(self, snap: Snapshot, country: str | None) -> tuple[np.ndarray, dict]:
        key = (snap.version, country)
        resolved = self._resolved  # before the rules: see _reload_rules
        found = resolved.get(key)
        if found is None:
            rules = merged(self.rules(), country)
            pinned = np.asarray(snap.indices(rules.pinned), dtype=np.int64)
            boost = {snap.index[i]: f for i, f in rules.boost.items() if i in snap.index}
            found = resolved[key] = (pinned, boost)
        return found

    # -- lists ---------------------------------------------------------------------
    def recommend(self, visitor: Visitor, place: Placement) -> ListAnswer:
        """The visitor's list: personalized, else session, else popular (see module doc)."""
        keys, seeds_n = self.keys, self.config.session_seeds
        user_id, session_id = visitor.user_id, visitor.session_id

        def commands(snap) -> Packed | None:
            if user_id:
                reads = self._customer_reads(*keys.customer(snap.version, user_id))
                if not session_id:
                    return reads
                more = self._session_reads(*keys.session(session_id))
                return Packed(reads.data + more.data, reads.n_commands + more.n_commands)
            return self._session_reads(*keys.session(session_id)) if session_id else None

        snap, replies, degraded = self._fetch(commands)
        candidates, views, bought = None, [], []
        if replies:
            it = iter(replies)
            if visitor.user_id:
                candidates, user_views, user_bought = next(it), next(it), next(it)
            else:
                user_views, user_bought = [], []
            if visitor.session_id:
                views, bought = list(next(it)), list(next(it))
            views += user_views
            bought += user_bought
        seeds = []
        if visitor.session_items or views:
            seed_ids = [*visitor.session_items, *(v.decode() for v in views)]
            seeds = list(dict.fromkeys(snap.indices(seed_ids)))[: max(seeds_n, 0)]
        blocked = (
            {b.decode() for b in bought} | set(visitor.exclude) if bought or visitor.exclude else ()
        )
        user_known = bool(candidates) if not degraded else None
        builder, market = self._builder(snap, place, blocked, diversity=True)
        if builder is not None:
            pinned, _ = self._market_rules(snap, place.country)
            builder.add(pinned, None, "pinned")
            if candidates:
                builder.add_packed(candidates, "personalized")
            if seeds and not builder.full:
                session = self._session(snap, seeds)
                if session is None:  # Redis failed for the seeds' lists: popular instead
                    degraded = True
                else:
                    builder.add(*session, "session")
            self._popular_chain(builder, snap, place)
        answer = self._answer(snap, builder, market, place, degraded, "recommendations")
        answer.meta["user_known"] = user_known
        return answer

    def similar(self, item_id: str, place: Placement, exclude: list[str]) -> ListAnswer:
        """Items similar to ``item_id`` sold in the market, then popular ones of its category."""

        def commands(snap):
            index = snap.index.get(item_id)
            if snap.similar_ids is None and index is not None:
                return [("GET", self.keys.similar(snap.version, index))]
            return []

        snap, replies, degraded = self._fetch(commands)
        index = snap.index.get(item_id)
        builder, market = self._builder(snap, place, {item_id, *exclude}, diversity=False)
        if builder is not None:
            if index is not None:
                if snap.similar_ids is not None:
                    ranked = snap.similar(index)
                else:
                    ranked = unpack(replies[0]) if replies else (np.empty(0, np.int64), None)
                builder.add(ranked[0], ranked[1], "similar")
                own = int(snap.item_category[index])
                if own >= 0 and place.category is None:
                    country = place.country
                    if country:
                        builder.add(*snap.popular_list(country, own), "popular_country")
                    builder.add(*snap.popular_list(None, own), "popular")
            self._popular_chain(builder, snap, place)
        answer = self._answer(snap, builder, market, place, degraded, "similar")
        answer.meta["item_known"] = index is not None
        return answer

    def popular(self, place: Placement, kind: str = "popular") -> ListAnswer:
        """Popular (or trending) items in the market, then overall."""
        snap, _, degraded = self._fetch(None)
        builder, market = self._builder(snap, place, set(), diversity=True)
        if builder is not None:
            country = place.country
            pinned, _ = self._market_rules(snap, country)
            builder.add(pinned, None, "pinned")
            if kind == "trending":
                if country:
                    builder.add(*snap.trending.get(country, _empty()), "trending_country")
                builder.add(*snap.trending.get(None, _empty()), "trending")
            self._popular_chain(builder, snap, place)
        return self._answer(snap, builder, market, place, degraded, "popular")

    def _builder(self, snap: Snapshot, place: Placement, blocked_ids, diversity: bool):
        """The list builder for a placement, or None when nothing can be eligible."""
        market = None
        offered = None
        if snap.has_markets and place.country:
            market = snap.markets.get(place.country)
            if market is None:
                return None, None  # nothing is sold there
            offered = market.offered
        in_category = None
        if place.category is not None:
            in_category = snap.category_mask(place.category)
            if in_category is None:
                return None, market  # unknown category
        _, boost = self._market_rules(snap, place.country)
        cap = self.config.max_per_category if diversity and place.category is None else 0
        flags = snap.eligibility_flags(market, place.category, in_category)
        builder = ListBuilder(
            n=place.n,
            eligibility=Eligibility(offered, in_category, flags),
            item_category=snap.item_category_list,
            max_per_category=cap,
            blocked=set(snap.indices(blocked_ids)) if blocked_ids else None,
            boost=boost,
        )
        return builder, market

    def _session(self, snap: Snapshot, seeds: list[int]):
        """Items similar to the seeds, ranked; None when their lists are not cached
        and Redis does not answer."""
        if snap.similar_ids is not None:
            rows = snap.similar_ids[seeds], snap.similar_scores[seeds]
        else:  # catalog too large to cache: a second round trip for the seeds' lists
            try:
                blobs = self.gateway.fetch(
                    [("MGET", *(self.keys.similar(snap.version, s) for s in seeds))]
                )[0]
            except RedisUnavailable:
                return None
            width = max([1, *(len(b) // 6 for b in blobs if b)])
            ids = np.full((len(seeds), width), -1, dtype=np.int64)
            scores = np.zeros((len(seeds), width), dtype=np.float32)
            for row, blob in enumerate(blobs):
                got, got_scores = unpack(blob)
                ids[row, : len(got)], scores[row, : len(got)] = got, got_scores
            rows = ids, scores
        return session_ranking(rows[0], rows[1], seeds)

    def _popular_chain(self, builder: ListBuilder, snap: Snapshot, place: Placement):
        """Popular in the visitor's country, popular overall, then any eligible item."""
        if builder.full:
            return
        category = snap.category_index(place.category) if place.category is not None else None
        chain = [(None, "popular")]
        if place.country:
            chain.insert(0, (place.country, "popular_country"))
        for country, source in chain:
            if category is not None:
                builder.add(*snap.popular_list(country, category), source)
            builder.add(*snap.popular_list(country), source)
        builder.add_catalog(snap.n_items)

    def _answer(
        self, snap, builder, market: Market | None, place: Placement, degraded: bool, endpoint: str
    ) -> ListAnswer:
        picks = builder.picks if builder is not None else []
        source = builder.primary_source if builder is not None else "none"
        items = snap.fragments.encode(picks, market) if picks else ""
        self.metrics.list_served(endpoint, source, degraded)
        meta = {
            "source": source,
            "version": snap.version,
            "degraded": degraded,
            "country": place.country,
        }
        return ListAnswer(items, meta)

    # -- events and rules (writes) -------------------------------------------------
    def record(self, events: list[Event]) -> dict:
        """Update live state (recent views, items bought) and append to the event stream.

        Events older than their live state lasts (``views_ttl_s``, ``bought_ttl_s``),
        e.g. a replayed backlog, go to the stream only: a view of last month is no
        recent view. Recent views are ordered by the views' own times, not by
        arrival: a replayed older view goes behind the newer ones, and never moves
        back an item viewed since (``ZADD GT``). Views of one request at the same
        time (e.g. none given) keep their order in it, one microsecond apart. Each
        write also drops the visitor's views that are older than ``views_ttl_s``
        (the key's TTL, renewed by every write, would otherwise keep them)."""
        cfg, keys = self.config, self.keys
        views: dict[str, dict[str, float]] = {}  # key -> item -> score (view time)
        latest: dict[str, float] = {}  # key -> its newest score so far
        bought: dict[str, list[str]] = {}
        now = time.time()
        for event in sorted(events, key=lambda e: e.timestamp):
            purchase = event.type == "purchase"
            ttl = cfg.bought_ttl_s if purchase else cfg.views_ttl_s
            if now - event.timestamp.timestamp() > ttl or not (purchase or cfg.views_kept):
                continue  # views_kept 0: no recent views are kept at all
            targets = []
            if event.user_id:
                targets.append(("user", event.user_id))
            if event.session_id:
                targets.append(("session", event.session_id))
            for kind, who in targets:
                if purchase:
                    key = keys.bought(who) if kind == "user" else keys.session_bought(who)
                    bought.setdefault(key, []).append(event.item_id)
                else:
                    key = keys.recent_views(who) if kind == "user" else keys.session_views(who)
                    # events come in time order: each view scores above the key's last
                    score = max(event.timestamp.timestamp(), latest.get(key, -math.inf) + 1e-6)
                    views.setdefault(key, {})[event.item_id] = latest[key] = score

        def build(pipe):
            for key, scores in views.items():
                pipe.zadd(key, scores, gt=True)
                pipe.zremrangebyscore(key, "-inf", f"({now - cfg.views_ttl_s!r}")  # expired
                pipe.zremrangebyrank(key, 0, -cfg.views_kept - 1)  # the newest views_kept stay
                pipe.expire(key, cfg.views_ttl_s)
            for key, items in bought.items():
                pipe.sadd(key, *items)
                pipe.expire(key, cfg.bought_ttl_s)
            for event in events:
                pipe.xadd(
                    keys.event_stream,
                    event.stream_fields(),
                    maxlen=cfg.stream_maxlen,
                    approximate=True,
                )

        try:
            replies = self.gateway.run(build)
        except RedisUnavailable as exc:
            raise ApiError(
                503, "unavailable", "Redis is unreachable; send the events again"
            ) from exc
        for event in events:
            self.metrics.events.labels(event.type).inc()
        stream_ids = [r.decode() for r in replies[-len(events) :]]
        return {"accepted": len(events), "stream_ids": stream_ids}

    def set_rules(self, market: str, rules: MarketRules | None) -> None:
        """Store (or with None delete) a market's rules in Redis; every worker reloads them."""
        key = self.keys.rules(market if market != "_" else None)

        def build(pipe):
            pipe.delete(key)
            if rules is not None:  # empty rules too: they replace the file's for the market
                pipe.hset(key, mapping=encode_rules(rules))
            pipe.incr(self.keys.rules_generation)

        try:
            self.gateway.run(build)
        except RedisUnavailable as exc:
            raise ApiError(503, "unavailable", "Redis is unreachable; try again") from exc
        self._rules_generation = _UNLOADED  # reload on the next request

    def unknown_items(self, item_ids) -> list[str]:
        """The ids the loaded snapshot does not know."""
        if self.snapshot is None:
            return []
        return [i for i in item_ids if i not in self.snapshot.index]


def _empty():
    return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
