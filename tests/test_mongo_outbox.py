"""MongoDB: a batch stopped halfway by a crash is finished from its outbox document (mongo_outbox).

Each test stores batches through ``POST /ingest``, then uses pymongo to put the database in the state
a process killed halfway through one batch leaves (its outbox document, its session still naming it
as pending, its events stored or not, none of its pieces), then runs ``flask heat compact``, starts a
new app (``migrate()`` at start) or erases, and compares the answers with the plain oracle.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Callable
from typing import Any

import pytest
from bson import ObjectId
from flask import Flask
from flask.testing import FlaskClient
from pymongo.database import Database

from . import oracle
from .helpers import API, batch, event, headers

pytestmark = pytest.mark.parametrize("backend", ["mongo"], indirect=True)

DAY = 86_400_000
T = 1_790_035_200_000  # a UTC midnight in the past; the data covers three days from there
PAGES = ("/", "/pricing", "/docs")
VIEWS = ({"w": 1280, "h": 800, "meta": {"viewportBucket": "1280x800"}}, {"w": 390, "h": 844})
ADMIN = "outbox-admin-key"
OLD = 120_000  # an outbox document this old (ms) belongs to a stopped process
Doc = dict[str, Any]


def _app(make_app: Callable[..., Flask], **options: Any) -> Flask:
    """No compaction after ingest: a test decides when pieces are merged."""
    return make_app(aggregate_compact_seconds=0, aggregate_compact_batches=0, admin_api_keys=[ADMIN], **options)


def _db(app: Flask) -> Database[Doc]:
    db: Database[Doc] = app.extensions["heat_collector"].repository.db
    return db


def _bodies(seed: int, sessions: int = 6, *, user: str | None = None) -> list[Doc]:
    rng = random.Random(seed)
    bodies = []
    for s in range(sessions):
        view = rng.choice(VIEWS)
        ts = T + rng.randint(0, 2 * DAY)
        found = []
        for _ in range(rng.randint(6, 20)):
            ts += rng.choice([100, 400, 2_000, 60_000, 3_600_000])
            path, kind = rng.choice(PAGES), rng.random()
            common: Doc = {"ts": ts, "path": path, **view}
            if kind < 0.5:
                x, y = rng.choice([(100, 100), (110, 104), (640, 300)])
                found.append(event("click", x=x, y=y, selector=rng.choice(["#a", "#b", "nav a"]), **common))
            elif kind < 0.7:
                found.append(event("scroll", scrollY=10, scrollDepthPct=rng.choice([10, 45.5, 100]), **common))
            elif kind < 0.9:
                offsets = sorted(rng.sample(range(0, 5_000), 4))
                points = [{"x": 10 * i, "y": 20 + i, "tsOffset": off} for i, off in enumerate(offsets)]
                found.append(event("move", points=points, **common))
            else:
                found.append(event("pageview", to=path, **common))
        bodies.append(batch(*found, session_id=f"{seed}-s{s}", user={"id": user} if user else None))
    return bodies


def _post(client: FlaskClient, body: Doc) -> Doc:
    response = client.post("/ingest", json=body, headers=headers())
    assert response.status_code == 200, response.get_json()
    answer: Doc = response.get_json()
    return answer


def _ids(db: Database[Doc], name: str) -> set[Any]:
    return {doc["_id"] for doc in db[name].find({}, {"_id": 1})}


def _crash_last(client: FlaskClient, app: Flask, bodies: list[Doc], **crash: Any) -> Doc:
    """Post every body but the last, then :func:`_crash` in the last (``crash``: its options)."""
    for body in bodies[:-1]:
        _post(client, body)
    return _crash(client, app, bodies[-1], **crash)


def _crash(
    client: FlaskClient,
    app: Flask,
    body: Doc,
    *,
    age: int = OLD,
    events: bool = True,
    pieces: bool = False,
    counted: bool = False,
    grown: dict[str, tuple[int, int]] | None = None,
) -> Doc:
    """Post ``body``, then leave the database as a process stopped halfway through it would: its outbox
    document (``age`` ms old), its events only with ``events``, its pieces only with ``pieces``, its
    session not counting its rows and naming it pending unless ``counted`` (stopped just before
    deleting its outbox document); ``grown``: the moves it appended to (id: from, to)."""
    db = _db(app)
    before = {name: _ids(db, name) for name in ("events", "heat_aggregates", "heat_report_pieces")}
    answer = _post(client, body)
    project, session = answer["projectId"], body["session"]["id"]
    own = [doc for doc in db.events.find({"projectId": project}) if doc["_id"] not in before["events"]]
    batch_id, part = ObjectId(), secrets.randbits(62) + 1
    seqs = [int(doc["seq"]) for doc in own] or [0]
    db.heat_outbox.insert_one(
        {
            "_id": batch_id,
            "at": int(time.time() * 1000) - age,
            "projectId": project,
            "sessionId": session,
            "userId": own[0]["userId"] if own else None,
            "part": part,
            "seq": [min(seqs), max(seqs)],
            "ids": [e["eventId"] for e in body["events"]],
            "moves": [[e["eventId"], len(e["points"])] for e in body["events"] if e["type"] == "move"],
            "span": 0,
        }
    )
    for event_id, (start, end) in (grown or {}).items():
        mark = {"by": batch_id, "from": start, "to": end}
        db.events.update_one({"projectId": project, "eventId": event_id}, {"$push": {"grown": mark}})
    for name in ("heat_aggregates", "heat_report_pieces"):
        written = {"_id": {"$in": list(_ids(db, name) - before[name])}}
        if pieces:  # under the part of the outbox document made above
            db[name].update_many(written, {"$set": {"part": part}})
        else:
            db[name].delete_many(written)
    if not pieces:
        db.heat_rage_pending.delete_many({"projectId": project, "sessionId": session})
    if not events:
        db.events.delete_many({"_id": {"$in": [doc["_id"] for doc in own]}})
    if not counted:
        db.sessions.update_one(
            {"projectId": project, "id": session},
            {"$inc": {"eventCount": -int(answer["accepted"])}, "$push": {"pending": batch_id}},
        )
    return {"project": project, "batch_id": batch_id, "part": part}


def _get(client: FlaskClient, url: str, **params: Any) -> Doc:
    response = client.get(url, query_string=params, headers=API)
    assert response.status_code == 200, (url, params, response.get_json())
    body: Doc = response.get_json()
    return body


WHOLE_DAYS = (T - DAY, T + 4 * DAY - 1)  # read from pieces only
EDGES = (T + DAY // 3, T + 2 * DAY + DAY // 2)  # and partial days at its edges, read from rows


SIGNAL_FIELDS = ("rageClicks", "deadClicks", "errorClicks", "quickBacks", "excessiveScrolls")


def _without_signals(items: list[Doc]) -> list[Doc]:
    return [{k: v for k, v in item.items() if k not in SIGNAL_FIELDS} for item in items]


def _differences(
    client: FlaskClient,
    project: str,
    bodies: list[Doc],
    ranges: tuple[tuple[int, int], ...] = (WHOLE_DAYS, EDGES),
    *,
    signals: bool = True,
) -> list[str]:
    """Where heatmap, elements, paths, scroll map (and with both ranges, session counts) differ from the
    oracle's (without ``signals``: leaving out the signal counts, which are decided from raw rows)."""
    rows = oracle.stored_rows(bodies)
    failures = []
    strip = (lambda items: items) if signals else _without_signals
    for lo, hi in ranges:
        for path in (None, *PAGES):
            where = {"path": path} if path else {}
            for kind in ("click", "move", "scroll"):
                got = _get(client, f"/api/projects/{project}/heatmap", **{"from": lo, "to": hi}, **where, type=kind)
                want = oracle.heatmap(rows, path=path, ts_from=lo, ts_to=hi, type=kind)
                if got["points"] != want["points"] or got["meta"]["total"] != want["meta"]["total"]:
                    failures.append(f"heatmap {lo}..{hi} {path} {kind}: {got['meta']} != {want['meta']}")
            got = _get(client, f"/api/projects/{project}/elements", **{"from": lo, "to": hi}, **where)
            want_elements = oracle.elements(rows, path=path, ts_from=lo, ts_to=hi, type="click")
            if strip(got["elements"]) != strip(want_elements):
                failures.append(f"elements {lo}..{hi} {path}: {got['elements']} != {want_elements}")
            got = _get(client, f"/api/projects/{project}/scrollmap", **{"from": lo, "to": hi}, **where)
            want = oracle.scrollmap(rows, path=path, ts_from=lo, ts_to=hi, viewports="width")
            if got["reach"] != pytest.approx(want["reach"]) or got["meta"]["sessions"] != want["meta"]["sessions"]:
                failures.append(f"scrollmap {lo}..{hi} {path}: {got} != {want}")
        got_paths = _get(client, f"/api/projects/{project}/paths", **{"from": lo, "to": hi})["paths"]
        want_paths = oracle.paths(rows, ts_from=lo, ts_to=hi, q=None)
        if strip(got_paths) != strip(want_paths):
            failures.append(f"paths {lo}..{hi}: {got_paths} != {want_paths}")
    if len(ranges) < 2:
        return failures
    listed = _get(client, f"/api/projects/{project}/sessions", limit=200)["sessions"]
    counts = {s["sessionId"]: s["eventCount"] for s in listed if s["eventCount"]}
    if counts != oracle.session_event_counts(rows):
        failures.append(f"session counts {counts} != {oracle.session_event_counts(rows)}")
    return failures


def _compact(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["heat", "compact"])
    assert result.exit_code == 0, result.output


def _pending(app: Flask) -> list[Doc]:
    return list(_db(app).heat_outbox.find())


def _migrate(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["heat", "migrate"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("stage", ["before its pieces", "before its events"])
def test_compact_finishes_a_stopped_batch_exactly_once(make_app: Callable[..., Flask], stage: str) -> None:
    app = _app(make_app)
    client = app.test_client()
    bodies = _bodies(1)
    for body in bodies[:-1]:
        _post(client, body)
    # Sent again by the crashed batch: stored before, so duplicates that must not count again.
    last = dict(bodies[-1], events=[*bodies[-1]["events"], *bodies[0]["events"][:3]])
    crashed = _crash(client, app, last, events=stage == "before its pieces")
    stored = bodies[:-1] + ([last] if stage == "before its pieces" else [])
    if stage == "before its pieces":
        assert _differences(client, crashed["project"], stored)  # the crash shows: pieces and counts missing
    _compact(app)
    assert _pending(app) == []
    assert _differences(client, crashed["project"], stored) == []
    session = _db(app).sessions.find_one({"id": last["session"]["id"]})
    assert session is not None and session["pending"] == []


def test_a_replay_stopped_halfway_and_replayed_again_counts_once(make_app: Callable[..., Flask]) -> None:
    """``flask heat migrate`` replays without merging: the same outbox document replayed twice (a
    replay stopped before deleting it), then compaction, still counts every row once."""
    app = _app(make_app)
    client = app.test_client()
    bodies = _bodies(7)
    crashed = _crash_last(client, app, bodies)
    outbox = _pending(app)[0]
    _migrate(app)
    assert _pending(app) == []
    _db(app).heat_outbox.insert_one(outbox)
    _migrate(app)
    assert _pending(app) == []
    assert _differences(client, crashed["project"], bodies) == []
    _compact(app)
    assert _differences(client, crashed["project"], bodies) == []


def test_a_batch_stopped_after_its_last_write_is_not_counted_twice(make_app: Callable[..., Flask]) -> None:
    app = _app(make_app)
    client = app.test_client()
    bodies = _bodies(8)
    crashed = _crash_last(client, app, bodies, pieces=True, counted=True)
    _compact(app)
    assert _pending(app) == []
    assert _differences(client, crashed["project"], bodies) == []


def test_a_young_outbox_document_is_left_to_its_writer(make_app: Callable[..., Flask]) -> None:
    """Compaction neither replays a batch younger than the grace period nor merges its pieces; once it
    is old, its replay writes the same pieces again, so nothing counts twice."""
    app = _app(make_app)
    client = app.test_client()
    bodies = _bodies(2)
    crashed = _crash_last(client, app, bodies, age=0, pieces=True)
    db, part = _db(app), crashed["part"]
    fresh = {name: db[name].count_documents({"part": part}) for name in ("heat_aggregates", "heat_report_pieces")}
    assert all(fresh.values())
    _compact(app)
    assert [doc["_id"] for doc in _pending(app)] == [crashed["batch_id"]]
    for name, count in fresh.items():
        assert db[name].count_documents({"part": part}) == count  # not merged while pending
        assert db[name].count_documents({"part": {"$gt": 0}}) == count  # the others were
    db.heat_outbox.update_one({"_id": crashed["batch_id"]}, {"$set": {"at": 0}})
    _compact(app)
    assert _pending(app) == []
    assert _differences(client, crashed["project"], bodies) == []


def test_migrate_at_start_finishes_a_stopped_batch(make_app: Callable[..., Flask]) -> None:
    app = _app(make_app)
    client = app.test_client()
    bodies = _bodies(3)
    crashed = _crash_last(client, app, bodies)
    restarted = _app(make_app)  # HEAT_AUTO_MIGRATE: migrate() at start
    assert _pending(restarted) == []
    assert _differences(restarted.test_client(), crashed["project"], bodies) == []


def test_a_resent_move_is_counted_from_the_points_the_batch_appended(make_app: Callable[..., Flask]) -> None:
    app = _app(make_app)
    client = app.test_client()
    points = [{"x": 5 * i, "y": 40 + i, "tsOffset": 700 * i} for i in range(8)]
    move = event("move", ts=T + DAY + 1_000, points=points[:3], path="/", w=1280, h=800)
    click = event("click", ts=T + DAY + 2_000, x=50, y=60, path="/", w=1280, h=800)
    first = batch(move, click, session_id="m")
    _post(client, first)
    again = batch(dict(move, points=points), click, event("click", ts=T + DAY + 9_000, path="/"), session_id="m")
    crashed = _crash(client, app, again, grown={move["eventId"]: (3, 8)})
    _compact(app)
    assert _differences(client, crashed["project"], [first, again]) == []
    assert _db(app).events.find_one({"eventId": move["eventId"]})["grown"] == []  # type: ignore[index]


@pytest.mark.parametrize("scope", ["user", "session"])
def test_an_erase_covers_a_pending_batch(make_app: Callable[..., Flask], scope: str) -> None:
    """The pending batch of the erased user or session is finished first, then erased with the rest:
    nothing of it comes back, not even after a later replay."""
    app = _app(make_app)
    client = app.test_client()
    bodies = _bodies(4)
    alice = _bodies(5, sessions=2, user="alice")
    crashed = _crash_last(client, app, bodies + alice, age=0)  # young: no compaction would have replayed it
    project = crashed["project"]
    args = ["--user-id", "alice"] if scope == "user" else ["--session-id", alice[-1]["session"]["id"]]
    result = app.test_cli_runner().invoke(args=["heat", "erase", "--project-id", project, *args])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verified"] is True
    assert _pending(app) == []
    kept = bodies + (alice[:-1] if scope == "session" else [])
    assert _differences(client, project, kept) == []
    _compact(app)
    assert _differences(client, project, kept) == []


def test_an_erase_by_time_leaves_a_pending_batch_to_its_replay(make_app: Callable[..., Flask]) -> None:
    """An erase that recomputes key-days keeps the pieces of a pending batch and leaves its rows out;
    the replay then counts what is left of the batch."""
    app = _app(make_app)
    client = app.test_client()
    bodies = _bodies(6)
    cut = T + DAY + DAY // 2
    # The stopped batch has rows on both sides of the cut in one key-day, which the erase recomputes.
    around = [event("click", ts=cut + d, x=100, y=100, **VIEWS[0]) for d in (-5_000, -1, 0, 7_000)]
    bodies[-1] = dict(
        bodies[-1], events=[*bodies[-1]["events"], *(dict(e, sessionId=bodies[-1]["session"]["id"]) for e in around)]
    )
    crashed = _crash_last(client, app, bodies, age=0, pieces=True)
    args = ["heat", "erase", "--project-id", crashed["project"], "--before", str(cut)]
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 0, result.output
    _db(app).heat_outbox.update_one({"_id": crashed["batch_id"]}, {"$set": {"at": 0}})
    _compact(app)
    kept = [dict(body, events=[e for e in body["events"] if e["ts"] >= cut]) for body in bodies]
    assert _differences(client, crashed["project"], kept) == []


def test_a_purge_finishes_a_stopped_batch_before_deleting_its_rows(make_app: Callable[..., Flask]) -> None:
    """The raw rows are purged, the pieces kept: the stopped batch is counted from its rows first."""
    app = _app(make_app, retention_days=30)  # every row here is older than that
    client = app.test_client()
    bodies = _bodies(9)
    crashed = _crash_last(client, app, bodies)
    result = app.test_cli_runner().invoke(args=["heat", "purge"])
    assert result.exit_code == 0, result.output
    assert _db(app).events.count_documents({}) == 0
    assert _pending(app) == []
    # The pieces are kept; the signals went with the raw rows they are decided from (as rage clicks do).
    assert _differences(client, crashed["project"], bodies, ranges=(WHOLE_DAYS,), signals=False) == []


def test_a_stopped_batch_of_a_user_erased_since_is_erased_by_its_replay(make_app: Callable[..., Flask]) -> None:
    """The user was marked erased (an erase's first step) while the batch was stopped: its replay
    erases the user's data instead of counting it."""
    app = _app(make_app)
    client = app.test_client()
    bodies = _bodies(10)
    alice = _bodies(11, sessions=2, user="alice")
    crashed = _crash_last(client, app, bodies + alice)
    _db(app).users.update_one({"externalId": "alice"}, {"$set": {"erasedAt": 1, "traitsJson": None}})
    _compact(app)
    assert _pending(app) == []
    assert _differences(client, crashed["project"], bodies) == []
    assert _db(app).events.count_documents({"userId": {"$ne": None}}) == 0
