"""Outages answer 503 with Retry-After; unexpected failures 500 without internals; one log line each."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from flask_heat_collector import HeatCollector

from .helpers import API, QUERY_KEY, batch, event, free_port, headers

UNREACHABLE = {
    "postgresql": "postgresql+psycopg2://postgres@127.0.0.1:{port}/test",
    "mysql": "mysql+pymysql://root@127.0.0.1:{port}/test",
}


@pytest.mark.parametrize("kind", sorted(UNREACHABLE))
def test_database_down_is_503_with_retry_after(tmp_path: Any, kind: str, logs: Any) -> None:
    app = Flask("down", instance_path=str(tmp_path))
    HeatCollector(
        app, database_uri=UNREACHABLE[kind].format(port=free_port()), auto_migrate=False, query_api_keys=[QUERY_KEY]
    )
    client = app.test_client()
    response = client.post("/ingest", json=batch(), headers=headers())
    assert response.status_code == 503
    body = response.get_json()
    assert body["code"] == "storage_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "psycopg2" not in text and "pymysql" not in text and "127.0.0.1" not in text
    query = client.get("/api/projects/p/events", headers=API)
    assert query.status_code == 503 and query.get_json()["code"] == "storage_unavailable"
    assert client.get("/api/metrics", headers=API).get_json()["metrics"]["ingestErrorCount"] == 1
    errors = [r for r in logs.records() if r.get("code") == "storage_unavailable"]
    assert len(errors) == 2 and errors[0]["requestId"] == body["requestId"]


def test_unexpected_failure_is_500_without_internals(make_app: Any, logs: Any) -> None:
    app = make_app()
    state = app.extensions["heat_collector"]

    def broken(payload: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("SELECT secret FROM internals")

    state.hooks.append(broken)
    response = app.test_client().post("/ingest", json=batch(), headers=headers())
    assert response.status_code == 500
    body = response.get_json()
    assert body["code"] == "ingest_failed"
    text = response.get_data(as_text=True)
    assert "SELECT" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert response.headers["X-Request-Id"] == body["requestId"]
    lines = [r for r in logs.records() if r.get("requestId") == body["requestId"]]
    assert len(lines) == 1 and lines[0]["level"] == "error" and lines[0]["code"] == "ingest_failed"


def test_every_client_error_logs_one_line(client: Any, logs: Any) -> None:
    response = client.post("/ingest", json={"session": {}}, headers=headers())
    rid = response.get_json()["requestId"]
    lines = [r for r in logs.records() if r.get("requestId") == rid]
    assert len(lines) == 1
    assert lines[0]["level"] == "warn" and lines[0]["code"] == "invalid_payload" and lines[0]["status"] == 400


def test_log_lines_never_hold_typed_values_or_raw_ip(client: Any, logs: Any, app: Flask) -> None:
    client.post(
        "/ingest",
        json=batch(event("input", masked="my-password"), event("click", meta={"value": "v-123"})),
        headers=headers(),
        environ_base={"REMOTE_ADDR": "203.0.113.77"},
    )
    text = "\n".join(logs.lines)
    assert "my-password" not in text and "v-123" not in text and "203.0.113.77" not in text
