"""Frustration signals on MongoDB (signals.py): settled with a session's rage clicks under the same
lease (mongo_rage.settle_sessions), and the reads of the reports."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from pymongo import DeleteMany, DeleteOne, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from .. import signal_maps
from ..aggregates import DAY_MS, encode_pairs
from ..report_pieces import ALL_WIDTHS
from ..signal_counts import Change, Counted, Counts, changes, in_range
from ..signal_maps import MAP_KINDS, MapKey, Mapped, decode_cells, map_key
from ..signals import RAGE, SIGNAL_FIELDS, SessionRow, Signal, SignalRules, settle
from .base import AggregateRow, EventFilter, PathSet
from .mongo_reports import path_match

Doc = dict[str, Any]
Coll = Callable[[str], Collection[Doc]]
SIGNALS = "heat_signals"
RAGE_CLICKS = "heat_rage_clicks"
COUNTS = "heat_signal_counts"  # signal_counts.py
_COUNT_KEY = ("projectId", "pathKey", "day", "bucketW", "kind", "selectorKey")
CELLS = "heat_signal_cells"  # signal_maps.py
_CELL_KEY = ("projectId", "pathKey", "day", "kind", "bucketW", "bucketH", "viewW")
INDEXES: tuple[tuple[str, tuple[str, ...], bool, str], ...] = (
    (SIGNALS, ("projectId", "sessionId", "kind", "eventId"), True, "uq_heat_signals_key"),
    (SIGNALS, ("projectId", "kind", "ts"), False, "ix_heat_signals_ts"),
    (SIGNALS, ("projectId", "pathKey", "ts"), False, "ix_heat_signals_path_ts"),
    (COUNTS, _COUNT_KEY, True, "uq_heat_signal_counts_key"),
    (COUNTS, ("projectId", "bucketW", "day"), False, "ix_heat_signal_counts_band_day"),
    (CELLS, _CELL_KEY, True, "uq_heat_signal_cells_key"),
    (CELLS, ("projectId", "kind", "day"), False, "ix_heat_signal_cells_kind_day"),
)
# What a count keeps of a stored signal or rage click (signal_counts.Counted, its kind aside).
COUNTED_PROJECTION = {"_id": 0, "sessionId": 1, "path": 1, "pathKey": 1, "ts": 1, "bucketW": 1, "selector": 1}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_ROW_FIELDS = [_camel(name) for name in SessionRow._fields]
_SIGNAL_FIELDS = [(name, _camel(name)) for name in SIGNAL_FIELDS]
_ROW_PROJECTION = {"_id": 0, **{name: 1 for name in _ROW_FIELDS}}
_SIGNAL_PROJECTION = {"_id": 0, **{camel: 1 for _, camel in _SIGNAL_FIELDS}}


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, int) and type(value) is not bool else value


def _signal(doc: Doc) -> Signal:
    return Signal(*(_plain(doc.get(camel)) for _, camel in _SIGNAL_FIELDS))


def _session_row(doc: Doc) -> SessionRow:
    return SessionRow(*(_plain(doc.get(name)) for name in _ROW_FIELDS))


# What settle_sessions needs of each event (the caller reads the events: rage clicks use them too).
EVENT_PROJECTION = {**_ROW_PROJECTION, "sessionId": 1, "type": 1}


def settle_sessions(
    coll: Coll, project_id: str, events: dict[str, list[Doc]], rules: SignalRules, bots: set[str]
) -> tuple[list[Counted], list[Counted]]:
    """Decide the signals of these sessions (their marks leased by the caller) and store the difference;
    ``events``: each session's stored events of SIGNAL_TYPES in ``(ts, seq)`` order (EVENT_PROJECTION).
    The signal rows of the sessions not in ``bots`` stored and deleted (for the counts)."""
    session_ids = list(events)
    held = {"projectId": project_id, "sessionId": {"$in": session_ids}}
    rows = {sid: [_session_row(d) for d in docs] for sid, docs in events.items()}
    found: dict[str, list[Doc]] = {sid: [] for sid in session_ids}
    for doc in coll(SIGNALS).find(held, {**COUNTED_PROJECTION, "kind": 1, "eventId": 1, "viewW": 1}):
        found[str(doc["sessionId"])].append(doc)
    deletes: list[DeleteOne] = []
    docs: list[Doc] = []
    fewer: list[Counted] = []
    for sid in session_ids:
        stored = [(str(d["kind"]), str(d["eventId"])) for d in found[sid] if d.get("viewW") is not None]
        added, removed = settle(sid, rows[sid], stored, rules)
        gone = set(removed)
        # rows settled before the exact width was kept: written again
        gone |= {(str(d["kind"]), str(d["eventId"])) for d in found[sid] if d.get("viewW") is None}
        key = {"projectId": project_id, "sessionId": sid}
        deletes += [DeleteOne({**key, "kind": kind, "eventId": event_id}) for kind, event_id in sorted(gone)]
        docs += [{"projectId": project_id, **{c: getattr(x, name) for name, c in _SIGNAL_FIELDS}} for x in added]
        if sid not in bots:
            fewer += [counted(str(d["kind"]), d) for d in found[sid] if (str(d["kind"]), str(d["eventId"])) in gone]
    if deletes:
        coll(SIGNALS).bulk_write(deletes, ordered=False)
    inserted = [d for d in insert_new(coll(SIGNALS), docs) if d["sessionId"] not in bots]
    write_maps(coll, project_id, [_mapped(d) for d in inserted if d["kind"] in MAP_KINDS], gone_maps(fewer))
    return [counted(str(d["kind"]), d) for d in inserted], fewer


def _mapped(doc: Doc, width: int | None = None) -> Mapped:
    """A stored signal as a map piece keeps it (``width``: its event's, when not stored with it)."""
    view_w = doc.get("viewW") or width or doc["bucketW"]
    return Mapped(
        str(doc["kind"]),
        int(doc["pathKey"]),
        int(doc["ts"]),
        int(doc["seq"]),
        _plain(doc.get("x")),
        _plain(doc.get("y")),
        int(doc["bucketW"]),
        int(doc["bucketH"]),
        int(view_w),
    )


def gone_maps(removed: Iterable[Counted]) -> set[MapKey]:
    """The path-day-kinds of maps that lose these signals."""
    return {map_key(r.kind, r.path_key, r.ts) for r in removed if r.kind in MAP_KINDS}


_MAPPED_PROJECTION = {
    "_id": 0,
    **{name: 1 for name in ("kind", "pathKey", "ts", "seq", "x", "y", "bucketW", "bucketH", "viewW", "eventId")},
}


def _stored_maps(coll: Coll, project_id: str, match: Doc) -> list[AggregateRow]:
    """The map pieces of the human sessions' stored signals of MAP_KINDS matching ``match``."""
    found = list(
        coll(SIGNALS).find(
            {
                "projectId": project_id,
                "kind": {"$in": list(MAP_KINDS)},
                **traffic_match(coll, project_id, "human"),
                **match,
            },
            _MAPPED_PROJECTION,
        )
    )
    legacy = sorted({str(d["eventId"]) for d in found if not d.get("viewW")})
    widths = (
        {
            str(e["eventId"]): e.get("viewW")
            for e in coll("events").find(
                {"projectId": project_id, "eventId": {"$in": legacy}}, {"_id": 0, "eventId": 1, "viewW": 1}
            )
        }
        if legacy
        else {}
    )
    return signal_maps.pieces(_mapped(d, widths.get(str(d["eventId"]))) for d in found)


def _map_doc(project_id: str, piece: AggregateRow) -> Doc:
    key = (project_id, piece.path_key, piece.day, piece.type, piece.bucket_w, piece.bucket_h, piece.view_w)
    cells = {str(cell): n for cell, n in decode_cells(piece.cells).items()}
    return {
        **dict(zip(_CELL_KEY, key, strict=True)),
        "n": piece.n,
        "firstSeq": piece.first_seq,
        "maxY": piece.max_y,
        "cells": cells,
    }


def write_maps(coll: Coll, project_id: str, added: list[Mapped], gone: set[MapKey]) -> None:
    """Bring the map pieces up to date after signals were stored (``added``, of human sessions) or
    deleted (their path-day-kinds ``gone``, computed again from the signals now stored). Additions
    are atomic per piece (``$inc``, ``$min``, ``$max``); without transactions a settle that dies in
    between leaves them to ``flask heat rebuild-aggregates``."""
    for pkey, day, kind in sorted(gone):
        mine = {"projectId": project_id, "pathKey": pkey, "day": day, "kind": kind}
        coll(CELLS).delete_many(mine)
        span = {"$gte": day * DAY_MS, "$lte": (day + 1) * DAY_MS - 1}
        fresh = _stored_maps(coll, project_id, {"pathKey": pkey, "kind": kind, "ts": span})
        if fresh:
            coll(CELLS).insert_many([_map_doc(project_id, piece) for piece in fresh])
    writes = []
    for piece in signal_maps.pieces(r for r in added if map_key(r.kind, r.path_key, r.ts) not in gone):
        doc = _map_doc(project_id, piece)
        key = {name: doc[name] for name in _CELL_KEY}
        change: Doc = {"$inc": {"n": piece.n, **{f"cells.{c}": n for c, n in doc["cells"].items()}}}
        if piece.first_seq is not None:
            change["$min"] = {"firstSeq": piece.first_seq}
        if piece.max_y is not None:
            change["$max"] = {"maxY": piece.max_y}
        writes.append(UpdateOne(key, change, upsert=True))
    if writes:
        coll(CELLS).bulk_write(writes, ordered=True)


def read_maps(coll: Coll, project_id: str, paths: PathSet, days: tuple[int, int], kind: str) -> list[AggregateRow]:
    """The map pieces of one kind of these paths and whole days."""
    match = {"projectId": project_id, "kind": kind, "day": {"$gte": days[0], "$lte": days[1]}, "n": {"$gt": 0}}
    found = []
    for doc in coll(CELLS).find({**match, **path_match(paths, exact=False)}, {"_id": 0, "projectId": 0}):
        cells = encode_pairs({int(cell): int(n) for cell, n in (doc.get("cells") or {}).items()})
        found.append(
            signal_maps.stored_piece(
                doc["pathKey"],
                doc["day"],
                doc["kind"],
                doc["bucketW"],
                doc["bucketH"],
                doc["viewW"],
                doc["n"],
                doc.get("firstSeq"),
                doc.get("maxY"),
                cells,
            )
        )
    return found


def counted(kind: str, doc: Doc) -> Counted:
    """A stored signal or rage click (COUNTED_PROJECTION) as the counts keep it."""
    return Counted(
        kind, str(doc["path"]), int(doc["pathKey"]), int(doc["ts"]), int(doc["bucketW"]), doc.get("selector")
    )


def bots_among(coll: Coll, project_id: str, session_ids: list[str]) -> set[str]:
    """The sessions of ``session_ids`` whose class is ``bot`` (their signals are in no count)."""
    match = {"projectId": project_id, "id": {"$in": session_ids}, "traffic": "bot"}
    return {str(d["id"]) for d in coll("sessions").find(match, {"_id": 0, "id": 1})}


def stored_counted(coll: Coll, project_id: str, session_ids: list[str] | None) -> list[Counted]:
    """The stored signals and rage clicks of these sessions (``None``: of every human session), as the
    counts keep them."""
    who: Doc = traffic_match(coll, project_id, "human") if session_ids is None else {"sessionId": {"$in": session_ids}}
    match = {"projectId": project_id, **who}
    found = [counted(str(d["kind"]), d) for d in coll(SIGNALS).find(match, {**COUNTED_PROJECTION, "kind": 1})]
    return found + [counted(RAGE, d) for d in coll(RAGE_CLICKS).find(match, COUNTED_PROJECTION)]


def count(coll: Coll, project_id: str, found: list[Change]) -> None:
    """Add these changes to the stored counts (a count that reaches 0 is deleted: nothing erased is
    named)."""
    if not found:
        return
    writes: list[UpdateOne | DeleteMany] = []
    for ch in found:
        key = dict(zip(_COUNT_KEY, (project_id, *ch.key), strict=True))
        names = {"path": ch.path, "selector": ch.selector}
        writes.append(UpdateOne(key, {"$inc": {"n": ch.n}, "$setOnInsert": names}, upsert=True))
    coll(COUNTS).bulk_write(writes, ordered=True)
    fallen = [dict(zip(_COUNT_KEY, (project_id, *ch.key), strict=True)) for ch in found if ch.n < 0]
    if fallen:
        coll(COUNTS).bulk_write([DeleteMany({**key, "n": {"$lte": 0}}) for key in fallen], ordered=False)


def rebuild_counts(coll: Coll, project_id: str) -> None:
    """Replace the project's counts by those of its stored signals and rage clicks (human sessions)."""
    coll(COUNTS).delete_many({"projectId": project_id})
    count(coll, project_id, changes(stored_counted(coll, project_id, None), []))
    coll(CELLS).delete_many({"projectId": project_id})
    found = _stored_maps(coll, project_id, {})
    if found:
        coll(CELLS).insert_many([_map_doc(project_id, piece) for piece in found])


def insert_new(collection: Collection[Doc], docs: list[Doc]) -> list[Doc]:
    """Insert ``docs``, leaving out those stored already (by a settle whose lease had expired); those
    inserted."""
    if not docs:
        return []
    try:
        collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors") or []
        if any(e.get("code") != 11000 for e in errors):
            raise
        clashed = {int(e["index"]) for e in errors}
        return [doc for i, doc in enumerate(docs) if i not in clashed]
    return docs


def forget(coll: Coll, project_id: str, session_ids: list[str]) -> None:
    """Drop the stored signals of these sessions (the caller marks them pending)."""
    if session_ids:
        coll(SIGNALS).delete_many({"projectId": project_id, "sessionId": {"$in": sorted(set(session_ids))}})


def bot_sessions(coll: Coll, project_id: str) -> list[str]:
    """The ids of the project's bot sessions (traffic.py)."""
    return [str(s) for s in coll("sessions").distinct("id", {"projectId": project_id, "traffic": "bot"})]


def traffic_match(coll: Coll, project_id: str, traffic: str, bots: list[str] | None = None) -> Doc:
    """The filter keeping the rows of sessions of class ``traffic`` ("all": every row); ``bots``: the
    project's bot sessions when the caller read them already."""
    if traffic == "all":
        return {}
    if bots is None:
        bots = bot_sessions(coll, project_id)
    if traffic == "bot":
        return {"sessionId": {"$in": bots}}
    return {"sessionId": {"$nin": bots}} if bots else {}


def range_match(flt: EventFilter, coll: Coll) -> Doc:
    """The filter of ``flt``'s project, path, time range and traffic class on stored signals (or rage
    clicks)."""
    match: Doc = {"projectId": flt.project_id, **path_match(flt.path_set)}
    match.update(traffic_match(coll, flt.project_id, flt.traffic))
    ts: Doc = {}
    if flt.ts_from is not None:
        ts["$gte"] = flt.ts_from
    if flt.ts_to is not None:
        ts["$lte"] = flt.ts_to
    if ts:
        match["ts"] = ts
    return match


def read(coll: Coll, flt: EventFilter, kind: str) -> list[Signal]:
    """The stored signals of one kind in ``flt`` in ``(ts, seq)`` order."""
    found = coll(SIGNALS).find(
        {**range_match(flt, coll), "kind": kind}, _SIGNAL_PROJECTION, sort=[("ts", 1), ("seq", 1)]
    )
    return [_signal(d) for d in found]


def path_counts(coll: Coll, flt: EventFilter) -> dict[tuple[str, str], int]:
    """``{(path, kind): signals}`` of ``flt``'s range, rage clicks as kind ``rage``: the counts of its
    whole days and the signal rows of the rest (signal_counts.in_range)."""
    return in_range(
        flt,
        lambda days: _stored_counts(coll, flt, days, ALL_WIDTHS, "$path"),
        lambda part: _raw_path_counts(coll, part),
    )


def _stored_counts(coll: Coll, flt: EventFilter, days: tuple[int, int], band: Doc | int, name: str) -> Counts:
    """``{(name, kind): n}`` of the stored counts of ``flt``'s paths on these whole days, of bucket
    width ``band`` (a filter), by the field ``name`` (``$path`` or ``$selector``)."""
    match = {"projectId": flt.project_id, "bucketW": band, "day": {"$gte": days[0], "$lte": days[1]}}
    group = {"$group": {"_id": {"s": name, "k": "$kind"}, "n": {"$sum": "$n"}}}
    stages = [{"$match": {**match, **path_match(flt.path_set)}}, group]
    return {(str(d["_id"]["s"]), str(d["_id"]["k"])): int(d["n"]) for d in coll(COUNTS).aggregate(stages)}


def _raw_path_counts(coll: Coll, flt: EventFilter) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    group = {"$group": {"_id": {"p": "$path", "k": "$kind"}, "n": {"$sum": 1}}}
    for doc in coll(SIGNALS).aggregate([{"$match": range_match(flt, coll)}, group]):
        found[(str(doc["_id"]["p"]), str(doc["_id"]["k"]))] = int(doc["n"])
    rage = {"$group": {"_id": "$path", "n": {"$sum": 1}}}
    for doc in coll(RAGE_CLICKS).aggregate([{"$match": range_match(flt, coll)}, rage]):
        found[(str(doc["_id"]), RAGE)] = int(doc["n"])
    return found


def selector_counts(coll: Coll, flt: EventFilter, width: int | None = None) -> dict[tuple[str, str], int]:
    """``{(selector, kind): n}`` of the signals and rage clicks (kind ``rage``) with a selector in
    ``flt`` (of bucket width ``width`` when given): the counts of its whole days and the signal rows of
    the rest (signal_counts.in_range)."""
    band: Doc | int = {"$ne": ALL_WIDTHS} if width is None else width
    return in_range(
        flt,
        lambda days: _stored_counts(coll, flt, days, band, "$selector"),
        lambda part: _raw_selector_counts(coll, part, width),
    )


def _raw_selector_counts(coll: Coll, flt: EventFilter, width: int | None) -> dict[tuple[str, str], int]:
    match = {**range_match(flt, coll), "selector": {"$nin": [None, ""]}}
    if width is not None:
        match["bucketW"] = width
    group = {"$group": {"_id": {"s": "$selector", "k": "$kind"}, "n": {"$sum": 1}}}
    found = {
        (str(d["_id"]["s"]), str(d["_id"]["k"])): int(d["n"])
        for d in coll(SIGNALS).aggregate([{"$match": match}, group])
    }
    rage = {"$group": {"_id": "$selector", "n": {"$sum": 1}}}
    for d in coll(RAGE_CLICKS).aggregate([{"$match": match}, rage]):
        found[(str(d["_id"]), RAGE)] = int(d["n"])
    return found


def sessions_with(coll: Coll, project_id: str, kind: str) -> list[str]:
    """The sessions with at least one signal of ``kind`` (``rage`` too)."""
    if kind == RAGE:
        return [str(s) for s in coll(RAGE_CLICKS).distinct("sessionId", {"projectId": project_id})]
    return [str(s) for s in coll(SIGNALS).distinct("sessionId", {"projectId": project_id, "kind": kind})]


def session_counts(coll: Coll, project_id: str, session_ids: list[str]) -> dict[str, dict[str, int]]:
    """``{session: {kind: signals}}`` of these sessions (rage clicks as ``rage``)."""
    if not session_ids:
        return {}
    match = {"$match": {"projectId": project_id, "sessionId": {"$in": sorted(set(session_ids))}}}
    found: dict[str, dict[str, int]] = defaultdict(dict)
    group = {"$group": {"_id": {"s": "$sessionId", "k": "$kind"}, "n": {"$sum": 1}}}
    for doc in coll(SIGNALS).aggregate([match, group]):
        found[str(doc["_id"]["s"])][str(doc["_id"]["k"])] = int(doc["n"])
    for doc in coll(RAGE_CLICKS).aggregate([match, {"$group": {"_id": "$sessionId", "n": {"$sum": 1}}}]):
        found[str(doc["_id"])][RAGE] = int(doc["n"])
    return dict(found)
