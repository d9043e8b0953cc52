"""The OpenAPI 3.1 document served at ``/v1/openapi.json``."""

from __future__ import annotations

from flask import Blueprint, jsonify

from serving.rules import MAX_BOOSTED, MAX_FACTOR, MAX_PINNED

bp = Blueprint("openapi", __name__, url_prefix="/v1")

_ID = {"type": "string", "pattern": r"^[A-Za-z0-9._@+\-/#]{1,64}$"}
_IDS = {"type": "string", "description": "comma-separated ids (at most max_ids)"}


def _query(name: str, schema: dict, description: str) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


COUNTRY = _query(
    "country",
    {"type": "string", "pattern": "^[A-Za-z]{2}$"},
    "Visitor's market (ISO 3166-1 alpha-2): only items sold and in stock there, priced "
    "in its currency.",
)
N = _query("n", {"type": "integer", "minimum": 1}, "How many items (default 10, at most max_n).")
CATEGORY = _query(
    "category",
    {"type": "string"},
    "Category path (levels joined by ' > '); sub-categories included.",
)
EXCLUDE = _query("exclude", _IDS, "Item ids never to list (e.g. the cart).")

ERROR = {
    "description": "Error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _errors(*codes: int) -> dict:
    """Error answers (``{"error": {"code", "message"}}``) under these status codes."""
    return {str(code): ERROR for code in codes}


LIST = {
    "description": "A list",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/List"}}},
}
SECURED = [{"apiKey": []}]
MARKET = {
    "name": "market",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^([A-Za-z]{2}|_)$"},
    "description": "ISO 3166-1 alpha-2 code (any case) or '_' (every market).",
}
EVENTS = {
    "type": "array",
    "items": {"$ref": "#/components/schemas/Event"},
    "minItems": 1,
    "description": "At most max_events (default 500) events.",
}

DOCUMENT = {
    "openapi": "3.1.0",
    "info": {
        "title": "recsys-shop serving API",
        "version": "1",
        "description": "Personalized, market-eligible product lists for every storefront "
        "visitor, events in, merchandising rules, health and metrics.",
    },
    "paths": {
        "/v1/recommendations": {
            "get": {
                "summary": "The visitor's list: personalized, else session-based, else "
                "popular in the country, else popular overall",
                "parameters": [
                    _query("user_id", _ID, "Customer id (unknown customers get the fallback)."),
                    _query(
                        "session_id",
                        _ID,
                        "Session id whose recent views (POST /v1/events; newest by "
                        "the events' own times) feed session recommendations.",
                    ),
                    _query("session_items", _IDS, "Items viewed in this session, newest first."),
                    COUNTRY,
                    N,
                    CATEGORY,
                    EXCLUDE,
                ],
                "responses": {"200": LIST, "400": ERROR, "503": ERROR},
            }
        },
        "/v1/items/{item_id}/similar": {
            "get": {
                "summary": "Items similar to one item, sold in the visitor's market",
                "parameters": [
                    {"name": "item_id", "in": "path", "required": True, "schema": _ID},
                    COUNTRY,
                    N,
                    CATEGORY,
                    EXCLUDE,
                ],
                "responses": {"200": LIST, "400": ERROR, "503": ERROR},
            }
        },
        "/v1/popular": {
            "get": {
                "summary": "Popular (or trending) items in the visitor's market",
                "parameters": [
                    COUNTRY,
                    CATEGORY,
                    N,
                    _query("kind", {"enum": ["popular", "trending"]}, "List kind."),
                ],
                "responses": {"200": LIST, "400": ERROR, "503": ERROR},
            }
        },
        "/v1/events": {
            "post": {
                "summary": "One event or a batch: views, carts, purchases. Updates live state "
                "at once and appends to the event stream (all or nothing).",
                "security": SECURED,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/Event"},
                                    EVENTS,
                                    {
                                        "type": "object",
                                        "properties": {"events": EVENTS},
                                        "required": ["events"],
                                        "additionalProperties": False,
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "Accepted: count and stream entry ids",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Accepted"}
                            }
                        },
                    },
                    **_errors(400, 401, 403, 413, 415, 503),
                },
            }
        },
        "/v1/admin/rules": {
            "get": {
                "summary": "Rules in force per market",
                "security": SECURED,
                "responses": {
                    "200": {"description": "Rules per market"},
                    **_errors(401, 403),
                },
            }
        },
        "/v1/admin/rules/{market}": {
            "put": {
                "summary": "Replace a market's pinned / boosted items ('_': every market)",
                "security": SECURED,
                "parameters": [MARKET],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Rules"}}
                    },
                },
                "responses": {
                    "200": {"description": "Stored"},
                    **_errors(400, 401, 403, 413, 415, 503),
                },
            },
            "delete": {
                "summary": "Remove a market's stored rules (the rules file's apply again)",
                "security": SECURED,
                "parameters": [MARKET],
                "responses": {
                    "200": {"description": "Deleted"},
                    **_errors(400, 401, 403, 503),
                },
            },
        },
        "/v1/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}
        },
        "/healthz": {"get": {"summary": "Alive", "responses": {"200": {"description": "ok"}}}},
        "/readyz": {
            "get": {
                "summary": "Redis reachable and a snapshot loaded (with its version)",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not"}},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text format)",
                "responses": {"200": {"description": "metrics"}},
            }
        },
    },
    "components": {
        "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                        },
                        "required": ["code", "message"],
                    }
                },
                "required": ["error"],
            },
            "Item": {
                "type": "object",
                "properties": {
                    "item_id": _ID,
                    "score": {"type": ["number", "null"]},
                    "price": {"type": ["number", "null"]},
                    "currency": {"type": ["string", "null"]},
                    "category": {"type": ["string", "null"]},
                    "source": {"type": "string"},
                },
                "required": ["item_id", "score", "price", "currency", "category", "source"],
            },
            "List": {
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                    "source": {
                        "enum": [
                            "pinned",
                            "personalized",
                            "session",
                            "similar",
                            "trending_country",
                            "trending",
                            "popular_country",
                            "popular",
                            "catalog",
                            "none",
                        ]
                    },
                    "version": {"type": "string"},
                    "degraded": {"type": "boolean"},
                    "country": {"type": ["string", "null"]},
                    "user_known": {
                        "type": ["boolean", "null"],
                        "description": "Recommendations: the customer has published candidates "
                        "(null when degraded: not looked up).",
                    },
                    "item_known": {
                        "type": "boolean",
                        "description": "Similar items: the snapshot knows the item.",
                    },
                },
                "required": ["items", "source", "version", "degraded"],
            },
            "Event": {
                "type": "object",
                "properties": {
                    "type": {"enum": ["view", "add_to_cart", "cart", "purchase"]},
                    "item_id": _ID,
                    "user_id": _ID,
                    "session_id": _ID,
                    "timestamp": {"type": "string", "format": "date-time"},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
                    "price": {"type": "number", "minimum": 0},
                    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                    "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
                },
                "required": ["type", "item_id"],
                "anyOf": [{"required": ["user_id"]}, {"required": ["session_id"]}],
                "dependentRequired": {"price": ["currency"]},
                "additionalProperties": False,
            },
            "Accepted": {
                "type": "object",
                "properties": {
                    "accepted": {"type": "integer"},
                    "stream_ids": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["accepted", "stream_ids"],
            },
            "Rules": {
                "type": "object",
                "properties": {
                    "pinned": {"type": "array", "items": _ID, "maxItems": MAX_PINNED},
                    "boost": {
                        "type": "object",
                        "propertyNames": _ID,
                        "additionalProperties": {
                            "type": "number",
                            "exclusiveMinimum": 0,
                            "maximum": MAX_FACTOR,
                        },
                        "maxProperties": MAX_BOOSTED,
                        "description": "Factor per item: above 1 lifts, below 1 sinks.",
                    },
                },
                "additionalProperties": False,
            },
        },
    },
}


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI document."""
    return jsonify(DOCUMENT)
