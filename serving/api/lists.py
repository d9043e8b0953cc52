"""Read endpoints: recommendations, similar items, popular items."""

from __future__ import annotations

from flask import Blueprint, Response

from serving import params
from serving.api import engine
from serving.engine import Placement, Visitor

bp = Blueprint("lists", __name__, url_prefix="/v1")


@bp.get("/recommendations")
def recommendations():
    """The visitor's list (personalized, else session-based, else popular)."""
    eng = engine()
    cfg = eng.config
    visitor = Visitor(
        user_id=params.one_id("user_id"),
        session_id=params.one_id("session_id"),
        session_items=params.id_list("session_items", cfg),
        exclude=params.id_list("exclude", cfg),
    )
    place = Placement(params.country(cfg), params.count(cfg), params.category())
    return _json(eng.recommend(visitor, place))


@bp.get("/items/<path:item_id>/similar")
def similar(item_id: str):
    """Items similar to one item, sold in the visitor's market."""
    eng = engine()
    cfg = eng.config
    item_id = params.check_id("item_id", item_id)
    place = Placement(params.country(cfg), params.count(cfg), params.category())
    return _json(eng.similar(item_id, place, params.id_list("exclude", cfg)))


@bp.get("/popular")
def popular():
    """Popular (or trending) items in the visitor's market and category."""
    eng = engine()
    cfg = eng.config
    place = Placement(params.country(cfg), params.count(cfg), params.category())
    kind = params.choice("kind", ("popular", "trending"))
    return _json(eng.popular(place, kind))


def _json(answer) -> Response:
    return Response(answer.to_json(), mimetype="application/json")
