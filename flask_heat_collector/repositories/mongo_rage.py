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

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from ..rageclicks import RageRule, new_token, rage_row, settle
from ..signals import DEFAULT_RULES, SIGNAL_TYPES, SignalRules
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
        coll(CLICKS).delete_many({"projectId": project_id, "sessionId": {"$in": ids}})
        mongo_signals.forget(coll, project_id, ids)
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
    signals) are decided from then on."""
    for name in ("rage-clicks", "signals"):
        try:
            coll(MIGRATIONS).insert_one({"_id": name})
        except DuplicateKeyError:
            continue
        mark_all(coll)


def pending(coll: Coll, project_id: str | None, limit: int) -> list[tuple[str, str]]:
    """Up to ``limit`` pending ``(project, session)`` pairs (of one project when given)."""
    match: Doc = {} if project_id is None else {"projectId": project_id}
    found = coll(PENDING).find(match, {"_id": 0, "projectId": 1, "sessionId": 1}, limit=limit)
    return sorted((str(d["projectId"]), str(d["sessionId"])) for d in found)


def settle_session(
    coll: Coll, project_id: str, session_id: str, rule: RageRule, signals: SignalRules = DEFAULT_RULES
) -> bool:
    """Settle one pending session; whether it was settled (not held by another settle, nor gone)."""
    now = _now_ms()
    key = {"projectId": project_id, "sessionId": session_id}
    free = {"$or": [{"lease": {"$exists": False}}, {"lease": None}, {"lease": {"$lt": now - _LEASE_MS}}]}
    mark_doc = coll(PENDING).find_one_and_update(
        {**key, **free}, {"$set": {"lease": now}}, return_document=ReturnDocument.AFTER
    )
    if mark_doc is None:
        return False
    clicks = coll("events").find(
        {"projectId": project_id, "sessionId": session_id, "type": "click"},
        _PROJECTION,
        sort=[("ts", 1), ("seq", 1)],
    )
    found = list(coll(CLICKS).find(key, {"_id": 0, "eventId": 1, "viewW": 1}))
    stored = [str(d["eventId"]) for d in found if d.get("viewW") is not None]
    added, removed = settle((_row(d) for d in clicks), stored, rule)
    removed += [str(d["eventId"]) for d in found if d.get("viewW") is None]  # settled before the width was kept
    if removed:
        coll(CLICKS).delete_many({**key, "eventId": {"$in": removed}})
    if added:
        docs = [{"projectId": project_id, **{camel: getattr(c, name) for name, camel in _FIELDS}} for c in added]
        try:
            coll(CLICKS).insert_many(docs, ordered=False)
        except BulkWriteError as exc:  # stored already by a settle whose lease had expired
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors") or []):
                raise
    mongo_signals.settle_session(coll, project_id, session_id, signals)
    if not coll(PENDING).delete_one({**key, "token": mark_doc["token"]}).deleted_count:
        coll(PENDING).update_one(key, {"$set": {"lease": None}})  # marked again meanwhile: settle again
    return True


def read(coll: Coll, flt: EventFilter) -> list[EventRow]:
    """The stored rage clicks of ``flt`` in ``(ts, seq)`` order."""
    found = coll(CLICKS).find(mongo_signals.range_match(flt, coll), _PROJECTION, sort=[("ts", 1), ("seq", 1)])
    return [_row(d) for d in found]
