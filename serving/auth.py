"""The API key of write and admin endpoints (header ``X-API-Key``)."""

from __future__ import annotations

import functools
import hmac

from flask import current_app, request

from serving.errors import ApiError

HEADER = "X-API-Key"


def require_api_key(view):
    """Refuse the request unless it carries the configured key (401), or when no key
    is configured (403: writes are off)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        expected = current_app.extensions["recsys"].config.api_key
        if not expected:
            raise ApiError(
                403,
                "writes_disabled",
                "no API key is configured: set RECSYS_API_KEY to allow writes",
            )
        given = request.headers.get(HEADER, "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(401, "unauthorized", f"missing or wrong {HEADER} header")
        return view(*args, **kwargs)

    return wrapper
