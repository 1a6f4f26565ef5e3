"""Rage clicks on MongoDB (rageclicks.py): the SQL backends' rules without transactions.

A batch that stored new clicks marks its session pending (a new token) after its events, as it
writes its aggregate pieces (without transactions, a crash in between leaves the session unsettled
until its next batch or `flask heat rebuild-aggregates`). A settle takes a lease on the mark,
writes the difference and deletes the mark only if its token is unchanged: a batch that marked the
session meanwhile leaves it pending for the next settle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pymongo import DeleteMany, DeleteOne
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from ..rageclicks import RageRule, new_token, rage_row, rotated, settle
from ..signal_counts import Counted, changes
from ..signals import DEFAULT_RULES, RAGE, SIGNAL_TYPES, SignalRules
from . import mongo_signals
from .base import EventFilter, EventRow

Doc = dict[str, Any]
Coll = Callable[[str], Collection[Doc]]
CLICKS = "heat_rage_clicks"
PENDING = "heat_rage_pending"
MIGRATIONS = "heat_migrations"  # one document per data migration done
INDEXES: tuple[tuple[str, tuple[str, ...], bool, str], ...] = (
    (CLICKS, ("projectId", "sessionId", "eventId"), True, "uq_heat_rage_clicks_key"),
    (CLICKS, ("projectId", "ts"), False, "ix_heat_rage_clicks_ts"),
    (CLICKS, ("projectId", "pathKey", "ts"), False, "ix_heat_rage_clicks_path_ts"),
    (PENDING, ("projectId", "sessionId"), True, "uq_heat_rage_pending_key"),
    (PENDING, ("projectId", "token"), False, "ix_heat_rage_pending_token"),  # the workers' settles
)
_LEASE_MS = 60_000  # a settle lease older than this belongs to a process that died
_FIELDS = (
    ("event_id", "eventId"),
    ("seq", "seq"),
    ("session_id", "sessionId"),
    ("ts", "ts"),
    ("path", "path"),
    ("path_key", "pathKey"),
    ("selector", "selector"),
    ("x", "x"),
    ("y", "y"),
    ("bucket_w", "bucketW"),
    ("bucket_h", "bucketH"),
    ("view_w", "viewW"),
)
_PROJECTION = {"_id": 0, **{camel: 1 for _, camel in _FIELDS}}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _row(doc: Doc) -> EventRow:
    values: list[Any] = [doc.get(camel) for _, camel in _FIELDS]
    return rage_row(*values)


def mark(coll: Coll, project_id: str, session_ids: list[str]) -> None:
    """Mark these sessions pending (their clicks changed) with a new token."""
    for session_id in sorted(set(session_ids)):
        coll(PENDING).update_one(
            {"projectId": project_id, "sessionId": session_id}, {"$set": {"token": new_token()}}, upsert=True
        )


def forget(coll: Coll, project_id: str, session_ids: list[str]) -> None:
    """Drop the stored rage clicks and signals of these sessions and mark them pending (their events
    are being deleted)."""
    ids = sorted(set(session_ids))
    if ids:
        bots = mongo_signals.bots_among(coll, project_id, ids)
        counted = mongo_signals.stored_counted(coll, project_id, [sid for sid in ids if sid not in bots])
        mongo_signals.count(coll, project_id, changes([], counted))
        coll(CLICKS).delete_many({"projectId": project_id, "sessionId": {"$in": ids}})
        mongo_signals.forget(coll, project_id, ids)
        mongo_signals.write_maps(coll, project_id, [], mongo_signals.gone_maps(counted))
    mark(coll, project_id, ids)


def mark_all(coll: Coll, project_id: str | None = None) -> None:
    """Mark every session with a row of signals.SIGNAL_TYPES pending (after a bulk load, when the
    collections are new, or when the rule changed), of one project when given."""
    match: Doc = {"type": {"$in": list(SIGNAL_TYPES)}}
    if project_id is not None:
        match["projectId"] = project_id
    pairs = coll("events").aggregate([{"$match": match}, {"$group": {"_id": {"p": "$projectId", "s": "$sessionId"}}}])
    for pair in pairs:
        key = {"projectId": pair["_id"]["p"], "sessionId": pair["_id"]["s"]}
        coll(PENDING).update_one(key, {"$setOnInsert": {"token": 1}}, upsert=True)


def migrate(coll: Coll) -> None:
    """The first time (a database of an earlier layout, or a new one): mark every session with a row
    of signals.SIGNAL_TYPES pending, so its rage clicks (and, from migration "signals" on, its other
    signals) are decided from then on; and count the signals stored so far (signal_counts.py), again
    whenever the sessions are marked."""
    marked = False
    for name in ("rage-clicks", "signals", "signal-maps"):
        try:
            coll(MIGRATIONS).insert_one({"_id": name})
        except DuplicateKeyError:
            continue
        if name != "signal-maps":
            mark_all(coll)
        marked = True
    if marked:
        for project in list(coll("projects").find({}, {"_id": 0, "id": 1})):
            mongo_signals.rebuild_counts(coll, str(project["id"]))


def pending(coll: Coll, project_id: str | None, limit: int, before: int | None = None) -> list[tuple[str, str]]:
    """Up to ``limit`` pending ``(project, session)`` pairs (of one project when given); with
    ``before`` (rageclicks.idle_token), those whose mark's token is below it and that no settle
    holds, the longest idle first."""
    match: Doc = {} if project_id is None else {"projectId": project_id}
    fields = {"_id": 0, "projectId": 1, "sessionId": 1}
    if before is None:
        found = list(coll(PENDING).find(match, fields, limit=limit))
    else:  # project after project from a random one (every index leads with the project)
        found, free = [], _free(_now_ms())
        for pid in [project_id] if project_id else rotated(d["id"] for d in coll("projects").find({}, {"id": 1})):
            idle = {"projectId": pid, "token": {"$lt": before}, **free}
            found += coll(PENDING).find(idle, fields, sort=[("token", 1)], limit=limit - len(found))
            if len(found) >= limit:
                break
    return sorted((str(d["projectId"]), str(d["sessionId"])) for d in found)


def _free(now: int) -> Doc:
    """Marks no settle holds (or whose holder died)."""
    return {"$or": [{"lease": {"$exists": False}}, {"lease": None}, {"lease": {"$lt": now - _LEASE_MS}}]}


_SETTLE_CHUNK = 200  # pending sessions settled together: a few commands per chunk, not per session


def settle_sessions(
    coll: Coll, project_id: str, session_ids: list[str], rule: RageRule, signals: SignalRules = DEFAULT_RULES
) -> int:
    """Settle these pending sessions of one project; how many were settled (not held by another
    settle, nor gone). Each chunk of sessions costs a fixed number of commands."""
    ids = sorted(set(session_ids))
    return sum(
        _settle_chunk(coll, project_id, ids[start : start + _SETTLE_CHUNK], rule, signals)
        for start in range(0, len(ids), _SETTLE_CHUNK)
    )


def _settle_chunk(coll: Coll, project_id: str, session_ids: list[str], rule: RageRule, signals: SignalRules) -> int:
    now, holder = _now_ms(), new_token()
    chunk = {"projectId": project_id, "sessionId": {"$in": session_ids}}
    coll(PENDING).update_many({**chunk, **_free(now)}, {"$set": {"lease": now, "holder": holder}})
    marks = {
        str(d["sessionId"]): d["token"]
        for d in coll(PENDING).find({**chunk, "holder": holder}, {"_id": 0, "sessionId": 1, "token": 1})
    }
    if not marks:
        return 0
    held = {"projectId": project_id, "sessionId": {"$in": sorted(marks)}}
    # One read of the sessions' events serves the rage clicks (their clicks) and the signals.
    events: dict[str, list[Doc]] = {sid: [] for sid in sorted(marks)}
    order = [("sessionId", 1), ("ts", 1), ("seq", 1)]
    fields = {**_PROJECTION, **mongo_signals.EVENT_PROJECTION}
    for doc in coll("events").find({**held, "type": {"$in": list(SIGNAL_TYPES)}}, fields, sort=order):
        events[str(doc["sessionId"])].append(doc)
    clicks = {sid: [_row(d) for d in docs if d.get("type") == "click"] for sid, docs in events.items()}
    found: dict[str, list[Doc]] = {sid: [] for sid in marks}
    for doc in coll(CLICKS).find(held, {**mongo_signals.COUNTED_PROJECTION, "eventId": 1, "viewW": 1}):
        found[str(doc["sessionId"])].append(doc)
    bots = mongo_signals.bots_among(coll, project_id, sorted(marks))
    deletes: list[DeleteMany] = []
    docs: list[Doc] = []
    fewer: list[Counted] = []
    for sid in sorted(marks):
        stored = [str(d["eventId"]) for d in found[sid] if d.get("viewW") is not None]
        added, removed = settle(clicks[sid], stored, rule)
        # rows settled before the exact width was kept: written again
        removed += [str(d["eventId"]) for d in found[sid] if d.get("viewW") is None]
        if removed:
            deletes.append(DeleteMany({"projectId": project_id, "sessionId": sid, "eventId": {"$in": removed}}))
            if sid not in bots:
                fewer += [mongo_signals.counted(RAGE, d) for d in found[sid] if str(d["eventId"]) in removed]
        docs += [{"projectId": project_id, **{camel: getattr(c, name) for name, camel in _FIELDS}} for c in added]
    if deletes:
        coll(CLICKS).bulk_write(deletes, ordered=False)
    inserted = mongo_signals.insert_new(coll(CLICKS), docs)
    more = [mongo_signals.counted(RAGE, d) for d in inserted if d["sessionId"] not in bots]
    more_signals, fewer_signals = mongo_signals.settle_sessions(coll, project_id, events, signals, bots)
    mongo_signals.count(coll, project_id, changes(more + more_signals, fewer + fewer_signals))
    # A mark whose token changed meanwhile (a batch marked the session again) stays, unleased.
    done = [DeleteOne({"projectId": project_id, "sessionId": sid, "token": token}) for sid, token in marks.items()]
    if coll(PENDING).bulk_write(done, ordered=False).deleted_count < len(done):
        coll(PENDING).update_many({**held, "holder": holder}, {"$set": {"lease": None, "holder": None}})
    return len(marks)


def read(coll: Coll, flt: EventFilter) -> list[EventRow]:
    """The stored rage clicks of ``flt`` in ``(ts, seq)`` order."""
    found = coll(CLICKS).find(mongo_signals.range_match(flt, coll), _PROJECTION, sort=[("ts", 1), ("seq", 1)])
    return [_row(d) for d in found]
