"""Admin endpoints: pinned and boosted items per market."""

from __future__ import annotations

from flask import Blueprint, jsonify

from serving.api import engine
from serving.api.events import json_body
from serving.auth import require_api_key
from serving.errors import ApiError
from serving.rules import RulesError, check_market, parse_rules

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")


@bp.get("/rules")
@require_api_key
def list_rules():
    """Every market's rules in force (file rules replaced per market by stored ones)."""
    eng = engine()
    eng.warm_up()
    return jsonify({"rules": {m: r.as_dict() for m, r in sorted(eng.rules().items())}})


@bp.put("/rules/<market>")
@require_api_key
def put_rules(market: str):
    """Replace one market's rules (``_``: every market)."""
    eng = engine()
    try:
        market = check_market(market)
        rules = parse_rules(json_body())
    except RulesError as exc:
        raise ApiError(400, "bad_rules", str(exc)) from None
    eng.set_rules(market, rules)
    unknown = eng.unknown_items([*rules.pinned, *rules.boost])
    return jsonify({"market": market, "rules": rules.as_dict(), "unknown_items": unknown})


@bp.delete("/rules/<market>")
@require_api_key
def delete_rules(market: str):
    """Remove one market's stored rules."""
    eng = engine()
    try:
        market = check_market(market)
    except RulesError as exc:
        raise ApiError(400, "bad_rules", str(exc)) from None
    eng.set_rules(market, None)
    return jsonify({"market": market, "deleted": True})
