"""Query parameters, validated: anything odd is a 400 with the parameter's name.

Ids follow ``recsys.data.schema.ID_PATTERN`` (no ``:``, no spaces, at most
64 characters), so no input can address another Redis key.
"""

from __future__ import annotations

import re

from flask import request

from recsys.data import markets
from recsys.data.schema import ID_PATTERN
from serving.config import ServingConfig
from serving.errors import bad_parameter

MAX_CATEGORY_CHARS = 300
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")


def one_id(name: str) -> str | None:
    """An optional id parameter."""
    value = request.args.get(name)
    if value is None or value == "":
        return None
    return check_id(name, value)


def check_id(name: str, value: str) -> str:
    """``value`` if it is a valid id, else a 400."""
    if not ID_PATTERN.match(value):
        raise bad_parameter(
            f"{name}: {value[:80]!r} is not a valid id (1-64 of A-Z a-z 0-9 . _ @ + - / #)"
        )
    return value


def id_list(name: str, config: ServingConfig) -> list[str]:
    """A comma-separated list of ids (repeated parameters are joined)."""
    values = [v for raw in request.args.getlist(name) for v in raw.split(",") if v != ""]
    if len(values) > config.max_ids:
        raise bad_parameter(f"{name}: at most {config.max_ids} ids")
    return [check_id(name, v.strip()) for v in values]


def country(config: ServingConfig) -> str | None:
    """An ISO 3166-1 alpha-2 code (any case), else the configured default."""
    value = request.args.get("country")
    if value is None or value == "":
        return config.default_country
    if not _COUNTRY.match(value) or not markets.is_country(value.upper()):
        raise bad_parameter(f"country: {value[:20]!r} is not an ISO 3166-1 alpha-2 code")
    return value.upper()


def count(config: ServingConfig) -> int:
    """``n``: how many items (1..max_n; default default_n)."""
    value = request.args.get("n")
    if value is None or value == "":
        return config.default_n
    if not value.isdigit() or not 1 <= int(value) <= config.max_n:
        raise bad_parameter(f"n: expected an integer in 1..{config.max_n}, got {value[:20]!r}")
    return int(value)


def category() -> str | None:
    """A category path (levels joined by `` > ``)."""
    value = request.args.get("category")
    if value is None or value == "":
        return None
    if len(value) > MAX_CATEGORY_CHARS or not value.isprintable():
        raise bad_parameter(f"category: at most {MAX_CATEGORY_CHARS} printable characters")
    return value


def choice(name: str, allowed: tuple[str, ...]) -> str:
    """One of ``allowed`` (the first is the default)."""
    value = request.args.get(name) or allowed[0]
    if value not in allowed:
        raise bad_parameter(f"{name}: expected one of {', '.join(allowed)}")
    return value
