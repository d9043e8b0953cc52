"""Countries, currencies and languages: ISO codes and the markets we know.

Validation uses the ISO tables of ``pycountry``; ``MARKETS`` holds the default
currency and language of the countries a cross-border shop usually sells to.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import pycountry


@dataclass(frozen=True)
class Market:
    """A country a shop sells to, with its currency and main language."""

    country: str  # ISO 3166-1 alpha-2
    currency: str  # ISO 4217
    language: str  # ISO 639-1


MARKETS: dict[str, Market] = {
    m.country: m
    for m in (
        Market("GB", "GBP", "en"),
        Market("IE", "EUR", "en"),
        Market("DE", "EUR", "de"),
        Market("AT", "EUR", "de"),
        Market("CH", "CHF", "de"),
        Market("FR", "EUR", "fr"),
        Market("BE", "EUR", "nl"),
        Market("NL", "EUR", "nl"),
        Market("LU", "EUR", "fr"),
        Market("ES", "EUR", "es"),
        Market("PT", "EUR", "pt"),
        Market("IT", "EUR", "it"),
        Market("MT", "EUR", "en"),
        Market("CY", "EUR", "el"),
        Market("GR", "EUR", "el"),
        Market("FI", "EUR", "fi"),
        Market("LT", "EUR", "lt"),
        Market("SE", "SEK", "sv"),
        Market("NO", "NOK", "no"),
        Market("DK", "DKK", "da"),
        Market("IS", "ISK", "is"),
        Market("PL", "PLN", "pl"),
        Market("CZ", "CZK", "cs"),
        Market("US", "USD", "en"),
        Market("CA", "CAD", "en"),
        Market("BR", "BRL", "pt"),
        Market("AU", "AUD", "en"),
        Market("JP", "JPY", "ja"),
        Market("SG", "SGD", "en"),
        Market("HK", "HKD", "zh"),
        Market("IL", "ILS", "he"),
        Market("AE", "AED", "ar"),
        Market("SA", "SAR", "ar"),
        Market("BH", "BHD", "ar"),
        Market("LB", "LBP", "ar"),
        Market("ZA", "ZAR", "en"),
    )
}

#: Names used in real shop exports that ISO lookups do not know.
COUNTRY_ALIASES: dict[str, str | None] = {
    "EIRE": "IE",
    "RSA": "ZA",
    "USA": "US",
    "UK": "GB",
    # Names that are not one country: kept as an unknown country.
    "CHANNEL ISLANDS": None,
    "EUROPEAN COMMUNITY": None,
    "UNSPECIFIED": None,
}


def is_country(code: str) -> bool:
    """True if ``code`` is an ISO 3166-1 alpha-2 country code (upper case)."""
    return code in _country_codes()


def country_codes() -> frozenset[str]:
    """Every ISO 3166-1 alpha-2 country code (upper case)."""
    return _country_codes()


def is_currency(code: str) -> bool:
    """True if ``code`` is an ISO 4217 currency code (upper case)."""
    return code in _currency_codes()


def is_language(code: str) -> bool:
    """True if ``code`` is an ISO 639-1 two-letter language code (lower case)."""
    return code in _language_codes()


@lru_cache(maxsize=1024)
def country_code(name: str) -> str | None:
    """The ISO alpha-2 code of a country name or code; ``None`` for names
    that do not denote one country (``Unspecified``, ``European Community``).

    Raises ``LookupError`` for a name nobody knows.
    """
    key = name.strip().upper()
    if key in COUNTRY_ALIASES:
        return COUNTRY_ALIASES[key]
    if is_country(key):
        return key
    return pycountry.countries.lookup(name.strip()).alpha_2


@lru_cache(maxsize=1)
def _country_codes() -> frozenset[str]:
    return frozenset(c.alpha_2 for c in pycountry.countries)


@lru_cache(maxsize=1)
def _currency_codes() -> frozenset[str]:
    return frozenset(c.alpha_3 for c in pycountry.currencies)


@lru_cache(maxsize=1)
def _language_codes() -> frozenset[str]:
    return frozenset(lang.alpha_2 for lang in pycountry.languages if hasattr(lang, "alpha_2"))
