"""What a test database holds on disk, SDK-shaped filler, and a child process that measures memory.

``stored_bytes(uri)`` is the physical size of the database behind ``uri`` (every table or
collection with its indexes), so that the difference around one request is what that request
stored:

- SQLite: ``page_count * page_size`` after a ``wal_checkpoint(TRUNCATE)``: the size of the file
  once the WAL is folded in, page-exact (4 KiB).
- PostgreSQL: ``pg_total_relation_size`` (heap, TOAST, indexes, free space and visibility maps)
  summed over the tables of the current schema: file sizes, exact to the 8 KiB page, at once.
- MariaDB: ``data_length + index_length`` of every table of the database after ``ANALYZE TABLE``
  (InnoDB refreshes them from its segments; without ANALYZE they lag behind). These are the
  pages the segments hold: one 16 KiB page at a time for a segment's first 32 pages, then whole
  1 MiB extents, so the figure is page-exact for the ~75 KB batch (each segment stays under 32
  pages unless the layout already multiplies the body well beyond 3x) and may run up to about one
  extent ahead of what a ~1 MB batch really uses: see ``EXTENT_SLACK``.
- MongoDB: ``dbStats`` ``dataSize + indexSize``. SecantusDB computes both from what it holds (the
  summed BSON of every document, the summed packed keys of every index), exact and at once.
  A real ``mongod`` (``HEAT_TEST_MONGO``) reports ``dataSize`` the same way (uncompressed BSON)
  but ``indexSize`` as WiredTiger file sizes, which follow at its next checkpoint.

``python -m tests.storage_size memory <uri>`` posts batches of 150 distinct sizes in one process
and prints its resident memory before and after, as JSON.
"""

from __future__ import annotations

import gc
import json
import random
import sqlite3
import string
import sys
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from .helpers import TS, batch, event, headers

# InnoDB gives a segment whole 1 MiB extents once it holds 32 pages: reserved, not yet used.
EXTENT_SLACK = 1024 * 1024
_ALPHABET = string.ascii_letters + string.digits


def stored_bytes(uri: str) -> int:
    """The physical size of the database at ``uri``, tables/collections and indexes together."""
    if uri.startswith("mongodb"):
        return _mongo_bytes(uri)
    url = sa.make_url(uri)
    if url.get_backend_name() == "sqlite":
        return _sqlite_bytes(str(url.database))
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if url.get_backend_name() == "postgresql":
                return int(
                    conn.exec_driver_sql(
                        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')"
                    ).scalar_one()
                )
            tables = [
                str(name)
                for (name,) in conn.exec_driver_sql(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'"
                )
            ]
            for name in tables:
                conn.exec_driver_sql(f"ANALYZE TABLE `{name}`").fetchall()
            return int(
                conn.exec_driver_sql(
                    "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'"
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _sqlite_bytes(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        return pages * int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def _mongo_bytes(uri: str) -> int:
    import pymongo

    client: Any = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        stats = client.get_default_database().command("dbStats")
        return int(stats["dataSize"]) + int(stats["indexSize"])
    finally:
        client.close()


def json_bytes(value: Any) -> int:
    """The size the ingest schema gives a free-form object (UTF-8 of ``json.dumps(ensure_ascii=False)``)."""
    return len(json.dumps(value, ensure_ascii=False).encode())


def filler_meta(size: int, *, seed: int = 0, char: str = "") -> dict[str, Any]:
    """A ``meta`` of exactly ``size`` bytes as the schema counts them, random (incompressible) text.

    ``char`` (e.g. a 4-byte emoji) fills as much as it can before ASCII tops it up to the byte.
    """
    meta: dict[str, Any] = {"viewportBucket": "1200x800", "pad": ""}
    room = size - json_bytes(meta)
    if room < 0:
        raise ValueError(f"a meta cannot be as small as {size} bytes")
    wide = room // len(char.encode()) if char else 0
    rng = random.Random(seed)
    meta["pad"] = char * wide + "".join(rng.choices(_ALPHABET, k=room - wide * len(char.encode())))
    assert json_bytes(meta) == size
    return meta


def random_text(length: int, first: int, last: int, *, seed: int = 0) -> str:
    """``length`` random characters between code points ``first`` and ``last``: nothing for a
    compressor to share (PostgreSQL compresses index entries, so a repeated character stays small).
    """
    rng = random.Random(seed)
    return "".join(chr(rng.randint(first, last)) for _ in range(length))


def move_points(count: int, *, seed: int = 0) -> list[dict[str, int]]:
    """``count`` pointer positions over a 1280x3000 page, 16 ms apart."""
    rng = random.Random(seed)
    return [{"x": rng.randrange(1280), "y": rng.randrange(3000), "tsOffset": 16 * i} for i in range(count)]


def encode(body: dict[str, Any]) -> bytes:
    """A body as the browser SDK sends it (``JSON.stringify``: compact, UTF-8)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def read_rss_kb() -> int:
    """This process's resident set size (``VmRSS``), in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def memory_child(uri: str, sizes: int = 150, points: int = 10) -> dict[str, Any]:
    """Post batches of 1..``sizes`` move events (``points`` each) through one app; RSS around them."""
    from flask import Flask

    from flask_heat_collector import HeatCollector

    app = Flask("heat_memory")
    app.config["TESTING"] = True
    HeatCollector(app, database_uri=uri, ip_hash_secret="test-secret", rate_limit="100000 per second")
    client = app.test_client()
    statuses: dict[int, int] = {}

    def post(count: int) -> None:
        moves = [event("move", ts=TS + i, points=move_points(points, seed=i)) for i in range(count)]
        answer = client.post("/ingest", json=batch(*moves, session_id=f"m-{uuid.uuid4().hex}"), headers=headers())
        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

    for count in (1, 2, 3, 1, 2, 3):  # first-use costs: imports, compiled statements, pools
        post(count)
    gc.collect()
    before = read_rss_kb()
    for count in range(1, sizes + 1):
        post(count)
    gc.collect()
    after = read_rss_kb()
    app.extensions["heat_collector"].repository.dispose()
    return {"before_kb": before, "after_kb": after, "statuses": statuses}


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "memory":
        sys.exit("usage: python -m tests.storage_size memory <database-uri>")
    print(json.dumps(memory_child(sys.argv[2])))
