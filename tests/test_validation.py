"""Bad ingest input gets a clear 4xx with a stable code, and nothing is stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from .helpers import API, backend_free, batch, event, headers


def stored_count(client: FlaskClient) -> int:
    """Rows stored under PROJECT_KEY (0 when the project does not exist yet)."""
    ok = client.post("/ingest", json=batch(event("click", eventId="probe")), headers=headers())
    assert ok.status_code == 200
    project = ok.get_json()["projectId"]
    rows = client.get(f"/api/projects/{project}/events", query_string={"limit": 1000}, headers=API).get_json()
    return len([r for r in rows["events"] if r["eventId"] != "probe"])


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    assert body["code"] == code
    assert {"error", "code", "message", "requestId"} <= set(body)
    assert body["requestId"] == response.headers["X-Request-Id"]
    assert response.headers["X-Heat-Collector"] == "heat-collector"
    assert "Traceback" not in response.get_data(as_text=True)
    return body


MISSING_REQUIRED = {
    "click": ["x", "y"],
    "move": ["points"],
    "scroll": ["scrollY", "scrollDepthPct"],
    "pageview": ["to"],
    "custom": ["name"],
    "input": ["action"],
    "keyboard": ["category"],
}


@backend_free
@pytest.mark.parametrize(("kind", "field"), [(k, f) for k, fs in MISSING_REQUIRED.items() for f in fs])
def test_each_type_requires_its_fields(client: FlaskClient, kind: str, field: str) -> None:
    bad = event(kind)
    del bad[field]
    body = assert_error(client.post("/ingest", json=batch(bad), headers=headers()), 400, "invalid_payload")
    assert field in body["details"]["events"]["0"] or field in str(body["details"])
    assert stored_count(client) == 0


@backend_free
@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.pop("session"),
        lambda b: b["session"].update(id=""),
        lambda b: b["session"].update(id={"$gt": ""}),
        lambda b: b.update(events=[]),
        lambda b: b.update(events="nope"),
        lambda b: b["events"][0].update(type="teleport"),
        lambda b: b["events"][0].update(x="10"),
        lambda b: b["events"][0].update(x=True),
        lambda b: b["events"][0].update(x=1e12),
        lambda b: b["events"][0].update(ts=-5),
        lambda b: b["events"][0].update(path={"$ne": None}),
        lambda b: b["events"][0].update(path="/" + "a" * 5000),
        lambda b: b["events"][0].update(eventId="e" * 500),
        lambda b: b["events"][0].pop("viewport"),
        lambda b: b["events"][0].update(meta={"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}),
        lambda b: b["events"][0].update(meta={"big": "x" * 20_000}),
        lambda b: b.update(user={"id": ["u"]}),
        lambda b: b["events"][0].update(type="input", action="type"),
    ],
)
def test_invalid_payloads(client: FlaskClient, mutate: Any) -> None:
    body = batch(event("click"))
    mutate(body)
    assert_error(client.post("/ingest", json=body, headers=headers()), 400, "invalid_payload")
    assert stored_count(client) == 0


@backend_free
def test_max_events_per_batch(make_app: Any) -> None:
    client = make_app(max_events_per_batch=3).test_client()
    too_many = batch(*[event("click") for _ in range(4)])
    assert_error(client.post("/ingest", json=too_many, headers=headers()), 400, "invalid_payload")
    assert client.post("/ingest", json=batch(*[event("click") for _ in range(3)]), headers=headers()).status_code == 200


@backend_free
@pytest.mark.parametrize(
    "raw",
    [b"{", b"not json", b'{"session": NaN}', b'{"a": Infinity}', b"\xff\xfe", b'{"s": "\\u0000"}', b'{"s": "\\ud800"}'],
)
def test_invalid_json(client: FlaskClient, raw: bytes) -> None:
    response = client.post("/ingest", data=raw, headers=headers(**{"Content-Type": "application/json"}))
    assert_error(response, 400, "invalid_json")


@backend_free
def test_valid_surrogate_pair_is_accepted(client: FlaskClient) -> None:
    raw = (
        b'{"session":{"id":"s"},"events":[{"eventId":"e","sessionId":"s","ts":1,"path":"/\\ud83d\\ude00",'
        b'"viewport":{"w":1,"h":1},"device":{},"type":"pageview","to":"/"}]}'
    )
    response = client.post("/ingest", data=raw, headers=headers(**{"Content-Type": "application/json"}))
    assert response.status_code == 200, response.get_json()


@backend_free
def test_body_too_large(make_app: Any) -> None:
    client = make_app(max_body_bytes=2000).test_client()
    big = batch(*[event("click") for _ in range(20)])
    assert_error(client.post("/ingest", json=big, headers=headers()), 413, "payload_too_large")


@backend_free
def test_wrong_content_type_and_encoding(client: FlaskClient) -> None:
    response = client.post(
        "/ingest", data=b"a=b", headers=headers(**{"Content-Type": "application/x-www-form-urlencoded"})
    )
    assert_error(response, 415, "unsupported_media_type")
    # gzip is accepted (tests/test_gzip.py); other encodings are not.
    response = client.post(
        "/ingest", data=b"x\x9c", headers=headers(**{"Content-Type": "application/json", "Content-Encoding": "deflate"})
    )
    assert_error(response, 415, "unsupported_media_type")


@backend_free
def test_text_plain_beacon_body_is_accepted(client: FlaskClient) -> None:
    import json

    response = client.post("/ingest", data=json.dumps(batch()), headers=headers(**{"Content-Type": "text/plain"}))
    assert response.status_code == 200


@backend_free
def test_project_key_required_and_sane(client: FlaskClient) -> None:
    assert_error(client.post("/ingest", json=batch()), 401, "missing_project_key")
    assert_error(client.post("/ingest", json=batch(), headers={"X-Project-Key": "  "}), 401, "missing_project_key")
    assert_error(client.post("/ingest", json=batch(), headers={"X-Project-Key": "k" * 300}), 403, "unknown_project_key")
    response = client.post("/ingest", json=batch(), headers=[("X-Project-Key", "a"), ("X-Project-Key", "b")])
    assert_error(response, 403, "unknown_project_key")


@backend_free
def test_rate_limit(make_app: Any) -> None:
    client = make_app(rate_limit="3 per minute").test_client()
    for remaining in ("2", "1", "0"):
        response = client.post("/ingest", json=batch(), headers=headers())
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Remaining"] == remaining
    refused = client.post("/ingest", json=batch(), headers=headers())
    body = assert_error(refused, 429, "rate_limited")
    assert body["error"] == "rate limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == "3"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    # Another project key from the same IP has its own window.
    assert client.post("/ingest", json=batch(), headers=headers("other-key")).status_code == 200


@backend_free
def test_cors_preflight_and_headers(make_app: Any) -> None:
    client = make_app(allowed_origins=["http://shop.example"]).test_client()
    pre = client.options(
        "/ingest",
        headers={
            "Origin": "http://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-project-key",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "http://shop.example"
    assert "x-project-key" in pre.headers["Access-Control-Allow-Headers"].lower()
    post = client.post("/ingest", json=batch(), headers=headers(Origin="http://shop.example"))
    assert post.headers["Access-Control-Allow-Origin"] == "http://shop.example"
    assert "X-Request-Id" in post.headers["Access-Control-Expose-Headers"]
    other = client.post("/ingest", json=batch(), headers=headers(Origin="http://evil.example"))
    assert "Access-Control-Allow-Origin" not in other.headers


@backend_free
def test_rejected_events_counted(app: Flask) -> None:
    client = app.test_client()
    client.post("/ingest", json=batch(event("click"), {"type": "bad"}), headers=headers())
    metrics = client.get("/api/metrics", headers=API).get_json()["metrics"]
    assert metrics["rejectedEventCount"] == 2
    assert metrics["ingestCount"] == 0


@backend_free
def test_over_the_cap_only_the_cap_is_reported(make_app: Any) -> None:
    """Too many events: the cap is checked before any item is read; within it, each bad item is reported."""
    client = make_app(max_events_per_batch=2).test_client()
    body = batch(event("click", x="bad"), event("click"), event("click", button={}))
    response = client.post("/ingest", json=body, headers=headers())
    details = assert_error(response, 400, "invalid_payload")["details"]
    assert details == {"events": ["Must hold 1 to 2 events; this batch has 3."]}
    del body["events"][1]
    details = assert_error(client.post("/ingest", json=body, headers=headers()), 400, "invalid_payload")["details"]
    assert set(details["events"]) == {"0", "1"}


@backend_free
@pytest.mark.parametrize("digits", [309, 400, 4000])
def test_huge_integers_are_a_400(client: FlaskClient, digits: int) -> None:
    """An integer too large for a float (math.isfinite raised OverflowError: a 500) is out of range."""
    raw = json.dumps(batch(event("click", x=0))).replace('"x": 0', f'"x": {"9" * digits}')
    response = client.post("/ingest", data=raw, headers=headers(**{"Content-Type": "application/json"}))
    assert_error(response, 400, "invalid_payload")
    assert stored_count(client) == 0
