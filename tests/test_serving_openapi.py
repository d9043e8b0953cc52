"""The OpenAPI document against what the endpoints really answer and accept."""

# ruff: noqa: F401, F811 (pytest fixtures are imported, then named as arguments)

from __future__ import annotations

from serving_fixtures import API_KEY, _free_port, app, client, make_config, shop

from serving import create_app

AUTH = {"X-API-Key": API_KEY}
EVENT = {"type": "view", "user_id": "u", "item_id": "a1"}


def _statuses(shop, client) -> dict[tuple[str, str], set[int]]:
    """Every status each operation answers, provoked one by one."""
    url, _, keys, _ = shop
    keyless = create_app(make_config(url, keys.prefix, api_key=None)).test_client()
    unpublished = create_app(make_config(url, f"{keys.prefix}-none")).test_client()
    down_url = f"redis://127.0.0.1:{_free_port()}/0"  # nothing listens there
    down = create_app(make_config(down_url, keys.prefix, redis_timeout_s=0.2)).test_client()
    json_type = {"Content-Type": "application/json"}
    too_big = b'{"pad": "' + b"x" * 300_000 + b'"}'
    calls = {
        ("/v1/recommendations", "get"): [
            (client, "get", "/v1/recommendations?user_id=alice", {}),
            (client, "get", "/v1/recommendations?n=0", {}),
            (unpublished, "get", "/v1/recommendations", {}),
        ],
        ("/v1/items/{item_id}/similar", "get"): [
            (client, "get", "/v1/items/a1/similar", {}),
            (client, "get", "/v1/items/a:1/similar", {}),
            (unpublished, "get", "/v1/items/a1/similar", {}),
        ],
        ("/v1/popular", "get"): [
            (client, "get", "/v1/popular", {}),
            (client, "get", "/v1/popular?kind=x", {}),
            (unpublished, "get", "/v1/popular", {}),
        ],
        ("/v1/events", "post"): [
            (client, "post", "/v1/events", {"json": EVENT, "headers": AUTH}),
            (client, "post", "/v1/events", {"json": {"type": "x"}, "headers": AUTH}),
            (client, "post", "/v1/events", {"json": EVENT}),
            (keyless, "post", "/v1/events", {"json": EVENT, "headers": AUTH}),
            (client, "post", "/v1/events", {"data": too_big, "headers": {**AUTH, **json_type}}),
            (client, "post", "/v1/events", {"data": "x", "headers": AUTH}),
            (down, "post", "/v1/events", {"json": EVENT, "headers": AUTH}),
        ],
        ("/v1/admin/rules", "get"): [
            (client, "get", "/v1/admin/rules", {"headers": AUTH}),
            (client, "get", "/v1/admin/rules", {}),
            (keyless, "get", "/v1/admin/rules", {"headers": AUTH}),
        ],
        ("/v1/admin/rules/{market}", "put"): [
            (client, "put", "/v1/admin/rules/GB", {"json": {}, "headers": AUTH}),
            (client, "put", "/v1/admin/rules/XX", {"json": {}, "headers": AUTH}),
            (client, "put", "/v1/admin/rules/GB", {"json": {}}),
            (keyless, "put", "/v1/admin/rules/GB", {"json": {}, "headers": AUTH}),
            (
                client,
                "put",
                "/v1/admin/rules/GB",
                {"data": too_big, "headers": {**AUTH, **json_type}},
            ),
            (client, "put", "/v1/admin/rules/GB", {"data": "x", "headers": AUTH}),
            (down, "put", "/v1/admin/rules/GB", {"json": {}, "headers": AUTH}),
        ],
        ("/v1/admin/rules/{market}", "delete"): [
            (client, "delete", "/v1/admin/rules/GB", {"headers": AUTH}),
            (client, "delete", "/v1/admin/rules/XX", {"headers": AUTH}),
            (client, "delete", "/v1/admin/rules/GB", {}),
            (keyless, "delete", "/v1/admin/rules/GB", {"headers": AUTH}),
            (down, "delete", "/v1/admin/rules/GB", {"headers": AUTH}),
        ],
        ("/readyz", "get"): [(client, "get", "/readyz", {}), (down, "get", "/readyz", {})],
    }
    out = {}
    for operation, requests in calls.items():
        out[operation] = {
            getattr(c, method)(path, **kw).status_code for c, method, path, kw in requests
        }
    return out


def test_every_status_an_operation_answers_is_documented(shop, client):
    paths = client.get("/v1/openapi.json").get_json()["paths"]
    for (path, method), statuses in _statuses(shop, client).items():
        documented = {int(s) for s in paths[path][method]["responses"]}
        assert statuses <= documented, (path, method, sorted(statuses - documented))


def _fields(schema: dict, schemas: dict) -> tuple[set[str], set[str]]:
    if "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    return set(schema["properties"]), set(schema.get("required", ()))


def test_list_answers_hold_the_documented_fields(client):
    doc = client.get("/v1/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    listed, required = _fields(schemas["List"], schemas)
    item_fields, item_required = _fields(schemas["Item"], schemas)
    for path in (
        "/v1/recommendations?user_id=alice&country=GB",
        "/v1/items/a1/similar?country=GB",
        "/v1/popular?country=GB",
    ):
        body = client.get(path).get_json()
        assert required <= set(body) <= listed, (path, set(body) - listed)
        for item in body["items"]:
            assert item_required <= set(item) <= item_fields, (path, item)


def test_the_event_schema_states_what_the_endpoint_refuses(client):
    doc = client.get("/v1/openapi.json").get_json()
    event = doc["components"]["schemas"]["Event"]
    # no user_id and no session_id: the document must not allow it (the API says 400)
    assert {"required": ["user_id"]} in event["anyOf"]
    assert {"required": ["session_id"]} in event["anyOf"]
    assert event["properties"]["quantity"]["maximum"] == 1_000_000
    assert event["dependentRequired"] == {"price": ["currency"]}
    for bad, fragment in (
        ({**EVENT, "user_id": None}, "user_id or session_id"),
        ({**EVENT, "quantity": 1_000_001}, "quantity"),
        ({**EVENT, "price": 1.0}, "currency"),
    ):
        response = client.post("/v1/events", json=bad, headers=AUTH)
        assert response.status_code == 400 and fragment in response.get_json()["error"]["message"]
    batch = doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    wrapped = batch["schema"]["oneOf"][2]
    assert wrapped["additionalProperties"] is False
    assert wrapped["properties"]["events"]["minItems"] == 1
    response = client.post("/v1/events", json={"events": [EVENT], "x": 1}, headers=AUTH)
    assert response.status_code == 400


def test_the_rules_schema_states_what_the_endpoint_refuses(client):
    rules = client.get("/v1/openapi.json").get_json()["components"]["schemas"]["Rules"]
    pinned, boost = rules["properties"]["pinned"], rules["properties"]["boost"]
    factor = boost["additionalProperties"]
    for body, allowed in (
        ({"pinned": [f"i{n}" for n in range(pinned["maxItems"])]}, True),
        ({"pinned": [f"i{n}" for n in range(pinned["maxItems"] + 1)]}, False),
        ({"boost": {"i1": factor["maximum"]}}, True),
        ({"boost": {"i1": factor["maximum"] * 1.01}}, False),
        ({"boost": {"i1": factor["exclusiveMinimum"]}}, False),
        ({"boost": {f"i{n}": 2.0 for n in range(boost["maxProperties"] + 1)}}, False),
        ({"boost": {"a:1": 2.0}}, False),  # not a valid id (propertyNames)
    ):
        status = client.put("/v1/admin/rules/GB", json=body, headers=AUTH).status_code
        assert status == (200 if allowed else 400), (body if len(str(body)) < 200 else "", status)
    assert boost["propertyNames"] == pinned["items"]
