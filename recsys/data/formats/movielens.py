"""MovieLens 100K (GroupLens): ratings, movies and users to canonical tables.

The source is the ``ml-100k`` directory. ``u.user`` becomes customers (with
age, gender, occupation and zip code as attributes; country US, language
en, no email consent), ``u.item`` items (genres as tags, the first genre as
the category ``Movies > <genre>``, the release date as ``created_at``), and
``u.data`` one ``rating`` event per line with the rating in ``value``.

Reject reasons: ``malformed_row`` (wrong field count, a field that does
not parse, or an id that is empty or breaks the id rule), ``bad_value``
(a rating outside 1-5), ``duplicate_row``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.events import event_ids
from recsys.data.importing import Batch
from recsys.data.store import DataError
from recsys.data.validation import (
    Verdicts,
    bad_ids,
    blank,
    parse_float,
    parse_int,
    parse_timestamp,
)

GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
USER_FIELDS = ["user_id", "age", "gender", "occupation", "zip_code"]
ITEM_FIELDS = ["item_id", "title", "release_date", "video_release_date", "url", *GENRES]
RATING_FIELDS = ["user_id", "item_id", "rating", "timestamp"]


def import_movielens(src: Path, progress: bool = True) -> Iterator[Batch]:
    """Users, then movies, then ratings, each file one batch."""
    if not src.is_dir():
        raise DataError(f"{src}: the movielens format reads the ml-100k directory")
    for name in ("u.user", "u.item", "u.data"):
        if not (src / name).exists():
            raise DataError(f"{src}: {name} is missing; is this the ml-100k directory?")
    yield _users(src / "u.user")
    yield _items(src / "u.item")
    yield _ratings(src / "u.data")


def _read(path: Path, sep: str, fields: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Lines split into ``fields``; and the mask of lines with the wrong field count."""
    text = path.read_bytes().decode("latin-1")
    # Lines end at "\n" only: str.splitlines() would also break a line at the
    # latin-1 control characters \x85, \x1c-\x1e, \x0b and \x0c of a title.
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    lines = lines[:-1] if lines and lines[-1] == "" else lines
    parts = [line.split(sep) for line in lines]
    counts = np.array([len(p) for p in parts], dtype=int)
    bad = counts != len(fields)
    rows = [p if len(p) == len(fields) else (p + [""] * len(fields))[: len(fields)] for p in parts]
    frame = pd.DataFrame(rows, columns=fields, dtype=object).apply(lambda c: c.str.strip())
    return frame, bad


def _users(path: Path) -> Batch:
    raw, bad = _read(path, "|", USER_FIELDS)
    v = Verdicts(len(raw))
    age, bad_age = parse_int(raw["age"])
    v.reject(bad | bad_age | _bad_id(raw["user_id"]), "malformed_row")
    v.reject(_repeated(raw["user_id"], v.accepted), "duplicate_row")
    ok = v.accepted
    attributes = [
        json.dumps({"age": int(a), "gender": g, "occupation": o, "zip_code": z})
        for a, g, o, z in zip(
            np.nan_to_num(age), raw["gender"], raw["occupation"], raw["zip_code"], strict=True
        )
    ]
    customers = pd.DataFrame(
        {
            "user_id": raw["user_id"],
            "email": None,
            "country": "US",
            "language": "en",
            "email_consent": False,
            "unsubscribed_at": pd.NaT,
            "created_at": pd.NaT,
            "attributes": attributes,
        }
    )[ok]
    return Batch(path.name, len(raw), int(ok.sum()), {"customers": customers}, v.rejects(raw))


def _items(path: Path) -> Batch:
    raw, bad = _read(path, "|", ITEM_FIELDS)
    v = Verdicts(len(raw))
    flags = raw[GENRES].apply(lambda c: pd.to_numeric(c, errors="coerce"))
    released = pd.to_datetime(raw["release_date"], format="%d-%b-%Y", errors="coerce", utc=True)
    bad_date = released.isna().to_numpy() & (raw["release_date"] != "").to_numpy()
    malformed = bad | flags.isna().any(axis=1).to_numpy() | bad_date | _bad_id(raw["item_id"])
    v.reject(malformed, "malformed_row")
    v.reject(_repeated(raw["item_id"], v.accepted), "duplicate_row")
    ok = v.accepted
    genre_lists = [
        [g for g, f in zip(GENRES, row, strict=True) if f == 1] for row in flags.to_numpy()
    ]
    items = pd.DataFrame(
        {
            "item_id": raw["item_id"],
            "title": raw["title"],
            "category": [f"Movies > {g[0]}" if g else "Movies" for g in genre_lists],
            "brand": None,
            "tags": genre_lists,
            "created_at": released,
        }
    )[ok]
    return Batch(path.name, len(raw), int(ok.sum()), {"items": items}, v.rejects(raw))


def _ratings(path: Path) -> Batch:
    raw, bad = _read(path, "\t", RATING_FIELDS)
    v = Verdicts(len(raw))
    rating, bad_rating = parse_float(raw["rating"])
    ts, bad_ts = parse_timestamp(raw["timestamp"])
    bad_id = _bad_id(raw["user_id"]) | _bad_id(raw["item_id"])
    v.reject(bad | bad_rating | bad_ts | bad_id, "malformed_row")
    v.reject((rating < 1) | (rating > 5), "bad_value")
    ok = v.accepted
    events = pd.DataFrame(
        {
            "timestamp": ts,
            "user_id": raw["user_id"],
            "session_id": None,
            "item_id": raw["item_id"],
            "type": "rating",
            "quantity": np.int32(1),
            "price": np.nan,
            "currency": None,
            "country": "US",
            "value": rating.astype("float32"),
        }
    )
    ids = event_ids(events)
    # the same event (``4`` and ``4.0`` are one rating), not only the same text
    v.reject(_repeated(pd.Series(ids), ok), "duplicate_row")
    ok = v.accepted
    events = events[ok].reset_index(drop=True)
    events["event_id"] = ids[ok]
    return Batch(path.name, len(raw), int(ok.sum()), {"events": events}, v.rejects(raw))


def _repeated(keys: pd.Series, accepted: np.ndarray) -> np.ndarray:
    """Mask of accepted rows whose key an earlier accepted row already has.

    Only accepted rows count: a line rejected as malformed hides no later good one.
    """
    out = np.zeros(len(keys), dtype=bool)
    out[accepted] = keys[accepted].duplicated(keep="first").to_numpy()
    return out


def _bad_id(values: pd.Series) -> np.ndarray:
    """Mask of ids that are empty or break the id rule (``schema.ID_PATTERN``)."""
    return blank(values) | bad_ids(values)
