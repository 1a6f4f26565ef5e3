"""Stored bytes of one amplification batch: a move of 2,000 points with an 8 KB meta (SPEC 6).

The database's physical size is read before and after the batch (tests/storage_size.py), after a
small warm-up batch so that empty-table overhead is not counted.
"""

from __future__ import annotations

from flask import Flask

from flask_heat_collector import HeatCollector
from tests.helpers import batch, event, headers
from tests.storage_size import encode, filler_meta, move_points, stored_bytes


def measure(uri: str) -> tuple[float, int, int]:
    """``(stored / body, body bytes, stored bytes)`` for the batch on the empty database at ``uri``."""
    app = Flask("heat_bench_amplification")
    HeatCollector(app, database_uri=uri, ip_hash_secret="bench", log_level="error", rate_limit="1000 per second")
    client = app.test_client()
    try:
        warm = batch(event("move", path="/amp", meta=filler_meta(300), points=move_points(5)), session_id="warm")
        assert client.post("/ingest", data=encode(warm), headers=headers("amp-key")).status_code == 200
        before = stored_bytes(uri)
        raw = encode(
            batch(
                event("move", path="/amp", meta=filler_meta(8_000, seed=1), points=move_points(2000, seed=1)),
                session_id="amp",
            )
        )
        response = client.post("/ingest", data=raw, headers=headers("amp-key"), content_type="application/json")
        assert response.status_code == 200, response.get_json()
        stored = stored_bytes(uri) - before
    finally:
        app.extensions["heat_collector"].repository.dispose()
    return stored / len(raw), len(raw), stored
