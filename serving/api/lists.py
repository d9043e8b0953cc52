"""Read endpoints: recommendations, similar items, popular items.

These are the storefront's hot path, so the blueprint is made per app with its
views closed over the app's engine, and each view reads the WSGI environ once:
every lookup through Flask's context proxies (``current_app``, ``request``)
costs about as much as parsing the whole query string.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from serving.engine import Engine, Placement, Visitor
from serving.params import Query, check_id


def create_blueprint(eng: Engine) -> Blueprint:
    """The list endpoints of one app, answering from ``eng``."""
    bp = Blueprint("lists", __name__, url_prefix="/v1")
    config = eng.config

    @bp.get("/recommendations")
    def recommendations():
        """The visitor's list (personalized, else session-based, else popular)."""
        query = Query.from_environ(request.environ, config)
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
        query = Query.from_environ(request.environ, config)
        item_id = check_id("item_id", item_id)
        return _json(eng.similar(item_id, _placement(query), query.id_list("exclude")))

    @bp.get("/popular")
    def popular():
        """Popular (or trending) items in the visitor's market and category."""
        query = Query.from_environ(request.environ, config)
        place = _placement(query)
        return _json(eng.popular(place, query.choice("kind", ("popular", "trending"))))

    return bp


def _placement(query: Query) -> Placement:
    return Placement(query.country(), query.count(), query.category())


def _json(answer) -> Response:
    return Response(answer.to_json(), mimetype="application/json")
