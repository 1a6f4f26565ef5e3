"""Operator injection: objects such as ``{"$gt": ""}`` never reach a query, on every backend."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from .helpers import API, backend_free, batch, event, headers, ingest

OPERATORS: list[Any] = [{"$gt": ""}, {"$ne": None}, {"$regex": ".*"}, {"$where": "1"}, ["$gt", ""]]


def nothing_stored(app: Flask) -> bool:
    projects: list[Any] = app.extensions["heat_collector"].repository.list_projects()
    return projects == []


@pytest.mark.parametrize("operator", OPERATORS, ids=lambda o: json.dumps(o))
@pytest.mark.parametrize(
    "place",
    ["session.id", "event.sessionId", "event.eventId", "event.path", "event.selector", "user.id", "event.name"],
)
@backend_free
def test_operator_objects_in_the_payload_are_refused(
    app: Flask, client: FlaskClient, place: str, operator: Any
) -> None:
    body = batch(event("custom" if place == "event.name" else "click"), user={"id": "u-1"})
    owner, name = place.split(".")
    target = body["events"][0] if owner == "event" else body[owner]
    target[name] = operator
    response = client.post("/ingest", json=body, headers=headers())
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["code"] == "invalid_payload"
    assert nothing_stored(app)


@pytest.mark.parametrize("key", ['{"$gt": ""}', '{ "$ne": null }', "[$gt]= x"])
@backend_free
def test_operator_like_project_keys_are_refused(app: Flask, client: FlaskClient, key: str) -> None:
    response = client.post("/ingest", json=batch(), headers=headers(key))
    assert response.status_code == 403
    assert response.get_json()["code"] == "unknown_project_key"
    assert nothing_stored(app)


def test_operator_text_is_only_a_literal_key(make_app: Any) -> None:
    app = make_app(registered_projects_only=True)
    client = app.test_client()
    app.extensions["heat_collector"].repository.create_project("real-key", "Shop")
    for key in ('{"$gt":""}', '{"$ne":null}', "$gt"):
        response = client.post("/ingest", json=batch(), headers=headers(key))
        assert response.status_code == 403, key
    assert [p.key for p in app.extensions["heat_collector"].repository.list_projects()] == ["real-key"]


def test_operator_text_in_query_params_matches_nothing(client: FlaskClient) -> None:
    project = ingest(client, event("click", path="/a"), user={"id": "u-1"}, session_id="s-1")
    ingest(client, event("click", path="/secret"), key="other-key", session_id="s-2")
    for value in ('{"$gt": ""}', '{"$ne": null}', "$gt", ".*"):
        sessions = client.get(f"/api/projects/{project}/sessions", query_string={"userId": value}, headers=API)
        assert sessions.status_code == 200 and sessions.get_json()["sessions"] == []
        on_path = client.get(f"/api/projects/{project}/events", query_string={"path": value}, headers=API)
        assert on_path.status_code == 200 and on_path.get_json()["events"] == []
        other = client.get(f"/api/projects/{value}/events", headers=API)
        assert other.status_code == 200 and other.get_json()["events"] == []
        heat = client.get(f"/api/projects/{value}/heatmap", query_string={"type": "all"}, headers=API)
        assert heat.status_code == 200 and heat.get_json()["meta"]["total"] == 0
        detail = client.get(f"/api/sessions/{value}", headers=API)
        assert detail.status_code == 200 and detail.get_json()["meta"]["found"] is False
    # Bracket syntax (``userId[$ne]=x``) is not parsed into objects: it is an unknown, ignored parameter.
    bracket = client.get(f"/api/projects/{project}/sessions", query_string={"userId[$ne]": "x"}, headers=API)
    assert [s["sessionId"] for s in bracket.get_json()["sessions"]] == ["s-1"]


def test_dollar_and_dotted_keys_are_stored_as_data(client: FlaskClient) -> None:
    odd = {"$where": "sleep(1)", "a.b": 1, "$gt": {"$ne": None}}
    project = ingest(
        client,
        event("custom", name="$where", props=odd, meta=odd),
        user={"id": "$ne", "traits": odd},
    )
    (row,) = client.get(f"/api/projects/{project}/events", headers=API).get_json()["events"]
    assert row["data"] == {"name": "$where", "props": odd}
    assert json.loads(row["metaJson"])["meta"] == odd
    sessions = client.get(f"/api/projects/{project}/sessions", headers=API).get_json()["sessions"]
    assert len(sessions) == 1 and sessions[0]["userId"] is not None
