"""The MongoDB repository: the SQL schema's collections and keys, aggregated by the server."""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from pymongo import MongoClient, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, OperationFailure

from ..errors import ConfigurationError, StorageUnavailable, UnknownProject
from ..log import log
from .base import (
    Batch,
    Cell,
    Event,
    EventFilter,
    EventRow,
    HeatmapFrame,
    HeatmapSummary,
    IngestResult,
    Project,
    Repository,
    Session,
    SessionQuery,
    SessionSummary,
)

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
# (collection, keys, unique, name): the keys and indexes of the SQL tables.
INDEXES: tuple[tuple[str, tuple[str, ...], bool, str], ...] = (
    ("projects", ("key",), True, "uq_projects_key"),
    ("projects", ("id",), True, "uq_projects_id"),
    ("users", ("projectId", "externalId"), True, "uq_users_project_external"),
    ("sessions", ("projectId", "id"), True, "uq_sessions_project_id"),
    ("sessions", ("projectId", "startedAt"), False, "ix_sessions_project_started"),
    ("sessions", ("id",), False, "ix_sessions_id"),
    ("events", ("projectId", "eventId", "pointIndex"), True, "uq_events_project_event_point"),
    ("events", ("projectId", "path", "type", "ts"), False, "ix_events_project_path_type_ts"),
    ("events", ("projectId", "sessionId", "ts"), False, "ix_events_project_session_ts"),
    ("events", ("projectId", "ts"), False, "ix_events_project_ts"),
)
DUPLICATE_KEY = 11000
UNAUTHORIZED = 13
_UPSERT_ATTEMPTS = 3
_PROJECT_CACHE_SECONDS = 30.0
_NO_ID = {"_id": 0}
# Ties (same ts, same count) go to the earliest insert: client-made ObjectIds grow with time.
_BY_TS = [("ts", 1), ("_id", 1)]


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


def _event_doc(row: EventRow, project_id: str, user_id: str | None) -> Doc:
    doc = {_camel(name): value for name, value in row._asdict().items()}
    doc.update(projectId=project_id, userId=user_id)
    return doc


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _event(doc: Mapping[str, Any]) -> Event:
    data_json = doc.get("dataJson")
    return Event(
        id=f"{doc['eventId']}:{int(doc['pointIndex'])}",
        event_id=str(doc["eventId"]),
        project_id=str(doc["projectId"]),
        session_id=str(doc["sessionId"]),
        user_id=_opt_str(doc.get("userId")),
        type=str(doc["type"]),
        ts=int(doc["ts"]),
        path=str(doc["path"]),
        selector=_opt_str(doc.get("selector")),
        x=_opt_int(doc.get("x")),
        y=_opt_int(doc.get("y")),
        scroll_depth=_opt_int(doc.get("scrollDepth")),
        meta_json=str(doc["metaJson"]),
        data=json.loads(data_json) if data_json else None,
    )


def _project(doc: Mapping[str, Any]) -> Project:
    return Project(id=str(doc["id"]), key=str(doc["key"]), name=str(doc["name"]), created_at=int(doc["createdAt"]))


def _match(flt: EventFilter) -> Doc:
    match: Doc = {"projectId": flt.project_id}
    if flt.path is not None:
        match["path"] = flt.path
    if flt.types is not None:
        match["type"] = {"$in": list(flt.types)}
    ts: Doc = {}
    if flt.ts_from is not None:
        ts["$gte"] = flt.ts_from
    if flt.ts_to is not None:
        ts["$lte"] = flt.ts_to
    if ts:
        match["ts"] = ts
    return match


def _cell_index(field: str, size: int, resolution: int) -> Doc:
    """floor(value * resolution / size) clamped to 0..resolution-1 (exact for integers below 2**53)."""
    raw = {"$floor": {"$divide": [{"$multiply": [f"${field}", resolution]}, size]}}
    return {"$max": [0, {"$min": [resolution - 1, raw]}]}


class MongoRepository(Repository):
    """The repository over PyMongo; one client per process, made on first use."""

    def __init__(self, uri: str, database: str | None = None) -> None:
        self.uri = uri
        self.database_name = database or database_from_uri(uri) or DEFAULT_DATABASE
        if _BAD_DATABASE_NAME.search(self.database_name) or len(self.database_name.encode()) > 63:
            raise ConfigurationError(
                f"HEAT_MONGO_DATABASE (or the path of HEAT_DATABASE_URI) is not a valid MongoDB "
                f"database name: {self.database_name!r}"
            )
        self._client: MongoClient[Doc] | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._project_cache: dict[str, tuple[str, float]] = {}

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

    def migrate(self) -> None:
        """Create the indexes; a user without the createIndex privilege gets a warning, not a failure."""
        refused: list[str] = []
        with self._guard():
            for collection, keys, unique, name in INDEXES:
                try:
                    self._coll(collection).create_index([(key, 1) for key in keys], unique=unique, name=name)
                except OperationFailure as exc:
                    if not _is_unauthorized(exc):
                        raise
                    refused.append(f"{collection}.{name}")
        if refused:
            log(
                "warn",
                f"MongoDB refused to create {len(refused)} index(es) (Unauthorized); until a user allowed to "
                "runs `flask heat migrate`, queries scan and retried batches are not deduplicated",
                database=self.database_name,
                indexes=refused,
            )

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

    def _project_id(self, key: str, create: bool) -> str:
        cached = self._project_cache.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        doc = self._coll("projects").find_one({"key": key}, {"_id": 0, "id": 1})
        if doc is not None:
            project_id = str(doc["id"])
        elif not create:
            raise UnknownProject(key)
        else:
            new = {"id": str(uuid.uuid4()), "name": "Default", "createdAt": _now_ms()}
            project_id = self._upsert_id("projects", {"key": key}, {"$setOnInsert": new})
        self._project_cache[key] = (project_id, time.monotonic() + _PROJECT_CACHE_SECONDS)
        return project_id

    def _user_id(self, project_id: str, external_id: str, traits_json: str | None) -> str:
        on_insert: Doc = {"id": str(uuid.uuid4()), "createdAt": _now_ms()}
        update: Doc = {"$setOnInsert": on_insert}
        if traits_json is None:
            on_insert["traitsJson"] = None
        else:
            update["$set"] = {"traitsJson": traits_json}
        return self._upsert_id("users", {"projectId": project_id, "externalId": external_id}, update)

    def ingest(self, batch: Batch) -> IngestResult:
        with self._guard():
            project_id = self._project_id(batch.project_key, batch.create_project)
            user_id = (
                self._user_id(project_id, batch.external_user_id, batch.user_traits_json)
                if batch.external_user_id
                else None
            )
            s = batch.session
            on_insert: Doc = {
                "startedAt": s.started_at,
                "firstPath": s.first_path,
                "userAgent": s.user_agent,
                "deviceJson": s.device_json,
                "ipHash": s.ip_hash,
            }
            # lastSeenAt never goes back; userId is kept when a later batch has no user.
            update: Doc = {"$setOnInsert": on_insert, "$max": {"lastSeenAt": s.last_seen_at}}
            if user_id is None:
                on_insert["userId"] = None
            else:
                update["$set"] = {"userId": user_id}
            sessions = self._coll("sessions")
            _retry_duplicate(lambda: sessions.update_one({"projectId": project_id, "id": s.id}, update, upsert=True))
            docs = [_event_doc(row, project_id, user_id) for row in batch.events]
            accepted = self._insert_events(docs) if docs else 0
        return IngestResult(project_id=project_id, accepted=accepted, duplicates=len(docs) - accepted)

    def _insert_events(self, docs: list[Doc]) -> int:
        """Insert the rows; a clash with the unique key (E11000) is a duplicate, any other error raises."""
        try:
            return len(self._coll("events").insert_many(docs, ordered=False).inserted_ids)
        except BulkWriteError as exc:
            details = exc.details
            errors = details.get("writeErrors") or []
            if details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return int(details.get("nInserted", 0))

    # -- queries ------------------------------------------------------------

    def count_by_type(self, flt: EventFilter) -> dict[str, int]:
        pipeline = [{"$match": _match(flt)}, {"$group": {"_id": "$type", "n": {"$sum": 1}}}]
        return {str(doc["_id"]): int(doc["n"]) for doc in self._aggregate("events", pipeline)}

    def heatmap_summary(self, flt: EventFilter) -> HeatmapSummary:
        """Type counts, most common bucket and largest y in one pass: a group per (type, bucket)."""
        groups = self._aggregate(
            "events",
            [
                {"$match": _match(flt)},
                {
                    "$group": {
                        "_id": {"type": "$type", "w": "$bucketW", "h": "$bucketH"},
                        "n": {"$sum": 1},
                        "first": {"$min": "$_id"},
                        "y": {"$max": {"$cond": [{"$eq": ["$type", "scroll"]}, None, "$y"]}},
                    }
                },
            ],
        )
        by_type: dict[str, int] = {}
        buckets: dict[tuple[int, int], tuple[int, Any]] = {}
        max_y: int | None = None
        for group in groups:
            key, n = group["_id"], int(group["n"])
            by_type[str(key["type"])] = by_type.get(str(key["type"]), 0) + n
            bucket = (int(key["w"]), int(key["h"]))
            count, first = buckets.get(bucket, (0, group["first"]))
            buckets[bucket] = (count + n, min(first, group["first"]))
            if group["y"] is not None:
                max_y = int(group["y"]) if max_y is None else max(max_y, int(group["y"]))
        if not by_type:
            return HeatmapSummary(by_type={}, frame=None)
        # Most rows first; a tie goes to the bucket stored first (smallest ObjectId).
        top = min(buckets, key=lambda b: (-buckets[b][0], buckets[b][1]))
        return HeatmapSummary(by_type=by_type, frame=HeatmapFrame(bucket=top, max_y=max_y))

    def heatmap_frame(self, flt: EventFilter) -> HeatmapFrame:
        return self.heatmap_summary(flt).frame or HeatmapFrame(bucket=None, max_y=None)

    def heatmap_cells(self, flt: EventFilter, width: int, height: int, resolution: int) -> list[Cell]:
        cell = {"cx": _cell_index("x", width, resolution), "cy": _cell_index("y", height, resolution)}
        pipeline = [
            {"$match": _match(flt)},
            {"$match": {"type": {"$ne": "scroll"}, "x": {"$ne": None}, "y": {"$ne": None}}},
            {"$group": {"_id": cell, "n": {"$sum": 1}}},
        ]
        return [
            Cell(int(doc["_id"]["cx"]), int(doc["_id"]["cy"]), int(doc["n"]))
            for doc in self._aggregate("events", pipeline)
        ]

    def scroll_depths(self, flt: EventFilter) -> list[tuple[int, int]]:
        pipeline = [
            {"$match": _match(flt)},
            {"$match": {"type": "scroll", "scrollDepth": {"$ne": None}}},
            {"$group": {"_id": "$scrollDepth", "n": {"$sum": 1}}},
        ]
        return [(int(doc["_id"]), int(doc["n"])) for doc in self._aggregate("events", pipeline)]

    def _find_events(self, match: Doc, limit: int, offset: int) -> list[Event]:
        with self._guard():
            cursor = self._coll("events").find(match, _NO_ID, sort=_BY_TS, skip=offset, limit=limit)
            return [_event(doc) for doc in cursor]

    def list_events(self, flt: EventFilter, limit: int, offset: int) -> list[Event]:
        return self._find_events(_match(flt), limit, offset)

    def list_sessions(self, query: SessionQuery) -> list[SessionSummary]:
        match: Doc = {"projectId": query.project_id}
        if query.user_id is not None:
            match["userId"] = query.user_id
        if query.first_path is not None:
            match["firstPath"] = query.first_path
        if query.started_from is not None:
            match["startedAt"] = {"$gte": query.started_from}
        if query.last_seen_to is not None:
            match["lastSeenAt"] = {"$lte": query.last_seen_to}
        # One pipeline: the page of sessions, each joined to its event count ($group, not $count,
        # inside $lookup: SecantusDB lacks the latter there).
        count_events: list[Doc] = [
            {"$match": {"$expr": {"$and": [{"$eq": ["$projectId", "$$pid"]}, {"$eq": ["$sessionId", "$$sid"]}]}}},
            {"$group": {"_id": None, "n": {"$sum": 1}}},
        ]
        pipeline: list[Doc] = [
            {"$match": match},
            {"$sort": {"startedAt": 1, "id": 1}},
            {"$skip": query.offset},
            {"$limit": query.limit},
            {
                "$lookup": {
                    "from": "events",
                    "let": {"pid": "$projectId", "sid": "$id"},
                    "pipeline": count_events,
                    "as": "counted",
                }
            },
        ]
        return [
            SessionSummary(
                session_id=str(doc["id"]),
                user_id=_opt_str(doc.get("userId")),
                started_at=int(doc["startedAt"]),
                last_seen_at=int(doc["lastSeenAt"]),
                first_path=str(doc["firstPath"]),
                event_count=int(doc["counted"][0]["n"]) if doc["counted"] else 0,
            )
            for doc in self._aggregate("sessions", pipeline)
        ]

    def get_session(self, session_id: str, project_id: str | None) -> Session | None:
        match: Doc = {"id": session_id}
        if project_id is not None:
            match["projectId"] = project_id
        with self._guard():
            doc = self._coll("sessions").find_one(match, _NO_ID, sort=[("startedAt", 1), ("_id", 1)])
        if doc is None:
            return None
        return Session(
            id=str(doc["id"]),
            project_id=str(doc["projectId"]),
            user_id=_opt_str(doc.get("userId")),
            started_at=int(doc["startedAt"]),
            last_seen_at=int(doc["lastSeenAt"]),
            first_path=str(doc["firstPath"]),
            user_agent=_opt_str(doc.get("userAgent")),
            device_json=_opt_str(doc.get("deviceJson")),
            ip_hash=_opt_str(doc.get("ipHash")),
        )

    def session_events(self, session: Session, types: tuple[str, ...] | None, limit: int, offset: int) -> list[Event]:
        match = _match(EventFilter(project_id=session.project_id, types=types))
        match["sessionId"] = session.id
        return self._find_events(match, limit, offset)

    # -- projects -----------------------------------------------------------

    def create_project(self, key: str, name: str) -> Project:
        values = {"id": str(uuid.uuid4()), "key": key, "name": name, "createdAt": _now_ms()}
        with self._guard():
            self._coll("projects").insert_one(dict(values))
        return _project(values)

    def list_projects(self) -> list[Project]:
        with self._guard():
            cursor = self._coll("projects").find({}, _NO_ID, sort=[("createdAt", 1), ("id", 1)])
            return [_project(doc) for doc in cursor]

    def rotate_project_key(self, project_id: str, new_key: str) -> Project | None:
        self._project_cache.clear()
        with self._guard():
            doc = self._coll("projects").find_one_and_update(
                {"id": project_id},
                {"$set": {"key": new_key}},
                projection=_NO_ID,
                return_document=ReturnDocument.AFTER,
            )
        return _project(doc) if doc else None
