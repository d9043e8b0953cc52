"""``POST /v1/events``: views, carts and purchases into live state and the event stream."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from serving.api import engine
from serving.auth import require_api_key
from serving.errors import ApiError
from serving.events import EventError, parse_body

bp = Blueprint("events", __name__, url_prefix="/v1")


@bp.post("/events")
@require_api_key
def post_events():
    """Accept one event or a batch; all or nothing."""
    eng = engine()
    body = json_body()
    try:
        events = parse_body(body, eng.config.max_events)
    except EventError as exc:
        raise ApiError(400, "bad_event", str(exc)) from None
    return jsonify(eng.record(events))


def json_body():
    """The request's JSON body, or a 400 / 415."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send JSON (Content-Type: application/json)")
    # a streamed body (chunked, no Content-Length) is cut at the limit without an error
    # (werkzeug's LimitedStream): 413 if anything is left after it
    limit = request.max_content_length
    if (
        request.content_length is None
        and limit is not None
        and len(request.get_data()) >= limit
        and request.environ["wsgi.input"].read(1)
    ):
        raise ApiError(413, "body_too_large", f"the body is larger than {limit} bytes")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser goes (silent covers ValueError only)
        body = None
    if body is None:
        raise ApiError(400, "bad_json", "the body is not valid JSON (or nested too deeply)")
    return body
