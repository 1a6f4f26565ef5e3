"""The outbox of a MongoDB batch: what makes a batch's derived data recoverable after a crash.

MongoDB here has no transactions, so a batch is a series of writes (events, aggregate pieces, report
pieces, the rage mark, the session's counter); a process killed between them would leave events that
no piece counts (whole-day heatmaps and reports miss them for good) or a counter that stays short.
Before anything else a batch inserts one document in ``heat_outbox``: its session, its user, the
``part`` of its fresh pieces, its events' ids and storage-order (``seq``) range and the number of
points of each move it sent. The session upsert that opens the batch adds the batch's id to the
session's ``pending`` list; the last writes ``$inc`` the session's ``eventCount`` and ``$pull`` that
id in one update, then delete the outbox document.

A replay (compaction's timed runs, ``flask heat compact``, ``migrate()`` at start and a purge, for
outbox documents older than :data:`GRACE_MS`, so a batch still being stored is left to its writer)
finds what the batch itself stored: the events listed in its document with a ``seq`` in its range
(a duplicate was stored by another batch, with that batch's ``seq``), cut to the points it sent, and
the points it appended to moves stored before (the conditional update that appends them also pushes
``{by: batch id, from, to}``, the points it appended, to the event's ``grown`` list). From those rows it writes the
batch's pieces again under the batch's own ``part`` (replacing those already there, deleting those of
rows erased since), marks the session's rage clicks and signals pending, and applies the session counter only if
the batch's id is still in ``pending`` (so exactly once). Replaying twice, or a batch whose writes all
completed, changes nothing.

That is exact because nothing else consumes a pending batch's pieces or rows: compaction leaves the
pieces whose ``part`` an outbox document holds, and an erase that recomputes a key-day keeps them and
leaves out the rows (and appended points) of the pending batches. An erase of a user or a session
first replays that user's or session's pending batches (of any age), then erases as usual.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from bson import ObjectId
from pymongo import ReplaceOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from ..ingest import move_stamps, pack_points
from .base import Batch, EventRow

Doc = dict[str, Any]
Coll = Callable[[str], Collection[Doc]]
OUTBOX = "heat_outbox"
GRACE_MS = 60_000  # an outbox document younger than this may belong to a batch still being stored
INDEXES: tuple[tuple[str, tuple[str, ...], bool, str], ...] = (
    (OUTBOX, ("projectId", "part"), False, "ix_heat_outbox_part"),
    (OUTBOX, ("projectId", "sessionId"), False, "ix_heat_outbox_session"),
)
DUPLICATE_KEY = 11000


def _now_ms() -> int:
    return int(time.time() * 1000)


def open_batch(coll: Coll, project_id: str, user_id: str | None, batch: Batch, part: int) -> Doc:
    """Insert the outbox document of ``batch`` (before any other write of it); the document."""
    seqs = [row.seq for row in batch.events]
    doc: Doc = {
        "_id": ObjectId(),
        "at": _now_ms(),
        "projectId": project_id,
        "sessionId": batch.session.id,
        "userId": user_id,
        "part": part,
        "seq": [min(seqs, default=0), max(seqs, default=0)],
        "ids": [row.event_id for row in batch.events],
        "moves": [[row.event_id, row.row_count] for row in batch.events if row.type == "move"],
        "span": batch.span,
    }
    coll(OUTBOX).insert_one(doc)
    return doc


def close_batch(coll: Coll, outbox: Doc, grown: Iterable[str]) -> None:
    """The batch's last writes: its marks on the moves it appended to, then its outbox document."""
    ids = sorted(set(grown))
    if ids:
        coll("events").update_many(
            {"projectId": outbox["projectId"], "eventId": {"$in": ids}}, {"$pull": {"grown": {"by": outbox["_id"]}}}
        )
    coll(OUTBOX).delete_one({"_id": outbox["_id"]})


def due(coll: Coll, grace_ms: int, match: Doc | None = None) -> list[Doc]:
    """The outbox documents older than ``grace_ms`` (matching ``match``), oldest first."""
    query: Doc = {**(match or {}), "at": {"$lt": _now_ms() - grace_ms}}
    return list(coll(OUTBOX).find(query, sort=[("at", 1)]))


def pending(coll: Coll, project_id: str) -> list[Doc]:
    """The outbox documents of a project (batches being stored, or stopped by a crash)."""
    return list(coll(OUTBOX).find({"projectId": project_id}))


def held(coll: Coll, project_id: str, parts: Iterable[int]) -> set[int]:
    """Those of ``parts`` that are a pending batch's: their pieces are left alone until it is replayed."""
    wanted = sorted({int(part) for part in parts if int(part) > 0})
    if not wanted:
        return set()
    found = coll(OUTBOX).find({"projectId": project_id, "part": {"$in": wanted}}, {"_id": 0, "part": 1})
    return {int(doc["part"]) for doc in found}


def _sent(outbox: Doc) -> dict[str, int]:
    """The points of each move the batch sent (of a move sent twice in it, the first copy: the one stored)."""
    found: dict[str, int] = {}
    for eid, count in outbox.get("moves") or ():
        found.setdefault(str(eid), int(count))
    return found


def _ranges(outbox: Doc, doc: Doc, sent: dict[str, int], ids: set[str]) -> list[tuple[int, int]]:
    """The point ranges of stored event ``doc`` that the batch of ``outbox`` stored (a non-move: ``(0, 1)``)."""
    event_id = str(doc["eventId"])
    count = sent.get(event_id, 1)
    low, high = (int(v) for v in outbox["seq"])
    found = [(int(m["from"]), int(m["to"])) for m in doc.get("grown") or () if m.get("by") == outbox["_id"]]
    if event_id in ids and low <= int(doc["seq"]) <= high:
        found.append((0, count))
    return found


def _points(row: EventRow, ranges: list[tuple[int, int]], *, inside: bool) -> EventRow | None:
    """``row`` with the points (by index) inside ``ranges``, or outside them; ``None`` when none is left."""

    def keep(i: int) -> bool:
        return any(low <= i < high for low, high in ranges) == inside

    if row.type != "move" or row.points is None:
        return row if keep(0) else None
    stamps = move_stamps(row)
    kept = [stamp for i, stamp in enumerate(stamps) if keep(i)]
    if len(kept) == len(stamps):
        return row
    if not kept:
        return None
    ts, span, points = pack_points(kept)
    return row._replace(ts=ts, span=span, row_count=len(kept), points=points)


def batch_rows(outbox: Doc, stored: Iterable[tuple[Doc, EventRow]]) -> list[EventRow]:
    """The rows the batch of ``outbox`` newly stored, from its stored events (``(document, row)``)."""
    sent, ids = _sent(outbox), {str(eid) for eid in outbox.get("ids") or ()}
    found = []
    for doc, row in stored:
        for span in _ranges(outbox, doc, sent, ids):
            part = _points(row, [span], inside=True)
            if part is not None:
                found.append(part)
    return found


def without_pending(outboxes: list[Doc], stored: Iterable[tuple[Doc, EventRow]]) -> list[EventRow]:
    """The stored rows less what the pending batches of ``outboxes`` stored (their pieces count it)."""
    prepared = [(o, _sent(o), {str(eid) for eid in o.get("ids") or ()}) for o in outboxes]
    found = []
    for doc, row in stored:
        ranges = [r for o, sent, ids in prepared for r in _ranges(o, doc, sent, ids)]
        kept = _points(row, ranges, inside=False) if ranges else row
        if kept is not None:
            found.append(kept)
    return found


def note_erased(coll: Coll, project_id: str, docs: list[Doc]) -> None:
    """Record on each pending batch's outbox document how many of its rows were just deleted (an erase
    or a purge took them off the session's count, which the batch has still to add): its replay adds
    them back with the rows left, as its writer adds all it stored."""
    for outbox in pending(coll, project_id):
        sent, ids = _sent(outbox), {str(eid) for eid in outbox.get("ids") or ()}
        gone = sum(high - low for doc in docs for low, high in _ranges(outbox, doc, sent, ids))
        if gone:
            coll(OUTBOX).update_one({"_id": outbox["_id"]}, {"$inc": {"erased": gone}})


def write_pieces(
    collection: Collection[Doc], key: tuple[str, ...], docs: list[Doc], *, clear: Doc | None = None
) -> None:
    """Store a batch's pieces under its own ``part``. Its writer inserts them; a replay (``clear``: the
    batch's project and part) replaces those of the same key, deletes those of keys it no longer has
    rows in (erased since), so writing them again changes nothing."""
    if clear is None:
        if not docs:
            return
        try:
            collection.insert_many(docs, ordered=False)
            return
        except BulkWriteError as exc:  # written already by a replay of this batch (it took over a minute)
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors") or []):
                raise
            docs = [{k: v for k, v in doc.items() if k != "_id"} for doc in docs]
    else:
        wanted = {tuple(doc[name] for name in key) for doc in docs}
        fields = {name: 1 for name in key}
        stale = [d["_id"] for d in collection.find(clear, fields) if tuple(d.get(name) for name in key) not in wanted]
        if stale:
            collection.delete_many({"_id": {"$in": stale}})
    if not docs:
        return
    ops = [ReplaceOne({name: doc[name] for name in key}, doc, upsert=True) for doc in docs]
    try:
        collection.bulk_write(ops, ordered=False)
    except BulkWriteError as exc:  # two replays upserting one new key: the one that lost updates now
        if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors") or []):
            raise
        collection.bulk_write(ops, ordered=False)
