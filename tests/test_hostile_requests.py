"""Hostile requests get a short 4xx with a code (SPEC 5): oversized batches, unstorable characters.

A batch over HEAT_MAX_EVENTS_PER_BATCH is refused before any event is read; error details are
bounded; NUL, lone surrogates and bytes that are not UTF-8 in any header, path segment or query
parameter are a 400, never a 500 (PostgreSQL refuses NUL); log lines stay one line each.
"""

from __future__ import annotations

import json
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from .helpers import API, QUERY_KEY, Server, batch, dump_database, event, headers

JSON = {"Content-Type": "application/json"}
ONCE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # never reaches storage


def rejected(client: FlaskClient) -> int:
    count: int = client.get("/api/metrics", headers=API).get_json()["metrics"]["rejectedEventCount"]
    return count


def megabyte_of(item: bytes) -> tuple[bytes, int]:
    """A body of about 1 MB: one session and as many copies of ``item`` as fit in ``events``."""
    head, tail = b'{"session":{"id":"s"},"events":[', b"]}"
    count = (1_000_000 - len(head) - len(tail)) // (len(item) + 1)
    return head + b",".join([item] * count) + tail, count


def largest_level(details: Any) -> int:
    """The most entries any one mapping or list of ``details`` holds."""
    if isinstance(details, dict):
        return max([len(details), *map(largest_level, details.values())])
    if isinstance(details, list):
        return max([len(details), *map(largest_level, details)])
    return 0


# -- 5. the event cap comes before any per-event validation -----------------------------------------


@ONCE
@pytest.mark.parametrize("item", [b"0", b"{}"], ids=["zeros", "empty-objects"])
def test_a_megabyte_of_invalid_events_is_refused_at_the_cap(client: FlaskClient, item: bytes) -> None:
    raw, events = megabyte_of(item)
    assert len(raw) > 990_000 and events > 300_000
    before = rejected(client)
    tracemalloc.start()
    try:
        response = client.post("/ingest", data=raw, headers={**headers(), **JSON})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 400
    body = response.get_json()
    assert body["code"] == "invalid_payload"
    assert body["details"] == {"events": [f"Must hold 1 to 1000 events; this batch has {events}."]}
    assert len(response.get_data()) < 1024
    assert peak < 50_000_000, f"peak {peak / 1e6:.1f} MB"
    # One rejected batch counts its events up to the cap, not 300,000+.
    assert rejected(client) - before == 1000


@ONCE
def test_the_cap_follows_the_setting(make_app: Callable[..., Flask]) -> None:
    client = make_app(max_events_per_batch=3).test_client()
    before = rejected(client)
    response = client.post("/ingest", json=batch(*[{"type": "click"}] * 5), headers=headers())
    assert response.status_code == 400
    assert response.get_json()["details"] == {"events": ["Must hold 1 to 3 events; this batch has 5."]}
    assert rejected(client) - before == 3


@ONCE
def test_details_of_a_full_batch_of_invalid_events_are_bounded(client: FlaskClient) -> None:
    """1,000 events with 8 errors each: at most 50 entries per level and in all, and a count of the rest."""
    body = batch(*[{"type": "click"}] * 1000)
    body["session"] = {"id": ""}
    before = rejected(client)
    response = client.post("/ingest", json=body, headers=headers())
    assert response.status_code == 400
    assert len(response.get_data()) < 16_384
    details = response.get_json()["details"]
    assert largest_level(details) <= 50
    messages = [m for e in details["events"].values() if isinstance(e, dict) for ms in e.values() for m in ms]
    assert 0 < len(messages) <= 50
    assert "Missing data for required field." in messages
    kept = [key for key in details["events"] if key != "_omitted"]
    assert details["events"]["_omitted"] == f"{1000 - len(kept)} more entries left out."
    assert rejected(client) - before == 1000


@ONCE
def test_short_details_are_unchanged(client: FlaskClient) -> None:
    response = client.post("/ingest", json=batch(event("click", x="10"), event("click", y=True)), headers=headers())
    assert response.get_json()["details"] == {"events": {"0": {"x": ["Not a number."]}, "1": {"y": ["Not a number."]}}}


# -- 6. unstorable characters in headers, path segments and query parameters ----------------------------------


@pytest.mark.parametrize("name", ["User-Agent", "X-Project-Key", "X-Anything"])
def test_nul_in_an_ingest_header_is_a_400_and_nothing_is_stored(client: FlaskClient, backend: str, name: str) -> None:
    before = dump_database(backend)
    response = client.post("/ingest", json=batch(), headers={**headers(), name: "Mozilla/5.0\x00evil"})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["code"] == "invalid_header"
    assert dump_database(backend) == before
    # The same request without the NUL is stored.
    assert client.post("/ingest", json=batch(), headers={**headers(), name: "Mozilla/5.0"}).status_code == 200


def query_urls(project: str) -> list[str]:
    """Every query endpoint, with real ids."""
    return [
        f"/api/projects/{project}/heatmap",
        f"/api/projects/{project}/events",
        f"/api/projects/{project}/sessions",
        f"/api/projects/{project}/sessions/s-1",
        "/api/sessions/s-1",
        "/api/metrics",
        "/api/openapi.json",
    ]


def test_every_query_endpoint_refuses_nul_anywhere(client: FlaskClient, backend: str) -> None:
    project = client.post("/ingest", json=batch(), headers=headers()).get_json()["projectId"]
    for url in query_urls(project):
        assert client.get(url, headers=API).status_code == 200, url
        cases = [
            (f"{url}?pa%00th=%2F", API, "invalid_query"),
            (f"{url}?path=%2F%00", API, "invalid_query"),
            (f"{url}?path=%2F&path=%00", API, "invalid_query"),
            (url, {**API, "X-Forwarded-For": "10.0.0.1\x00"}, "invalid_header"),
            (url, {**API, "User-Agent": "\x00"}, "invalid_header"),
        ]
        cases += [(url.replace(s, s + "%00"), API, "invalid_query") for s in (project, "s-1") if s in url]
        for target, sent, code in cases:
            response = client.get(target, headers=sent)
            assert response.status_code == 400, (target, sent, response.get_data(as_text=True)[:200])
            assert response.get_json()["code"] == code, (target, sent)
            assert response.headers["X-Request-Id"] == response.get_json()["requestId"]


@ONCE
@pytest.mark.parametrize(
    ("url", "sent", "code"),
    [
        ("/api/projects/%FF/events", API, "invalid_query"),
        ("/api/projects/p/events?path=%FF", API, "invalid_query"),
        ("/api/projects/p/events?path=%ED%A0%80", API, "invalid_query"),  # an encoded lone surrogate
        ("/api/projects/p/events?%FE=1", API, "invalid_query"),
        ("/api/projects/p/events", {**API, "X-Note": "a\ud800b"}, "invalid_header"),
        ("/api/projects/p/events", {"x-api-key": QUERY_KEY + "\x00"}, "invalid_header"),
        ("/ingest?debug=%00", headers(), "invalid_query"),
        ("/viewer?x=%00", {}, "invalid_query"),
        ("/viewer", {"Accept-Language": "en\x00"}, "invalid_header"),
        ("/viewer/static/viewer.js%00", {}, "invalid_query"),
    ],
)
def test_unstorable_characters_on_every_blueprint(
    make_app: Callable[..., Flask], url: str, sent: dict[str, str], code: str
) -> None:
    client = make_app(viewer_enabled=True).test_client()
    method = client.post if url.startswith("/ingest") else client.get
    response = method(url, headers=sent, json=batch() if method == client.post else None)
    assert response.status_code == 400, response.get_data(as_text=True)[:200]
    assert response.get_json()["code"] == code
    assert response.headers["X-Heat-Collector"] == "heat-collector"


@ONCE
@pytest.mark.parametrize(
    "url",
    ["/api/projects/%FF/events", "/api/sessions/a%C3", "/api/projects/p/sessions/%ED%A0%80"],
)
def test_path_bytes_that_are_not_utf8_are_a_400_over_http(
    make_app: Callable[..., Flask], live_server: Callable[[Flask], Server], url: str
) -> None:
    """A real server passes the raw bytes on (the test client already replaced them by U+FFFD)."""
    server = live_server(make_app())
    request = urllib.request.Request(f"{server.url}{url}", headers=API)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    body = json.loads(refused.value.read())
    assert (refused.value.code, body.get("code")) == (400, "invalid_query"), body


@ONCE
def test_valid_utf8_and_plain_latin1_headers_still_pass(client: FlaskClient) -> None:
    project = client.post("/ingest", json=batch(), headers=headers(**{"User-Agent": "Agent é/1.0"})).get_json()
    assert project["accepted"] == 1
    answer = client.get(f"/api/projects/{project['projectId']}/events?path=%2Fcaf%C3%A9+x", headers=API)
    assert answer.status_code == 200 and answer.get_json()["events"] == []


# -- log lines: U+2028, U+2029 and U+0085 are escaped, so a line is one line -----------------------------


@ONCE
def test_line_separators_are_escaped_in_log_lines(client: FlaskClient, logs: Any) -> None:
    path = "/api/projects/a\u2028b\u2029c\u0085d/events"
    response = client.get(path)  # no key: an error line that names the path
    assert response.get_json()["code"] == "missing_api_key"
    (line,) = [line for line in logs.lines if "missing_api_key" in line]
    for raw in ("\u2028", "\u2029", "\u0085"):
        assert raw not in line
    assert line.splitlines() == [line]
    assert "\\u2028" in line and "\\u2029" in line and "\\u0085" in line
    assert json.loads(line)["path"] == path


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_body_cut_short_of_its_content_length_is_refused(app: Flask, backend: str) -> None:
    # gunicorn marks its input terminated and hands a client that went away mid-body over as a short read.
    raw = json.dumps(batch(event("click"))).encode()
    answer = app.test_client().post(
        "/ingest",
        data=raw[:-1] + b"}",  # still one JSON document, one byte short of what was announced
        headers={**headers(), **JSON},
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": str(len(raw) + 40)},
    )
    assert answer.status_code == 400, answer.data
    assert answer.get_json()["code"] == "incomplete_body"
    assert '"click"' not in dump_database(backend)
