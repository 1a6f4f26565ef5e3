"""Retention on MongoDB: the SQL purge's rules without transactions.

Each delete names what it checked (the ids, the event count it read), so a batch stored meanwhile
makes it miss rather than lose the batch: a session that gained an event is kept, one deleted just
before its batch is stored again by the batch's upsert, a user given a session meanwhile is put back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pymongo.collection import Collection

from ..aggregates import MONTH_BASE, month_code
from . import mongo_outbox, mongo_rage, mongo_reports
from .base import LONG_MOVE_MS, PurgeCounts, long_move_days

Doc = dict[str, Any]
Coll = Callable[[str], Collection[Doc]]


def _old_events(coll: Coll, pid: str, before: int, chunk: int) -> Iterator[list[Doc]]:
    """Events wholly before ``before``, in (ts, seq) pages of at most ``chunk`` scanned documents."""
    after: tuple[int, int] | None = None
    fields = {"_id": 0, "eventId": 1, "sessionId": 1, "rowCount": 1, "ts": 1, "span": 1, "seq": 1, "grown": 1}
    while True:
        match: Doc = {"projectId": pid, "ts": {"$lt": before}}
        if after is not None:
            match["$or"] = [{"ts": {"$gt": after[0]}}, {"ts": after[0], "seq": {"$gt": after[1]}}]
        page = list(coll("events").find(match, fields, sort=[("ts", 1), ("seq", 1)], limit=chunk))
        if not page:
            return
        yield [d for d in page if int(d["ts"]) + int(d.get("span") or 0) < before]
        if len(page) < chunk:
            return
        after = (int(page[-1]["ts"]), int(page[-1]["seq"]))


def _max_span(coll: Coll, pid: str) -> int:
    doc = coll("projects").find_one({"id": pid}, {"_id": 0, "maxSpan": 1})
    return int((doc or {}).get("maxSpan") or 0)


def _keeps_event(coll: Coll, pid: str, session_id: str, before: int, max_span: int) -> bool:
    later = coll("events").find(
        {"projectId": pid, "sessionId": session_id, "ts": {"$gte": before - max_span}}, {"_id": 0, "ts": 1, "span": 1}
    )
    return any(int(d["ts"]) + int(d.get("span") or 0) >= before for d in later)


def _emptied(coll: Coll, pid: str, before: int) -> Iterator[Doc]:
    """Sessions started before ``before`` that keep no event."""
    max_span = _max_span(coll, pid)
    started = coll("sessions").find(
        {"projectId": pid, "startedAt": {"$lt": before}}, {"_id": 1, "id": 1, "userId": 1, "eventCount": 1}
    )
    for doc in started:
        if not _keeps_event(coll, pid, str(doc["id"]), before, max_span):
            yield doc


def _correct_sessions(coll: Coll, pid: str, before: int, removed: dict[str, int]) -> None:
    """Take the removed rows off each session's count; find the last path again where it was removed."""
    sessions, events = coll("sessions"), coll("events")
    for session_id, n in sorted(removed.items()):
        key = {"projectId": pid, "id": session_id}
        doc = sessions.find_one_and_update(key, {"$inc": {"eventCount": -n}}, {"_id": 0, "lastTs": 1, "firstPath": 1})
        if doc is None or (doc.get("lastTs") is not None and int(doc["lastTs"]) >= before):
            continue  # its last event is kept
        remaining = events.find(
            {"projectId": pid, "sessionId": session_id}, {"_id": 0, "ts": 1, "span": 1, "seq": 1, "path": 1}
        )
        last = max(remaining, key=lambda d: (int(d["ts"]) + int(d.get("span") or 0), int(d["seq"])), default=None)
        values = (
            {"lastPath": doc.get("firstPath"), "lastTs": None}
            if last is None
            else {"lastPath": last["path"], "lastTs": int(last["ts"]) + int(last.get("span") or 0)}
        )
        older = {"$or": [{"lastTs": None}, {"lastTs": {"$lt": before}}]}  # not a batch stored meanwhile
        sessions.update_one({**key, **older}, {"$set": values})


def _purge_raw(coll: Coll, pid: str, before: int, chunk: int) -> PurgeCounts:
    rows = 0
    for page in _old_events(coll, pid, before, chunk):
        if not page:
            continue
        ids = [d["eventId"] for d in page]
        coll("events").delete_many({"projectId": pid, "eventId": {"$in": ids}, "ts": {"$lt": before}})
        mongo_outbox.note_erased(coll, pid, page)
        long = [d for d in page if int(d.get("span") or 0) > LONG_MOVE_MS]
        if long:  # their long-move index entries
            days = sorted({day for d in long for day in long_move_days(int(d["ts"]), int(d["span"]))})
            ids = [d["eventId"] for d in long]
            coll("heat_long_moves").delete_many({"projectId": pid, "day": {"$in": days}, "eventId": {"$in": ids}})
        removed: dict[str, int] = {}
        for d in page:
            removed[str(d["sessionId"])] = removed.get(str(d["sessionId"]), 0) + int(d.get("rowCount") or 1)
        _correct_sessions(coll, pid, before, removed)
        mongo_rage.forget(coll, pid, list(removed))
        rows += sum(removed.values())
    gone_sessions = 0
    for doc in list(_emptied(coll, pid, before)):  # a batch stored meanwhile changed eventCount: kept
        # nor one a batch is being stored in (or that a replay has still to count: mongo_outbox)
        match = {"_id": doc["_id"], "eventCount": doc.get("eventCount"), "pending.0": {"$exists": False}}
        gone_sessions += coll("sessions").delete_one(match).deleted_count
    gone_users = 0
    for user in list(coll("users").find({"projectId": pid, "createdAt": {"$lt": before}, "erasedAt": None})):
        if coll("sessions").find_one({"projectId": pid, "userId": user["id"]}, {"_id": 1}) is not None:
            continue
        if coll("users").delete_one({"_id": user["_id"]}).deleted_count:
            if coll("sessions").find_one({"projectId": pid, "userId": user["id"]}, {"_id": 1}) is not None:
                coll("users").insert_one(user)  # a batch named the user meanwhile: put it back
            else:
                gone_users += 1
    return PurgeCounts(events=rows, sessions=gone_sessions, users=gone_users)


def _count(coll: Coll, pid: str, before: int) -> PurgeCounts:
    rows = sum(int(d.get("rowCount") or 1) for page in _old_events(coll, pid, before, 5000) for d in page)
    doomed = {str(doc["id"]) for doc in _emptied(coll, pid, before)}
    users = 0
    for user in coll("users").find({"projectId": pid, "createdAt": {"$lt": before}, "erasedAt": None}, {"id": 1}):
        theirs = coll("sessions").find({"projectId": pid, "userId": user["id"]}, {"_id": 0, "id": 1})
        users += all(str(s["id"]) in doomed for s in theirs)
    return PurgeCounts(events=rows, sessions=len(doomed), users=users)


def purge(
    coll: Coll,
    raw_before: int | None,
    aggregates_before_day: int | None,
    *,
    dry_run: bool,
    chunk: int,
    erased_before: int | None = None,
) -> PurgeCounts:
    """What :meth:`Repository.purge` does, over the collections ``coll`` names."""
    total = PurgeCounts()
    for project in list(coll("projects").find({}, {"_id": 0, "id": 1})):
        pid = str(project["id"])
        if erased_before is not None:  # tombstones of users erased long enough ago
            expired = {"projectId": pid, "erasedAt": {"$lt": erased_before}}
            gone = (
                coll("users").count_documents(expired) if dry_run else coll("users").delete_many(expired).deleted_count
            )
            total += PurgeCounts(users=gone)
        old_pieces = {"projectId": pid, "day": {"$lt": aggregates_before_day}}
        if dry_run:
            if aggregates_before_day is not None:  # and the month pieces of the months starting before it
                months = {"projectId": pid, "day": {"$gte": MONTH_BASE, "$lt": month_code(aggregates_before_day)}}
                total += PurgeCounts(aggregates=coll("heat_aggregates").count_documents(months))
            if raw_before is not None:
                total += _count(coll, pid, raw_before)
            if aggregates_before_day is not None:
                total += PurgeCounts(aggregates=coll("heat_aggregates").count_documents(old_pieces))
            continue
        if raw_before is not None:
            total += _purge_raw(coll, pid, raw_before, chunk)
        while aggregates_before_day is not None:
            ids = [d["_id"] for d in coll("heat_aggregates").find(old_pieces, {"_id": 1}, limit=chunk)]
            if not ids:
                break
            total += PurgeCounts(aggregates=coll("heat_aggregates").delete_many({"_id": {"$in": ids}}).deleted_count)
        if aggregates_before_day is not None:
            mongo_reports.delete_before(coll, pid, aggregates_before_day)
    return total
