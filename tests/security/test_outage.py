"""The database stops mid-load: 503 + Retry-After fast, recovery without a restart, nothing lost or doubled.

Each test runs its own PostgreSQL or MariaDB server (never the shared ones) and really stops it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_heat_collector import HeatCollector

from ..conftest import unavailable
from ..helpers import QUERY_KEY, HttpAnswer, batch, event, post_batch
from .servers import PrivateMariaDB, PrivatePostgres

WORKERS = 6
MAX_ANSWER_SECONDS = 2.0  # the contract: an outage is answered within 2 s, never a hang


@pytest.fixture(params=["postgresql", "mysql"])
def private_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    try:
        server = PrivatePostgres() if request.param == "postgresql" else PrivateMariaDB(tmp_path / "mariadb")
        server.start()
    except Exception as exc:  # noqa: BLE001 - missing server binaries: skip locally, fail in CI
        unavailable(f"private {request.param} server: {exc}")
    try:
        yield server
    finally:
        server.stop()
        server.remove()


def test_outage_mid_load(private_server: Any, tmp_path: Path, live_server: Any) -> None:
    app = Flask("outage", instance_path=str(tmp_path / "instance"))
    HeatCollector(
        app,
        database_uri=private_server.uri,
        query_api_keys=[QUERY_KEY],
        rate_limit="100000 per second",
        ip_hash_secret="s",
        # synthetic clicks on a timer: the behaviour rules of the traffic classes off (as tests.helpers.Apps)
        bot_regular_clicks=0,
        bot_fast_clicks=0,
    )
    server = live_server(app)
    bodies = [batch(event("click", x=i), event("scroll"), session_id=f"s-{i % 7}") for i in range(240)]
    answers: dict[int, HttpAnswer] = {}
    stop_at, start_at = 60, 150  # the database is down while batches 60..149 are being sent
    lock = threading.Lock()
    sent = 0

    def one(index: int) -> None:
        nonlocal sent
        answers[index] = post_batch(server.url, bodies[index], "outage-key")
        with lock:
            sent += 1

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for index in range(len(bodies)):
            if index == stop_at:
                private_server.stop()
            if index == start_at:
                private_server.start()
            pool.submit(one, index)
            time.sleep(0.005)
    assert sent == len(bodies)

    statuses = {index: answer.status for index, answer in answers.items()}
    assert set(statuses.values()) <= {200, 503}, statuses
    outage = [answers[i] for i in range(len(bodies)) if statuses[i] == 503]
    assert outage, "the database stop was not noticed"
    for answer in outage:
        assert answer.body["code"] == "storage_unavailable" and int(answer.headers["Retry-After"]) > 0
        assert answer.seconds < MAX_ANSWER_SECONDS, answer.seconds
    # The collector recovered by itself: the last batches, sent after the restart, were stored.
    assert all(statuses[i] == 200 for i in range(len(bodies) - 20, len(bodies)))

    # The SDK re-sends what got 503 (and, to be safe, everything): each event ends up stored exactly once.
    for index, body in enumerate(bodies):
        for _ in range(20):
            status = post_batch(server.url, body, "outage-key").status
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200, index
    client = app.test_client()
    project = client.post("/ingest", json=bodies[0], headers={"X-Project-Key": "outage-key"}).get_json()["projectId"]
    api = {"x-api-key": QUERY_KEY}
    seen: set[str] = set()
    offset = 0
    while True:
        page = client.get(
            f"/api/projects/{project}/events", query_string={"limit": 1000, "offset": offset}, headers=api
        ).get_json()["events"]
        seen.update(row["id"] for row in page)
        offset += len(page)
        if len(page) < 1000:
            break
    expected = {f"{e['eventId']}:0" for body in bodies for e in body["events"]}
    assert offset == len(expected)
    assert seen == expected
    # The server is still alive and answering (no worker died).
    assert client.get("/api/metrics", headers=api).status_code == 200


def test_the_ready_apps_log_is_json_lines_through_an_outage(private_server: Any, tmp_path: Path) -> None:
    """gunicorn with the shipped configuration and the ready app: every line of its log, gunicorn's own
    included, is one JSON object while the database stops and comes back (exceptions as a field)."""
    from ..e2e.support import _stop, _wait_listening, collector_env, spawn_gunicorn

    env = collector_env(tmp_path, HEAT_DATABASE_URI=private_server.uri, HEAT_RATE_LIMIT="100000 per second")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = tmp_path / "gunicorn.log"
    options = ["-c", "python:flask_heat_collector.gunicorn_conf", "-w", "2", "-b", "127.0.0.1:0"]
    process = spawn_gunicorn([*options, "--graceful-timeout", "5"], env, log_path)
    try:
        url = _wait_listening(process, log_path)
        bodies = [batch(event("click", x=i), session_id=f"s-{i % 5}") for i in range(120)]
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            for index, body in enumerate(bodies):
                if index == 30:
                    private_server.stop()
                if index == 80:
                    private_server.start()
                pool.submit(post_batch, url, body, "outage-key")
                time.sleep(0.005)
        for _ in range(40):  # until the collector stores again
            if post_batch(url, bodies[0], "outage-key").status == 200:
                break
            time.sleep(0.25)
    finally:
        _stop(process)
    lines = log_path.read_text(errors="replace").splitlines()
    assert any("Booting worker" in line for line in lines)
    not_json, records = [], []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            not_json.append(line)
    assert not not_json, "\n".join(not_json[:40])
    assert all(isinstance(r, dict) and {"level", "msg", "ts"} <= set(r) for r in records)
    assert any(r.get("code") == "storage_unavailable" for r in records)  # the outage was seen
    assert any(r.get("logger") == "gunicorn.error" and "Booting worker" in r["msg"] for r in records)
