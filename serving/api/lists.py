"""Read endpoints: recommendations, similar items, popular items."""

from __future__ import annotations

from flask import Blueprint, Response, request

from serving.api import engine
from serving.engine import Placement, Visitor
from serving.params import Query, check_id

bp = Blueprint("lists", __name__, url_prefix="/v1")


@bp.get("/recommendations")
def recommendations():
    """The visitor's list (personalized, else session-based, else popular)."""
    eng = engine()
    query = Query.of(request, eng.config)
    visitor = Visitor(
        user_id=query.one_id("user_id"),
        session_id=query.one_id("session_id"),
        session_items=query.id_list("session_items"),
        exclude=query.id_list("exclude"),
    )
    return _json(eng.recommend(visitor, _placement(query)))


@bp.get("/items/<path:item_id>/similar")
def similar(item_id: str):
    """Items similar to one item, sold in the visitor's market."""
    eng = engine()
    query = Query.of(request, eng.config)
    item_id = check_id("item_id", item_id)
    return _json(eng.similar(item_id, _placement(query), query.id_list("exclude")))


@bp.get("/popular")
def popular():
    """Popular (or trending) items in the visitor's market and category."""
    eng = engine()
    query = Query.of(request, eng.config)
    place = _placement(query)
    return _json(eng.popular(place, query.choice("kind", ("popular", "trending"))))


def _placement(query: Query) -> Placement:
    return Placement(query.country(), query.count(), query.category())


def _json(answer) -> Response:
    return Response(answer.to_json(), mimetype="application/json")
