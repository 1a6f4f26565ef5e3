"""The user id the SDK (or JWT) gave selects sessions as well as the internal id; sessions carry both."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from .helpers import API, batch, event, headers


def _sessions(client: FlaskClient, project: str, **params: Any) -> list[dict[str, Any]]:
    answer = client.get(f"/api/projects/{project}/sessions", query_string=params, headers=API)
    assert answer.status_code == 200, answer.get_json()
    sessions: list[dict[str, Any]] = answer.get_json()["sessions"]
    return sessions


def test_sessions_by_sdk_user_id_or_internal_id(client: FlaskClient) -> None:
    def send(session: str, user: str | None) -> str:
        body = batch(event("click"), session_id=session, user={"id": user} if user else None)
        answer = client.post("/ingest", json=body, headers=headers())
        assert answer.status_code == 200, answer.get_json()
        project: str = answer.get_json()["projectId"]
        return project

    project = send("s-alice-1", "alice@example.com")
    send("s-alice-2", "alice@example.com")
    send("s-bob", "bob")
    send("s-anonymous", None)

    alice = _sessions(client, project, userId="alice@example.com")
    assert sorted(s["sessionId"] for s in alice) == ["s-alice-1", "s-alice-2"]
    assert {s["externalUserId"] for s in alice} == {"alice@example.com"}
    internal = {s["userId"] for s in alice}
    assert len(internal) == 1 and internal != {"alice@example.com"}
    by_internal = _sessions(client, project, userId=internal.pop())
    assert sorted(s["sessionId"] for s in by_internal) == ["s-alice-1", "s-alice-2"]
    assert [s["sessionId"] for s in _sessions(client, project, userId="bob")] == ["s-bob"]
    assert _sessions(client, project, userId="nobody") == []

    everyone = {s["sessionId"]: s for s in _sessions(client, project)}
    assert everyone["s-anonymous"]["userId"] is None and everyone["s-anonymous"]["externalUserId"] is None
    assert everyone["s-bob"]["externalUserId"] == "bob"

    detail = client.get(f"/api/projects/{project}/sessions/s-alice-1", headers=API).get_json()["session"]
    assert detail["externalUserId"] == "alice@example.com" and detail["userId"] == alice[0]["userId"]
    anonymous = client.get(f"/api/projects/{project}/sessions/s-anonymous", headers=API).get_json()["session"]
    assert anonymous["userId"] is None and anonymous["externalUserId"] is None
