"""Retention (SPEC 8): ``flask heat purge`` keeps exactly what is inside the window.

The oracle is a second project into which only the batches inside the window were ingested: after
the purge, every answer about the window equals its answer; heatmaps of whole old days still come
from the aggregates while the aggregate retention keeps them.
"""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_heat_collector.errors import ConfigurationError

from .helpers import API, ListHandler, batch, event, headers, without_ids

DAY = 86_400_000
RAW_DAYS, AGGREGATE_DAYS = 3, 5
PATHS = ("/", "/pricing")
TODAY = int(time.time() * 1000) // DAY


def _batches(seed: int) -> list[tuple[int, str | None, dict[str, Any]]]:
    """One batch per session and day over the 6 days before today: (day, SDK user id, body).

    A session stays on one path and may span up to three days; events sit between 02:00 and 20:00 UTC.
    """
    rng = random.Random(seed)
    out: list[tuple[int, str | None, dict[str, Any]]] = []
    for index in range(24):
        user = rng.choice(["alice", "bob", "carol", "dave", None])
        first = TODAY - rng.randrange(1, 7)
        if index == 0:  # a user seen only long ago
            user, first = "erin", TODAY - 6
        path, width = rng.choice(PATHS), rng.choice((1280, 390))
        session = f"s-{index}-{user or 'anon'}"
        started = first * DAY + 2 * 3_600_000
        for day in range(first, min(first + rng.randrange(1, 4), TODAY)):
            events = []
            for _ in range(rng.randrange(1, 5)):
                kind = rng.choice(["click", "click", "move", "scroll", "pageview"])
                ts = day * DAY + rng.randrange(2 * 3_600_000, 20 * 3_600_000)
                extra: dict[str, Any] = {}
                if kind == "click":
                    extra = {"x": rng.randrange(width), "y": rng.randrange(3000)}
                elif kind == "move":
                    extra = {
                        "points": [
                            {"x": rng.randrange(width), "y": rng.randrange(2000), "tsOffset": 40 * i} for i in range(3)
                        ]
                    }
                elif kind == "scroll":
                    extra = {"scrollY": rng.randrange(3000), "scrollDepthPct": rng.randrange(101)}
                events.append(event(kind, ts=ts, path=path, w=width, h=800, **extra))
            events.sort(key=lambda e: e["ts"])
            body = batch(
                *events,
                session_id=session,
                user={"id": user} if user else None,
                started_at=started,
                last_seen_at=events[-1]["ts"],
            )
            out.append((day, user, body))
    return out


def _rows(body: dict[str, Any]) -> int:
    return sum(len(e.get("points", [])) or 1 for e in body["events"])


def _get(client: FlaskClient, url: str) -> Any:
    answer = client.get(url, headers=API)
    assert answer.status_code == 200, (url, answer.get_json())
    return answer.get_json()


def _heatmaps(client: FlaskClient, project: str, lo: int, hi: int, extras: tuple[str, ...]) -> dict[str, Any]:
    found = {}
    for path in (*PATHS, None):
        for kind in ("click", "move", "scroll", "all"):
            for extra in extras:
                query = (f"path={path}&" if path else "") + f"type={kind}&from={lo}&to={hi}{extra}"
                found[query] = without_ids(_get(client, f"/api/projects/{project}/heatmap?{query}"), {})
    return found


def _window(client: FlaskClient, project: str, cutoff: int) -> dict[str, Any]:
    """Every answer about the retention window (and the sessions and events lists as a whole)."""
    end = TODAY * DAY - 1
    sessions = _get(client, f"/api/projects/{project}/sessions?limit=200")["sessions"]
    ids = {s["userId"]: f"user:{s['externalUserId']}" for s in sessions if s["userId"]}
    found: dict[str, Any] = {
        "events": without_ids(_get(client, f"/api/projects/{project}/events?limit=1000&to={end}"), ids),
        "sessions": without_ids(sessions, ids),
    }
    for s in sessions:
        found[s["sessionId"]] = without_ids(_get(client, f"/api/projects/{project}/sessions/{s['sessionId']}"), ids)
    for user in ("alice", "bob", "carol", "dave", "erin"):
        found[user] = without_ids(_get(client, f"/api/projects/{project}/sessions?userId={user}"), ids)
    found.update(_heatmaps(client, project, cutoff, end, ("", "&resolution=100", "&viewports=all")))
    found.update(_heatmaps(client, project, cutoff + DAY // 2, end - DAY // 3, ("", "&resolution=64")))
    return found


def _backdate_users(app: Flask) -> None:
    """Users are created when first seen (now): date them back, as users first seen long ago."""
    repository = app.extensions["heat_collector"].repository
    if hasattr(repository, "engine"):
        from flask_heat_collector.repositories.sql_schema import users

        with repository.engine.begin() as conn:
            conn.execute(users.update().values(created_at=0))
    else:
        repository.db["users"].update_many({}, {"$set": {"createdAt": 0}})


def _purge(app: Flask, *args: str) -> dict[str, Any]:
    result = app.test_cli_runner().invoke(args=["heat", "purge", *args])
    assert result.exit_code == 0, result.output
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def test_purge_keeps_the_window_and_old_heatmaps(make_app: Any, logs: ListHandler) -> None:
    app = make_app(retention_days=RAW_DAYS, aggregate_retention_days=AGGREGATE_DAYS)
    client = app.test_client()
    batches = _batches(seed=7)
    dry = _purge(app, "--dry-run")  # nothing stored yet: the cutoffs only
    cutoff, aggregate_cutoff = dry["rawBefore"], dry["aggregatesBefore"]
    assert cutoff % DAY == 0 and aggregate_cutoff == cutoff - (AGGREGATE_DAYS - RAW_DAYS) * DAY
    for day, _user, body in batches:
        for key in ("purged", "oracle") if day * DAY >= cutoff else ("purged",):
            copy = json.loads(json.dumps(body))
            if key == "oracle":
                for item in copy["events"]:
                    item["eventId"] = "o-" + item["eventId"]
            assert client.post("/ingest", json=copy, headers=headers(key)).status_code == 200
    _backdate_users(app)
    listed = app.test_cli_runner().invoke(args=["heat", "project", "list"]).output.splitlines()
    projects = {row.split("\t")[1]: row.split("\t")[0] for row in listed}
    purged, oracle = projects["purged"], projects["oracle"]

    old = [(d, u, b) for d, u, b in batches if d * DAY < cutoff]
    kept_sessions = {b["session"]["id"] for d, _, b in batches if d * DAY >= cutoff}
    gone_sessions = {b["session"]["id"] for _, _, b in old} - kept_sessions
    kept_users = {u for d, u, _ in batches if u and d * DAY >= cutoff}
    gone_users = {u for _, u, _ in old if u} - kept_users
    assert old and gone_sessions and kept_sessions and gone_users and kept_users  # the seed covers every case
    old_rows = sum(_rows(b) for _, _, b in old)

    # Whole days between the aggregate and the raw cutoff: heatmaps that must outlive their raw rows.
    old_days = _heatmaps(client, purged, aggregate_cutoff, cutoff - 1, ("", "&resolution=64"))
    expired = _heatmaps(client, purged, 0, aggregate_cutoff - 1, ("",))
    assert any(answer["meta"]["total"] for answer in old_days.values())
    window = _window(client, purged, cutoff)
    assert window != _window(client, oracle, cutoff)

    dry = _purge(app, "--dry-run")
    assert dry["dryRun"] is True and dry["rawBefore"] == cutoff
    found = dry["found"]
    assert found["events"] == old_rows and found["sessions"] == len(gone_sessions)
    assert found["users"] == len(gone_users) and found["aggregates"] > 0
    assert _window(client, purged, cutoff) == window  # a dry run changes nothing

    done = _purge(app)
    assert done["rawBefore"] == cutoff and done["dryRun"] is False
    assert done["purged"] == found
    assert _window(client, purged, cutoff) == _window(client, oracle, cutoff)
    assert _heatmaps(client, purged, aggregate_cutoff, cutoff - 1, ("", "&resolution=64")) == old_days
    for query, answer in _heatmaps(client, purged, 0, aggregate_cutoff - 1, ("",)).items():
        assert answer["meta"]["total"] == 0, query
    assert any(answer["meta"]["total"] for answer in expired.values())
    events = _get(client, f"/api/projects/{purged}/events?limit=1000")["events"]
    assert events and min(e["ts"] for e in events) >= cutoff

    again = _purge(app)
    assert again["purged"] == {"events": 0, "sessions": 0, "users": 0, "aggregates": 0}
    assert _window(client, purged, cutoff) == _window(client, oracle, cutoff)

    audits = [r for r in logs.records() if r.get("audit") == "purge" and r["phase"] == "end"]
    assert [r["dryRun"] for r in audits] == [True, True, False, False]
    assert audits[2]["events"] == old_rows and audits[2]["actor"] == "cli"
    assert audits[2]["retentionDays"] == RAW_DAYS and audits[2]["rawBefore"] == cutoff
    text = json.dumps(audits)
    assert not any(secret in text for secret in (*gone_sessions, *gone_users, *kept_sessions))


def test_purge_under_concurrent_ingest_loses_nothing_inside_the_window(make_app: Any) -> None:
    app = make_app(retention_days=RAW_DAYS)
    client = app.test_client()
    repository = app.extensions["heat_collector"].repository
    from flask_heat_collector.lifecycle import retention_cutoffs

    cutoff, _ = retention_cutoffs(TODAY * DAY, RAW_DAYS, None)
    assert cutoff is not None
    expected: dict[str, int] = {}  # rows inside the window, by session
    sessions: list[tuple[str, int]] = []
    for index in range(30):  # old-only, straddling and new sessions
        first = TODAY - 6 + index % 6
        sid = f"c-{index}"
        sessions.append((sid, first * DAY + 3_600_000))
        for day in range(first, min(first + 2, TODAY)):
            events = [event("click", ts=day * DAY + 7_200_000 + i, x=i, y=index) for i in range(20)]
            body = batch(*events, session_id=sid, started_at=first * DAY + 3_600_000, last_seen_at=events[-1]["ts"])
            answer = client.post("/ingest", json=body, headers=headers())
            assert answer.status_code == 200
            project = answer.get_json()["projectId"]
            if day * DAY >= cutoff:
                expected[sid] = expected.get(sid, 0) + len(events)
    failures: list[Any] = []
    lock = threading.Lock()

    def ingest(worker: int) -> None:
        own = app.test_client()
        for n in range(12):
            sid, started = sessions[(worker * 7 + n * 5) % len(sessions)]
            ts = (TODAY - 1) * DAY + 36_000_000 + worker * 1000 + n * 10
            body = batch(
                *(event("click", ts=ts + i, x=worker, y=n) for i in range(5)),
                session_id=sid,
                started_at=started,
                last_seen_at=ts + 4,
            )
            answer = own.post("/ingest", json=body, headers=headers())
            with lock:
                if answer.status_code != 200:
                    failures.append(answer.get_json())
                else:
                    expected[sid] = expected.get(sid, 0) + 5

    threads = [threading.Thread(target=ingest, args=(worker,)) for worker in range(3)]
    for thread in threads:
        thread.start()
    counts = repository.purge(cutoff, None, dry_run=False, chunk=7)
    for thread in threads:
        thread.join()
    assert not failures
    assert counts.events > 0
    repository.purge(cutoff, None, dry_run=False, chunk=7)  # what was old and stored meanwhile

    events = _get(client, f"/api/projects/{project}/events?limit=1000&from={cutoff}")["events"]
    assert len(events) == sum(expected.values())
    by_session: dict[str, int] = {}
    for item in events:
        by_session[item["sessionId"]] = by_session.get(item["sessionId"], 0) + 1
    assert by_session == expected
    listed = _get(client, f"/api/projects/{project}/sessions?limit=200")["sessions"]
    assert {s["sessionId"]: s["eventCount"] for s in listed} == expected


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # never reaches storage
def test_purge_settings(make_app: Any) -> None:
    with pytest.raises(ConfigurationError, match="HEAT_AGGREGATE_RETENTION_DAYS"):
        make_app(retention_days=30, aggregate_retention_days=7)
    with pytest.raises(ConfigurationError, match="HEAT_RETENTION_DAYS"):
        make_app(retention_days=0)
    app = make_app()
    result = app.test_cli_runner().invoke(args=["heat", "purge"])
    assert result.exit_code == 0 and "nothing purged" in result.output
    assert make_app(retention_days="30").extensions["heat_collector"].settings.aggregate_retention_days is None


def test_purge_over_http_with_an_unscoped_admin_key(make_app: Any) -> None:
    import time

    from .helpers import batch, event, headers

    now = int(time.time() * 1000)
    app = make_app(retention_days=30, admin_api_keys=["purge-admin", "scoped-admin@some-project"])
    client = app.test_client()
    old = batch(event("click", ts=now - 40 * 86_400_000), session_id="s-old", started_at=now - 40 * 86_400_000)
    new = batch(event("click", ts=now - 1000), event("click", ts=now - 500), session_id="s-new", started_at=now)
    project = client.post("/ingest", json=old, headers=headers()).get_json()["projectId"]
    assert client.post("/ingest", json=new, headers=headers()).status_code == 200

    assert client.post("/api/purge", headers={"x-api-key": "test-query-key"}).status_code == 401
    scoped = client.post("/api/purge", headers={"x-api-key": "scoped-admin"})
    assert scoped.status_code == 403 and scoped.get_json()["code"] == "forbidden_project"
    admin = {"Authorization": "Bearer purge-admin"}
    dry = client.post("/api/purge?dryRun=true", headers=admin).get_json()
    assert dry["dryRun"] is True and dry["found"]["events"] == 1 and dry["found"]["sessions"] == 1
    done = client.post("/api/purge", headers=admin)
    assert done.status_code == 200 and done.get_json()["purged"]["events"] == 1
    listed = client.get(f"/api/projects/{project}/events", headers={"x-api-key": "test-query-key"}).get_json()
    assert sorted(e["ts"] for e in listed["events"]) == [now - 1000, now - 500]
    assert client.post("/api/purge", headers=admin).get_json()["purged"]["events"] == 0

    unset = make_app(admin_api_keys=["purge-admin"]).test_client().post("/api/purge", headers=admin)
    assert unset.status_code == 409 and unset.get_json()["code"] == "retention_not_configured"
