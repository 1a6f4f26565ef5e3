"""Erasure (SPEC 8): afterwards every query answers as if the erased events had never been stored.

The oracle is a second project into which the same batches, minus the erased ones, were ingested in
the same order: every answer of the erased project must equal its answer, ids aside.
"""

from __future__ import annotations

import json
import random
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_heat_collector.errors import ConfigurationError

from .helpers import (
    API,
    QUERY_KEY,
    TS,
    ListHandler,
    batch,
    dump_database,
    event,
    headers,
    ingest_all,
    without_ids,
)

DAY = 86_400_000
WIDTHS = (1280, 390)
PATHS = ("/", "/pricing")


def _batches(seed: int) -> list[tuple[str | None, dict[str, Any]]]:
    """Batches of three users and anonymous visitors over three days: (SDK user id, body)."""
    rng = random.Random(seed)
    out: list[tuple[str | None, dict[str, Any]]] = []
    for index in range(36):
        user = rng.choice(["alice", "bob", "carol", None])
        width = rng.choice(WIDTHS)
        start = TS + rng.randrange(3) * DAY + rng.randrange(DAY - 60_000)
        events = []
        for _ in range(rng.randrange(1, 6)):
            kind = rng.choice(["click", "click", "move", "scroll", "pageview"])
            extra: dict[str, Any] = {}
            if kind == "click":
                extra = {"x": rng.randrange(width), "y": rng.randrange(4000), "selector": rng.choice(["#a", "#b"])}
            elif kind == "move":
                points = [{"x": rng.randrange(width), "y": rng.randrange(3000), "tsOffset": 40 * i} for i in range(4)]
                extra = {"points": points}
            elif kind == "scroll":
                extra = {"scrollY": rng.randrange(3000), "scrollDepthPct": rng.randrange(101)}
            ts = start + rng.randrange(50_000)
            events.append(event(kind, ts=ts, path=rng.choice(PATHS), w=width, h=800, **extra))
        session = f"s-{index}-{user or 'anon'}"
        body = batch(*events, session_id=session, user={"id": user} if user else None, started_at=start)
        out.append((user, body))
    return out


def _answers(client: FlaskClient, project: str) -> dict[str, Any]:
    """Everything the query API says of ``project``."""
    found: dict[str, Any] = {}
    urls = []
    for path in (*PATHS, None):
        for kind in ("click", "move", "scroll", "all"):
            for extra in ("", "&resolution=100", "&viewports=all", f"&from={TS + DAY // 2}"):
                query = (f"path={path}" if path else "") + (f"&type={kind}" if kind else "") + extra
                urls.append(f"/api/projects/{project}/heatmap?{query}")
    urls += [f"/api/projects/{project}/events?limit=1000", f"/api/projects/{project}/sessions?limit=200"]
    sessions = client.get(f"/api/projects/{project}/sessions?limit=200", headers=API).get_json()["sessions"]
    ids = {s["userId"]: f"user:{s['externalUserId']}" for s in sessions if s["userId"]}
    for s in sessions:
        urls.append(f"/api/projects/{project}/sessions/{s['sessionId']}")
    for url in urls:
        answer = client.get(url, headers=API)
        assert answer.status_code == 200, (url, answer.get_json())
        found[url.replace(project, "P")] = without_ids(answer.get_json(), ids)
    return found


def test_erasing_a_user_answers_as_if_never_stored(app: Flask, client: FlaskClient) -> None:
    batches = _batches(seed=11)
    for user, body in batches:
        for key in ("erased", "oracle") if user != "alice" else ("erased",):
            copy = json.loads(json.dumps(body))
            if key == "oracle":  # new event ids: the same events, stored a second time
                for item in copy["events"]:
                    item["eventId"] = "o-" + item["eventId"]
            answer = client.post("/ingest", json=copy, headers=headers(key))
            assert answer.status_code == 200, answer.get_json()
    projects = {
        row.split("\t")[1]: row.split("\t")[0]
        for row in app.test_cli_runner().invoke(args=["heat", "project", "list"]).output.splitlines()
    }
    erased, oracle = projects["erased"], projects["oracle"]
    alice_rows = sum(len(e.get("points", [])) or 1 for user, body in batches if user == "alice" for e in body["events"])
    assert alice_rows > 0 and _answers(client, erased) != _answers(client, oracle)

    runner = app.test_cli_runner()
    dry = runner.invoke(args=["heat", "erase", "--project-id", erased, "--user-id", "alice", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["found"]["events"] == alice_rows
    assert _answers(client, erased) != _answers(client, oracle)  # a dry run changes nothing

    done = runner.invoke(args=["heat", "erase", "--project-id", erased, "--user-id", "alice"])
    assert done.exit_code == 0, done.output
    answer = json.loads(done.stdout)
    assert answer["verified"] is True
    alice_sessions = sum(1 for user, _ in batches if user == "alice")
    assert answer["erased"] == {"users": 1, "sessions": alice_sessions, "events": alice_rows}
    assert _answers(client, erased) == _answers(client, oracle)

    again = runner.invoke(args=["heat", "erase", "--project-id", erased, "--user-id", "alice"])
    assert json.loads(again.stdout) == {"erased": {"users": 0, "sessions": 0, "events": 0}, "verified": True}


def test_erasing_after_compaction_and_by_internal_id(app: Flask, client: FlaskClient) -> None:
    batches = _batches(seed=5)
    for user, body in batches:
        for key in ("erased", "oracle") if user != "bob" else ("erased",):
            copy = json.loads(json.dumps(body))
            if key == "oracle":
                for item in copy["events"]:
                    item["eventId"] = "o-" + item["eventId"]
            assert client.post("/ingest", json=copy, headers=headers(key)).status_code == 200
    runner = app.test_cli_runner()
    assert runner.invoke(args=["heat", "compact"]).exit_code == 0
    listed = runner.invoke(args=["heat", "project", "list"]).output.splitlines()
    projects = {row.split("\t")[1]: row.split("\t")[0] for row in listed}
    erased, oracle = projects["erased"], projects["oracle"]
    sessions = client.get(f"/api/projects/{erased}/sessions?userId=bob&limit=200", headers=API).get_json()
    internal = sessions["sessions"][0]["userId"]
    done = runner.invoke(args=["heat", "erase", "--project-id", erased, "--user-id", internal])
    assert json.loads(done.stdout)["verified"] is True
    assert _answers(client, erased) == _answers(client, oracle)


def test_erasing_a_session_and_a_time_range(app: Flask, client: FlaskClient) -> None:
    batches = _batches(seed=23)
    cut = TS + DAY + DAY // 3
    target = batches[0][1]["session"]["id"]
    for _user, body in batches:
        for key in ("erased", "oracle"):
            copy = json.loads(json.dumps(body))
            if key == "oracle":
                copy["events"] = [e for e in copy["events"] if e["ts"] >= cut]
                if copy["session"]["id"] == target or not copy["events"]:
                    continue
                for item in copy["events"]:
                    item["eventId"] = "o-" + item["eventId"]
            assert client.post("/ingest", json=copy, headers=headers(key)).status_code == 200
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["heat", "project", "list"]).output.splitlines()
    projects = {row.split("\t")[1]: row.split("\t")[0] for row in listed}
    erased, oracle = projects["erased"], projects["oracle"]
    one = runner.invoke(args=["heat", "erase", "--project-id", erased, "--session-id", target])
    assert json.loads(one.stdout)["erased"]["sessions"] == 1
    before = runner.invoke(args=["heat", "erase", "--project-id", erased, "--before", str(cut)])
    assert json.loads(before.stdout)["verified"] is True, before.output

    def comparable(answers: dict[str, Any]) -> dict[str, Any]:
        # Sessions keep their startedAt/lastSeenAt from the SDK; the oracle's batches were cut.
        return {url: body for url, body in answers.items() if "/sessions" not in url}

    assert comparable(_answers(client, erased)) == comparable(_answers(client, oracle))


def test_erase_writes_audit_lines_without_personal_data(app: Flask, client: FlaskClient, logs: ListHandler) -> None:
    body = batch(event("click"), session_id="s-secret", user={"id": "dana@example.com"})
    project = client.post("/ingest", json=body, headers=headers()).get_json()["projectId"]
    runner = app.test_cli_runner()
    runner.invoke(args=["heat", "erase", "--project-id", project, "--user-id", "dana@example.com"])
    audits = [r for r in logs.records() if r.get("audit") == "erase"]
    assert [r["phase"] for r in audits] == ["start", "end"]
    line = json.dumps(audits)
    assert "dana@example.com" not in line and "s-secret" not in line
    assert audits[1]["events"] == 1 and audits[1]["users"] == 1 and audits[1]["actor"] == "cli"


ADMIN = "admin-key-1"


def _admin_app(make_app: Any) -> Flask:
    app: Flask = make_app(admin_api_keys=[ADMIN])
    return app


def test_erase_and_export_over_http_with_admin_keys_only(make_app: Any, logs: ListHandler) -> None:
    app = _admin_app(make_app)
    client = app.test_client()
    batches = _batches(seed=3)
    for _user, body in batches:
        assert client.post("/ingest", json=body, headers=headers()).status_code == 200
    project = client.post("/ingest", json=batch(event("click")), headers=headers()).get_json()["projectId"]
    carol = [(u, b) for u, b in batches if u == "carol"]
    carol_rows = sum(len(e.get("points", [])) or 1 for _, b in carol for e in b["events"])
    url = f"/api/projects/{project}/users/carol"

    # Admin keys are not query keys, and query keys are not admin keys.
    assert client.get(f"/api/projects/{project}/events", headers={"x-api-key": ADMIN}).status_code == 401
    for key in (QUERY_KEY, "wrong"):
        refused = client.delete(url, headers={"x-api-key": key})
        assert refused.status_code == 401 and refused.get_json()["code"] == "invalid_api_key"
    assert client.delete(url).get_json()["code"] == "missing_api_key"

    exported = client.get(f"{url}/export", headers={"Authorization": f"Bearer {ADMIN}"})
    assert exported.status_code == 200 and exported.is_streamed
    document = json.loads(exported.get_data(as_text=True))
    assert document["user"]["externalId"] == "carol"
    assert sorted(s["id"] for s in document["sessions"]) == sorted(b["session"]["id"] for _, b in carol)
    assert len(document["events"]) == carol_rows
    assert {e["sessionId"] for e in document["events"]} <= {s["id"] for s in document["sessions"]}

    cli = app.test_cli_runner().invoke(args=["heat", "export", "--project-id", project, "--user-id", "carol"])
    assert json.loads(cli.stdout) == document

    dry = client.delete(f"{url}?dryRun=true", headers={"x-api-key": ADMIN}).get_json()
    assert dry == {"found": {"users": 1, "sessions": len(carol), "events": carol_rows}, "dryRun": True}
    done = client.delete(url, headers={"x-api-key": ADMIN})
    assert done.status_code == 200
    assert done.get_json() == {
        "erased": {"users": 1, "sessions": len(carol), "events": carol_rows},
        "verified": True,
    }
    again = client.delete(url, headers={"x-api-key": ADMIN}).get_json()
    assert again == {"erased": {"users": 0, "sessions": 0, "events": 0}, "verified": True}
    empty = json.loads(client.get(f"{url}/export", headers={"x-api-key": ADMIN}).get_data(as_text=True))
    assert empty == {"user": None, "users": [], "sessions": [], "events": []}

    audits = [r for r in logs.records() if r.get("audit") and r["phase"] == "end"]
    assert [r["audit"] for r in audits] == ["export", "export", "erase", "erase", "erase", "export"]
    assert all(r["actor"].startswith("key:") and ADMIN not in json.dumps(r) for r in audits if r["actor"] != "cli")
    assert all("carol" not in json.dumps(r) for r in audits)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # never reaches storage
def test_admin_keys_must_differ_from_query_keys(make_app: Any) -> None:
    with pytest.raises(ConfigurationError, match="HEAT_ADMIN_API_KEYS"):
        make_app(admin_api_keys=[QUERY_KEY])


def test_export_reads_events_a_page_at_a_time(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from flask_heat_collector import lifecycle

    monkeypatch.setattr(lifecycle, "EXPORT_PAGE", 7)  # pages of 7 stored events
    app = _admin_app(make_app)
    client = app.test_client()
    sent = []
    for index in range(5):
        events = [event("click", ts=TS + index * 1000 + i, x=i, y=index) for i in range(9)]
        events.append(event("move", ts=TS + index * 1000 + 20, points=[{"x": 1, "y": 2, "tsOffset": 5}] * 3))
        sent += events
        body = batch(*events, session_id=f"s-{index}", user={"id": "erin"})
        project = client.post("/ingest", json=body, headers=headers()).get_json()["projectId"]
    exported = client.get(f"/api/projects/{project}/users/erin/export", headers={"x-api-key": ADMIN})
    document = json.loads(exported.get_data(as_text=True))
    assert len(document["events"]) == 5 * 9 + 5 * 3
    listed = client.get(f"/api/projects/{project}/events?limit=1000", headers={"x-api-key": QUERY_KEY}).get_json()
    assert sorted(e["id"] for e in document["events"]) == sorted(e["id"] for e in listed["events"])
    order = [(e["ts"], e["id"]) for e in document["events"]]
    assert [ts for ts, _ in order] == sorted(ts for ts, _ in order)


def test_export_pages_on_a_unique_key_when_events_tie_on_ts_and_seq(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_heat_collector import ingest, lifecycle

    monkeypatch.setattr(lifecycle, "EXPORT_PAGE", 1)
    # Two workers whose clocks read the same microsecond give their events the same seq.
    monkeypatch.setattr(ingest, "time", SimpleNamespace(time_ns=lambda: 1_700_000_000_000_000_000))
    workers = [_admin_app(make_app), _admin_app(make_app)]
    sent = []
    for index, worker in enumerate(workers):
        worker.extensions["heat_collector"].seq = ingest.SeqClock()
        body = batch(event("click", ts=TS, x=index), session_id=f"s-{index}", user={"id": "erin"})
        project = ingest_all(worker.test_client(), [body])
        sent.append(body["events"][0]["eventId"])
    exported = workers[0].test_client().get(f"/api/projects/{project}/users/erin/export", headers={"x-api-key": ADMIN})
    document = json.loads(exported.get_data(as_text=True))
    assert sorted(e["eventId"] for e in document["events"]) == sorted(sent)


class _Injection:
    """Posts one batch from another thread the first time the erase computes a key-day's aggregate:
    between its read of the key-day and its replacement of the pieces.

    Where the erase's transaction would hold the batch back (SQLite's one writer, MySQL's locks) the
    erase goes on without waiting; the batch is then stored when the erase's transaction ends.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, backend_name: str, post: Any) -> None:
        from flask_heat_collector.repositories import mongo, sql_erase

        self.threads: list[threading.Thread] = []
        self.answers: list[Any] = []
        wait = backend_name in ("mongodb", "postgresql")
        real = sql_erase.rollup

        def rollup(*args: Any, **kwargs: Any) -> Any:
            if not self.threads:
                thread = threading.Thread(target=lambda: self.answers.append(post()))
                self.threads.append(thread)
                thread.start()
                if wait:
                    thread.join(30)
            return real(*args, **kwargs)

        monkeypatch.setattr(sql_erase, "rollup", rollup)
        monkeypatch.setattr(mongo, "rollup", rollup)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(60)
        assert self.threads and not any(t.is_alive() for t in self.threads)


def test_a_batch_of_another_user_stored_during_an_erase_is_not_lost_from_the_heatmap(
    make_app: Any, backend_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _admin_app(make_app)
    client = app.test_client()
    for user in ("alice", "bob"):
        body = batch(*[event("click", x=10 * i, y=20) for i in range(5)], session_id=f"s-{user}", user={"id": user})
        project = ingest_all(client, [body])
    carol = batch(*[event("click", x=10 * i, y=20) for i in range(7)], session_id="s-carol", user={"id": "carol"})
    injection = _Injection(monkeypatch, backend_name, lambda: client.post("/ingest", json=carol, headers=headers()))
    done = client.delete(f"/api/projects/{project}/users/alice", headers={"x-api-key": ADMIN})
    injection.join()
    assert done.status_code == 200 and done.get_json()["verified"] is True
    assert injection.answers[0].status_code == 200 and injection.answers[0].get_json()["accepted"] == 7
    heatmap = client.get(f"/api/projects/{project}/heatmap?type=click", headers=API).get_json()
    assert heatmap["meta"]["total"] == 5 + 7
    assert sum(point["value"] for point in heatmap["points"]) == 5 + 7


def _alice_and_bob(client: FlaskClient) -> str:
    """Alice (two sessions) and Bob on the same page; the project id."""
    bodies = [
        batch(event("click", x=1), event("scroll"), session_id="s-alice-1", user={"id": "alice", "traits": {"a": 1}}),
        batch(event("click", x=2), session_id="s-alice-2", user={"id": "alice"}),
        batch(event("click", x=3), session_id="s-bob", user={"id": "bob"}),
    ]
    return ingest_all(client, bodies)


def _nothing_of_alice(client: FlaskClient, project: str) -> None:
    """No query or export finds anything Alice sent."""
    export = client.get(f"/api/projects/{project}/users/alice/export", headers={"x-api-key": ADMIN})
    assert json.loads(export.get_data(as_text=True)) == {"user": None, "users": [], "sessions": [], "events": []}
    sessions = client.get(f"/api/projects/{project}/sessions?limit=200", headers=API).get_json()["sessions"]
    assert [s["sessionId"] for s in sessions] == ["s-bob"]
    listed = client.get(f"/api/projects/{project}/events?limit=1000", headers=API).get_json()["events"]
    assert [e["sessionId"] for e in listed] == ["s-bob"]


def test_a_batch_of_the_user_during_the_erase_stores_nothing(
    make_app: Any, backend: str, backend_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new tab of Alice opens while she is erased: the erase still leaves nothing of her."""
    app = _admin_app(make_app)
    client = app.test_client()
    project = _alice_and_bob(client)
    new_tab = batch(event("click", x=4), event("click", x=5), session_id="s-alice-new-tab", user={"id": "alice"})
    injection = _Injection(
        monkeypatch,
        backend_name,
        lambda: client.post("/ingest", json=new_tab, headers=headers(), environ_base={"REMOTE_ADDR": "203.0.113.7"}),
    )
    done = client.delete(f"/api/projects/{project}/users/alice", headers={"x-api-key": ADMIN})
    injection.join()
    assert done.get_json() == {"erased": {"users": 1, "sessions": 2, "events": 3}, "verified": True}
    answer = injection.answers[0]
    assert answer.status_code == 200
    assert (answer.get_json()["accepted"], answer.get_json()["dropped"]) == (0, 2)
    _nothing_of_alice(client, project)
    stored = dump_database(backend)
    assert "s-alice-new-tab" not in stored and '{"a": 1}' not in stored and '{"a":1}' not in stored


def test_a_batch_of_an_erased_user_after_the_erase_is_dropped_and_counted(make_app: Any) -> None:
    app = _admin_app(make_app)
    client = app.test_client()
    project = _alice_and_bob(client)
    runner = app.test_cli_runner()
    done = runner.invoke(args=["heat", "erase", "--project-id", project, "--user-id", "alice"])
    assert json.loads(done.stdout)["verified"] is True
    # A late batch of an erased session, and a new one: both answered 200 (the SDK must not retry)
    # with every event dropped.
    for session in ("s-alice-1", "s-alice-3"):
        late = batch(event("click"), event("move"), session_id=session, user={"id": "alice", "traits": {"b": 2}})
        answer = client.post("/ingest", json=late, headers=headers())
        assert answer.status_code == 200
        assert {k: answer.get_json()[k] for k in ("accepted", "duplicates", "dropped")} == {
            "accepted": 0,
            "duplicates": 0,
            "dropped": 2,
        }
    _nothing_of_alice(client, project)
    metrics = client.get("/metrics", headers=API).get_data(as_text=True)
    assert 'heat_collector_events_dropped_total{reason="erased_user",type="click"} 2.0' in metrics
    again = runner.invoke(args=["heat", "erase", "--project-id", project, "--user-id", "alice"])
    assert json.loads(again.stdout) == {"erased": {"users": 0, "sessions": 0, "events": 0}, "verified": True}
    # Bob is untouched.
    bob = json.loads(
        client.get(f"/api/projects/{project}/users/bob/export", headers={"x-api-key": ADMIN}).get_data(as_text=True)
    )
    assert [s["id"] for s in bob["sessions"]] == ["s-bob"] and len(bob["events"]) == 1


def test_an_erased_user_is_remembered_for_the_erased_user_ttl(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    app = make_app(admin_api_keys=[ADMIN], retention_days=3650, erased_user_ttl_days=2)
    client = app.test_client()
    project = _alice_and_bob(client)
    runner = app.test_cli_runner()
    runner.invoke(args=["heat", "erase", "--project-id", project, "--user-id", "alice"])
    comeback = batch(event("click"), session_id="s-alice-4", user={"id": "alice"})
    purged = json.loads(runner.invoke(args=["heat", "purge"]).stdout)
    assert purged["purged"]["users"] == 0  # remembered: within its time
    assert client.post("/ingest", json=comeback, headers=headers()).get_json()["accepted"] == 0
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3 * 86_400)
    purged = json.loads(runner.invoke(args=["heat", "purge"]).stdout)
    monkeypatch.setattr(time, "time", real)
    assert purged["purged"]["users"] == 1  # the tombstone is gone
    assert client.post("/ingest", json=comeback, headers=headers()).get_json()["accepted"] == 1


def _export(client: FlaskClient, project: str, user: str) -> dict[str, Any]:
    answer = client.get(f"/api/projects/{project}/users/{user}/export", headers={"x-api-key": ADMIN})
    assert answer.status_code == 200
    document: dict[str, Any] = json.loads(answer.get_data(as_text=True))
    return document


@pytest.mark.parametrize("erased", ["alice", "bob"])
def test_a_browser_session_that_changes_hands_is_exported_and_erased_per_user(make_app: Any, erased: str) -> None:
    """Bob logs in on Alice's tab: each export and erase covers exactly the events that user sent."""
    app = _admin_app(make_app)
    client = app.test_client()
    alice_tab = batch(event("click", x=1), event("scroll"), session_id="s-tab", user={"id": "alice"})
    bob_on_it = batch(event("click", x=2), event("click", x=3), session_id="s-tab", user={"id": "bob"})
    bob_own = batch(event("click", x=4), session_id="s-bob", user={"id": "bob"})
    for body, ip in ((alice_tab, "198.51.100.1"), (bob_on_it, "198.51.100.2"), (bob_own, "198.51.100.2")):
        answer = client.post("/ingest", json=body, headers=headers(), environ_base={"REMOTE_ADDR": ip})
        assert answer.status_code == 200
    project = answer.get_json()["projectId"]
    sent = {
        "alice": {e["eventId"] for e in alice_tab["events"]},
        "bob": {e["eventId"] for e in bob_on_it["events"] + bob_own["events"]},
    }
    tab = client.get(f"/api/projects/{project}/sessions/s-tab", headers=API).get_json()["session"]
    alice_ip = tab["ipHash"]  # the row was made by Alice's batch
    assert alice_ip is not None

    def exported(user: str) -> tuple[set[str], dict[str, Any]]:
        document = _export(client, project, user)
        return {e["eventId"] for e in document["events"]}, {s["id"]: s for s in document["sessions"]}

    events, sessions = exported("alice")
    assert events == sent["alice"] and set(sessions) == {"s-tab"}
    assert sessions["s-tab"]["ipHash"] == alice_ip
    events, sessions = exported("bob")
    assert events == sent["bob"] and set(sessions) == {"s-tab", "s-bob"}
    assert sessions["s-tab"]["ipHash"] is None and sessions["s-tab"]["userAgent"] is None  # Alice's, not his

    kept = "bob" if erased == "alice" else "alice"
    done = client.delete(f"/api/projects/{project}/users/{erased}", headers={"x-api-key": ADMIN}).get_json()
    assert done["verified"] is True
    assert done["erased"]["events"] == len(sent[erased])
    assert _export(client, project, erased) == {"user": None, "users": [], "sessions": [], "events": []}
    events, sessions = exported(kept)
    assert events == sent[kept]
    listed = client.get(f"/api/projects/{project}/events?limit=1000", headers=API).get_json()["events"]
    assert {e["eventId"] for e in listed} == sent[kept]
    tab = client.get(f"/api/projects/{project}/sessions/s-tab", headers=API).get_json()["session"]
    assert tab["externalUserId"] == kept
    assert "s-tab" in sessions
    # What Alice's batch put in the row stays hers: erased with her, kept with her.
    assert tab["ipHash"] == (None if erased == "alice" else alice_ip)
    counted = {
        s["sessionId"]: s["eventCount"]
        for s in client.get(f"/api/projects/{project}/sessions", headers=API).get_json()["sessions"]
    }
    assert counted["s-tab"] == 2  # both sent two events in it


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"], indirect=True)
def test_migrate_adds_the_tombstone_and_session_owner_to_an_existing_database(make_app: Any, backend: str) -> None:
    import sqlalchemy as sa

    app = _admin_app(make_app)
    client = app.test_client()
    project = _alice_and_bob(client)
    app.extensions["heat_collector"].repository.dispose()
    engine = sa.create_engine(backend)
    with engine.begin() as conn:  # the layout before: no erased_at, no first_user_id
        conn.exec_driver_sql("ALTER TABLE users DROP COLUMN erased_at")
        conn.exec_driver_sql("ALTER TABLE sessions DROP COLUMN first_user_id")
    engine.dispose()
    runner = app.test_cli_runner()
    assert runner.invoke(args=["heat", "migrate"]).exit_code == 0
    # Sessions stored before: their row is their user's.
    assert [s["id"] for s in _export(client, project, "alice")["sessions"]] == ["s-alice-1", "s-alice-2"]
    done = runner.invoke(args=["heat", "erase", "--project-id", project, "--user-id", "alice"])
    assert json.loads(done.stdout) == {"erased": {"users": 1, "sessions": 2, "events": 3}, "verified": True}
    late = client.post("/ingest", json=batch(event("click"), user={"id": "alice"}), headers=headers())
    assert late.get_json()["accepted"] == 0
    _nothing_of_alice(client, project)


def test_an_erase_raced_by_the_users_own_browser_leaves_nothing(make_app: Any, backend_name: str) -> None:
    """Two tabs of Alice keep sending batches (each from a new session) while she is erased."""
    app = make_app(admin_api_keys=[ADMIN], rate_limit="100000 per 10 seconds")
    client = app.test_client()
    project = _alice_and_bob(client)
    erased = threading.Event()
    answers: list[Any] = []
    late: list[Any] = []

    def tab(number: int) -> None:
        tab_client = app.test_client()

        def send(index: int) -> Any:
            body = batch(event("click", x=index), session_id=f"s-tab-{number}-{index}", user={"id": "alice"})
            return tab_client.post("/ingest", json=body, headers=headers())

        for index in range(400):  # until the erase is over
            if erased.is_set():
                break
            answers.append(send(index))
        erased.wait(120)
        late.append(send(400))

    tabs = [threading.Thread(target=tab, args=(n,)) for n in range(2)]
    for thread in tabs:
        thread.start()
    done = app.test_cli_runner().invoke(args=["heat", "erase", "--project-id", project, "--user-id", "alice"])
    erased.set()
    for thread in tabs:
        thread.join(120)
    assert not any(thread.is_alive() for thread in tabs)
    assert all(answer.status_code == 200 for answer in answers + late)
    if backend_name != "mongodb":  # MongoDB: a batch that raced the start may still be erasing itself
        assert json.loads(done.stdout)["verified"] is True
    assert [answer.get_json()["accepted"] for answer in late] == [0, 0]  # sent after the erase: dropped
    _nothing_of_alice(client, project)
    again = app.test_cli_runner().invoke(args=["heat", "erase", "--project-id", project, "--user-id", "alice"])
    assert json.loads(again.stdout) == {"erased": {"users": 0, "sessions": 0, "events": 0}, "verified": True}


@pytest.mark.parametrize("backend", ["mongo"], indirect=True)  # SQL: the mark is read in the batch's transaction
def test_a_mongodb_batch_that_raced_the_start_of_the_erase_erases_itself(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No transactions: the erase starts after the batch read the mark and before its last write."""
    from flask_heat_collector.repositories.mongo import MongoRepository

    app = _admin_app(make_app)
    client = app.test_client()
    project = _alice_and_bob(client)
    real = MongoRepository._upsert_session
    erases: list[Any] = []

    def racing(self: MongoRepository, *args: Any) -> None:
        if not erases:
            erases.append(
                app.test_cli_runner().invoke(args=["heat", "erase", "--project-id", project, "--user-id", "alice"])
            )
        real(self, *args)

    monkeypatch.setattr(MongoRepository, "_upsert_session", racing)
    raced = batch(event("click"), event("scroll"), session_id="s-alice-raced", user={"id": "alice"})
    answer = client.post("/ingest", json=raced, headers=headers()).get_json()
    assert json.loads(erases[0].stdout)["erased"]["users"] == 1
    assert (answer["accepted"], answer["dropped"]) == (0, 2)
    _nothing_of_alice(client, project)
