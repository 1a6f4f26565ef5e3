"""Report data on MongoDB (report_pieces.py): the SQL backends' rules without transactions.

A merge is made safe by its order, as the heatmap aggregates' is: the merged piece is inserted naming
the pieces it replaces (readers skip those), then they are deleted, then the names are dropped; the
pieces of a pending batch (mongo_outbox) are left out. Session ordinals come from a counter on the
project document (``$inc``), so none is given twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from ..aggregates import DAY_MS
from ..ingest import path_key
from ..report_pieces import ALL_WIDTHS, merge, rebuild
from . import mongo_outbox
from .base import EventRow, PathSet, ReportPiece, SessionQuery
from .session_sets import SessionSet, page_ids

Doc = dict[str, Any]
Coll = Callable[[str], Collection[Doc]]
PIECES = "heat_report_pieces"
ORDINALS = "heat_session_ordinals"
KEY = ("projectId", "pathKey", "day", "bucketW")
INDEXES: tuple[tuple[str, tuple[str, ...], bool, str], ...] = (
    (PIECES, ("projectId", "pathKey", "day", "bucketW", "part"), True, "uq_heat_report_pieces_key"),
    (PIECES, ("projectId", "day"), False, "ix_heat_report_pieces_day"),
    (PIECES, ("projectId", "bucketW", "day"), False, "ix_heat_report_pieces_band_day"),
    (PIECES, ("projectId", "part"), False, "ix_heat_report_pieces_fresh"),
    (ORDINALS, ("projectId", "sessionId"), True, "uq_heat_session_ordinals_session"),
    (ORDINALS, ("projectId", "ordinal"), True, "uq_heat_session_ordinals_ordinal"),
)
_FIELDS = [
    (name, "".join(w.title() if i else w for i, w in enumerate(name.split("_")))) for name in ReportPiece._fields
]


def piece_doc(piece: ReportPiece, project_id: str) -> Doc:
    return {"projectId": project_id, **{key: getattr(piece, name) for name, key in _FIELDS}}


def _piece(doc: Doc) -> ReportPiece:
    values: list[Any] = [doc.get(key) for _, key in _FIELDS]
    return ReportPiece(*values)


def insert(coll: Coll, project_id: str, found: Iterable[ReportPiece], **extra: Any) -> list[Any]:
    """Insert pieces; their ``_id``s."""
    docs = [{**piece_doc(piece, project_id), **extra} for piece in found]
    if not docs:
        return []
    return list(coll(PIECES).insert_many(docs, ordered=False).inserted_ids)


def ordinals(coll: Coll, project_id: str, session_ids: set[str]) -> dict[str, int]:
    """The ordinals of those sessions that have one."""
    found: dict[str, int] = {}
    ids = sorted(session_ids)
    for start in range(0, len(ids), 1000):
        match = {"projectId": project_id, "sessionId": {"$in": ids[start : start + 1000]}}
        found.update((str(d["sessionId"]), int(d["ordinal"])) for d in coll(ORDINALS).find(match, {"_id": 0}))
    return found


def ensure_ordinals(coll: Coll, project_id: str, session_ids: set[str]) -> dict[str, int]:
    """The ordinals of these sessions, giving new ones (from the project's counter) to those without."""
    found = ordinals(coll, project_id, session_ids)
    missing = sorted(session_ids - found.keys())
    if not missing:
        return found
    doc = coll("projects").find_one_and_update(
        {"id": project_id}, {"$inc": {"nextOrdinal": len(missing)}}, return_document=ReturnDocument.AFTER
    )
    first = int((doc or {}).get("nextOrdinal") or len(missing)) - len(missing)
    for i, sid in enumerate(missing):
        try:
            coll(ORDINALS).insert_one({"projectId": project_id, "sessionId": sid, "ordinal": first + i})
        except DuplicateKeyError:  # given meanwhile by another process: that one holds
            pass
    found.update(ordinals(coll, project_id, set(missing)))
    return found


def forget_ordinals(coll: Coll, project_id: str, session_ids: list[str]) -> None:
    if session_ids:
        coll(ORDINALS).delete_many({"projectId": project_id, "sessionId": {"$in": sorted(session_ids)}})


def fresh_keys(coll: Coll, limit: int) -> list[Doc]:
    """Up to ``limit`` key-days with fresh pieces (every project)."""
    keys: dict[tuple[Any, ...], None] = {}
    fields = {"_id": 0, **{name: 1 for name in KEY}}
    for project in coll("projects").find({}, {"_id": 0, "id": 1}):
        for doc in coll(PIECES).find({"projectId": project["id"], "part": {"$gt": 0}}, fields, limit=limit * 4):
            keys[tuple(doc.get(name) for name in KEY)] = None
        if len(keys) >= limit:
            break
    return [dict(zip(KEY, key, strict=True)) for key in list(keys)[:limit]]


def _replace(coll: Coll, project_id: str, ids: list[Any], merged: list[ReportPiece]) -> None:
    """Insert ``merged`` naming the pieces ``ids`` it replaces, delete those, then drop the names."""
    new = insert(coll, project_id, merged, replaces=ids)
    coll(PIECES).delete_many({"_id": {"$in": ids}})
    if new:
        coll(PIECES).update_many({"_id": {"$in": new}}, {"$unset": {"replaces": ""}})


def compact_key(coll: Coll, key: Doc) -> bool:
    """Merge one key-day's live pieces (the caller holds the key's lock)."""
    docs = list(coll(PIECES).find(key))
    held = mongo_outbox.held(coll, str(key["projectId"]), (int(doc["part"]) for doc in docs))
    docs = [doc for doc in docs if int(doc["part"]) not in held]  # a pending batch's: left to it
    replaced = {r for doc in docs for r in doc.get("replaces") or ()}
    live = [doc for doc in docs if doc["_id"] not in replaced]
    stale = [doc["_id"] for doc in docs if doc["_id"] in replaced]
    if not any(int(doc["part"]) > 0 for doc in live):
        if stale:
            coll(PIECES).delete_many({"_id": {"$in": stale}})  # left by a merge that stopped halfway
        return False
    group = [_piece(doc) for doc in live]
    project_id = str(key["projectId"])
    known = ensure_ordinals(coll, project_id, {p.session_id for p in group if p.session_id is not None})
    merged = merge(group, known.__getitem__)
    _replace(coll, project_id, stale + [doc["_id"] for doc in live], [merged] if merged else [])
    return True


def path_match(paths: PathSet, *, exact: bool = True) -> Doc:
    """The filter on ``pathKey`` (and, when ``exact``, ``path``) of one path, of any of several (a page
    group), or nothing for every path."""
    if paths is None:
        return {}
    if isinstance(paths, str):
        return {"pathKey": path_key(paths), **({"path": paths} if exact else {})}
    keys = sorted({path_key(p) for p in paths})
    return {"pathKey": {"$in": keys}, **({"path": {"$in": sorted(paths)}} if exact else {})}


def read_pieces(
    coll: Coll,
    project_id: str,
    path: PathSet,
    days: tuple[int, int],
    *,
    selectors: bool,
    scroll: bool,
    width: int | None,
) -> list[ReportPiece]:
    match: Doc = {"projectId": project_id, "day": {"$gte": days[0], "$lt": days[1] + 1}}
    match.update(path_match(path))
    match["bucketW"] = width if width is not None else {"$ne": ALL_WIDTHS}
    skip = {name: 0 for name, wanted in (("selectors", selectors), ("scroll", scroll)) if not wanted}
    docs = list(coll(PIECES).find(match, skip or None))
    replaced = {r for doc in docs for r in doc.get("replaces") or ()}
    return [_piece(doc) for doc in docs if doc["_id"] not in replaced]


def last_item_ts(coll: Coll, project_id: str) -> int | None:
    """The latest ``lastTs`` of the live pieces of the project's latest day (through the day index)."""
    top = coll(PIECES).find_one({"projectId": project_id}, {"day": 1}, sort=[("day", -1)])
    if top is None:
        return None
    docs = list(coll(PIECES).find({"projectId": project_id, "day": top["day"]}, {"lastTs": 1, "replaces": 1}))
    replaced = {r for doc in docs for r in doc.get("replaces") or ()}
    found = [int(doc["lastTs"]) for doc in docs if doc["_id"] not in replaced and doc.get("lastTs") is not None]
    return max(found, default=None)


def piece_ids(coll: Coll, project_id: str, key: tuple[int, int, int]) -> list[tuple[Any, int]]:
    """``(_id, part)`` of the pieces of one ``(path_key, day, bucket_w)`` key-day."""
    pkey, day, width = key
    match = {"projectId": project_id, "pathKey": pkey, "day": day, "bucketW": width}
    return [(d["_id"], int(d["part"])) for d in coll(PIECES).find(match, {"_id": 1, "part": 1})]


def rebuild_key_day(
    coll: Coll, project_id: str, rows: list[EventRow], key: tuple[int, int, int], ids: list[Any]
) -> None:
    """Replace the pieces ``ids`` of one ``(path_key, day, bucket_w)`` key-day by one computed from
    ``rows`` (its stored rows, read after ``ids``; the caller holds the key's lock)."""
    _, day, width = key
    start = day * DAY_MS
    clipped = [
        r for r in rows if width in (r.bucket_w, ALL_WIDTHS) and r.ts < start + DAY_MS and r.ts + r.span >= start
    ]
    known = ensure_ordinals(coll, project_id, {r.session_id for r in clipped}) if clipped else {}
    merged = [p for p in rebuild(clipped, known.__getitem__) if (p.day, p.bucket_w) == (day, width)]
    _replace(coll, project_id, ids, merged)


def rebuild_all(coll: Coll, project_id: str, rows: Iterable[EventRow]) -> None:
    """Replace every report piece of the project by merged ones computed from its events."""
    coll(PIECES).delete_many({"projectId": project_id})
    given: dict[str, int] = {}

    def ordinal(session_id: str) -> int:
        if session_id not in given:
            given.update(ensure_ordinals(coll, project_id, {session_id}))
        return given[session_id]

    insert(coll, project_id, rebuild(rows, ordinal))


def delete_before(coll: Coll, project_id: str, before_day: int) -> None:
    coll(PIECES).delete_many({"projectId": project_id, "day": {"$lt": before_day}})


def page_among(coll: Coll, among: SessionSet, match: Doc, query: SessionQuery) -> list[str]:
    """The ids of the sessions list's page (``match``: its other filters) among the sessions of
    ``among``: per chunk of the set (ordinals mapped to ids first), the first ``offset + limit``
    sessions it matches, then the page of their union (:func:`session_sets.page_ids`)."""
    direction = -1 if query.descending else 1
    keys: list[tuple[int, str]] = []
    for ordinals, ids in among.chunks():
        if ordinals:
            named = {"projectId": query.project_id, "ordinal": {"$in": ordinals}}
            ids = [str(d["sessionId"]) for d in coll(ORDINALS).find(named, {"_id": 0, "sessionId": 1})]
        found = coll("sessions").find(
            {"$and": [match, {"id": {"$in": ids}}]},
            {"_id": 0, "id": 1, "startedAt": 1},
            sort=[("startedAt", direction), ("id", direction)],
            limit=query.offset + query.limit,
        )
        keys.extend((int(d["startedAt"]), str(d["id"])) for d in found)
    return page_ids(keys, descending=query.descending, offset=query.offset, limit=query.limit)
