"""Vectorised row validation: parse text columns and record why rows fail.

Every importer reads its input as text, parses each column with the helpers
here and marks failing rows with a reason through ``Verdicts``. A row gets
the first reason that applies, so every input row ends up either accepted or
rejected with exactly one reason.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data import markets
from recsys.data.schema import ID_PATTERN
from recsys.data.store import DataError

#: Unix seconds of 0001-01-01 and of 10000-01-01 (UTC).
EPOCH_SECONDS = (-62_135_596_800, 253_402_300_800)

#: A time of day followed by a UTC offset: ``Z``, ``+01:00``, ``+0100`` or ``+01``
#: (after a time only, so that the ``-01`` of ``2024-03-01`` is no offset).
OFFSET = r"[T ]\d\d(?::?\d\d){0,2}(?:[.,]\d+)?\s*(?:Z|[+-]\d\d(?::?\d\d)?)$"


class Verdicts:
    """The reject reason of each row so far (``None`` = still accepted)."""

    def __init__(self, n_rows: int):
        self.reasons = np.full(n_rows, None, dtype=object)

    def reject(self, mask, reason: str) -> None:
        """Reject the rows of ``mask`` that have no reason yet with ``reason``."""
        mask = np.asarray(mask, dtype=bool)
        self.reasons[mask & self.accepted] = reason

    @property
    def accepted(self) -> np.ndarray:
        """Boolean mask of the rows not rejected."""
        return pd.isna(self.reasons)

    def rejects(self, raw: pd.DataFrame, first_row: int = 1) -> pd.DataFrame:
        """The rejected raw rows, with their input row number and reason."""
        bad = ~self.accepted
        out = raw.loc[bad].astype(str).reset_index(drop=True)
        out.insert(0, "reason", self.reasons[bad].astype(str))
        out.insert(0, "row", np.flatnonzero(bad) + first_row)
        return out


def require_columns(raw: pd.DataFrame, required: list[str], source: str) -> None:
    """Raise a one-line ``DataError`` naming the required columns that are missing."""
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise DataError(
            f"{source}: missing required column(s) {', '.join(missing)}; "
            f"found {', '.join(map(str, raw.columns)) or 'none'}"
        )


def column(raw: pd.DataFrame, name: str) -> pd.Series:
    """A text column (pandas string dtype) with whitespace stripped; empty if absent."""
    if name not in raw.columns:
        return pd.Series([""] * len(raw), index=raw.index, dtype="str")
    values = raw[name]
    if not isinstance(values.dtype, pd.StringDtype):  # objects or numbers: convert once
        values = values.astype(object).where(values.notna(), "").map(str).astype("str")
    return values.fillna("").str.strip()


def blank(values: pd.Series) -> np.ndarray:
    """Mask of empty values."""
    return (values == "").to_numpy()


def parse_float(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Floats and the mask of non-empty values that are not numbers."""
    parsed = pd.to_numeric(values.where(values != ""), errors="coerce").to_numpy(float)
    bad = np.isnan(parsed) & ~blank(values)
    bad |= np.isinf(parsed)
    return parsed, bad


def parse_int(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integers (as float, NaN when empty) and the mask of non-integers."""
    parsed, bad = parse_float(values)
    bad |= ~np.isnan(parsed) & (np.round(parsed) != parsed)
    return parsed, bad


def parse_timestamp(values: pd.Series, tz: str = "UTC") -> tuple[pd.Series, np.ndarray]:
    """UTC timestamps and the mask of non-empty values that do not parse.

    Accepts ISO 8601 text (with or without offset; naive times are in ``tz``)
    and Unix epoch seconds of the years 1..9999. A naive time in the hour that
    repeats when the clocks go back is its first pass (summer time); one in the
    hour skipped when they go forward is moved past the gap.
    """
    text = values.where(values != "")
    numeric = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    is_number = ~np.isnan(numeric)
    # Epoch seconds of the years ISO 8601 text can hold (0001..9999); a number
    # outside (epoch milliseconds, 1e20, inf) is a bad timestamp, not year 56000.
    with np.errstate(invalid="ignore"):
        is_epoch = is_number & (numeric >= EPOCH_SECONDS[0]) & (numeric < EPOCH_SECONDS[1])
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ms, UTC]")
    if is_epoch.any():
        ms = np.round(numeric[is_epoch] * 1000).astype("int64")  # nearest ms of a float
        parsed[is_epoch] = pd.DatetimeIndex(ms.astype("datetime64[ms]")).tz_localize("UTC")
    rest = ~is_number & ~blank(values)
    has_offset = values.str.contains(OFFSET, regex=True).to_numpy(bool)
    aware, naive = rest & has_offset, rest & ~has_offset
    if aware.any():
        sub = pd.to_datetime(text[aware], errors="coerce", format="ISO8601", utc=True)
        parsed[aware] = _ms(sub)
    if naive.any():
        sub = pd.to_datetime(text[naive], errors="coerce", format="ISO8601")
        # the hour repeated when clocks go back: its first pass (summer time)
        first_pass = np.ones(len(sub), dtype=bool)
        sub = sub.dt.tz_localize(tz, ambiguous=first_pass, nonexistent="shift_forward")
        parsed[naive] = _ms(sub.dt.tz_convert("UTC"))
    bad = parsed.isna().to_numpy() & ~blank(values)
    return parsed, bad


def _ms(stamps: pd.Series) -> pd.Series:
    """Timestamps cut to milliseconds (the stored precision), rounding towards the past."""
    return stamps.dt.floor("ms").dt.as_unit("ms")


def parse_bool(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Booleans (true/false, yes/no, 1/0, y/n; case-insensitive) and the bad mask."""
    lowered = values.str.lower()
    truthy = lowered.isin(["true", "t", "yes", "y", "1"]).to_numpy()
    falsy = lowered.isin(["false", "f", "no", "n", "0"]).to_numpy()
    bad = ~(truthy | falsy) & ~blank(values)
    return truthy, bad


def bad_ids(values: pd.Series) -> np.ndarray:
    """Mask of non-empty ids that break the id rule (see ``schema.ID_PATTERN``)."""
    ok = values.str.fullmatch(ID_PATTERN.pattern.strip("^$")).fillna(False).to_numpy(bool)
    return ~ok & ~blank(values)


def parse_country(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """ISO alpha-2 codes from codes or country names, and the mask of unknown names.

    Names that denote no single country (``Unspecified``) give ``None``.
    """
    lookup: dict[str, str | None] = {}
    unknown: set[str] = set()
    for name in pd.unique(values):
        if name == "":
            lookup[name] = None
            continue
        try:
            lookup[name] = markets.country_code(name)
        except LookupError:
            unknown.add(name)
    codes = values.map(lookup).to_numpy(object).copy()  # a dict map: no call per row
    codes[pd.isna(codes)] = None
    return codes, values.isin(unknown).to_numpy()


def parse_currency(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Upper-cased ISO 4217 codes and the mask of unknown codes."""
    upper = values.str.upper()
    known = {code: code == "" or markets.is_currency(code) for code in pd.unique(upper)}
    ok = upper.map(known).to_numpy(bool)
    return upper.where(upper != "").to_numpy(object), ~ok


def as_text(values: pd.Series) -> np.ndarray:
    """Values as an object array with ``None`` for empty."""
    out = values.to_numpy(dtype=object, na_value=None).copy()
    out[blank(values)] = None
    return out


def check_column_type(raw: pd.DataFrame, name: str, bad: np.ndarray, kind: str, source: str):
    """Raise if a column has values and none of them parses: a wrong type, not a bad row."""
    if name not in raw.columns:
        return
    present = ~blank(column(raw, name))
    if present.sum() >= 3 and bad[present].all():
        example = column(raw, name)[present].iloc[0]
        raise DataError(
            f"{source}: column {name!r} should hold {kind} but no value parses "
            f"(first: {example!r}); check the column order and the --format"
        )
