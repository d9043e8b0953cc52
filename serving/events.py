"""Incoming storefront events: validation, and their fields in the event stream.

An event is a JSON object ``{"type", "item_id", "user_id" and/or
"session_id", "timestamp"?, "quantity"?, "price"?, "currency"?,
"country"?}``. ``type`` is ``view``, ``add_to_cart`` (alias ``cart``) or
``purchase``. The stream entry holds the canonical event columns as text, so
``recsys data import --format stream`` validates it like any events file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from recsys.data import markets
from recsys.data.schema import ID_PATTERN
from serving.params import finite_number

#: Accepted ``type`` values -> canonical event type.
EVENT_TYPES = {
    "view": "view",
    "add_to_cart": "add_to_cart",
    "cart": "add_to_cart",
    "purchase": "purchase",
}
FIELDS = frozenset(
    {
        "type",
        "item_id",
        "user_id",
        "session_id",
        "timestamp",
        "quantity",
        "price",
        "currency",
        "country",
    }
)
MAX_FUTURE = timedelta(hours=1)


class EventError(ValueError):
    """An event that cannot be accepted; the message names the field."""


@dataclass(frozen=True)
class Event:
    """One validated event."""

    type: str
    item_id: str
    user_id: str | None
    session_id: str | None
    timestamp: datetime
    quantity: int = 1
    price: float | None = None
    currency: str | None = None
    country: str | None = None

    def stream_fields(self) -> dict[str, str]:
        """The stream entry: canonical event columns as text (empty ones left out)."""
        fields = {
            "timestamp": self.timestamp.isoformat(timespec="milliseconds"),
            "item_id": self.item_id,
            "type": self.type,
            "quantity": str(self.quantity),
            "user_id": self.user_id,
            "session_id": self.session_id,
            "price": None if self.price is None else repr(self.price),
            "currency": self.currency,
            "country": self.country,
        }
        return {k: v for k, v in fields.items() if v is not None}


def parse_body(body, max_events: int) -> list[Event]:
    """Events from a request body: one event object, ``{"events": [...]}`` or a list.

    Raises ``EventError`` naming the first bad event and field; nothing is
    accepted from a body with a bad event.
    """
    if isinstance(body, dict) and "events" in body:
        if set(body) != {"events"} or not isinstance(body["events"], list):
            raise EventError('a batch is {"events": [...]} with no other field')
        body = body["events"]
    items = body if isinstance(body, list) else [body]
    if not items:
        raise EventError("no events")
    if len(items) > max_events:
        raise EventError(f"at most {max_events} events per request, got {len(items)}")
    now = datetime.now(UTC)
    out = []
    for position, obj in enumerate(items):
        try:
            out.append(parse_event(obj, now))
        except EventError as exc:
            prefix = f"events[{position}]: " if len(items) > 1 or isinstance(body, list) else ""
            raise EventError(prefix + str(exc)) from None
    return out


def parse_event(obj, now: datetime) -> Event:
    """One validated event."""
    if not isinstance(obj, dict):
        raise EventError("an event is a JSON object")
    unknown = set(obj) - FIELDS
    if unknown:
        raise EventError(f"unknown field(s) {', '.join(sorted(unknown))}")
    etype = obj.get("type")
    if not isinstance(etype, str) or etype not in EVENT_TYPES:
        raise EventError(f"type must be one of {', '.join(sorted(EVENT_TYPES))}")
    item = _id(obj, "item_id", required=True)
    user, session = _id(obj, "user_id"), _id(obj, "session_id")
    if user is None and session is None:
        raise EventError("user_id or session_id is required")
    quantity = obj.get("quantity", 1)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 < quantity <= 10**6:
        raise EventError("quantity must be an integer in 1..1000000")
    price = obj.get("price")
    if price is not None and (not finite_number(price) or price < 0):
        raise EventError("price must be a number >= 0")
    currency = obj.get("currency")
    if currency is not None and (
        not isinstance(currency, str) or not markets.is_currency(currency)
    ):
        raise EventError("currency must be an ISO 4217 code")
    if price is not None and currency is None:
        raise EventError("a price needs its currency")
    country = obj.get("country")
    if country is not None and (not isinstance(country, str) or not markets.is_country(country)):
        raise EventError("country must be an ISO 3166-1 alpha-2 code")
    return Event(
        type=EVENT_TYPES[etype],
        item_id=item,
        user_id=user,
        session_id=session,
        timestamp=_timestamp(obj.get("timestamp"), now),
        quantity=quantity,
        price=None if price is None else float(price),
        currency=currency,
        country=country,
    )


def _id(obj: dict, name: str, required: bool = False) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise EventError(f"{name} is required")
        return None
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise EventError(f"{name} must match {ID_PATTERN.pattern}")
    return value


def _timestamp(value, now: datetime) -> datetime:
    if value is None:
        return now
    if not isinstance(value, str):
        raise EventError("timestamp must be an ISO 8601 string")
    try:
        stamp = datetime.fromisoformat(value)
        stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: a zone shift past year 1 or 9999
        raise EventError("timestamp must be an ISO 8601 string") from None
    if stamp > now + MAX_FUTURE:
        raise EventError("timestamp is in the future")
    return stamp
