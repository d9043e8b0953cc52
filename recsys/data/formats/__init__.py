"""Import formats: each turns a source into batches of canonical rows and rejects."""

from recsys.data.formats.canonical import import_customers, import_events, import_items
from recsys.data.formats.movielens import import_movielens
from recsys.data.formats.online_retail import import_online_retail
from recsys.data.formats.stream import import_stream

#: Format name (as given to ``recsys data import --format``) -> adapter.
ADAPTERS = {
    "events": import_events,
    "items": import_items,
    "customers": import_customers,
    "online-retail": import_online_retail,
    "movielens": import_movielens,
    "stream": import_stream,  # SRC: `redis` or a Redis URL (see formats/stream.py)
}
