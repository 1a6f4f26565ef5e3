"""Builders of SDK-shaped batches and small test utilities."""

from __future__ import annotations

import copy
import json
import logging
import struct
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from flask_heat_collector import HeatCollector
from flask_heat_collector.log import JsonFormatter

from .processes import free_port as free_port  # re-exported: tests import it from here

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "sdk-batch-chromium.json"
LOCAL_FIXTURE = Path(__file__).parent / "data" / "sdk-batch-chromium.json"
PROJECT_KEY = "dev-project-key"
QUERY_KEY = "test-query-key"
API = {"x-api-key": QUERY_KEY}  # the query API's headers
# Tests (or modules, as ``pytestmark``) that never depend on the database, such as validation and
# auth, run once, on an in-memory SQLite database, instead of once per backend.
backend_free = pytest.mark.parametrize("backend", ["memory"], indirect=True)
TS = 1_795_672_217_000


def sdk_fixture() -> dict[str, Any]:
    """The real batch the SDK sent from Chromium: ``{"headers": ..., "body": ...}``."""
    path = FIXTURE if FIXTURE.exists() else LOCAL_FIXTURE
    data: list[dict[str, Any]] = json.loads(path.read_text())
    return copy.deepcopy(data[0])


def event(kind: str, *, ts: int = TS, path: str = "/", w: int = 1200, h: int = 800, **fields: Any) -> dict[str, Any]:
    """One SDK event of ``kind`` with a fresh eventId; ``fields`` add or replace fields."""
    base: dict[str, Any] = {
        "eventId": str(uuid.uuid4()),
        "sessionId": "s-1",
        "ts": ts,
        "path": path,
        "viewport": {"w": w, "h": h, "dpr": 1},
        "device": {"ua": "TestAgent/1.0", "platform": "Linux", "language": "en"},
        "type": kind,
    }
    defaults: dict[str, dict[str, Any]] = {
        "click": {"x": 10, "y": 20, "selector": "button#a", "button": 0},
        "move": {"points": [{"x": 1, "y": 2, "tsOffset": 0}]},
        "scroll": {"scrollY": 100, "scrollDepthPct": 50},
        "pageview": {"to": path},
        "custom": {"name": "signup", "props": {"step": 1}},
        "input": {"action": "change", "selector": "input#n", "inputType": "text", "length": 3, "masked": "***"},
        "keyboard": {"category": "editing"},
    }
    base.update(defaults.get(kind, {}))
    base.update(fields)
    return base


def batch(
    *events: dict[str, Any],
    session_id: str = "s-1",
    user: dict[str, Any] | None = None,
    started_at: int | None = TS,
    last_seen_at: int | None = TS,
) -> dict[str, Any]:
    """An ingest body for ``events`` (a click when none are given)."""
    session: dict[str, Any] = {"id": session_id}
    if started_at is not None:
        session["startedAt"] = started_at
    if last_seen_at is not None:
        session["lastSeenAt"] = last_seen_at
    body: dict[str, Any] = {
        "sdk": {"name": "@m-software-engineering/heat-sdk", "version": "0.2.6"},
        "session": session,
        "events": [dict(e, sessionId=session_id) for e in (events or (event("click"),))],
    }
    if user is not None:
        body["user"] = user
    return body


def headers(key: str = PROJECT_KEY, **extra: str) -> dict[str, str]:
    return {"X-Project-Key": key, **extra}


def ingest(client: FlaskClient, *events: dict[str, Any], key: str = PROJECT_KEY, **batch_fields: Any) -> str:
    """Post ``batch(*events, **batch_fields)``, expect 200 and return the project id."""
    return ingest_all(client, [batch(*events, **batch_fields)], key)


def ingest_all(client: FlaskClient, bodies: Iterable[dict[str, Any]], key: str = PROJECT_KEY) -> str:
    """Post ``bodies`` in order, expecting 200 each; return the project id."""
    project = ""
    for body in bodies:
        response = client.post("/ingest", json=body, headers=headers(key))
        assert response.status_code == 200, response.get_json()
        project = response.get_json()["projectId"]
    return project


def gzip_bomb(mebibytes: int) -> bytes:
    """A valid gzip member of ``mebibytes`` MiB of zeros (about 1,000:1), built in well under a second.

    After a full flush the deflate state is reset, so every MiB compresses to the same bytes.
    """
    zeros = bytes(1 << 20)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(zeros, crc)
    trailer = struct.pack("<II", crc, (mebibytes << 20) & 0xFFFFFFFF)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + block * mebibytes + deflater.flush() + trailer


class Apps:
    """Builds apps with ``HeatCollector(app, **options)`` (the suite's query key and IP secret unless
    given); :meth:`dispose` closes their repositories."""

    def __init__(self, name: str, *, testing: bool = False) -> None:
        self.name, self.testing = name, testing
        self.made: list[Flask] = []

    def __call__(self, instance: Path, **options: Any) -> Flask:
        app = Flask(self.name, instance_path=str(instance))
        app.config["TESTING"] = self.testing
        options.setdefault("query_api_keys", [QUERY_KEY])
        options.setdefault("ip_hash_secret", "test-secret")
        # Synthetic test data clicks on a timer (10 clicks 1 ms apart, without a pointer move), which
        # the behaviour rules of the traffic classes call a bot (docs/traffic.md): they are off unless
        # a test turns them on (tests/test_traffic.py). The agent rules stay on.
        options.setdefault("bot_regular_clicks", 0)
        options.setdefault("bot_fast_clicks", 0)
        HeatCollector(app, **options)
        self.made.append(app)
        return app

    def dispose(self) -> None:
        for app in self.made:
            app.extensions["heat_collector"].repository.dispose()


class ListHandler(logging.Handler):
    """Keeps each record as the JSON line the collector would write."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


class Server:
    """A threaded werkzeug server for ``app`` on a free loopback port."""

    def __init__(self, app: Flask) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


def dump_database(uri: str) -> str:
    """Every stored value of the backend at ``uri`` as text, for grepping what was stored."""
    if uri.startswith("mongodb"):
        import pymongo

        client: Any = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
        try:
            db = client.get_default_database()
            return "\n".join(
                json.dumps(doc, default=str, ensure_ascii=False)
                for name in db.list_collection_names()
                for doc in db[name].find()
            )
        finally:
            client.close()
    import sqlalchemy as sa

    from flask_heat_collector.repositories.sql_schema import metadata

    engine = sa.create_engine(uri)
    try:
        with engine.connect() as conn:
            return "\n".join(
                json.dumps([str(v) for v in row], ensure_ascii=False)
                for table in metadata.sorted_tables
                for row in conn.execute(sa.select(table))
            )
    finally:
        engine.dispose()


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    seconds: float


def post_batch(url: str, body: dict[str, Any], key: str) -> HttpAnswer:
    """POST ``body`` to ``url``/ingest over real HTTP; HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(
        f"{url}/ingest",
        data=json.dumps(body).encode(),
        # a visitor's agent: urllib's own (Python-urllib) is a crawler's, a bot (docs/traffic.md)
        headers={"Content-Type": "application/json", "X-Project-Key": key, "User-Agent": "TestAgent/1.0"},
        method="POST",
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # generous: a bound, not a measurement
            status, raw, headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, raw, headers = exc.code, exc.read(), dict(exc.headers)
    return HttpAnswer(status, json.loads(raw or b"{}"), headers, time.monotonic() - started)


def without_ids(value: Any, ids: dict[str, str]) -> Any:
    """``value`` (a query answer) without the ids that differ between two projects holding the same
    data: ``id``/``requestId``/``projectId`` dropped, ``o-`` event id prefixes and internal user ids
    (``ids``: internal -> a stable name) replaced."""
    if isinstance(value, dict):
        return {
            k: v.removeprefix("o-") if k == "eventId" else without_ids(v, ids)
            for k, v in value.items()
            if k not in ("id", "requestId", "projectId")
        }
    if isinstance(value, list):
        return [without_ids(v, ids) for v in value]
    return ids.get(value, value) if isinstance(value, str) else value
