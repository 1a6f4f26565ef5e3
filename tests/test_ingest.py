"""POST /ingest: storage rules, idempotency, responses and validation, on every backend."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from .helpers import API, PROJECT_KEY, QUERY_KEY, batch, event, headers, sdk_fixture


def post(client: FlaskClient, body: Any, key: str = PROJECT_KEY, **extra: str) -> Any:
    return client.post("/ingest", json=body, headers=headers(key, **extra))


def all_events(client: FlaskClient, project_id: str, **params: Any) -> list[dict[str, Any]]:
    query = {"limit": 1000, **params}
    response = client.get(f"/api/projects/{project_id}/events", query_string=query, headers=API)
    assert response.status_code == 200, response.get_json()
    events: list[dict[str, Any]] = response.get_json()["events"]
    return events


def test_sdk_fixture_posted_twice_is_stored_once(client: FlaskClient) -> None:
    fixture = sdk_fixture()
    first = client.post("/ingest", json=fixture["body"], headers=fixture["headers"])
    assert first.status_code == 200
    body = first.get_json()
    assert body["ok"] is True
    assert (body["accepted"], body["duplicates"], body["dropped"]) == (11, 0, 0)
    assert body["sessionId"] == fixture["body"]["session"]["id"]
    assert first.headers["X-Ingested-Events"] == "11"

    second = client.post("/ingest", json=fixture["body"], headers=fixture["headers"])
    assert second.status_code == 200
    assert (second.get_json()["accepted"], second.get_json()["duplicates"]) == (0, 11)
    assert second.get_json()["projectId"] == body["projectId"]

    # The fixture was captured from headless Chromium ("HeadlessChrome"): its session is a bot
    # (docs/traffic.md), left out of every report unless traffic=all|bot asks for it.
    session = client.get(f"/api/sessions/{body['sessionId']}", headers=API).get_json()["session"]
    assert (session["traffic"], session["trafficReason"]) == ("bot", "headless")
    assert all_events(client, body["projectId"]) == []
    rows = all_events(client, body["projectId"], traffic="all")
    assert len(rows) == 11
    assert len({row["id"] for row in rows}) == 11
    moves = [row for row in rows if row["type"] == "move"]
    assert [(m["x"], m["y"]) for m in moves] == [(100, 100), (200, 175), (300, 250)]
    custom = [row for row in rows if row["type"] == "custom"]
    assert custom[0]["data"]["name"] == "signup"
    assert custom[0]["data"]["props"] == {"step": 2}

    heat = client.get(
        f"/api/projects/{body['projectId']}/heatmap", query_string={"type": "all", "traffic": "all"}, headers=API
    )
    assert heat.status_code == 200
    meta = heat.get_json()["meta"]
    assert meta["typeBreakdown"]["click"] == 1 and meta["typeBreakdown"]["move"] == 3
    assert meta["plotted"] == 5  # 1 click + 3 move points + 1 scroll
    clicks = client.get(
        f"/api/projects/{body['projectId']}/heatmap", query_string={"traffic": "bot"}, headers=API
    ).get_json()
    assert clicks["meta"]["resolvedType"] == "click"
    assert sum(p["value"] for p in clicks["points"]) == 1
    moves_map = client.get(
        f"/api/projects/{body['projectId']}/heatmap", query_string={"type": "move", "traffic": "all"}, headers=API
    ).get_json()
    assert sum(p["value"] for p in moves_map["points"]) == 3


def test_response_headers_and_fields(client: FlaskClient) -> None:
    response = post(client, batch(event("click"), event("pageview")))
    assert response.status_code == 200
    assert response.headers["X-Heat-Collector"] == "heat-collector"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert len(response.headers["X-Request-Id"]) >= 16
    assert response.get_json()["requestId"] == response.headers["X-Request-Id"]
    assert response.headers["X-RateLimit-Limit"] == "120"
    assert response.headers["X-RateLimit-Remaining"] == "119"
    assert int(response.headers["X-RateLimit-Reset"]) > 0
    assert set(response.get_json()) == {
        "ok",
        "requestId",
        "projectId",
        "sessionId",
        "accepted",
        "duplicates",
        "dropped",
    }


def test_move_click_scroll_rounding(client: FlaskClient) -> None:
    body = batch(
        event("click", x=10.5, y=20.49),
        event("move", ts=1000, points=[{"x": 1.5, "y": 2.4, "tsOffset": 0}, {"x": 3.6, "y": -0.5, "tsOffset": 16.6}]),
        event("scroll", scrollDepthPct=40.61371841155235),
    )
    project = post(client, body).get_json()["projectId"]
    rows = {(r["type"], r["ts"]): r for r in all_events(client, project)}
    click = rows[("click", 1_795_672_217_000)]
    assert (click["x"], click["y"]) == (11, 20)
    assert (rows[("move", 1000)]["x"], rows[("move", 1000)]["y"]) == (2, 2)
    assert (rows[("move", 1017)]["x"], rows[("move", 1017)]["y"]) == (4, 0)
    assert rows[("scroll", 1_795_672_217_000)]["scrollDepth"] == 41
    assert rows[("scroll", 1_795_672_217_000)]["data"] == {"scrollY": 100}


def test_masked_inputs_dropped_and_meta_scrubbed(client: FlaskClient) -> None:
    body = batch(
        event("input", masked="****"),
        event("input", masked="hunter2"),
        event("input", masked="**x*"),
        event("input", action="focus", masked=""),
        event("click", meta={"value": "secret", "text": "t", "content": "c", "keep": 1}),
    )
    response = post(client, body)
    assert response.get_json()["dropped"] == 2
    assert response.get_json()["accepted"] == 3
    rows = all_events(client, response.get_json()["projectId"])
    dump = json.dumps(rows)
    assert "hunter2" not in dump and "**x*" not in dump and "secret" not in dump
    click = next(r for r in rows if r["type"] == "click")
    meta = json.loads(click["metaJson"])
    assert meta["meta"] == {"keep": 1}
    assert meta["viewport"]["w"] == 1200 and meta["device"]["ua"] == "TestAgent/1.0"


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("custom", {"name": "checkout", "props": {"plan": "pro"}}),
        ("input", {"action": "blur", "inputType": "email", "length": 5}),
        ("keyboard", {"category": "navigation"}),
        ("pageview", {"to": "/b", "from": "/a"}),
        ("click", {"button": 2}),
    ],
)
def test_type_specific_fields_kept(client: FlaskClient, kind: str, fields: dict[str, Any]) -> None:
    project = post(client, batch(event(kind, **fields))).get_json()["projectId"]
    (row,) = all_events(client, project)
    for name, value in fields.items():
        assert row["data"][name] == value


def test_session_upsert_updates_last_seen_and_user(client: FlaskClient, app: Flask) -> None:
    first = post(
        client,
        batch(event("click", path="/start"), session_id="s-9", started_at=1000, last_seen_at=2000),
        **{"User-Agent": ""},
    )
    project = first.get_json()["projectId"]
    post(
        client,
        batch(
            event("click", path="/later"),
            session_id="s-9",
            started_at=5000,
            last_seen_at=9000,
            user={"id": "u-1", "traits": {"plan": "pro"}},
        ),
    )
    post(client, batch(event("click"), session_id="s-9", last_seen_at=3000))  # older: lastSeenAt never goes back
    detail = client.get("/api/sessions/s-9", headers=API).get_json()
    session = detail["session"]
    assert session["startedAt"] == 1000
    assert session["lastSeenAt"] == 9000
    assert session["firstPath"] == "/start"
    assert session["userId"] is not None
    assert session["projectId"] == project
    assert session["userAgent"] == "TestAgent/1.0"
    assert json.loads(session["deviceJson"])["platform"] == "Linux"
    assert len(session["ipHash"]) == 64
    assert detail["meta"]["count"] == 3


def test_user_agent_header_wins_and_defaults_now(client: FlaskClient) -> None:
    response = post(client, batch(event("click"), started_at=None, last_seen_at=None), **{"User-Agent": "Real/2"})
    session = client.get("/api/sessions/s-1", headers=API).get_json()["session"]
    assert session["userAgent"] == "Real/2"
    assert session["startedAt"] > 1_700_000_000_000
    assert response.status_code == 200


def test_same_user_same_id_across_sessions(client: FlaskClient) -> None:
    user = {"id": "user-42", "traits": {"plan": "pro"}}
    post(client, batch(event("click"), session_id="a", user=user))
    post(client, batch(event("click"), session_id="b", user=user))
    a = client.get("/api/sessions/a", headers=API).get_json()["session"]["userId"]
    b = client.get("/api/sessions/b", headers=API).get_json()["session"]["userId"]
    assert a == b and a is not None


def test_projects_are_separate(client: FlaskClient) -> None:
    body = batch(event("click", eventId="same-id"))
    one = post(client, body, key="key-one").get_json()
    two = post(client, body, key="key-two").get_json()
    assert one["projectId"] != two["projectId"]
    assert one["accepted"] == two["accepted"] == 1
    assert len(all_events(client, one["projectId"])) == 1


def test_event_ids_compare_exactly(client: FlaskClient) -> None:
    response = post(client, batch(event("click", eventId="Abc"), event("click", eventId="abc")))
    assert response.get_json()["accepted"] == 2


def test_unicode_is_kept(client: FlaskClient) -> None:
    path = "/\u05e9\u05dc\u05d5\u05dd/\U0001f600"
    project = post(client, batch(event("custom", path=path, name="\u202eevil"))).get_json()["projectId"]
    (row,) = all_events(client, project)
    assert row["path"] == path and row["data"]["name"] == "\u202eevil"


def test_before_insert_hook_output_is_stored(make_app: Any) -> None:
    app = make_app()
    heat = app.extensions["heat_collector"]

    def tag(payload: dict[str, Any]) -> dict[str, Any]:
        for item in payload["events"]:
            item["path"] = "/scrubbed"
        return payload

    heat.hooks.append(tag)
    client = app.test_client()
    project = post(client, batch(event("click", path="/secret/123"))).get_json()["projectId"]
    assert all_events(client, project)[0]["path"] == "/scrubbed"


def test_before_insert_decorator_and_invalid_output(backend: str, tmp_path: Any) -> None:
    from flask_heat_collector import HeatCollector

    heat = HeatCollector(database_uri=backend, query_api_keys=[QUERY_KEY])

    @heat.before_insert
    def breaks(payload: dict[str, Any]) -> dict[str, Any]:
        payload["events"] = []
        return payload

    app = Flask("hooked", instance_path=str(tmp_path))
    heat.init_app(app)
    response = post(app.test_client(), batch())
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_hook_payload"
    assert "events" in response.get_json()["details"]
    app.extensions["heat_collector"].repository.dispose()


def test_registered_projects_only(make_app: Any) -> None:
    app = make_app(registered_projects_only=True)
    client = app.test_client()
    response = post(client, batch(), key="nobody")
    assert response.status_code == 403
    assert response.get_json()["code"] == "unknown_project_key"
    runner = app.test_cli_runner()
    created = runner.invoke(args=["heat", "project", "create", "--key", "known-key", "--name", "Shop"])
    assert created.exit_code == 0, created.output
    assert post(client, batch(), key="known-key").status_code == 200
    listed = runner.invoke(args=["heat", "project", "list"]).output
    assert "known-key\tShop" in listed
    project_id = listed.split("\t")[0]
    rotated = runner.invoke(args=["heat", "project", "rotate-key", project_id, "--key", "new-key"])
    assert rotated.exit_code == 0
    assert post(client, batch(event("click")), key="new-key").status_code == 200
    assert post(client, batch(event("click")), key="known-key").status_code == 403
