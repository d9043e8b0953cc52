"""Query parameters, validated: anything odd is a 400 with the parameter's name.

Ids follow ``recsys.data.schema.ID_PATTERN`` (no ``:``, no spaces, at most
64 characters), so no input can address another Redis key. A ``Query`` reads
the request's parsed arguments once (the request proxy is not cheap on the
hot path) and validates each parameter on demand.
"""

from __future__ import annotations

import math
from functools import lru_cache
from urllib.parse import unquote_plus

from recsys.data import markets
from recsys.data.schema import ID_PATTERN
from serving.config import ServingConfig
from serving.errors import bad_parameter

MAX_CATEGORY_CHARS = 300
_match_id = ID_PATTERN.match


def check_id(name: str, value: str) -> str:
    """``value`` if it is a valid id, else a 400."""
    if not _match_id(value):
        raise bad_parameter(
            f"{name}: {value[:80]!r} is not a valid id (1-64 of A-Z a-z 0-9 . _ @ + - / #)"
        )
    return value


def finite_number(value) -> bool:
    """True for a JSON number (int or float, not a bool) that is a finite float;
    False also for integers too large for a float (``float()`` would raise)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def parse_query(text: str) -> dict[str, list[str]]:
    """A query string as ``{name: [values]}``, blank values kept: what
    ``urllib.parse.parse_qs(text, keep_blank_values=True)`` returns, at a third
    of its cost (only pairs holding ``%`` or ``+`` are unquoted)."""
    out: dict[str, list[str]] = {}
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "%" in pair or "+" in pair:
            name, value = unquote_plus(name), unquote_plus(value)
        values = out.get(name)
        if values is None:
            out[name] = [value]
        else:
            values.append(value)
    return out


@lru_cache(maxsize=1)
def _country_codes() -> dict[str, str]:
    """Every ISO 3166-1 alpha-2 code in any case (``de``, ``De``...) -> upper case."""
    out = {}
    for code in markets.country_codes():
        a, b = code
        for variant in (code, code.lower(), a + b.lower(), a.lower() + b):
            out[variant] = code
    return out


@lru_cache(maxsize=8)
def _counts(max_n: int) -> dict[str, int]:
    """``"1"`` .. ``str(max_n)`` -> the int."""
    return {str(n): n for n in range(1, max_n + 1)}


class Query:
    """The validated query parameters of one request."""

    __slots__ = ("args", "config")

    def __init__(self, args: dict[str, list[str]], config: ServingConfig):
        self.args = args
        self.config = config

    @classmethod
    def from_environ(cls, environ: dict, config: ServingConfig) -> Query:
        """The query of a request's WSGI environ, parsed once into a plain dict of
        value lists (cheaper than werkzeug's ``request.args``, a MultiDict that
        builds an HTTP exception for every missing key it is asked for, and than
        reading it through the ``request`` proxy)."""
        text = environ.get("QUERY_STRING", "")
        if not text.isascii():  # WSGI hands the raw bytes over as latin-1
            text = text.encode("latin-1").decode("utf-8", "replace")
        return cls(parse_query(text), config)

    def _get(self, name: str) -> str | None:
        values = self.args.get(name)
        return values[0] if values else None

    def one_id(self, name: str) -> str | None:
        """An optional id parameter."""
        value = self._get(name)
        if not value:
            return None
        return check_id(name, value)

    def id_list(self, name: str) -> list[str]:
        """A comma-separated list of ids (repeated parameters are joined)."""
        given = self.args.get(name)
        if not given:
            return []
        values = [v for raw in given for v in raw.split(",") if v != ""]
        if len(values) > self.config.max_ids:
            raise bad_parameter(f"{name}: at most {self.config.max_ids} ids")
        return [check_id(name, v.strip()) for v in values]

    def country(self) -> str | None:
        """An ISO 3166-1 alpha-2 code (any case), else the configured default."""
        value = self._get("country")
        if not value:
            return self.config.default_country
        code = _country_codes().get(value)
        if code is None:
            raise bad_parameter(f"country: {value[:20]!r} is not an ISO 3166-1 alpha-2 code")
        return code

    def count(self) -> int:
        """``n``: how many items (1..max_n; default default_n)."""
        value = self._get("n")
        if not value:
            return self.config.default_n
        n = _counts(self.config.max_n).get(value)
        if n is None:  # not the plain form of a count in range: "007", "0", "x", "²"
            plain = value.isascii() and value.isdigit() and len(value) <= 18
            n = int(value) if plain else 0
            if not 1 <= n <= self.config.max_n:
                raise bad_parameter(
                    f"n: expected an integer in 1..{self.config.max_n}, got {value[:20]!r}"
                )
        return n

    def category(self) -> str | None:
        """A category path (levels joined by `` > ``)."""
        value = self._get("category")
        if not value:
            return None
        if len(value) > MAX_CATEGORY_CHARS or not value.isprintable():
            raise bad_parameter(f"category: at most {MAX_CATEGORY_CHARS} printable characters")
        return value

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        """One of ``allowed`` (the first is the default)."""
        value = self._get(name) or allowed[0]
        if value not in allowed:
            raise bad_parameter(f"{name}: expected one of {', '.join(allowed)}")
        return value
