"""The MongoDB repository: the SQL schema's collections and keys, aggregated by the server.

Without transactions a batch is a series of writes; its outbox document (mongo_outbox) lets a replay
finish one that a crash stopped halfway, exactly once.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from itertools import groupby
from types import SimpleNamespace
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from pymongo import MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, OperationFailure

from ..aggregates import (
    DAY_MS,
    MONTH_BASE,
    ROLLED,
    batch_pieces,
    compaction,
    day_of,
    finished_before,
    fresh_part,
    is_rolled,
    items,
    merge_pieces,
    month_code,
    month_of,
    piece_ranges,
    pieces,
    rebuild_pieces,
    rollup,
)
from ..errors import ConfigurationError, RetiredProjectKey, StorageUnavailable, UnknownProject
from ..ingest import move_stamps, move_tail, pack_points, path_key, view_width
from ..log import log
from ..rageclicks import DEFAULT_RULE, idle_token
from ..report_pieces import ALL_WIDTHS
from ..report_pieces import batch_pieces as report_batch_pieces
from ..signals import DEFAULT_RULES, SIGNAL_TYPES, Signal
from ..traffic import BOT, HUMAN, Verdict, verdict
from ..traffic import DEFAULT_RULES as DEFAULT_TRAFFIC_RULES
from . import base, mongo_outbox, mongo_purge, mongo_rage, mongo_reports, mongo_signals

Doc = dict[str, Any]
T = TypeVar("T")

DEFAULT_DATABASE = "heat_tracker"
_BAD_DATABASE_NAME = re.compile(r'[/\\. "$\x00]')
# Short timeouts so an outage is a fast 503; options given in the URI win.
CLIENT_DEFAULTS: dict[str, Any] = {
    "serverSelectionTimeoutMS": 1000,  # an outage is answered 503 well within 2 s
    "connectTimeoutMS": 2000,
    "socketTimeoutMS": 10000,
    "appname": "flask-heat-collector",
}
# (collection, keys, unique, name): the keys and indexes of the SQL tables; every one leads with the
# project, so the collections shard on a project-leading key.
INDEXES: tuple[tuple[str, tuple[str, ...], bool, str], ...] = (
    ("projects", ("key",), True, "uq_projects_key"),
    ("projects", ("id",), True, "uq_projects_id"),
    ("users", ("projectId", "externalId"), True, "uq_users_project_external"),
    ("users", ("projectId", "id"), True, "uq_users_project_id"),
    ("sessions", ("projectId", "id"), True, "uq_sessions_project_id"),
    ("sessions", ("projectId", "startedAt", "id"), False, "ix_sessions_project_started"),
    ("sessions", ("projectId", "userId", "startedAt"), False, "ix_sessions_project_user_started"),
    ("sessions", ("projectId", "traffic", "startedAt", "id"), False, "ix_sessions_project_traffic"),
    ("events", ("projectId", "eventId"), True, "uq_events_project_event"),
    ("events", ("projectId", "ts", "seq"), False, "ix_events_ts_seq"),
    ("events", ("projectId", "type", "ts", "seq"), False, "ix_events_type_ts_seq"),
    ("events", ("projectId", "pathKey", "ts", "seq"), False, "ix_events_path_ts_seq"),
    ("events", ("projectId", "pathKey", "type", "ts", "seq"), False, "ix_events_path_type_ts_seq"),
    ("events", ("projectId", "sessionId", "ts", "seq"), False, "ix_events_session_ts_seq"),
    (
        "heat_aggregates",
        ("projectId", "pathKey", "day", "type", "bucketW", "bucketH", "viewW", "part"),
        True,
        "uq_heat_aggregates_key_w",
    ),
    ("heat_aggregates", ("projectId", "day"), False, "ix_heat_aggregates_day"),
    ("heat_aggregates", ("projectId", "part"), False, "ix_heat_aggregates_fresh"),
    ("heat_long_moves", ("projectId", "day", "eventId"), True, "pk_heat_long_moves"),
)
LEGACY_EVENTS = "events_v1"
DUPLICATE_KEY = 11000
UNAUTHORIZED = 13
_UPSERT_ATTEMPTS = 3
_NO_ID = {"_id": 0}
_LIGHT = {"_id": 0, "path": 0, "selector": 0, "metaJson": 0, "dataJson": 0}
_TEXT = {"_id": 0, "metaJson": 0, "dataJson": 0}
_COUNTS = {**_LIGHT, "points": 0}
_BY_TS = [("ts", 1), ("seq", 1)]
_CHUNK = 5000
_LOCK_SECONDS = 60.0  # a compaction lock older than this belongs to a process that died
# Stored in heat_long_moves once migrate() filled it from the stored moves (no project has id "").
_LONG_MOVES_FILLED = {"projectId": "", "day": -1, "eventId": ""}
_AGGREGATE_KEY = ("projectId", "pathKey", "day", "type", "bucketW", "bucketH", "viewW")
_MONTH_KEY = ("projectId", "pathKey", "type", "bucketW", "bucketH", "viewW")
# The data migration that keyed the aggregates by the exact viewport width (events' viewW filled).
_BY_VIEW_WIDTH = "aggregates-by-view-width"


def _now_ms() -> int:
    return int(time.time() * 1000)


def database_from_uri(uri: str) -> str | None:
    """The database named in the URI path (``mongodb://host/<db>?...``), if any."""
    name = unquote(urlsplit(uri).path.lstrip("/"))
    return name or None


def client_options(uri: str) -> dict[str, Any]:
    """The defaults of :data:`CLIENT_DEFAULTS` the URI does not set itself."""
    given = {key.lower() for key, _ in parse_qsl(urlsplit(uri).query)}
    return {key: value for key, value in CLIENT_DEFAULTS.items() if key.lower() not in given}


def _is_unauthorized(exc: OperationFailure) -> bool:
    return exc.code == UNAUTHORIZED or (exc.details or {}).get("codeName") == "Unauthorized"


def _retry_duplicate(upsert: Callable[[], T]) -> T:
    """Run an upsert; two racing inserts of one new key make one fail with E11000, and its retry updates."""
    for _ in range(_UPSERT_ATTEMPTS - 1):
        try:
            return upsert()
        except DuplicateKeyError:
            continue
    return upsert()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_EVENT_FIELDS = [(name, _camel(name)) for name in base.STORED_FIELDS]
_AGGREGATE_FIELDS = [(name, _camel(name)) for name in base.AggregateRow._fields]


def _event_doc(row: base.EventRow, project_id: str, user_id: str | None) -> Doc:
    doc = {key: value for (_, key), value in zip(_EVENT_FIELDS, row, strict=True)}
    doc.update(projectId=project_id, userId=user_id)
    return doc


def _plain(value: Any) -> Any:
    """BSON's Int64 as a plain int (the records hold built-in types only)."""
    return int(value) if isinstance(value, int) and type(value) is not bool else value


def _stored(doc: Mapping[str, Any]) -> base.EventRow:
    return base.EventRow(*(_plain(doc.get(key)) for _, key in _EVENT_FIELDS))


def _piece_doc(piece: base.AggregateRow, project_id: str) -> Doc:
    doc = {key: getattr(piece, name) for name, key in _AGGREGATE_FIELDS}
    doc["projectId"] = project_id
    return doc


def _piece(doc: Mapping[str, Any]) -> base.AggregateRow:
    return base.AggregateRow(*(_plain(doc.get(key)) for _, key in _AGGREGATE_FIELDS))


def _month_doc_key(doc: Mapping[str, Any]) -> Doc:
    """The key of an aggregate document without its day: the pieces of every day and month."""
    return {name: doc[name] for name in _MONTH_KEY}


def _empty_month(key: Doc, code: int) -> base.AggregateRow:
    """A month piece that adds nothing (the month's pieces netted to zero): MongoDB keeps one per
    rolled month, so a rolled day piece without a month piece can only be an unroll stopped halfway."""
    return base.AggregateRow(
        int(key["pathKey"]),
        code,
        str(key["type"]),
        int(key["bucketW"]),
        int(key["bucketH"]),
        int(key["viewW"]),
        ROLLED - fresh_part(),
        0,
        None,
        None,
        None,
        None,
    )


def _legacy_seq(oid: Any) -> int:
    """Storage order of a first-layout document: its ObjectId's second and counter, as a SeqClock value."""
    text = str(oid)
    if len(text) != 24:
        return 0
    return int(text[:8], 16) * 1_000_000 + int(text[-6:], 16) % 1_000_000


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _session(doc: Mapping[str, Any]) -> base.Session:
    return base.Session(
        id=str(doc["id"]),
        project_id=str(doc["projectId"]),
        user_id=_opt_str(doc.get("userId")),
        started_at=int(doc["startedAt"]),
        last_seen_at=int(doc["lastSeenAt"]),
        first_path=str(doc["firstPath"]),
        user_agent=_opt_str(doc.get("userAgent")),
        device_json=_opt_str(doc.get("deviceJson")),
        ip_hash=_opt_str(doc.get("ipHash")),
        traffic=str(doc.get("traffic") or "human"),
        traffic_reason=_opt_str(doc.get("trafficReason")),
    )


def _project(doc: Mapping[str, Any]) -> base.Project:
    return base.Project(id=str(doc["id"]), key=str(doc["key"]), name=str(doc["name"]), created_at=int(doc["createdAt"]))


def _inside(ts_from: int | None, ts_to: int | None) -> Doc:
    """Events whose rows all lie in ``ts_from..ts_to`` (a move: from its first to its last point)."""
    ts: Doc = {}
    if ts_from is not None:
        ts["$gte"] = ts_from
    if ts_to is not None:
        ts["$lt"] = ts_to + 1  # see _MongoReader.scan
    found: Doc = {"ts": ts} if ts else {}
    if ts_to is not None:
        found["$expr"] = {"$lte": [{"$add": ["$ts", "$span"]}, ts_to]}
    return found


def _match(flt: base.EventFilter) -> Doc:
    match: Doc = {"projectId": flt.project_id, **mongo_reports.path_match(flt.path_set)}
    if flt.types is not None:
        match["type"] = flt.types[0] if len(flt.types) == 1 else {"$in": list(flt.types)}
    if flt.other_width is not None:
        match["viewW"] = {"$ne": flt.other_width}
    return match


class MongoRepository(base.Repository):
    """The repository over PyMongo; one client per process, made on first use."""

    def __init__(self, uri: str, database: str | None = None) -> None:
        self.rage_rule = DEFAULT_RULE
        self.signal_rules = DEFAULT_RULES
        self.traffic_rules = DEFAULT_TRAFFIC_RULES
        self.uri = uri
        self.database_name = database or database_from_uri(uri) or DEFAULT_DATABASE
        if _BAD_DATABASE_NAME.search(self.database_name) or len(self.database_name.encode()) > 63:
            raise ConfigurationError(
                f"HEAT_MONGO_DATABASE (or the path of HEAT_DATABASE_URI) is not a valid MongoDB "
                f"database name: {self.database_name!r}"
            )
        self.tally = base.ReadTally()
        self._client: MongoClient[Doc] | None = None
        self._pid = 0
        self._lock = threading.Lock()

    @property
    def client(self) -> MongoClient[Doc]:
        """Made after a gunicorn fork, never inherited: PyMongo clients are not fork-safe."""
        pid = os.getpid()
        if self._client is None or self._pid != pid:
            with self._lock:
                if self._client is None or self._pid != pid:
                    self._client = MongoClient(self.uri, **client_options(self.uri))
                    self._pid = pid
        return self._client

    @property
    def db(self) -> Database[Doc]:
        return self.client[self.database_name]

    def _coll(self, name: str) -> Collection[Doc]:
        return self.db[name]

    def dispose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except ConnectionFailure as exc:
            raise StorageUnavailable(f"{type(exc).__name__}: {str(exc)[:200]}") from exc

    def _aggregate(self, collection: str, pipeline: list[Doc]) -> list[Doc]:
        with self._guard():
            return list(self._coll(collection).aggregate(pipeline))

    # -- schema -------------------------------------------------------------

    def migrate(self) -> base.Migration:
        """Create the indexes (a user without the createIndex privilege gets a warning, not a
        failure) and move events of the first layout (one document per move point) forward."""
        refused: list[str] = []
        added: list[str] = []
        with self._guard():
            wanted = sorted({collection for collection, *_ in INDEXES})
            try:
                present: set[str] | None = set(self.db.list_collection_names())
                indexes = {name: {ix["name"] for ix in self._coll(name).list_indexes()} for name in wanted}
            except OperationFailure as exc:  # a user who may create indexes but not list them
                if not _is_unauthorized(exc):
                    raise
                present, indexes = None, {}
            created = () if present is None else tuple(name for name in wanted if name not in present)
            legacy = self._coll("events").find_one({"pointIndex": {"$exists": True}}, {"_id": 1}) is not None
            if legacy:
                self._coll("events").rename(LEGACY_EVENTS)
            indexes_wanted = (
                *INDEXES,
                *mongo_rage.INDEXES,
                *mongo_signals.INDEXES,
                *mongo_reports.INDEXES,
                *mongo_outbox.INDEXES,
            )
            for collection, keys, unique, name in indexes_wanted:
                try:
                    self._coll(collection).create_index([(key, 1) for key in keys], unique=unique, name=name)
                    if collection not in created and name not in indexes.get(collection, {name}):
                        added.append(f"index {collection}.{name}")
                except OperationFailure as exc:
                    if not _is_unauthorized(exc):
                        raise
                    refused.append(f"{collection}.{name}")
            superseded_indexes = (("sessions", "ix_sessions_id"), ("heat_aggregates", "uq_heat_aggregates_key"))
            for collection, superseded in superseded_indexes:
                try:  # every index leads with the project; aggregates are keyed by the exact width too
                    self._coll(collection).drop_index(superseded)
                except OperationFailure:
                    pass  # not there (or not ours to drop)
            mongo_rage.migrate(self._coll)
            try:  # the first time: report data of the events stored so far (2: with all-band pieces)
                self._coll(mongo_rage.MIGRATIONS).insert_one({"_id": "report-pieces-2"})
                for project in list(self._coll("projects").find({}, {"_id": 0, "id": 1})):
                    self._rebuild_reports(str(project["id"]))
            except DuplicateKeyError:
                pass
            moved = self._coll(LEGACY_EVENTS).find_one({}, {"_id": 1}) is not None
            if moved:
                self._move_legacy_events()
                self._rebuild_aggregates()
                self._coll(LEGACY_EVENTS).drop()
            if self._coll(mongo_rage.MIGRATIONS).find_one({"_id": _BY_VIEW_WIDTH}) is None:
                # Events stored before the exact viewport width was kept get it, and the aggregates
                # are made again keyed by it; marked done afterwards, so a stop halfway is done again.
                self._fill_view_widths()
                if not moved:
                    self._rebuild_aggregates()
                    added.append("heatmap aggregates by exact viewport width")
                try:
                    self._coll(mongo_rage.MIGRATIONS).insert_one({"_id": _BY_VIEW_WIDTH})
                except DuplicateKeyError:
                    pass
            # A database of the layout before the long-move index: fill it once, then mark it filled.
            if self._coll("heat_long_moves").find_one(_LONG_MOVES_FILLED, {"_id": 1}) is None:
                self._index_long_moves_of({"span": {"$gt": base.LONG_MOVE_MS}})
                self._coll("heat_long_moves").update_one(_LONG_MOVES_FILLED, {"$set": {"ts": 0}}, upsert=True)
            self._replay_outbox(mongo_outbox.GRACE_MS)  # batches a stopped process left unfinished
        if refused:
            log(
                "warn",
                f"MongoDB refused to create {len(refused)} index(es) (Unauthorized); until a user allowed to "
                "runs `flask heat migrate`, queries scan and retried batches are not deduplicated",
                database=self.database_name,
                indexes=refused,
            )
        if present is None:
            return base.Migration("collection", known=False, from_layout=1 if moved else None)
        new = not present & set(wanted)
        return base.Migration("collection", new, created, tuple(added), 1 if moved else None)

    def _fill_view_widths(self) -> None:
        """Set ``viewW`` of the events without one from the ``viewport.w`` of their meta JSON."""
        events = self._coll("events")
        lacking = {"$or": [{"viewW": {"$exists": False}}, {"viewW": None}]}
        while True:
            docs = list(events.find(lacking, {"_id": 1, "metaJson": 1, "bucketW": 1}, limit=_CHUNK))
            if not docs:
                return
            ops = [
                UpdateOne({"_id": d["_id"]}, {"$set": {"viewW": view_width(d.get("metaJson"), int(d["bucketW"]))}})
                for d in docs
            ]
            events.bulk_write(ops, ordered=False)

    def _index_long_moves_of(self, match: Doc) -> None:
        """Add the long-move index entries of the stored events matching ``match``."""
        found = self._coll("events").find(match, {"_id": 0, "projectId": 1, "eventId": 1, "ts": 1, "span": 1})
        for doc in found:
            row = SimpleNamespace(event_id=doc["eventId"], ts=int(doc["ts"]), span=int(doc.get("span") or 0))
            self._index_long_moves(str(doc["projectId"]), [row])

    def _index_long_moves(self, project_id: str, rows: list[Any]) -> None:
        """Upsert the long-move index entries of ``rows`` (events with ``event_id``, ``ts``, ``span``);
        an entry only widens, so a retried batch or a grown move leaves it covering every row."""
        ops = [
            UpdateOne(
                {"projectId": project_id, "day": day, "eventId": row.event_id},
                {"$min": {"ts": row.ts}, "$max": {"endTs": row.ts + row.span}},
                upsert=True,
            )
            for row in rows
            for day in base.long_move_days(row.ts, row.span)
        ]
        if ops:
            self._coll("heat_long_moves").bulk_write(ops, ordered=False)

    def _forget_long_moves(self, project_id: str, rows: list[base.EventRow]) -> None:
        days = sorted({day for row in rows for day in base.long_move_days(row.ts, row.span)})
        if days:
            ids = [row.event_id for row in rows if row.span > base.LONG_MOVE_MS]
            self._coll("heat_long_moves").delete_many(
                {"projectId": project_id, "day": {"$in": days}, "eventId": {"$in": ids}}
            )

    def _move_legacy_events(self) -> None:
        """Copy the first layout's point documents into one document per event, with counters."""
        old = self._coll(LEGACY_EVENTS).find({}, sort=[("projectId", 1), ("eventId", 1), ("pointIndex", 1)])
        sessions = self._coll("sessions")
        counts: dict[tuple[str, str], int] = {}
        spans: dict[str, int] = {}
        out: list[Doc] = []

        for _, docs in groupby(old, key=lambda d: (d["projectId"], d["eventId"])):
            group = list(docs)
            first = group[0]
            move = first["type"] == "move"
            if move:
                ts, span, points = pack_points([(int(d["ts"]), int(d["x"]), int(d["y"])) for d in group])
            else:
                ts, span, points = int(first["ts"]), 0, None
            doc = {
                key: first.get(key)
                for key in ("projectId", "userId", "eventId", "sessionId", "type", "path", "selector", "scrollDepth")
            }
            doc.update(
                seq=min(_legacy_seq(d["_id"]) for d in group),
                ts=ts,
                span=span,
                pathKey=path_key(str(first["path"])),
                x=None if move else first.get("x"),
                y=None if move else first.get("y"),
                bucketW=first["bucketW"],
                bucketH=first["bucketH"],
                viewW=view_width(first.get("metaJson"), int(first["bucketW"])),
                rowCount=len(group) if move else 1,
                points=points,
                metaJson=first["metaJson"],
                dataJson=first.get("dataJson"),
            )
            out.append(doc)
            key = (str(first["projectId"]), str(first["sessionId"]))
            counts[key] = counts.get(key, 0) + (len(group) if move else 1)
            spans[key[0]] = max(spans.get(key[0], 0), span)
            if len(out) >= _CHUNK:
                self._insert_events(out)  # a re-run after an interruption finds some stored already
                out.clear()
        if out:
            self._insert_events(out)
        for (project_id, session_id), count in counts.items():
            sessions.update_one({"projectId": project_id, "id": session_id}, {"$set": {"eventCount": count}})
        for project_id, span in spans.items():
            self._coll("projects").update_one({"id": project_id}, {"$max": {"maxSpan": span}})

    # -- ingest -------------------------------------------------------------

    def _upsert_id(self, collection: str, key: Doc, update: Doc) -> str:
        """Find-or-create by ``key`` in one atomic upsert, then the document's ``id``.

        ``update_one`` rather than ``find_one_and_update``: SecantusDB's findAndModify may answer
        ``None`` to an upsert that raced another.
        """
        coll = self._coll(collection)
        result = _retry_duplicate(lambda: coll.update_one(key, update, upsert=True))
        if result.upserted_id is not None:
            return str(update["$setOnInsert"]["id"])
        doc = coll.find_one(key, {"_id": 0, "id": 1})
        if doc is None:
            raise RuntimeError(f"the {collection} upsert left no document")
        return str(doc["id"])

    def _project_id(self, key: str) -> str:
        """The project holding ``key`` now; UnknownProject or RetiredProjectKey."""
        doc = self._coll("projects").find_one({"key": key}, {"_id": 0, "id": 1})
        if doc is None:
            self._refuse_retired(key)
            raise UnknownProject(key)
        return str(doc["id"])

    def _refuse_retired(self, key: str) -> None:
        if self._coll("retired_keys").find_one({"_id": key}, {"_id": 1}) is not None:
            raise RetiredProjectKey(key)

    def _user_id(self, project_id: str, external_id: str, traits_json: str | None) -> tuple[str, bool]:
        """The internal id of the user, made when new, and whether the user was erased (a tombstone,
        which never takes traits again)."""
        key = {"projectId": project_id, "externalId": external_id}
        on_insert: Doc = {"id": str(uuid.uuid4()), "createdAt": _now_ms(), "traitsJson": traits_json}
        user_id = self._upsert_id("users", key, {"$setOnInsert": on_insert})
        if self._erased(project_id, user_id):
            return user_id, True
        if traits_json is not None and user_id != on_insert["id"]:
            self._coll("users").update_one({**key, "erasedAt": None}, {"$set": {"traitsJson": traits_json}})
        return user_id, False

    def _erased(self, project_id: str, user_id: str) -> bool:
        doc = self._coll("users").find_one({"projectId": project_id, "id": user_id}, {"_id": 0, "erasedAt": 1})
        return doc is not None and doc.get("erasedAt") is not None

    def ingest(self, batch: base.Batch) -> base.IngestResult:
        """Store a batch: its outbox document first, then its writes, then the outbox document is
        deleted (see mongo_outbox: a crash in between is replayed later)."""
        with self._guard():
            project_id = self._project_id(batch.project_key)
            user_id: str | None = None
            if batch.external_user_id:
                user_id, erased = self._user_id(project_id, batch.external_user_id, batch.user_traits_json)
                if erased:
                    return base.IngestResult(project_id=project_id, accepted=0, duplicates=0, erased_user=True)
            outbox = mongo_outbox.open_batch(self._coll, project_id, user_id, batch, fresh_part())
            if batch.span:
                self._coll("projects").update_one({"id": project_id}, {"$max": {"maxSpan": batch.span}})
            self._open_session(batch, project_id, user_id, outbox["_id"])
            stored = self._insert_events([_event_doc(row, project_id, user_id) for row in batch.events])
            new = [row for row, is_new in zip(batch.events, stored, strict=True) if is_new]
            grown: list[str] = []
            for row, is_new in zip(batch.events, stored, strict=True):
                tail = None if is_new or row.type != "move" else self._extend_move(project_id, row, outbox["_id"])
                if tail is not None:
                    new.append(tail)
                    grown.append(row.event_id)
            self._index_long_moves(project_id, [row for row in batch.events if row.span > base.LONG_MOVE_MS])
            traffic = BOT if self._is_bot(project_id, batch.session.id) else HUMAN
            if traffic == HUMAN:
                self._write_pieces(project_id, batch.session.id, int(outbox["part"]), new)
            accepted = sum(row.row_count for row in new)
            if any(row.type in SIGNAL_TYPES for row in new):  # new rows: the session's signals are decided again
                mongo_rage.mark(self._coll, project_id, [batch.session.id])
            self._upsert_session(batch, project_id, user_id, accepted, outbox["_id"])
            mongo_outbox.close_batch(self._coll, outbox, grown)
            if batch.external_user_id and user_id is not None and self._erased(project_id, user_id):
                # No transactions: an erase that started while this batch was being stored may have
                # missed it. Looked at again after the last write, so one of the two erases it.
                self.erase(base.Erasure(project_id, user=batch.external_user_id))
                return base.IngestResult(project_id=project_id, accepted=0, duplicates=0, erased_user=True)
        return base.IngestResult(
            project_id=project_id, accepted=accepted, duplicates=batch.row_count - accepted, traffic=traffic
        )

    def _is_bot(self, project_id: str, session_id: str) -> bool:
        """Whether the stored session is a bot's (its rows add to no aggregate nor report piece)."""
        doc = self._coll("sessions").find_one({"projectId": project_id, "id": session_id}, {"_id": 0, "traffic": 1})
        return doc is not None and doc.get("traffic") == "bot"

    def _write_pieces(
        self, project_id: str, session_id: str, part: int, rows: list[base.EventRow], *, replay: bool = False
    ) -> None:
        """The aggregate and report pieces of a batch's new rows, under the batch's ``part``; a replay
        also deletes the batch's pieces of keys it no longer has rows in."""
        clear = {"projectId": project_id, "part": part} if replay else None
        aggregates = [_piece_doc(p, project_id) for p in batch_pieces(rows, part)]
        mongo_outbox.write_pieces(self._coll("heat_aggregates"), (*_AGGREGATE_KEY, "part"), aggregates, clear=clear)
        reports = [mongo_reports.piece_doc(p, project_id) for p in report_batch_pieces(rows, session_id, part)]
        mongo_outbox.write_pieces(self._coll(mongo_reports.PIECES), (*mongo_reports.KEY, "part"), reports, clear=clear)

    def _extend_move(self, project_id: str, row: base.EventRow, batch_id: Any) -> base.EventRow | None:
        """Append the points of a resent move past those stored; the appended points as a row. The
        update names the batch and the points it appended (``grown``, for a replay of the batch)."""
        events = self._coll("events")
        key = {"projectId": project_id, "eventId": row.event_id, "type": "move"}
        for _ in range(_UPSERT_ATTEMPTS):
            stored = events.find_one(key, {"_id": 0, "ts": 1, "rowCount": 1, "points": 1})
            tail = None if stored is None else move_tail(row, int(stored["rowCount"]))
            if stored is None or tail is None:
                return None
            current = SimpleNamespace(ts=int(stored["ts"]), points=stored["points"])
            ts, span, points = pack_points(move_stamps(current) + move_stamps(tail))
            mark = {"by": batch_id, "from": int(stored["rowCount"]), "to": row.row_count}
            update = {
                "$set": {"ts": ts, "span": span, "rowCount": row.row_count, "points": points},
                "$push": {"grown": mark},
            }
            if events.update_one({**key, "rowCount": stored["rowCount"]}, update).modified_count:
                self._coll("projects").update_one({"id": project_id}, {"$max": {"maxSpan": span}})
                self._index_long_moves(project_id, [row._replace(ts=ts, span=span)])
                return tail
        return None

    def _session_update(self, batch: base.Batch, user_id: str | None, accepted: int) -> Doc:
        s = batch.session
        on_insert: Doc = {
            "startedAt": s.started_at,
            "firstPath": s.first_path,
            "userAgent": s.user_agent,
            "deviceJson": s.device_json,
            "ipHash": s.ip_hash,
            "traffic": s.traffic,
            "trafficReason": s.traffic_reason,
        }
        # lastSeenAt never goes back; userId is kept when a later batch has no user.
        update: Doc = {
            "$setOnInsert": on_insert,
            "$max": {"lastSeenAt": s.last_seen_at},
            "$inc": {"eventCount": accepted},
        }
        on_insert["firstUserId"] = user_id  # whose batch made the row (see sql_schema.sessions)
        if user_id is None:
            on_insert["userId"] = None
        else:
            update["$set"] = {"userId": user_id}
        return update

    def _open_session(self, batch: base.Batch, project_id: str, user_id: str | None, batch_id: Any) -> None:
        """Upsert the session before the events, naming the batch in its ``pending`` list."""
        self._store_session(batch, project_id, user_id, 0, {"$addToSet": {"pending": batch_id}})

    def _store_session(
        self, batch: base.Batch, project_id: str, user_id: str | None, accepted: int, extra: Doc | None = None
    ) -> None:
        s = batch.session
        update = {**self._session_update(batch, user_id, accepted), **(extra or {})}
        sessions = self._coll("sessions")
        key = {"projectId": project_id, "id": s.id}
        _retry_duplicate(lambda: sessions.update_one(key, update, upsert=True))
        newer = {"$or": [{"lastTs": None}, {"lastTs": {"$lte": s.last_ts}}]}
        sessions.update_one({**key, **newer}, {"$set": {"lastPath": s.last_path, "lastTs": s.last_ts}})

    def _upsert_session(
        self, batch: base.Batch, project_id: str, user_id: str | None, accepted: int, batch_id: Any
    ) -> None:
        """Count the batch's rows and take it off the session's ``pending`` list, in one update (a
        replay counts them only while the batch is still listed). A session deleted meanwhile (an
        erase or a purge) is stored again, as the batch's own upsert always did."""
        sessions = self._coll("sessions")
        key = {"projectId": project_id, "id": batch.session.id}
        done = sessions.update_one(
            {**key, "pending": batch_id}, {"$inc": {"eventCount": accepted}, "$pull": {"pending": batch_id}}
        )
        if not done.matched_count and sessions.find_one(key, {"_id": 1}) is None:
            self._store_session(batch, project_id, user_id, accepted)

    def _replay_outbox(self, grace_ms: int, match: Doc | None = None, *, erased_check: bool = True) -> int:
        """Finish the batches whose outbox documents are older than ``grace_ms`` (see mongo_outbox);
        how many. ``erased_check``: a batch of a user erased since is erased instead."""
        done = 0
        for outbox in mongo_outbox.due(self._coll, grace_ms, match):
            if self._coll(mongo_outbox.OUTBOX).find_one({"_id": outbox["_id"]}, {"_id": 1}) is None:
                continue  # finished meanwhile (by another replay, or by an erase an earlier one ran)
            self._replay(outbox, erased_check=erased_check)
            done += 1
        if done and match is None:
            log("warn", f"finished {done} batch(es) left unfinished by a stopped process", database=self.database_name)
        return done

    def _replay(self, outbox: Doc, *, erased_check: bool) -> None:
        """Write again what the batch of ``outbox`` derives from the rows it stored, then close it."""
        project_id, session_id, batch_id = str(outbox["projectId"]), str(outbox["sessionId"]), outbox["_id"]
        user_id = _opt_str(outbox.get("userId"))
        if erased_check and user_id is not None and self._erased(project_id, user_id):
            user = self._coll("users").find_one({"projectId": project_id, "id": user_id}, {"_id": 0, "externalId": 1})
            if user is not None:  # the erase replays this batch first, then erases it with the rest
                self.erase(base.Erasure(project_id, user=str(user["externalId"])))
                return
        if outbox.get("span"):
            self._coll("projects").update_one({"id": project_id}, {"$max": {"maxSpan": int(outbox["span"])}})
        ids = sorted({str(eid) for eid in outbox.get("ids") or ()})
        docs = list(self._coll("events").find({"projectId": project_id, "eventId": {"$in": ids}}, _NO_ID))
        stored = [(doc, _stored(doc)) for doc in docs]
        self._index_long_moves(project_id, [row for _, row in stored if row.span > base.LONG_MOVE_MS])
        rows = mongo_outbox.batch_rows(outbox, stored)
        if not self._is_bot(project_id, session_id):
            self._write_pieces(project_id, session_id, int(outbox["part"]), rows, replay=True)
        if any(row.type in SIGNAL_TYPES for row in rows):
            mongo_rage.mark(self._coll, project_id, [session_id])
        # The rows it stored, those an erase or a purge took off the count since included (note_erased).
        counted = sum(row.row_count for row in rows) + int(outbox.get("erased") or 0)
        self._coll("sessions").update_one(
            {"projectId": project_id, "id": session_id, "pending": batch_id},
            {"$inc": {"eventCount": counted}, "$pull": {"pending": batch_id}},
        )
        grown = [str(doc["eventId"]) for doc in docs if any(m.get("by") == batch_id for m in doc.get("grown") or ())]
        mongo_outbox.close_batch(self._coll, outbox, grown)

    def _insert_events(self, docs: list[Doc]) -> list[bool]:
        """Insert the rows; which were new. A clash with the unique key (E11000) is a duplicate."""
        if not docs:
            return []
        try:
            self._coll("events").insert_many(docs, ordered=False)
            return [True] * len(docs)
        except BulkWriteError as exc:
            details = exc.details
            errors = details.get("writeErrors") or []
            if details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            stored = [True] * len(docs)
            for error in errors:
                stored[int(error["index"])] = False
            return stored

    # -- queries ------------------------------------------------------------

    def read(self, fn: Callable[[base.Reader], T]) -> T:
        """``fn`` without a snapshot (a standalone server has no read-only transactions)."""
        with self._guard():
            return fn(_MongoReader(self))

    def mark_rage(self, project_id: str | None) -> None:
        with self._guard():
            mongo_rage.mark_all(self._coll, project_id)

    def settle_rage(self, project_id: str | None, limit: int | None = None, *, idle_ms: int | None = None) -> int:
        done = 0
        with self._guard():
            while limit is None or done < limit:
                page = 5000 if limit is None else min(limit - done, 5000)
                before = None if idle_ms is None else idle_token(idle_ms)
                found = mongo_rage.pending(self._coll, project_id, page, before)
                by_project: dict[str, list[str]] = {}
                for pid, sid in found:
                    by_project.setdefault(pid, []).append(sid)
                settled = sum(
                    mongo_rage.settle_sessions(self._coll, pid, sids, self.rage_rule, self.signal_rules)
                    for pid, sids in by_project.items()
                )
                done += settled
                if len(found) < page or not settled:
                    break
        return done

    def compact(
        self,
        max_keys: int = 1000,
        *,
        keys: list[base.AggregateKeyDay] | None = None,
        report_keys: list[base.ReportKeyDay] | None = None,
        roll: bool = True,
        full: bool = True,
    ) -> int:
        """Merge the keys that have fresh pieces (positive ``part``), one key at a time.

        Without transactions a merge is made safe by its order: the merged pieces are inserted
        naming the pieces they replace (readers skip those), then the replaced pieces are deleted,
        then the names are dropped. A per-key lock document keeps two processes off one key.
        """
        with self._guard():
            given = keys is not None or report_keys is not None
            if not given:  # first the batches a stopped process left unfinished (mongo_outbox)
                self._replay_outbox(mongo_outbox.GRACE_MS)
            found: dict[tuple[Any, ...], None] = dict.fromkeys(keys or ())
            fields = {"_id": 0, **{name: 1 for name in _AGGREGATE_KEY}}
            for project in self._coll("projects").find({}, {"_id": 0, "id": 1}) if not given else ():
                fresh = {"projectId": project["id"], "part": {"$gt": 0}}
                for doc in self._coll("heat_aggregates").find(fresh, fields, limit=max_keys * 4):
                    found[tuple(doc.get(name) for name in _AGGREGATE_KEY)] = None
                if len(found) >= max_keys:
                    break
            full = full and not given
            merged = sum(
                self._compact_key(dict(zip(_AGGREGATE_KEY, key, strict=True)), full) for key in list(found)[:max_keys]
            )
            if not given:
                if roll:
                    self._roll_months(max_keys)
                reports = mongo_reports.fresh_keys(self._coll, max_keys)
            else:
                reports = [dict(zip(mongo_reports.KEY, key, strict=True)) for key in report_keys or ()]
            for report_key in reports:
                lock = self._lock_key({"report": True, **report_key})
                if lock is None:
                    continue
                try:
                    merged += mongo_reports.compact_key(self._coll, report_key)
                finally:
                    self._coll("heat_locks").delete_one(lock)
            return merged

    def _lock_key(self, key: Doc) -> Doc | None:
        """Take the lock document of an aggregate key and month (one lock for the days of a month and
        its month piece); ``None`` when another process holds it."""
        locks = self._coll("heat_locks")
        if int(key["day"]) < MONTH_BASE:
            key = {**key, "day": month_code(month_of(int(key["day"]))[0])}
        lock = {"_id": json.dumps(key, sort_keys=True)}
        now = time.time()
        try:
            locks.insert_one({**lock, "at": now})
        except DuplicateKeyError:  # held; taken over only from a holder gone for a minute
            if not locks.delete_one({**lock, "at": {"$lt": now - _LOCK_SECONDS}}).deleted_count:
                return None
            try:
                locks.insert_one({**lock, "at": now})
            except DuplicateKeyError:
                return None
        return lock

    def _compact_key(self, key: Doc, full: bool = True) -> bool:
        locks, aggregates = self._coll("heat_locks"), self._coll("heat_aggregates")
        lock = self._lock_key(key)
        if lock is None:
            return False
        try:
            self._settle_month(_month_doc_key(key), month_of(int(key["day"]))[0])
            docs = [doc for doc in aggregates.find(key) if not is_rolled(int(doc["part"]))]
            held = mongo_outbox.held(self._coll, str(key["projectId"]), (int(doc["part"]) for doc in docs))
            docs = [doc for doc in docs if int(doc["part"]) not in held]  # a pending batch's: left to it
            replaced = {r for doc in docs for r in doc.get("replaces") or ()}
            live = [doc for doc in docs if doc["_id"] not in replaced]
            ids = [doc["_id"] for doc in docs if doc["_id"] in replaced or int(doc["part"]) > 0]
            if not any(int(doc["part"]) > 0 for doc in live):
                aggregates.delete_many({"_id": {"$in": ids}})  # left by a merge that stopped halfway
                return False
            if not full:  # by count: a burst is merged apart from the key-day's big piece (compaction)
                parts = {piece.part for piece in compaction([_piece(doc) for doc in live], full=False)[0]}
                live = [doc for doc in live if int(doc["part"]) in parts]
            keep = [doc["_id"] for doc in live if int(doc["part"]) <= 0]
            merged = merge_pieces([_piece(doc) for doc in live])
            ids += keep
            new = [{**_piece_doc(piece, str(key["projectId"])), "replaces": ids} for piece in merged]
            if new:
                aggregates.insert_many(new)
            aggregates.delete_many({"_id": {"$in": ids}})
            if new:
                aggregates.update_many({"_id": {"$in": [doc["_id"] for doc in new]}}, {"$unset": {"replaces": ""}})
            return True
        finally:
            locks.delete_one(lock)

    def _roll_months(self, max_keys: int) -> None:
        """Roll the finished months that have merged day pieces not rolled yet (roll_month)."""
        before = finished_before(_now_ms())
        fields = {"_id": 0, **{name: 1 for name in _AGGREGATE_KEY}}
        months: dict[tuple[Any, ...], None] = {}
        for project in self._coll("projects").find({}, {"_id": 0, "id": 1}):
            match = {"projectId": project["id"], "part": {"$gt": ROLLED, "$lt": 0}, "day": {"$lt": before}}
            for doc in self._coll("heat_aggregates").find(match, fields, limit=max_keys * 4):
                months[(*_month_doc_key(doc).values(), month_of(int(doc["day"]))[0])] = None
            if len(months) >= max_keys:
                break
        for *names, first in list(months)[:max_keys]:
            self._roll_month(dict(zip(_MONTH_KEY, names, strict=True)), first)

    def _roll_month(self, key: Doc, first: int) -> None:
        """Add a key's merged day pieces of one month not rolled yet to its month piece.

        Without transactions: the new month piece is inserted naming the month pieces it replaces
        and the day pieces it covers (readers skip both), the covered pieces are marked rolled, the
        replaced ones deleted, then the names dropped (:meth:`_settle_month` finishes a stopped one).
        """
        aggregates, code = self._coll("heat_aggregates"), month_code(first)
        lock = self._lock_key({**key, "day": code})
        if lock is None:
            return
        try:
            self._settle_month(key, first)
            days = {"day": {"$gte": first, "$lte": month_of(first)[1]}, "part": {"$lt": 0}}
            docs = list(aggregates.find({**key, "$or": [days, {"day": code}]}))
            if any("replaces" in doc for doc in docs):
                return  # a merge of a day stopped halfway: the next compaction of that day ends it
            fresh = [doc for doc in docs if int(doc["day"]) < MONTH_BASE and not is_rolled(int(doc["part"]))]
            old = [doc for doc in docs if int(doc["day"]) == code]
            if not fresh:
                return
            merged = merge_pieces([_piece(doc) for doc in old + fresh], day=code, rolled=True)
            if len(merged) > 1:
                return  # more cells than one document holds: this month stays in day pieces
            piece = merged[0] if merged else _empty_month(key, code)
            new = _piece_doc(piece, str(key["projectId"]))
            new.update(replaces=[doc["_id"] for doc in old], covers=[doc["_id"] for doc in fresh])
            aggregates.insert_one(new)
            self._settle_month(key, first)
        finally:
            self._coll("heat_locks").delete_one(lock)

    def _settle_month(self, key: Doc, first: int) -> None:
        """End a month roll that stopped halfway (the month lock is held)."""
        aggregates = self._coll("heat_aggregates")
        for doc in aggregates.find({**key, "day": month_code(first), "covers": {"$exists": True}}):
            aggregates.update_many({"_id": {"$in": doc["covers"]}, "part": {"$gt": ROLLED}}, {"$inc": {"part": ROLLED}})
            aggregates.delete_many({"_id": {"$in": doc.get("replaces") or []}})
            aggregates.update_one({"_id": doc["_id"]}, {"$unset": {"covers": "", "replaces": ""}})

    def _unroll_month(self, key: Doc, first: int) -> int:
        """Drop the month piece of a key and month and mark its rolled day pieces not rolled (the month
        lock is held); the month pieces dropped. The month piece first covers the day pieces, so
        readers count each once throughout, and a stop halfway rolls them back (:meth:`_settle_month`)."""
        aggregates, code = self._coll("heat_aggregates"), month_code(first)
        self._settle_month(key, first)
        days = {"day": {"$gte": first, "$lte": month_of(first)[1]}, "part": {"$lte": ROLLED}}
        rolled = [doc["_id"] for doc in aggregates.find({**key, **days}, {"_id": 1})]
        months = [doc["_id"] for doc in aggregates.find({**key, "day": code}, {"_id": 1})]
        if months:
            aggregates.update_many({"_id": {"$in": months}}, {"$set": {"covers": rolled}})
        aggregates.update_many({"_id": {"$in": rolled}}, {"$inc": {"part": -ROLLED}})
        return int(aggregates.delete_many({"_id": {"$in": months}}).deleted_count)

    def _waiting_lock(self, key: Doc) -> Doc:
        deadline = time.monotonic() + _LOCK_SECONDS + 10
        while (lock := self._lock_key(key)) is None:  # a compaction of this key: wait for it
            if time.monotonic() > deadline:
                raise StorageUnavailable("an aggregate key stayed locked")
            time.sleep(0.02)
        return lock

    def _drop_months_before(self, project_id: str, before_day: int) -> int:
        """Delete the month pieces of the months wholly before ``before_day`` and unroll the month
        holding it; the month pieces deleted. The day pieces are left to the caller."""
        aggregates = self._coll("heat_aggregates")
        first = month_of(before_day)[0]
        gone = 0
        if first < before_day:
            fields = {"_id": 0, **{name: 1 for name in _MONTH_KEY}}
            for doc in list(aggregates.find({"projectId": project_id, "day": month_code(first)}, fields)):
                key = _month_doc_key(doc)
                lock = self._waiting_lock({**key, "day": month_code(first)})
                try:
                    gone += self._unroll_month(key, first)
                finally:
                    self._coll("heat_locks").delete_one(lock)
        old = {"projectId": project_id, "day": {"$gte": MONTH_BASE, "$lt": month_code(first)}}
        return gone + int(aggregates.delete_many(old).deleted_count)

    def rebuild_aggregates(self) -> int:
        with self._guard():
            return self._rebuild_aggregates()

    def _rebuild_aggregates(self) -> int:
        aggregates, events = self._coll("heat_aggregates"), self._coll("events")
        self._replay_outbox(0)  # every pending batch, so that none adds its pieces again afterwards
        aggregates.delete_many({})
        self._coll(mongo_rage.CLICKS).delete_many({})
        mongo_rage.mark_all(self._coll)
        read = 0
        for project in self._coll("projects").find({}, {"_id": 0, "id": 1}):
            project_id = str(project["id"])
            light = {"_id": 0, "metaJson": 0, "dataJson": 0}
            human = mongo_signals.traffic_match(self._coll, project_id, "human")
            cursor = events.find({"projectId": project_id, **human}, light)
            merged, count = rebuild_pieces(_stored(doc) for doc in cursor)
            read += count
            if merged:
                aggregates.insert_many([_piece_doc(piece, project_id) for piece in merged])
            self._rebuild_reports(project_id)
            mongo_signals.rebuild_counts(self._coll, project_id)  # the signals' (rage clicks settled again)
        return read

    def _rebuild_reports(self, project_id: str) -> None:
        human = mongo_signals.traffic_match(self._coll, project_id, "human")
        cursor = self._coll("events").find({"projectId": project_id, **human}, _NO_ID, sort=_BY_TS)
        mongo_reports.rebuild_all(self._coll, project_id, (_stored(doc) for doc in cursor))

    # -- lifecycle ----------------------------------------------------------

    def _erased_filter(self, erasure: base.Erasure, uids: list[str], sids: list[str]) -> Doc:
        match: Doc = {"projectId": erasure.project_id}
        if erasure.before is not None:
            match["ts"] = {"$lt": erasure.before}
        if erasure.session_id is not None:
            match["sessionId"] = erasure.session_id
        if erasure.user is not None:  # the user's batches, and those without a user in their sessions
            match["$or"] = [{"userId": {"$in": uids}}, {"userId": None, "sessionId": {"$in": sids}}]
        return match

    def _session_ids(self, project_id: str, uids: list[str]) -> tuple[list[str], list[str]]:
        """``(owned, touched)``: as sql_erase.session_ids."""
        if not uids:
            return [], []
        theirs = {"projectId": project_id, "userId": {"$in": uids}}
        sent = sorted({str(d["sessionId"]) for d in self._coll("events").find(theirs, {"_id": 0, "sessionId": 1})})
        match = {
            "projectId": project_id,
            "$or": [{"userId": {"$in": uids}}, {"firstUserId": {"$in": uids}}, {"id": {"$in": sent}}],
        }
        found = list(self._coll("sessions").find(match, {"_id": 0, "id": 1, "userId": 1}))
        return sorted(str(d["id"]) for d in found if d.get("userId") in uids), sorted(str(d["id"]) for d in found)

    def _finish_user_sessions(self, project_id: str, uids: list[str], touched: list[str], *, hand_over: bool) -> int:
        """As sql_erase._finish_user_sessions."""
        sessions, events = self._coll("sessions"), self._coll("events")
        done = 0
        for session_id in touched:
            key = {"projectId": project_id, "id": session_id}
            in_session = {"projectId": project_id, "sessionId": session_id}
            if events.find_one(in_session, {"_id": 1}) is None:
                done += sessions.delete_one(key).deleted_count
                mongo_reports.forget_ordinals(self._coll, project_id, [session_id])
                continue
            if not hand_over:
                continue
            row = sessions.find_one(key, {"_id": 0, "userId": 1, "firstUserId": 1})
            if row is None:
                continue
            done += 1
            values: Doc = {}
            if row.get("userId") in uids:
                latest = events.find_one({**in_session, "userId": {"$ne": None}}, {"userId": 1}, sort=[("seq", -1)])
                values["userId"] = latest.get("userId") if latest else None
            if (row.get("firstUserId") or row.get("userId")) in uids:
                first = events.find_one(in_session, {"path": 1}, sort=_BY_TS)
                values.update(firstUserId=None, userAgent=None, deviceJson=None, ipHash=None)
                if first is not None:
                    values["firstPath"] = first["path"]
            if values:
                sessions.update_one(key, {"$set": values})
        return done

    def _emptied_sessions(self, project_id: str, before: int) -> list[str]:
        """Sessions started before ``before`` with no event at or after it."""
        started = self._coll("sessions").find({"projectId": project_id, "startedAt": {"$lt": before}}, {"id": 1})
        events = self._coll("events")
        return [
            str(doc["id"])
            for doc in started
            if events.find_one({"projectId": project_id, "sessionId": doc["id"], "ts": {"$gte": before}}, {"_id": 1})
            is None
        ]

    def erase(self, erasure: base.Erasure, *, dry_run: bool = False) -> base.ErasedCounts:
        """As on SQL, without transactions: each aggregate key-day is replaced under its lock
        document, in the order compaction uses (new pieces naming what they replace first)."""
        pid = erasure.project_id
        with self._guard():
            uids: list[str] = []
            live = 0
            if erasure.user is not None:
                named = {"projectId": pid, "$or": [{"id": erasure.user}, {"externalId": erasure.user}]}
                if erasure.whole_user and not dry_run:  # first: a batch of the user now stores nothing
                    live = self._claim(pid, erasure.user)
                found = list(self._coll("users").find(named))
                uids = sorted(str(doc["id"]) for doc in found)
                if dry_run:
                    live = sum(1 for doc in found if doc.get("erasedAt") is None)
            sids, touched = self._session_ids(pid, uids)
            match = self._erased_filter(erasure, uids, sids)
            if not dry_run and erasure.before is None:  # the pending batches of the user or session first
                self._replay_outbox(0, match, erased_check=False)
            rows = sum(int(doc.get("rowCount") or 1) for doc in self._coll("events").find(match, {"rowCount": 1}))
            if dry_run:
                if erasure.user is not None:
                    found_sessions = len(touched)
                elif erasure.session_id is not None:
                    found_sessions = self._coll("sessions").count_documents(
                        {"projectId": pid, "id": erasure.session_id}
                    )
                else:
                    found_sessions = len(self._emptied_sessions(pid, erasure.before or 0))
                return base.ErasedCounts(users=live, sessions=found_sessions, events=rows)
            while True:
                docs = list(self._coll("events").find(match, sort=[("ts", 1), ("seq", 1)], limit=1000))
                if not docs:
                    break
                self._erase_chunk(pid, [_stored(doc) for doc in docs], docs)
            doomed: list[str] = []
            if erasure.user is not None:
                removed = self._finish_user_sessions(pid, uids, touched, hand_over=erasure.whole_user)
            else:
                if erasure.session_id is not None:
                    doomed = [erasure.session_id]
                else:
                    doomed = self._emptied_sessions(pid, erasure.before or 0)
                removed = self._coll("sessions").delete_many({"projectId": pid, "id": {"$in": doomed}}).deleted_count
                mongo_reports.forget_ordinals(self._coll, pid, list(doomed))
            if erasure.before is not None:
                self._drop_months_before(pid, day_of(erasure.before))
                self._coll("heat_aggregates").delete_many({"projectId": pid, "day": {"$lt": day_of(erasure.before)}})
                mongo_reports.delete_before(self._coll, pid, day_of(erasure.before))
            whole = bool(uids) and erasure.whole_user  # else the user and their later data stay, by design
            theirs_if_whole = [{"userId": {"$in": uids}}, {"firstUserId": {"$in": uids}}] if whole else []
            theirs = {"projectId": pid, "$or": [{"id": {"$in": doomed}}, *theirs_if_whole]}
            live_user = {"$or": [{"erasedAt": None}, {"traitsJson": {"$ne": None}}]}
            left = (
                self._coll("events").find_one(match, {"_id": 1}) is not None
                or self._coll("sessions").find_one(theirs, {"_id": 1}) is not None
                or bool(
                    whole
                    and self._coll("users").find_one({"projectId": pid, "id": {"$in": uids}, **live_user}, {"_id": 1})
                )
            )
        return base.ErasedCounts(users=live, sessions=removed, events=rows, verified=not left)

    def _claim(self, project_id: str, user: str) -> int:
        """Mark the user erased (the tombstone: ids kept, traits gone; a document is made when none has
        ``user`` as SDK/JWT id); how many users were live."""
        now = _now_ms()
        users = self._coll("users")
        key = {"projectId": project_id, "externalId": user}
        on_insert = {"id": str(uuid.uuid4()), "createdAt": now, "erasedAt": now, "traitsJson": None}
        _retry_duplicate(lambda: users.update_one(key, {"$setOnInsert": on_insert}, upsert=True))
        named = {"projectId": project_id, "$or": [{"id": user}, {"externalId": user}], "erasedAt": None}
        return users.update_many(named, {"$set": {"erasedAt": now, "traitsJson": None}}).modified_count

    def _erase_chunk(self, project_id: str, rows: list[base.EventRow], docs: list[Doc]) -> None:
        """Delete the rows, then replace each aggregate key-day they touched and fix session counters."""
        self._coll("events").delete_many({"projectId": project_id, "eventId": {"$in": [r.event_id for r in rows]}})
        mongo_outbox.note_erased(self._coll, project_id, docs)
        self._forget_long_moves(project_id, rows)
        self._rebuild_touched(project_id, rows)
        removed: dict[str, int] = {}
        for r in rows:
            removed[r.session_id] = removed.get(r.session_id, 0) + r.row_count
        mongo_rage.forget(self._coll, project_id, list(removed))
        sessions, events = self._coll("sessions"), self._coll("events")
        for session_id, count in sorted(removed.items()):
            remaining = [_stored(d) for d in events.find({"projectId": project_id, "sessionId": session_id})]
            last = max(remaining, key=lambda r: (r.ts + r.span, r.seq), default=None)
            key = {"projectId": project_id, "id": session_id}
            sessions.update_one(key, {"$inc": {"eventCount": -count}})
            if last is not None:
                sessions.update_one(key, {"$set": {"lastPath": last.path, "lastTs": last.ts + last.span}})
            else:
                session = sessions.find_one(key, {"firstPath": 1})
                if session is not None:
                    sessions.update_one(key, {"$set": {"lastPath": session.get("firstPath"), "lastTs": None}})

    def _rebuild_touched(self, project_id: str, rows: list[base.EventRow]) -> None:
        """Compute again every aggregate and report key-day the rows touch (a move: every day of its points)."""
        doc = self._coll("projects").find_one({"id": project_id}, {"_id": 0, "maxSpan": 1})
        max_span = int((doc or {}).get("maxSpan") or 0)
        keys = {
            (path_key(r.path), r.type, r.bucket_w, r.bucket_h, r.view_w, day)
            for r in rows
            for day in range(day_of(r.ts), day_of(r.ts + r.span) + 1)
        }
        for pkey, kind, bw, bh, vw, day in sorted(keys):
            self._rebuild_key_day(project_id, max_span, pkey, kind, (bw, bh, vw), day)
        report_keys = {(pkey, day, width) for pkey, _, bw, _, _, day in keys for width in (bw, ALL_WIDTHS)}
        for report_key in sorted(report_keys):
            self._rebuild_report_day(project_id, max_span, report_key)

    def classify_sessions(
        self, project_id: str | None, *, session_ids: list[str] | None = None, since: int | None = None
    ) -> base.ClassifyCounts:
        match: Doc = {}
        if project_id is not None:
            match["projectId"] = project_id
        if session_ids is not None:
            match["id"] = {"$in": session_ids}
        if since is not None:
            match["lastSeenAt"] = {"$gte": since}
        fields = {"_id": 0, "projectId": 1, "id": 1, "userAgent": 1, "deviceJson": 1, "traffic": 1, "trafficReason": 1}
        decided = to_bot = to_human = 0
        with self._guard():
            sessions, events = self._coll("sessions"), self._coll("events")
            for doc in sessions.find(match, fields, sort=[("projectId", 1), ("id", 1)], batch_size=500):
                pid, sid = str(doc["projectId"]), str(doc["id"])
                stored = Verdict(str(doc.get("traffic") or HUMAN), _opt_str(doc.get("trafficReason")))
                mine = {"projectId": pid, "sessionId": sid}
                clicks = [int(e["ts"]) for e in events.find({**mine, "type": "click"}, {"_id": 0, "ts": 1})]

                def moves(mine: Doc = mine) -> list[int]:
                    found = events.find({**mine, "type": "move"}, _NO_ID)
                    return [ts for e in found for _, ts, _, _ in items(_stored(e))]

                found = verdict(
                    _opt_str(doc.get("userAgent")),
                    _opt_str(doc.get("deviceJson")),
                    clicks,
                    moves,
                    self.traffic_rules,
                    stored=stored,
                )
                decided += 1
                if found == stored:
                    continue
                if (stored.traffic == BOT) != (found.traffic == BOT):
                    # its signals leave the counts while it has its old class; settled again
                    mongo_rage.forget(self._coll, pid, [sid])
                key = {"projectId": pid, "id": sid}
                sessions.update_one(key, {"$set": {"traffic": found.traffic, "trafficReason": found.reason}})
                if (stored.traffic == BOT) == (found.traffic == BOT):
                    continue
                to_bot += found.traffic == BOT
                to_human += found.traffic != BOT
                light = {"_id": 0, "metaJson": 0, "dataJson": 0}
                self._rebuild_touched(
                    pid, [_stored(e) for e in events.find({"projectId": pid, "sessionId": sid}, light)]
                )
        return base.ClassifyCounts(sessions=decided, to_bot=to_bot, to_human=to_human)

    def _rebuild_report_day(self, project_id: str, max_span: int, key: tuple[int, int, int]) -> None:
        """Replace one report key-day's pieces under its lock document (waiting for a compaction)."""
        pkey, day, width = key
        lock_key = {"report": True, "projectId": project_id, "pathKey": pkey, "day": day, "bucketW": width}
        deadline = time.monotonic() + _LOCK_SECONDS + 10
        while (lock := self._lock_key(lock_key)) is None:
            if time.monotonic() > deadline:
                raise StorageUnavailable("a report key stayed locked")
            time.sleep(0.02)
        try:
            # As _rebuild_key_day: the pieces, then the rows, then the pending batches (mongo_outbox).
            ids = mongo_reports.piece_ids(self._coll, project_id, key)
            start = day * DAY_MS
            low = start - min(max_span, base.LONG_MOVE_MS)
            match: Doc = {
                "projectId": project_id,
                "pathKey": pkey,
                **mongo_signals.traffic_match(self._coll, project_id, "human"),  # bots add to no piece
            }
            events = self._coll("events")
            docs = list(events.find({**match, "ts": {"$gte": low, "$lt": start + DAY_MS}}, _NO_ID))
            if max_span > base.LONG_MOVE_MS:  # and the long moves reaching into the day from before
                long_ids = self._long_move_ids(project_id, low, start)
                docs += events.find({**match, "eventId": {"$in": long_ids}, "ts": {"$lt": low}}, _NO_ID)
            outboxes = mongo_outbox.pending(self._coll, project_id)  # scroll rows' JSON too
            rows = mongo_outbox.without_pending(outboxes, [(d, _stored(d)) for d in docs])
            held = {int(o["part"]) for o in outboxes}
            mongo_reports.rebuild_key_day(self._coll, project_id, rows, key, [i for i, part in ids if part not in held])
        finally:
            self._coll("heat_locks").delete_one(lock)

    def _rebuild_key_day(
        self, project_id: str, max_span: int, pkey: int, kind: str, widths: tuple[int, int, int], day: int
    ) -> None:
        """Replace the pieces of one key-day (``widths``: bucket width and height, exact width)."""
        bw, bh, vw = widths
        same: Doc = {"projectId": project_id, "pathKey": pkey, "type": kind, "bucketW": bw, "bucketH": bh, "viewW": vw}
        key: Doc = {**same, "day": day}
        deadline = time.monotonic() + _LOCK_SECONDS + 10
        while (lock := self._lock_key(key)) is None:  # a compaction of this key: wait for it
            if time.monotonic() > deadline:
                raise StorageUnavailable("an aggregate key stayed locked")
            time.sleep(0.02)
        aggregates = self._coll("heat_aggregates")
        try:
            if aggregates.find_one({**key, "part": {"$lte": ROLLED}}, {"_id": 1}) is not None:
                self._unroll_month(_month_doc_key(key), month_of(day)[0])  # its month piece counts the day
            # The pieces are read before the rows, and the pending batches (mongo_outbox) after them: a
            # pending batch keeps its pieces and its rows are left out. Only the pieces read are
            # deleted, by _id: a piece stored after that read is never lost.
            read = [(d["_id"], int(d["part"])) for d in aggregates.find(key, {"_id": 1, "part": 1})]
            start = day * DAY_MS
            match = {**same, **mongo_signals.traffic_match(self._coll, project_id, "human")}  # bots add nothing
            low = start - min(max_span, base.LONG_MOVE_MS)
            docs = list(self._coll("events").find({**match, "ts": {"$gte": low, "$lt": start + DAY_MS}}))
            if max_span > base.LONG_MOVE_MS:  # and the long moves reaching into the day from before
                long_ids = self._long_move_ids(project_id, low, start)
                docs += list(self._coll("events").find({**match, "eventId": {"$in": long_ids}, "ts": {"$lt": low}}))
            outboxes = mongo_outbox.pending(self._coll, project_id)
            found = mongo_outbox.without_pending(outboxes, [(d, _stored(d)) for d in docs])
            held = {int(o["part"]) for o in outboxes}
            ids = [i for i, part in read if part not in held]
            stats = rollup(found, ts_range=(start, start + DAY_MS - 1)).get((day, kind, bw, bh, vw))
            merged = (
                merge_pieces(pieces(pkey, {(day, kind, bw, bh, vw): stats}, 0)) if stats is not None and stats.n else []
            )
            new = [{**_piece_doc(piece, project_id), "replaces": ids} for piece in merged]
            if new:
                aggregates.insert_many(new)
            aggregates.delete_many({"_id": {"$in": ids}})
            if new:
                aggregates.update_many({"_id": {"$in": [d["_id"] for d in new]}}, {"$unset": {"replaces": ""}})
        finally:
            self._coll("heat_locks").delete_one(lock)

    def _long_move_ids(self, project_id: str, before: int, reaching: int) -> list[str]:
        """The events in the long-move index starting before ``before`` with rows at or after ``reaching``."""
        match = {"projectId": project_id, "day": day_of(reaching), "ts": {"$lt": before}, "endTs": {"$gte": reaching}}
        return [str(d["eventId"]) for d in self._coll("heat_long_moves").find(match, {"_id": 0, "eventId": 1})]

    def purge(
        self,
        raw_before: int | None,
        aggregates_before_day: int | None,
        *,
        dry_run: bool,
        chunk: int = 5000,
        erased_before: int | None = None,
    ) -> base.PurgeCounts:
        with self._guard():
            if not dry_run:  # before their rows can be deleted
                self._replay_outbox(mongo_outbox.GRACE_MS)
            months = base.PurgeCounts()
            if aggregates_before_day is not None and not dry_run:
                for project in list(self._coll("projects").find({}, {"_id": 0, "id": 1})):
                    months += base.PurgeCounts(
                        aggregates=self._drop_months_before(str(project["id"]), aggregates_before_day)
                    )
            return months + mongo_purge.purge(
                self._coll, raw_before, aggregates_before_day, dry_run=dry_run, chunk=chunk, erased_before=erased_before
            )

    def external_user_ids(self, project_id: str, user_ids: list[str]) -> dict[str, str]:
        if not user_ids:
            return {}
        with self._guard():
            found = self._coll("users").find({"projectId": project_id, "id": {"$in": sorted(set(user_ids))}})
            return {str(doc["id"]): str(doc["externalId"]) for doc in found}

    def list_sessions(self, query: base.SessionQuery) -> list[base.SessionSummary]:
        match: Doc = {"projectId": query.project_id}
        if query.user_id is not None:  # the internal id, or the one of the user with that SDK/JWT id
            with self._guard():
                user = self._coll("users").find_one({"projectId": query.project_id, "externalId": query.user_id})
            match["userId"] = {"$in": [query.user_id, *([user["id"]] if user else [])]}
        if query.first_path is not None:
            match["firstPath"] = query.first_path
        if query.started_from is not None:
            match["startedAt"] = {"$gte": query.started_from}
        if query.last_seen_to is not None:
            match["lastSeenAt"] = {"$lte": query.last_seen_to}
        if query.traffic != "all":
            match["traffic"] = "bot" if query.traffic == "bot" else {"$ne": "bot"}
        direction = -1 if query.descending else 1
        with self._guard():
            if query.signal is not None:
                match["id"] = {"$in": mongo_signals.sessions_with(self._coll, query.project_id, query.signal)}
            if query.among is None:
                docs = self._coll("sessions").find(
                    match,
                    _NO_ID,
                    sort=[("startedAt", direction), ("id", direction)],
                    skip=query.offset,
                    limit=query.limit,
                )
                cursor = list(docs)
            else:  # the page among the set's sessions, then its documents
                page = mongo_reports.page_among(self._coll, query.among, match, query)
                place = {sid: i for i, sid in enumerate(page)}
                found = self._coll("sessions").find({"projectId": query.project_id, "id": {"$in": page}}, _NO_ID)
                cursor = sorted(found, key=lambda d: place[str(d["id"])]) if page else []
            counts = mongo_signals.session_counts(self._coll, query.project_id, [str(d["id"]) for d in cursor])
            return [
                base.SessionSummary(
                    session_id=str(doc["id"]),
                    user_id=_opt_str(doc.get("userId")),
                    started_at=int(doc["startedAt"]),
                    last_seen_at=int(doc["lastSeenAt"]),
                    first_path=str(doc["firstPath"]),
                    event_count=int(doc.get("eventCount") or 0),
                    last_path=_opt_str(doc.get("lastPath")),
                    signals=counts.get(str(doc["id"]), {}),
                )
                for doc in cursor
            ]

    def find_sessions(self, session_id: str, project_id: str | None, limit: int = 51) -> list[base.Session]:
        with self._guard():
            if project_id is None:  # every key leads with the project: probe each project's key
                projects = [str(p["id"]) for p in self._coll("projects").find({}, {"_id": 0, "id": 1})]
                match: Doc = {"projectId": {"$in": projects}, "id": session_id}
            else:
                match = {"projectId": project_id, "id": session_id}
            order = [("startedAt", 1), ("projectId", 1)]
            docs = list(self._coll("sessions").find(match, _NO_ID, sort=order, limit=limit))
        return [_session(doc) for doc in docs]

    def user_data(self, project_id: str, user: str) -> base.UserData:
        with self._guard():
            match = {"projectId": project_id, "$or": [{"id": user}, {"externalId": user}], "erasedAt": None}
            found = list(self._coll("users").find(match, _NO_ID, sort=[("id", 1)]))
            uids = [str(doc["id"]) for doc in found]
            owned, touched = self._session_ids(project_id, uids)
            docs = list(
                self._coll("sessions").find(
                    {"projectId": project_id, "id": {"$in": touched}}, _NO_ID, sort=[("startedAt", 1), ("id", 1)]
                )
            )
            sessions = [_session(doc) for doc in docs]
            foreign = frozenset(str(d["id"]) for d in docs if (d.get("firstUserId") or d.get("userId")) not in uids)
        users = [
            {
                "id": str(doc["id"]),
                "externalId": str(doc["externalId"]),
                "traits": json.loads(doc["traitsJson"]) if doc.get("traitsJson") else None,
                "createdAt": int(doc["createdAt"]),
            }
            for doc in found
        ]
        return base.UserData(users, sessions, owned=tuple(owned), foreign=foreign)

    def user_events(
        self, project_id: str, data: base.UserData, after: tuple[int, int, str] | None, limit: int
    ) -> list[base.EventRow]:
        match = self._erased_filter(base.Erasure(project_id, user="-"), data.user_ids, list(data.owned))
        if after is not None:  # (ts, seq, eventId) is unique: events tied on (ts, seq) are all read
            ts, seq, event_id = after
            later = [
                {"ts": {"$gt": ts}},
                {"ts": ts, "seq": {"$gt": seq}},
                {"ts": ts, "seq": seq, "eventId": {"$gt": event_id}},
            ]
            match = {"$and": [match, {"$or": later}]}
        with self._guard():
            docs = self._coll("events").find(match, sort=[("ts", 1), ("seq", 1), ("eventId", 1)], limit=limit)
            return [_stored(doc) for doc in docs]

    # -- projects -----------------------------------------------------------

    def create_project(self, key: str, name: str) -> base.Project:
        values = {"id": str(uuid.uuid4()), "key": key, "name": name, "createdAt": _now_ms()}
        with self._guard():
            self._coll("projects").insert_one(dict(values))
            self._undo_if_retired(key, str(values["id"]))
        return _project(values)

    def _undo_if_retired(self, key: str, created_id: str) -> None:
        """Remove a project just made for ``key`` when the key is retired (checked after the insert)."""
        try:
            self._refuse_retired(key)
        except RetiredProjectKey:
            self._coll("projects").delete_one({"id": created_id})
            raise

    def ensure_project(self, key: str) -> str:
        new_id = str(uuid.uuid4())
        with self._guard():
            project_id = self._upsert_id(
                "projects", {"key": key}, {"$setOnInsert": {"id": new_id, "name": "Default", "createdAt": _now_ms()}}
            )
            if project_id == new_id:
                self._undo_if_retired(key, new_id)
            else:
                self._refuse_retired(key)
        return project_id

    def list_projects(self) -> list[base.Project]:
        with self._guard():
            cursor = self._coll("projects").find({}, _NO_ID, sort=[("createdAt", 1), ("id", 1)])
            return [_project(doc) for doc in cursor]

    def rotate_project_key(self, project_id: str, new_key: str) -> base.Project | None:
        projects, retired = self._coll("projects"), self._coll("retired_keys")
        with self._guard():
            doc = projects.find_one({"id": project_id}, _NO_ID)
            if doc is None:
                return None
            self._refuse_retired(new_key)
            if new_key == doc["key"] or projects.find_one({"key": new_key}, {"_id": 1}) is not None:
                raise ValueError("the new key is already a project's key")
            # Retired first: from then on no project can be made with the old key (see ensure_project).
            retired.update_one(
                {"_id": doc["key"]},
                {"$setOnInsert": {"projectId": project_id, "retiredAt": _now_ms()}},
                upsert=True,
            )
            try:
                projects.update_one({"id": project_id, "key": doc["key"]}, {"$set": {"key": new_key}})
            except DuplicateKeyError:
                retired.delete_one({"_id": doc["key"]})
                raise ValueError("the new key is already a project's key") from None
        return _project({**doc, "key": new_key})


class _MongoReader(base.Reader):
    def __init__(self, repo: MongoRepository) -> None:
        self.repo = repo
        self._bots: dict[str, list[str]] = {}  # the bot sessions of a project, read once per read

    def _traffic_match(self, project_id: str, traffic: str) -> Doc:
        if traffic == "all":
            return {}
        if project_id not in self._bots:
            self._bots[project_id] = mongo_signals.bot_sessions(self.repo._coll, project_id)
        return mongo_signals.traffic_match(self.repo._coll, project_id, traffic, self._bots[project_id])

    def _scan_match(self, what: base.Scan) -> Doc:
        flt, ts_low, session_id = what.flt, what.ts_low, what.session_id
        match = _match(flt)
        if session_id is not None:
            match["sessionId"] = session_id
        else:
            match.update(self._traffic_match(flt.project_id, flt.traffic))
        ts: Doc = {}
        if ts_low is not None:
            ts["$gte"] = ts_low
        if flt.ts_to is not None:
            # "< to + 1", not "<= to" (the same for integers): SecantusDB drops the upper bound of an
            # inclusive range on an index field followed by others.
            ts["$lt"] = flt.ts_to + 1
        if ts:
            match["ts"] = ts
        return match

    @staticmethod
    def _projection(what: base.Scan) -> Doc:
        if not what.points:
            return _COUNTS
        return (_TEXT if what.text else _LIGHT) if what.light else _NO_ID

    def scan(self, what: base.Scan, after: tuple[int, int] | None, limit: int) -> list[base.EventRow]:
        match = self._scan_match(what)
        if after is not None:
            ts = match.setdefault("ts", {})
            ts["$gte"] = max(after[0], ts.get("$gte", after[0]))
            match["$or"] = [{"ts": {"$gt": after[0]}}, {"ts": after[0], "seq": {"$gt": after[1]}}]
        cursor = self.repo._coll("events").find(match, self._projection(what), sort=_BY_TS, limit=limit)
        return self.repo.tally.add([_stored(doc) for doc in cursor])

    def long_moves(self, what: base.Scan, before: int, reaching: int) -> list[base.EventRow]:
        ids = self.repo._long_move_ids(what.flt.project_id, before, reaching)
        if not ids:
            return []
        match = self._scan_match(replace(what, ts_low=None))
        match["eventId"] = {"$in": ids}
        match["ts"] = {**match.get("ts", {}), "$lt": min(before, match.get("ts", {}).get("$lt", before))}
        cursor = self.repo._coll("events").find(match, self._projection(what), sort=_BY_TS)
        return self.repo.tally.add([_stored(doc) for doc in cursor])

    def fetch(self, project_id: str, event_ids: list[str]) -> list[base.EventRow]:
        match = {"projectId": project_id, "eventId": {"$in": event_ids}}
        return self.repo.tally.add([_stored(doc) for doc in self.repo._coll("events").find(match, _NO_ID)])

    def path_totals(self, project_id: str, ts_from: int | None, ts_to: int | None) -> list[base.PathTotal]:
        pipeline: list[Doc] = [
            {"$match": {"projectId": project_id, **_inside(ts_from, ts_to)}},
            {
                "$group": {
                    "_id": {"k": "$pathKey", "path": "$path", "s": "$sessionId"},
                    "rows": {"$sum": "$rowCount"},
                    "last": {"$max": {"$add": ["$ts", "$span"]}},
                }
            },
            {
                "$group": {
                    "_id": {"k": "$_id.k", "path": "$_id.path"},
                    "rows": {"$sum": "$rows"},
                    "sessions": {"$sum": 1},
                    "last": {"$max": "$last"},
                }
            },
        ]
        found = self.repo._aggregate("events", pipeline)
        return [base.PathTotal(d["_id"]["path"], int(d["rows"]), int(d["sessions"]), int(d["last"])) for d in found]

    def session_paths(
        self, project_id: str, ts_from: int | None, ts_to: int | None, session_ids: list[str]
    ) -> set[tuple[str, str]]:
        if not session_ids:
            return set()
        match = {"projectId": project_id, "sessionId": {"$in": session_ids}, **_inside(ts_from, ts_to)}
        pipeline: list[Doc] = [
            {"$match": match},
            {"$group": {"_id": {"k": "$pathKey", "path": "$path", "s": "$sessionId"}}},
        ]
        return {(d["_id"]["path"], d["_id"]["s"]) for d in self.repo._aggregate("events", pipeline)}

    def deepest_scrolls(self, flt: base.EventFilter, width: int | None) -> list[float]:
        match = {**_match(replace(flt, types=("scroll",))), **_inside(flt.ts_from, flt.ts_to)}
        match["scrollDepth"] = {"$ne": None}
        if width is not None:
            match["bucketW"] = width
        pct = {"$cond": [{"$gt": ["$scrollDepth", 100]}, {"$divide": ["$scrollDepth", 100]}, "$scrollDepth"]}
        pipeline: list[Doc] = [{"$match": match}, {"$group": {"_id": "$sessionId", "deepest": {"$max": pct}}}]
        return [float(d["deepest"]) for d in self.repo._aggregate("events", pipeline)]

    def aggregates(
        self, project_id: str, path: base.PathSet, days: tuple[int, int], *, blobs: base.Blobs | None = None
    ) -> list[base.AggregateRow]:
        edges, months = piece_ranges(days)
        spans: list[Doc] = [{"day": {"$gte": lo, "$lt": hi + 1}} for lo, hi in edges]  # $lt: see scan()
        if months is not None:  # whole months: their month pieces and the day pieces not rolled into them
            spans.append({"day": {"$gte": months[0], "$lt": months[1] + 1}, "part": {"$gt": ROLLED}})
            spans.append({"day": {"$gte": month_code(months[0]), "$lt": month_code(months[1]) + 1}})
        match: Doc = (
            {"projectId": project_id, "$or": spans} if len(spans) > 1 else {"projectId": project_id, **spans[0]}
        )
        match.update(mongo_reports.path_match(path, exact=False))
        projection: Doc = {}
        if blobs is None:
            projection.update(cells=0, depths=0)
        else:
            match["type"] = {"$in": list(blobs[0])}
            if blobs[1] is not None:
                match["bucketW"] = blobs[1]
            if blobs[2] is not None:
                match["viewW"] = blobs[2]
        docs = list(self.repo._coll("heat_aggregates").find(match, projection or None))
        # Pieces named by a merged piece's "replaces" are being (or were to be) deleted: not counted.
        replaced = {r for doc in docs for name in ("replaces", "covers") for r in doc.get(name) or ()}
        return [_piece(doc) for doc in docs if doc["_id"] not in replaced]

    def rage_clicks(self, flt: base.EventFilter) -> list[base.EventRow]:
        return mongo_rage.read(self.repo._coll, flt)

    def signal_maps(
        self, project_id: str, path: base.PathSet, days: tuple[int, int], kind: str
    ) -> list[base.AggregateRow] | None:
        return mongo_signals.read_maps(self.repo._coll, project_id, path, days, kind)

    def signals(self, flt: base.EventFilter, kind: str) -> list[Signal]:
        return mongo_signals.read(self.repo._coll, flt, kind)

    def signal_path_counts(self, flt: base.EventFilter) -> dict[tuple[str, str], int]:
        return mongo_signals.path_counts(self.repo._coll, flt)

    def signal_selector_counts(self, flt: base.EventFilter, width: int | None = None) -> dict[tuple[str, str], int]:
        return mongo_signals.selector_counts(self.repo._coll, flt, width)

    def report_pieces(
        self,
        project_id: str,
        path: base.PathSet,
        days: tuple[int, int],
        *,
        selectors: bool = False,
        scroll: bool = False,
        width: int | None = None,
    ) -> list[base.ReportPiece]:
        return mongo_reports.read_pieces(
            self.repo._coll, project_id, path, days, selectors=selectors, scroll=scroll, width=width
        )

    def session_ordinals(self, project_id: str, session_ids: set[str]) -> dict[str, int]:
        return mongo_reports.ordinals(self.repo._coll, project_id, session_ids)

    def max_span(self, project_id: str) -> int:
        doc = self.repo._coll("projects").find_one({"id": project_id}, {"_id": 0, "maxSpan": 1})
        return int((doc or {}).get("maxSpan") or 0)

    def project_found(self, project_id: str) -> bool:
        return self.repo._coll("projects").find_one({"id": project_id}, {"_id": 1}) is not None

    def last_item_ts(self, project_id: str) -> int | None:
        return mongo_reports.last_item_ts(self.repo._coll, project_id)
